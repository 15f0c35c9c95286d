package io.flatmon.engine;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

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
   * component of its unit eigenvector, by the implicit QL algorithm (tql2 of EISPACK), tracking
   * only the last row of the eigenvector matrix.
   */
  static double[] topRitzPair(List<Double> alphas, List<Double> betas) {
    int n = alphas.size();
    double[] d = new double[n];
    double[] e = new double[n];
    double[] last = new double[n];
    for (int i = 0; i < n; i++) {
      d[i] = alphas.get(i);
      e[i] = i + 1 < n ? betas.get(i) : 0.0;
    }
    last[n - 1] = 1.0;
    double f = 0.0;
    double tst1 = 0.0;
    double eps = Math.ulp(1.0);
    for (int l = 0; l < n; l++) {
      tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
      int m = l;
      while (m < n && Math.abs(e[m]) > eps * tst1) {
        m++;
      }
      if (m == n) {
        m = n - 1;
      }
      if (m > l) {
        int iterations = 0;
        do {
          if (++iterations > 60) {
            return new double[] {Double.NaN, 0.0};
          }
          double g = d[l];
          double p = (d[l + 1] - g) / (2.0 * e[l]);
          double r = Math.hypot(p, 1.0);
          if (p < 0) {
            r = -r;
          }
          d[l] = e[l] / (p + r);
          d[l + 1] = e[l] * (p + r);
          double dl1 = d[l + 1];
          double h = g - d[l];
          for (int i = l + 2; i < n; i++) {
            d[i] -= h;
          }
          f += h;
          p = d[m];
          double c = 1.0;
          double c2 = c;
          double c3 = c;
          double el1 = e[l + 1];
          double s = 0.0;
          double s2 = 0.0;
          for (int i = m - 1; i >= l; i--) {
            c3 = c2;
            c2 = c;
            s2 = s;
            g = c * e[i];
            h = c * p;
            r = Math.hypot(p, e[i]);
            e[i + 1] = s * r;
            s = e[i] / r;
            c = p / r;
            p = c * d[i] - s * g;
            d[i + 1] = h + s * (c * g + s * d[i]);
            h = last[i + 1];
            last[i + 1] = s * last[i] + c * h;
            last[i] = c * last[i] - s * h;
          }
          p = -s * s2 * c3 * el1 * e[l] / dl1;
          e[l] = s * p;
          d[l] = c * p;
        } while (Math.abs(e[l]) > eps * tst1);
      }
      d[l] += f;
      e[l] = 0.0;
    }
    int best = 0;
    for (int i = 1; i < n; i++) {
      if (d[i] > d[best]) {
        best = i;
      }
    }
    return new double[] {d[best], last[best]};
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
