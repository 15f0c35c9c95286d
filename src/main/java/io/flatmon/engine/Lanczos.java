package io.flatmon.engine;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.commons.math3.exception.MaxCountExceededException;
import org.apache.commons.math3.linear.EigenDecomposition;

/**
 * The largest (algebraic) eigenvalue of a symmetric operator by Lanczos with full
 * re-orthogonalisation (docs/math.md §4). Converges when the Ritz residual β_j·|y_j| of the top Ritz
 * pair falls below 1e-13 of its value, or exactly once the Krylov space is invariant.
 */
public final class Lanczos {
  private static final double TOLERANCE = 1e-13;
  private static final int MAX_ITERATIONS = 600;

  private Lanczos() {
  }

  public static double largestEigenvalue(LinearOperator op, int dimension) {
    SplittableRandom random = new SplittableRandom(0x5eed);
    double[] q = new double[dimension];
    for (int i = 0; i < dimension; i++) {
      q[i] = random.nextDouble() - 0.5;
    }
    scale(q, 1.0 / norm(q));
    List<double[]> basis = new ArrayList<>();
    List<Double> alphas = new ArrayList<>();
    List<Double> betas = new ArrayList<>();
    double[] w = new double[dimension];
    double previousBeta = 0.0;
    double[] previous = null;
    int limit = Math.min(dimension, MAX_ITERATIONS);
    double ritz = Double.NaN;
    for (int j = 0; j < limit; j++) {
      basis.add(q);
      op.apply(q, w);
      double alpha = dot(w, q);
      alphas.add(alpha);
      for (int i = 0; i < dimension; i++) {
        w[i] -= alpha * q[i] + (previous == null ? 0.0 : previousBeta * previous[i]);
      }
      // Two passes of classical Gram-Schmidt against the whole basis keep it orthogonal to working precision.
      for (int pass = 0; pass < 2; pass++) {
        for (double[] b : basis) {
          double c = dot(w, b);
          for (int i = 0; i < dimension; i++) {
            w[i] -= c * b[i];
          }
        }
      }
      double beta = norm(w);
      double[] top = topRitzPair(alphas, betas);
      ritz = top[0];
      double residual = Math.abs(beta * top[1]);
      if (!Double.isFinite(ritz) || residual <= TOLERANCE * Math.max(Math.abs(ritz), Double.MIN_NORMAL)
          || beta <= 1e-300) {
        return ritz;
      }
      betas.add(beta);
      previous = q;
      previousBeta = beta;
      q = new double[dimension];
      for (int i = 0; i < dimension; i++) {
        q[i] = w[i] / beta;
      }
    }
    return ritz;
  }

  /**
   * Largest eigenvalue θ of the tridiagonal T (diagonal alphas, off-diagonal betas) and the last
   * component of its unit eigenvector, by commons-math's symmetric tridiagonal QL solver. Its O(j³)
   * per iteration is far below the Hessian-vector product's O(N·C·d) at the sizes Lanczos runs on.
   */
  static double[] topRitzPair(List<Double> alphas, List<Double> betas) {
    int n = alphas.size();
    double[] main = new double[n];
    double[] secondary = new double[n - 1];
    for (int i = 0; i < n; i++) {
      main[i] = alphas.get(i);
      if (i + 1 < n) {
        secondary[i] = betas.get(i);
      }
    }
    EigenDecomposition t;
    try {
      t = new EigenDecomposition(main, secondary);
    } catch (MaxCountExceededException e) {
      return new double[] {Double.NaN, 0.0};
    }
    double[] theta = t.getRealEigenvalues();
    int best = 0;
    for (int i = 1; i < n; i++) {
      if (theta[i] > theta[best]) {
        best = i;
      }
    }
    return new double[] {theta[best], t.getEigenvector(best).getEntry(n - 1)};
  }

  private static double dot(double[] a, double[] b) {
    double s = 0.0;
    for (int i = 0; i < a.length; i++) {
      s += a[i] * b[i];
    }
    return s;
  }

  private static double norm(double[] a) {
    return Math.sqrt(dot(a, a));
  }

  private static void scale(double[] a, double f) {
    for (int i = 0; i < a.length; i++) {
      a[i] *= f;
    }
  }
}
