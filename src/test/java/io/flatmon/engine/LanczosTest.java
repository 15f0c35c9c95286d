package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.commons.math3.linear.Array2DRowRealMatrix;
import org.apache.commons.math3.linear.EigenDecomposition;
import org.apache.commons.math3.linear.RealMatrix;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Lanczos (docs/math.md §4) against commons-math's dense symmetric EigenDecomposition of the same matrix:
 * the largest algebraic eigenvalue, to the documented relative 1e-13 residual (checked at 1e-10 of the
 * spectral radius, far below any eigenvalue gap used here).
 */
class LanczosTest {

  static double[][] randomSymmetric(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    double[][] a = new double[n][n];
    for (int i = 0; i < n; i++) {
      for (int j = 0; j <= i; j++) {
        a[i][j] = a[j][i] = r.nextDouble(-1, 1);
      }
    }
    return a;
  }

  static LinearOperator operator(double[][] a) {
    return (v, out) -> {
      for (int i = 0; i < a.length; i++) {
        double s = 0;
        for (int j = 0; j < a.length; j++) {
          s += a[i][j] * v[j];
        }
        out[i] = s;
      }
    };
  }

  static double denseLargest(double[][] a) {
    double[] eig = new EigenDecomposition(new Array2DRowRealMatrix(a)).getRealEigenvalues();
    double max = Double.NEGATIVE_INFINITY;
    for (double e : eig) {
      max = Math.max(max, e);
    }
    return max;
  }

  static double spectralRadius(double[][] a) {
    double m = 0;
    for (double e : new EigenDecomposition(new Array2DRowRealMatrix(a)).getRealEigenvalues()) {
      m = Math.max(m, Math.abs(e));
    }
    return m;
  }

  @ParameterizedTest(name = "n = {0}")
  @ValueSource(ints = {1, 2, 3, 5, 8, 13, 40})
  void largestEigenvalueOfRandomSymmetricMatricesMatchesDense(int n) {
    for (long seed = 1; seed <= 3; seed++) {
      double[][] a = randomSymmetric(n, seed * 7919 + n);
      double expected = denseLargest(a);
      assertEquals(expected, Lanczos.largestEigenvalue(operator(a), n), 1e-10 * spectralRadius(a),
          "n=" + n + " seed=" + seed);
    }
  }

  @Test
  void largestIsAlgebraicNotLargestMagnitude() {
    // eigenvalues −10, −3, 0.5, 2: the answer is 2, not −10
    double[][] a = rotated(new double[] {-10, -3, 0.5, 2}, 11);
    assertEquals(2.0, Lanczos.largestEigenvalue(operator(a), 4), 1e-12 * 10);
    double[][] negative = rotated(new double[] {-10, -3, -0.5, -2}, 12);
    assertEquals(-0.5, Lanczos.largestEigenvalue(operator(negative), 4), 1e-12 * 10);
  }

  @Test
  void positiveSemidefiniteHessianLikeSpectrum() {
    // a Gram matrix G = XᵀX (like a GAP-head Hessian block) has non-negative eigenvalues spread over decades
    SplittableRandom r = new SplittableRandom(3);
    int n = 30;
    int m = 12; // rank 12 < 30: many exact zero eigenvalues
    double[][] x = new double[m][n];
    for (double[] row : x) {
      for (int j = 0; j < n; j++) {
        row[j] = r.nextGaussian() * Math.pow(10, -j / 10.0);
      }
    }
    RealMatrix xm = new Array2DRowRealMatrix(x);
    double[][] g = xm.transpose().multiply(xm).getData();
    assertEquals(denseLargest(g), Lanczos.largestEigenvalue(operator(g), n), 1e-12 * denseLargest(g));
  }

  @Test
  void scalesWithTheOperator() {
    double[][] a = randomSymmetric(10, 99);
    double[][] b = new double[10][10];
    for (int i = 0; i < 10; i++) {
      for (int j = 0; j < 10; j++) {
        b[i][j] = 1e-20 * a[i][j];
      }
    }
    // tiny but true values are found relative to their own size, not swallowed by an absolute floor
    assertEquals(1e-20 * denseLargest(a), Lanczos.largestEigenvalue(operator(b), 10), 1e-30);
  }

  @Test
  void aMultipleOfTheIdentityIsInvariantAfterOneStep() {
    AtomicInteger calls = new AtomicInteger();
    LinearOperator threeI = (v, out) -> {
      calls.incrementAndGet();
      for (int i = 0; i < v.length; i++) {
        out[i] = 3 * v[i];
      }
    };
    assertEquals(3.0, Lanczos.largestEigenvalue(threeI, 50), 1e-14);
    assertEquals(1, calls.get(), "the Krylov space of a multiple of I is one-dimensional");
  }

  @Test
  void fewDistinctEigenvaluesConvergeInThatManySteps() {
    // diag with three distinct values in dimension 60: the Krylov space has dimension 3
    double[] d = new double[60];
    for (int i = 0; i < d.length; i++) {
      d[i] = i % 3 == 0 ? 5 : (i % 3 == 1 ? -1 : 2);
    }
    AtomicInteger calls = new AtomicInteger();
    LinearOperator diag = (v, out) -> {
      calls.incrementAndGet();
      for (int i = 0; i < v.length; i++) {
        out[i] = d[i] * v[i];
      }
    };
    assertEquals(5.0, Lanczos.largestEigenvalue(diag, 60), 1e-12);
    assertTrue(calls.get() <= 4, "converged after " + calls.get() + " products");
  }

  @Test
  void convergesBeforeTheDimensionOnAWellSeparatedTop() {
    // one eigenvalue far above the rest converges long before n products
    int n = 200;
    double[] d = new double[n];
    for (int i = 0; i < n; i++) {
      d[i] = i * 1e-3;
    }
    d[17] = 100;
    AtomicInteger calls = new AtomicInteger();
    LinearOperator diag = (v, out) -> {
      calls.incrementAndGet();
      for (int i = 0; i < v.length; i++) {
        out[i] = d[i] * v[i];
      }
    };
    assertEquals(100.0, Lanczos.largestEigenvalue(diag, n), 1e-11);
    assertTrue(calls.get() < 40, calls.get() + " products");
  }

  @Test
  void aTopFarBelowTheSpectralRadiusIsFoundInAtMostDimensionProducts() {
    // eigenvalues from −1e12 to 0.5: the top lies 12 decades below the spectral radius and converges last;
    // it is exact up to rounding relative to the spectral radius within n products only while the basis stays
    // orthogonal (without the re-orthogonalisation passes this gives −300)
    double[] d = {-1e12, -3e9, -7e6, -1e3, -40, -2, -0.25, 0.5, -5e4, -9e8};
    double[][] a = rotated(d, 21);
    AtomicInteger calls = new AtomicInteger();
    LinearOperator counted = (v, out) -> {
      calls.incrementAndGet();
      operator(a).apply(v, out);
    };
    assertEquals(0.5, Lanczos.largestEigenvalue(counted, d.length), 1e-15 * 1e12 * d.length);
    assertTrue(calls.get() <= d.length, calls.get() + " products in dimension " + d.length);
  }

  @Test
  void aNonFiniteTridiagonalHasANonFiniteTop() {
    double[] top = Lanczos.topRitzPair(List.of(1.0, Double.NaN, 2.0), List.of(1.0, 0.5));
    assertTrue(Double.isNaN(top[0]), java.util.Arrays.toString(top));
  }

  @Test
  void topRitzPairOfATridiagonal() {
    // T = [[2, 1], [1, 2]]: eigenvalues 1 and 3, top eigenvector (1, 1)/√2
    double[] top = Lanczos.topRitzPair(List.of(2.0, 2.0), List.of(1.0));
    assertEquals(3.0, top[0], 1e-14);
    assertEquals(1 / Math.sqrt(2), Math.abs(top[1]), 1e-14);
    // 1×1: the value itself, eigenvector component 1
    double[] one = Lanczos.topRitzPair(List.of(-4.0), List.of());
    assertEquals(-4.0, one[0], 0);
    assertEquals(1.0, Math.abs(one[1]), 1e-15);
    // T = diag(1, 7, 3) (zero couplings): top 7 lies in the middle, last component 0
    double[] mid = Lanczos.topRitzPair(List.of(1.0, 7.0, 3.0), List.of(0.0, 0.0));
    assertEquals(7.0, mid[0], 1e-14);
    assertEquals(0.0, mid[1], 1e-14);
    // top at the end: last component ±1
    double[] last = Lanczos.topRitzPair(List.of(1.0, 3.0, 7.0), List.of(0.0, 0.0));
    assertEquals(7.0, last[0], 1e-14);
    assertEquals(1.0, Math.abs(last[1]), 1e-14);
  }

  @Test
  void aNonFiniteOperatorGivesANonFiniteAnswerInsteadOfLooping() {
    LinearOperator nan = (v, out) -> java.util.Arrays.fill(out, Double.NaN);
    assertTrue(Double.isNaN(Lanczos.largestEigenvalue(nan, 5)));
  }

  /** Qᵀ diag(d) Q for a random orthogonal Q (from a QR of a random matrix). */
  static double[][] rotated(double[] d, long seed) {
    int n = d.length;
    RealMatrix q = new org.apache.commons.math3.linear.QRDecomposition(
        new Array2DRowRealMatrix(randomSymmetric(n, seed))).getQ();
    RealMatrix diag = new Array2DRowRealMatrix(n, n);
    for (int i = 0; i < n; i++) {
      diag.setEntry(i, i, d[i]);
    }
    return q.transpose().multiply(diag).multiply(q).getData();
  }
}
