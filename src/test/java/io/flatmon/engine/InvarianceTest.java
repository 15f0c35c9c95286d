package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * docs/math.md §3: reparameterisations that leave the network's function unchanged. κ and κ_norm
 * must not move under layer-wise and filter-wise rescaling, κ_norm not under input-channel
 * rescaling, while Tr H changes as stated (×1/λ² layer-wise). Checked on the float64 reference and
 * on the float32 engine.
 */
class InvarianceTest {
  private static final int C = 6;
  private static final int CIN = 4;
  private static final ConvGeometry GEOMETRY = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);

  enum Computer {
    REFERENCE(1e-11), ENGINE(2e-5);

    final double tolerance;

    Computer(double tolerance) {
      this.tolerance = tolerance;
    }

    CurvatureComputer create() {
      return this == REFERENCE ? new ReferenceCurvature() : new CurvatureEngine();
    }
  }

  private static HeadSnapshot head() {
    return new SyntheticHeads(11).head(C, CIN, GEOMETRY, 7, Activation.leakyRelu(0.1), true, false, 2.0);
  }

  private static ActivationBatch batch(HeadSnapshot head) {
    return new SyntheticHeads(12).batch(head, 6, 5, 5, true);
  }

  private static StepAggregate measure(Computer computer, HeadSnapshot head, ActivationBatch batch) {
    StepAggregate agg = new StepAggregate();
    agg.add(computer.create().compute(head, batch, agg.normalizerFor(head, batch)));
    return agg;
  }

  @ParameterizedTest
  @EnumSource(Computer.class)
  void layerWiseRescalingKeepsKappaAndScalesTrace(Computer computer) {
    HeadSnapshot head = head();
    ActivationBatch batch = batch(head);
    // Powers of two keep the rescaled float32 weights exact, so only the computation is tested.
    double lambda = 4.0;
    HeadSnapshot scaled = rebuild(head, w -> scale(w, lambda), b -> scale(b, lambda), v -> scale(v, 1 / lambda));
    StepAggregate before = measure(computer, head, batch);
    StepAggregate after = measure(computer, scaled, batch);
    assertSameFunction(before, after);
    assertRelative(before.relativeFlatness().mean(), after.relativeFlatness().mean(), computer.tolerance);
    assertRelative(before.relativeFlatnessNormalized().mean(), after.relativeFlatnessNormalized().mean(),
        computer.tolerance);
    assertRelative(before.hessianTrace().mean() / (lambda * lambda), after.hessianTrace().mean(), computer.tolerance);
  }

  @ParameterizedTest
  @EnumSource(Computer.class)
  void filterWiseRescalingKeepsKappaButNotTrace(Computer computer) {
    HeadSnapshot head = head();
    ActivationBatch batch = batch(head);
    double[] lambda = {0.25, 2.0, 1.0, 8.0, 0.5, 4.0};
    int d = head.patchLength();
    HeadSnapshot scaled = rebuild(head,
        w -> perRow(w, d, lambda, false), b -> perRow(b, 1, lambda, false), v -> perColumn(v, C, lambda));
    StepAggregate before = measure(computer, head, batch);
    StepAggregate after = measure(computer, scaled, batch);
    assertSameFunction(before, after);
    assertRelative(before.relativeFlatness().mean(), after.relativeFlatness().mean(), computer.tolerance);
    assertRelative(before.relativeFlatnessNormalized().mean(), after.relativeFlatnessNormalized().mean(),
        computer.tolerance);
    assertChanged(before.hessianTrace().mean(), after.hessianTrace().mean(), 0.05);
  }

  @ParameterizedTest
  @EnumSource(Computer.class)
  void inputChannelRescalingKeepsOnlyNormalizedKappa(Computer computer) {
    HeadSnapshot head = head();
    StepAggregate[] beforeAfter = assertInputChannelRescalingKeepsNormalizedKappa(computer, head, batch(head));
    assertChanged(beforeAfter[0].relativeFlatness().mean(), beforeAfter[1].relativeFlatness().mean(), 0.20);
    assertChanged(beforeAfter[0].hessianTrace().mean(), beforeAfter[1].hessianTrace().mean(), 0.05);
  }

  /**
   * An input channel that is zero on every image (a dead unit of the layer before) has ρ = 0: its
   * weights cannot change the outputs, and κ_norm leaves them out, so rescaling them moves nothing.
   */
  @ParameterizedTest
  @EnumSource(Computer.class)
  void inputChannelRescalingKeepsNormalizedKappaWithADeadChannel(Computer computer) {
    HeadSnapshot head = head();
    StepAggregate[] beforeAfter = assertInputChannelRescalingKeepsNormalizedKappa(computer, head,
        withZeroChannel(batch(head), 1));
    assertEquals(0.0, beforeAfter[0].inputChannelRms()[1]);
  }

  /** Measures before and after μ = (4, 1/4, 1, 2) on the input channels; the function and κ_norm are kept. */
  private static StepAggregate[] assertInputChannelRescalingKeepsNormalizedKappa(Computer computer,
      HeadSnapshot head, ActivationBatch batch) {
    double[] mu = {4.0, 0.25, 1.0, 2.0};
    StepAggregate before = measure(computer, head, batch);
    StepAggregate after = measure(computer, inputChannelRescaled(head, mu), inputChannelRescaled(batch, mu));
    assertSameFunction(before, after);
    assertRelative(before.relativeFlatnessNormalized().mean(), after.relativeFlatnessNormalized().mean(),
        computer.tolerance);
    return new StepAggregate[] {before, after};
  }

  /**
   * Streaming rule (docs/math.md §3): ρ is fixed from the first batch. A channel that is zero there
   * but not in the second batch stays out of κ_norm for the whole measurement, which keeps it
   * invariant.
   */
  @ParameterizedTest
  @EnumSource(Computer.class)
  void channelZeroInTheFirstBatchOnlyStaysOutOfNormalizedKappa(Computer computer) {
    HeadSnapshot head = head();
    ActivationBatch first = withZeroChannel(batch(head), 2);
    ActivationBatch second = new SyntheticHeads(13).batch(head, 5, 5, 5, true);
    double[] mu = {1.0, 2.0, 0.25, 4.0};
    HeadSnapshot scaledHead = inputChannelRescaled(head, mu);
    StepAggregate before = new StepAggregate();
    StepAggregate after = new StepAggregate();
    for (ActivationBatch b : List.of(first, second)) {
      before.add(computer.create().compute(head, b, before.normalizerFor(head, b)));
      ActivationBatch scaled = inputChannelRescaled(b, mu);
      after.add(computer.create().compute(scaledHead, scaled, after.normalizerFor(scaledHead, scaled)));
    }
    assertSameFunction(before, after);
    assertRelative(before.relativeFlatnessNormalized().mean(), after.relativeFlatnessNormalized().mean(),
        computer.tolerance);
    assertEquals(0.0, before.inputChannelRms()[2]);
  }

  /** The batch with input channel i set to zero on every sample and position. */
  private static ActivationBatch withZeroChannel(ActivationBatch batch, int i) {
    float[] f = batch.input().clone();
    int plane = batch.height() * batch.width();
    for (int j = 0; j < f.length; j++) {
      if ((j / plane) % CIN == i) {
        f[j] = 0f;
      }
    }
    return new ActivationBatch(batch.samples(), CIN, batch.height(), batch.width(), f, null, batch.labels());
  }

  /** W[:, i] / μ_i. */
  private static HeadSnapshot inputChannelRescaled(HeadSnapshot head, double[] mu) {
    int taps = GEOMETRY.kernelHeight() * GEOMETRY.kernelWidth();
    float[] w = head.kernel().clone();
    for (int j = 0; j < w.length; j++) {
      w[j] = (float) (w[j] / mu[(j / taps) % CIN]);
    }
    return rebuild(head, x -> w, x -> x, x -> x);
  }

  /** F_i · μ_i. */
  private static ActivationBatch inputChannelRescaled(ActivationBatch batch, double[] mu) {
    float[] f = batch.input().clone();
    int plane = batch.height() * batch.width();
    for (int j = 0; j < f.length; j++) {
      f[j] = (float) (f[j] * mu[(j / plane) % CIN]);
    }
    return new ActivationBatch(batch.samples(), CIN, batch.height(), batch.width(), f, null, batch.labels());
  }

  /** The loss is unchanged, so the transformation really kept the function. */
  private static void assertSameFunction(StepAggregate before, StepAggregate after) {
    assertEquals(before.loss().mean(), after.loss().mean(), 1e-5 * Math.abs(before.loss().mean()));
  }

  private static void assertRelative(double expected, double actual, double tolerance) {
    assertTrue(Math.abs(expected - actual) <= tolerance * Math.abs(expected),
        () -> String.format("expected %.15g, got %.15g (relative %.2e > %.0e)", expected, actual,
            Math.abs(expected - actual) / Math.abs(expected), tolerance));
  }

  private static void assertChanged(double before, double after, double atLeast) {
    double change = Math.abs(after - before) / Math.abs(before);
    assertTrue(change >= atLeast, String.format("expected a change of at least %.0f%%, got %.2f%% (%g -> %g)",
        100 * atLeast, 100 * change, before, after));
  }

  private static HeadSnapshot rebuild(HeadSnapshot h, UnaryOperator<float[]> kernel, UnaryOperator<float[]> bias,
      UnaryOperator<float[]> classifier) {
    return HeadSnapshot.builder(h.channels(), h.inputChannels(), h.geometry(), h.classes())
        .kernel(kernel.apply(h.kernel()))
        .bias(h.bias() == null ? null : bias.apply(h.bias()))
        .activation(h.activation())
        .classifier(classifier.apply(h.classifierWeight()), h.classifierBias())
        .build();
  }

  private static float[] scale(float[] a, double f) {
    float[] out = new float[a.length];
    for (int i = 0; i < a.length; i++) {
      out[i] = (float) (a[i] * f);
    }
    return out;
  }

  /** Row c (of length rowLength) times λ_c. */
  private static float[] perRow(float[] a, int rowLength, double[] lambda, boolean invert) {
    float[] out = new float[a.length];
    for (int i = 0; i < a.length; i++) {
      double l = lambda[i / rowLength];
      out[i] = (float) (invert ? a[i] / l : a[i] * l);
    }
    return out;
  }

  /** V [K, C]: column c divided by λ_c. */
  private static float[] perColumn(float[] v, int c, double[] lambda) {
    float[] out = new float[v.length];
    for (int i = 0; i < v.length; i++) {
      out[i] = (float) (v[i] / lambda[i % c]);
    }
    return out;
  }
}
