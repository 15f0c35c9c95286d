package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The engine's anchored softmax side (docs/math.md eq. 9) against the reference's independent
 * pairwise evaluation of eq. (1) ({@link ReferenceCurvature.ClassifierTerms}), from ordinary to very
 * confident samples (top logit ahead by up to 60), every comparison relative with no floor.
 */
class SoftmaxOutputTest {
  static final int C = 4;

  static Stream<Arguments> samples() {
    List<Arguments> out = new ArrayList<>();
    int seed = 0;
    for (int k : new int[] {2, 3, 10}) {
      for (double gap : new double[] {0.0, 0.5, 5, 20, 40, 60}) {
        for (int labelMode = 0; labelMode < 3; labelMode++) {
          out.add(Arguments.of(k, gap, labelMode, seed++));
        }
      }
    }
    return out.stream();
  }

  /**
   * @param gap how far the top logit leads the runner-up
   * @param labelMode 0: the top class, 1: another class, 2: no label
   */
  @ParameterizedTest(name = "K={0} gap={1} label mode {2}")
  @MethodSource("samples")
  void anchoredFormsEqualThePairwiseReference(int k, double gap, int labelMode, int seed) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] v = new float[k * C];
    for (int i = 0; i < v.length; i++) {
      v[i] = (float) (2 * random.nextDouble() - 1);
    }
    double[] logits = new double[k];
    int top = random.nextInt(k);
    for (int i = 0; i < k; i++) {
      logits[i] = 3 * random.nextDouble();
    }
    double runnerUp = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < k; i++) {
      if (i != top) {
        runnerUp = Math.max(runnerUp, logits[i]);
      }
    }
    logits[top] = runnerUp + gap + (gap == 0 ? 1e-9 : 0);
    int label = labelMode == 0 ? top : labelMode == 1 ? (top + 1) % k : -1;

    SoftmaxOutput engine = SoftmaxOutput.of(logits, v, C, label);
    ReferenceCurvature.ClassifierTerms ref = ReferenceCurvature.ClassifierTerms.of(logits, v, C, label);
    assertEquals(top, engine.top);
    for (int i = 0; i < k; i++) {
      assertRelative("s_" + i, ref.probabilities[i], engine.probabilities[i], 1e-14);
      assertRelative("1 − s_" + i, ref.complements[i], engine.complements[i], 1e-14);
    }
    double[] diag = engine.diagonalOfA(v);
    double[] refDiag = ref.diagonalOfA();
    double[] full = engine.fullA(v);
    double[] refFull = ref.fullA();
    for (int c = 0; c < C; c++) {
      assertRelative("A_cc", refDiag[c], diag[c], 1e-12);
      for (int e = 0; e < C; e++) {
        // off-diagonal entries may cancel: judge them against √(A_cc A_ee) ≥ |A_ce| (A is PSD)
        double scale = Math.sqrt(refDiag[c] * refDiag[e]);
        double got = full[c * C + e];
        double want = refFull[c * C + e];
        String entry = "A_" + c + e;
        assertTrue(Math.abs(got - want) <= 1e-12 * scale,
            () -> String.format("%s: engine %.17g reference %.17g", entry, got, want));
      }
      assertRelative("A_cc (full)", refDiag[c], full[c * C + c], 1e-12);
    }
    double h2 = 1.7;
    assertRelative("Tr H_V", h2 * ref.probabilityVariance(), engine.classifierHessianTrace(h2), 1e-13);
    assertRelative("κ_V", h2 * ref.rowSpread(), engine.classifierRelativeFlatness(h2, v), 1e-12);
    if (label < 0) {
      assertNull(engine.lossGradient);
      assertTrue(Double.isNaN(engine.loss));
      assertTrue(Double.isNaN(engine.correct));
      return;
    }
    assertEquals(label == top ? 1.0 : 0.0, engine.correct);
    assertRelative("loss", ref.loss, engine.loss, 1e-13);
    for (int c = 0; c < C; c++) {
      // δ_c = Σ_k s_k (v_kc − v_yc) may cancel: judge it against Σ_k s_k |v_kc − v_yc|
      double scale = 0.0;
      for (int i = 0; i < k; i++) {
        scale += ref.probabilities[i] * Math.abs((double) v[i * C + c] - v[label * C + c]);
      }
      double e = ref.lossGradient[c];
      double a = engine.lossGradient[c];
      double s = scale;
      assertTrue(Math.abs(e - a) <= 1e-12 * s, () -> String.format("δ: engine %.17g reference %.17g", a, e));
    }
  }

  /** Two classes, logits (1, −1): s = (1/(1+e⁻²), e⁻²/(1+e⁻²)), A = s_0 s_1 (v_0 − v_1)² by hand. */
  @Test
  void twoClassesByHand() {
    float[] v = {1f, 3f, -1f, 0.5f};  // K = 2, C = 2: v_0 = (1, 3), v_1 = (−1, 0.5)
    SoftmaxOutput s = SoftmaxOutput.of(new double[] {1, -1}, v, 2, 1);
    double s0 = 1 / (1 + Math.exp(-2));
    double s1 = Math.exp(-2) / (1 + Math.exp(-2));
    double s01 = s0 * s1;
    assertRelative("s_0", s0, s.probabilities[0], 1e-15);
    assertRelative("s_1", s1, s.probabilities[1], 1e-15);
    assertRelative("1 − s_0", s1, s.complements[0], 1e-15);
    assertRelative("1 − s_1", s0, s.complements[1], 1e-15);
    double[] a = s.fullA(v);
    // v_0 − v_1 = (2, 2.5): A = s_0 s_1 [[4, 5], [5, 6.25]]
    assertRelative("A_00", 4 * s01, a[0], 1e-15);
    assertRelative("A_01", 5 * s01, a[1], 1e-15);
    assertRelative("A_10", 5 * s01, a[2], 1e-15);
    assertRelative("A_11", 6.25 * s01, a[3], 1e-15);
    double[] diag = s.diagonalOfA(v);
    assertRelative("diag A_0", 4 * s01, diag[0], 1e-15);
    assertRelative("diag A_1", 6.25 * s01, diag[1], 1e-15);
    // label 1: δ = Vᵀ(s − e_1) = s_0 (v_0 − v_1) = s_0 (2, 2.5); ℓ = −log s_1 = 2 + log(1 + e⁻²)
    assertRelative("δ_0", 2 * s0, s.lossGradient[0], 1e-15);
    assertRelative("δ_1", 2.5 * s0, s.lossGradient[1], 1e-15);
    assertRelative("loss", 2 + Math.log1p(Math.exp(-2)), s.loss, 1e-15);
    assertEquals(0.0, s.correct);
    // eq. (10): Tr H_V = ‖h‖² · 2 s_0 s_1, κ_V = ‖h‖² s_0 s_1 ‖v_0 − v_1‖² = ‖h‖² s_0 s_1 · 10.25
    assertRelative("Tr H_V", 3 * 2 * s01, s.classifierHessianTrace(3), 1e-15);
    assertRelative("κ_V", 3 * 10.25 * s01, s.classifierRelativeFlatness(3, v), 1e-15);
  }

  /** Ties go to the first largest logit, as PyTorch's argmax (what the fixtures' accuracy uses). */
  @Test
  void tiesGoToTheFirstLargestLogit() {
    float[] v = {1f, 0f, 0f};
    SoftmaxOutput s = SoftmaxOutput.of(new double[] {0, 2, 2}, v, 1, 2);
    assertEquals(1, s.top);
    assertEquals(0.0, s.correct);
    assertEquals(1.0, SoftmaxOutput.of(new double[] {0, 2, 2}, v, 1, 1).correct);
    assertEquals(0.0, ReferenceCurvature.ClassifierTerms.of(new double[] {0, 2, 2}, v, 1, 2).correct);
    assertEquals(1.0, ReferenceCurvature.ClassifierTerms.of(new double[] {0, 2, 2}, v, 1, 1).correct);
  }

  @Test
  void nanLogitsPropagate() {
    float[] v = {1f, 2f};
    SoftmaxOutput s = SoftmaxOutput.of(new double[] {Double.NaN, 0.5}, v, 1, 0);
    assertTrue(Double.isNaN(s.probabilities[0]) && Double.isNaN(s.probabilities[1]));
    assertTrue(Double.isNaN(s.complements[0]) && Double.isNaN(s.complements[1]));
    assertTrue(Double.isNaN(s.classifierHessianTrace(1.0)));
  }

  static void assertRelative(String what, double expected, double actual, double tolerance) {
    OracleFixtureTest.assertRelative(what, expected, actual, tolerance);
  }
}
