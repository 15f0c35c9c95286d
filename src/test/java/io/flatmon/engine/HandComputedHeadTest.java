package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * A head small enough to do by hand: C = C_in = 1, a 1×1 kernel on a 1×1 input (P = 1, d = 1),
 * identity σ, no biases, K = 2. Every expected number below is derived in the comments from
 * docs/math.md eqs. (1)–(12); nothing is taken from the code under test.
 *
 * <pre>
 *   w = 0.5, v_0 = 1, v_1 = −1, α (weight decay) = 0.25
 *   sample 1: x = 2,  label 0      sample 2: x = −2, label 0
 *
 *   z = h = w·x = ±1;  σ = identity, so σ' = 1 and σ'' = 0 (no δ term)
 *   logits o = (v_0 h, v_1 h) = (1, −1) for sample 1, (−1, 1) for sample 2
 *   sample 1: s = (1/(1+e⁻²), e⁻²/(1+e⁻²)) = (0.8807970779778824, 0.1192029220221176); sample 2 mirrored
 *   s_0 s_1 = e⁻²/(1+e⁻²)² = 0.10499358540350652 for both
 *   (1)  A = Vᵀ(diag s − s sᵀ)V = s_0 s_1 (v_0 − v_1)² = 4 s_0 s_1 = 0.41997434161402607
 *   (2)  g = (a/P) σ' x = x, Γ = g² = 4
 *   (6)  Tr H = A Γ = 16 s_0 s_1 = 1.6798973664561043                         (each sample, so the mean)
 *   (7)  κ = Ω A Γ with Ω = w² = 0.25: κ = 4 s_0 s_1 = 0.41997434161402607
 *   (12) ρ = RMS of the input channel = √((4 + 4)/2) = 2; W' = wρ = 1, x' = x/ρ = ±1:
 *        κ_norm = Ω' A Γ' = 1 · A · 1 = 0.41997434161402607
 *   (10) Tr H_V = ‖h‖² Σ_k s_k(1 − s_k) = 2 s_0 s_1 = 0.20998717080701303
 *        κ_V = ‖h‖² Σ_k s_k (v_k − ū)² = s_0 s_1 (v_0 − v_1)² = 0.41997434161402607
 *   loss: sample 1 −log s_0 = log(1 + e⁻²) = 0.12692801104297250, sample 2 log(1 + e²) = 2.1269280110429725;
 *         mean 1.1269280110429725; accuracy (argmax = label) 1 and 0, mean 0.5
 *   (8)  weight decay: Tr += 2αCd = 0.5, κ += 2αd‖W‖² = 2 · 0.25 · 0.25 = 0.125
 *   λ_max: H is 1 × 1, so λ_max = Tr H = 1.6798973664561043
 * </pre>
 */
class HandComputedHeadTest {
  static final double TR_H = 1.6798973664561043;
  static final double A = 0.41997434161402607;
  static final double TR_H_V = 0.20998717080701303;
  static final double LOSS = 1.1269280110429725;

  static HeadSnapshot head() {
    return HeadSnapshot.builder(1, 1, ConvGeometry.of(1, 1), 2)
        .kernel(new float[] {0.5f})
        .activation(Activation.of(Activation.Kind.IDENTITY))
        .classifier(new float[] {1f, -1f}, null)
        .weightDecay(0.25)
        .build();
  }

  static ActivationBatch batch() {
    return new ActivationBatch(2, 1, 1, 1, new float[] {2f, -2f}, null, new int[] {0, 0});
  }

  @Test
  void referenceGivesTheHandComputedValues() {
    check(new ReferenceCurvature(), 1e-15);
  }

  @Test
  void engineGivesTheHandComputedValues() {
    // float32 engine: the inputs are exact in float32, the error is float32 rounding of the products
    check(new CurvatureEngine(), 1e-6);
  }

  @Test
  void maxEigenvalueOfTheOneByOneHessianIsItsTrace() {
    assertRelative("λ_max", TR_H, new ReferenceCurvature().maxEigenvalue(head(), java.util.List.of(batch())), 1e-14);
  }

  /** Identity σ: no second term, so the cancellation scale of each sample is its value. */
  @Test
  void cancellationScaleOfAPiecewiseLinearHeadIsTheValue() {
    double[][] scales = new ReferenceCurvature().cancellationScales(head(), batch(), new double[] {2.0});
    for (int n = 0; n < 2; n++) {
      assertRelative("Tr H scale", TR_H, scales[0][n], 1e-15);
      assertRelative("κ scale", A, scales[1][n], 1e-15);
      assertRelative("κ_norm scale", A, scales[2][n], 1e-15);
    }
    assertEquals(null, new ReferenceCurvature().cancellationScales(head(), batch(), null)[2]);
  }

  /** Without ρ there is no κ_norm (NaN), and everything else is unchanged. */
  @Test
  void withoutInputChannelRmsThereIsNoNormalizedKappa() {
    BatchCurvature b = new ReferenceCurvature().compute(head(), batch(), null);
    assertEquals(2, b.samples());
    assertTrue(Double.isNaN(b.relativeFlatnessNormalized()[0]));
    assertRelative("Tr H", TR_H, b.hessianTrace()[1], 1e-15);
    assertEquals(1.0, b.correct()[0], 0.0);
    assertEquals(0.0, b.correct()[1], 0.0);
    assertTrue(!b.nonFiniteInput());
  }

  /** A NaN in the input is no error: it propagates and sets the non-finite flag (docs/math.md §5). */
  @Test
  void nonFiniteInputPropagatesAndIsFlagged() {
    ActivationBatch bad = new ActivationBatch(2, 1, 1, 1, new float[] {2f, Float.NaN}, null, new int[] {0, 0});
    BatchCurvature b = new ReferenceCurvature().compute(head(), bad, new double[] {2.0});
    assertTrue(b.nonFiniteInput());
    assertRelative("Tr H of the finite sample", TR_H, b.hessianTrace()[0], 1e-15);
    assertTrue(Double.isNaN(b.hessianTrace()[1]));
    assertTrue(Double.isNaN(b.classifierHessianTrace()[1]));
  }

  /** Unlabelled samples: loss and correctness NaN, the label-free curvature unchanged. */
  @Test
  void unlabelledSamplesHaveNoLoss() {
    ActivationBatch unlabelled = new ActivationBatch(2, 1, 1, 1, new float[] {2f, -2f}, null, null);
    BatchCurvature b = new ReferenceCurvature().compute(head(), unlabelled, new double[] {2.0});
    assertTrue(Double.isNaN(b.loss()[0]) && Double.isNaN(b.correct()[0]));
    assertRelative("Tr H", TR_H, b.hessianTrace()[0], 1e-15);
    assertRelative("κ_V", A, b.classifierRelativeFlatness()[1], 1e-15);
  }

  /** A batch whose input has two channels does not fit a one-channel kernel: rejected, not measured. */
  @Test
  void referenceRejectsABatchThatDoesNotFitTheHead() {
    ActivationBatch twoChannels = new ActivationBatch(1, 2, 1, 1, new float[] {1f, 1f}, null, new int[] {0});
    ReferenceCurvature reference = new ReferenceCurvature();
    assertThrows(IllegalArgumentException.class, () -> reference.compute(head(), twoChannels, null));
    assertThrows(IllegalArgumentException.class, () -> reference.cancellationScales(head(), twoChannels, null));
    assertThrows(IllegalArgumentException.class,
        () -> reference.maxEigenvalue(head(), java.util.List.of(twoChannels)));
  }

  private static void check(CurvatureComputer computer, double tol) {
    HeadSnapshot head = head();
    StepAggregate agg = new StepAggregate();
    double[] rho = agg.normalizerFor(head, batch());
    assertEquals(2.0, rho[0], 0.0, "ρ = √((2² + (−2)²)/2)");
    agg.add(computer.compute(head, batch(), rho));
    assertEquals(2, agg.samples());
    assertRelative("Tr H", TR_H, agg.hessianTrace().mean(), tol);
    assertRelative("κ", A, agg.relativeFlatness().mean(), tol);
    assertRelative("κ_norm", A, agg.relativeFlatnessNormalized().mean(), tol);
    assertRelative("Tr H_V", TR_H_V, agg.classifierHessianTrace().mean(), tol);
    assertRelative("κ_V", A, agg.classifierRelativeFlatness().mean(), tol);
    assertRelative("loss", LOSS, agg.loss().mean(), tol);
    assertEquals(0.5, agg.accuracy().mean(), 0.0);
    // both samples have the same Tr H, so its standard error is exactly 0 (up to the engine's rounding)
    assertEquals(0.0, agg.hessianTrace().standardError(), TR_H * tol);
    assertEquals(0.5, head.weightDecayTrace(), 0.0);
    assertEquals(0.125, head.weightDecayRelativeFlatness(), 0.0);
  }

  private static void assertRelative(String what, double expected, double actual, double tol) {
    OracleFixtureTest.assertRelative(what, expected, actual, tol);
  }
}
