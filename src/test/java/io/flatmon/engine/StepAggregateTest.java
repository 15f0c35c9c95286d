package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.proto.v1.StepAggregateState;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** docs/math.md §7: any split of a step's samples into batches gives the one-shot result. */
class StepAggregateTest {

  private final SyntheticHeads random = new SyntheticHeads(5);
  private final HeadSnapshot head = random.head(5, 3, ConvGeometry.of(3, 3), 6,
      Activation.of(Activation.Kind.SILU), true, true, 2.0);
  private final ActivationBatch all = random.batch(head, 12, 6, 6, true);

  @Test
  void batchesInAnySplitGiveTheOneShotResult() throws Exception {
    ReferenceCurvature ref = new ReferenceCurvature();
    StepAggregate oneShot = new StepAggregate();
    oneShot.add(ref.compute(head, all, oneShot.normalizerFor(head, all)));

    StepAggregate streamed = new StepAggregate();
    for (int[] range : new int[][] {{0, 1}, {1, 5}, {5, 6}, {6, 12}}) {
      ActivationBatch part = slice(all, range[0], range[1]);
      // ρ is fixed by the first batch; pass the one-shot's ρ so κ_norm compares like with like.
      streamed.add(ref.compute(head, part, oneShot.inputChannelRms()));
    }
    assertSame(oneShot, streamed);

    // merging partial aggregates, serialised and restored, in another order
    StepAggregate left = new StepAggregate();
    left.add(ref.compute(head, slice(all, 0, 7), oneShot.inputChannelRms()));
    StepAggregate right = new StepAggregate();
    right.add(ref.compute(head, slice(all, 7, 12), oneShot.inputChannelRms()));
    StepAggregate restored = StepAggregate.fromState(StepAggregateState.parseFrom(right.toState().toByteArray()));
    restored.merge(left);
    assertSame(oneShot, restored);
    assertEquals(4, streamed.batches());
    assertEquals(2, restored.batches());
  }

  @Test
  void standardErrorIsTheSampleStandardDeviationOverRootN() {
    RunningMoments m = new RunningMoments();
    double[] xs = {1.0, 2.0, 4.0, 8.0};
    for (double x : xs) {
      m.add(x);
    }
    double mean = Arrays.stream(xs).average().orElseThrow();
    double var = Arrays.stream(xs).map(x -> (x - mean) * (x - mean)).sum() / (xs.length - 1);
    assertEquals(mean, m.mean(), 1e-15);
    assertEquals(Math.sqrt(var / xs.length), m.standardError(), 1e-15);
    RunningMoments one = new RunningMoments();
    one.add(3.0);
    assertEquals(Double.NaN, one.standardError());
  }

  @Test
  void unlabelledSamplesCountForCurvatureButNotForLoss() {
    HeadSnapshot relu = random.head(4, 2, ConvGeometry.of(1, 1), 3, Activation.of(Activation.Kind.RELU),
        false, false, 1.0);
    ActivationBatch unlabelled = random.batch(relu, 3, 4, 4, false);
    ActivationBatch labelled = random.batch(relu, 2, 4, 4, true);
    StepAggregate agg = new StepAggregate();
    ReferenceCurvature ref = new ReferenceCurvature();
    agg.add(ref.compute(relu, unlabelled, agg.normalizerFor(relu, unlabelled)));
    agg.add(ref.compute(relu, labelled, agg.normalizerFor(relu, labelled)));
    assertEquals(5, agg.samples());
    assertEquals(2, agg.labelledSamples());
    assertEquals(2, agg.loss().count());
    assertEquals(5, agg.hessianTrace().count());
  }

  private static void assertSame(StepAggregate expected, StepAggregate actual) {
    assertEquals(expected.samples(), actual.samples());
    assertEquals(expected.labelledSamples(), actual.labelledSamples());
    for (String name : new String[] {"trace", "kappa", "kappaNorm", "loss", "accuracy", "classifierTrace"}) {
      RunningMoments e = pick(expected, name);
      RunningMoments a = pick(actual, name);
      assertEquals(e.count(), a.count(), name);
      assertEquals(e.mean(), a.mean(), 1e-12 * Math.abs(e.mean()), name + " mean");
      assertEquals(e.standardError(), a.standardError(), 1e-10 * Math.abs(e.standardError()), name + " se");
    }
    assertArrayEquals(expected.inputChannelRms(), actual.inputChannelRms());
  }

  private static RunningMoments pick(StepAggregate a, String name) {
    return switch (name) {
      case "trace" -> a.hessianTrace();
      case "kappa" -> a.relativeFlatness();
      case "kappaNorm" -> a.relativeFlatnessNormalized();
      case "loss" -> a.loss();
      case "accuracy" -> a.accuracy();
      default -> a.classifierHessianTrace();
    };
  }

  static ActivationBatch slice(ActivationBatch b, int from, int to) {
    int size = b.sampleSize();
    return new ActivationBatch(to - from, b.inputChannels(), b.height(), b.width(),
        Arrays.copyOfRange(b.input(), from * size, to * size), null,
        b.labels() == null ? null : Arrays.copyOfRange(b.labels(), from, to));
  }

  /** A batch of per-sample values with the given ρ (or null) and loss/correct (NaN: unlabelled). */
  private static BatchCurvature batch(double[] values, double[] loss, double[] correct, double[] rho,
      boolean nonFiniteInput) {
    int n = values.length;
    double[] kappa = new double[n];
    double[] kappaNorm = new double[n];
    double[] trV = new double[n];
    double[] kapV = new double[n];
    for (int i = 0; i < n; i++) {
      kappa[i] = 2 * values[i];
      kappaNorm[i] = 3 * values[i];
      trV[i] = 4 * values[i];
      kapV[i] = 5 * values[i];
    }
    return new BatchCurvature(values.clone(), kappa, kappaNorm, loss, correct, trV, kapV, rho, nonFiniteInput);
  }

  /** docs/math.md §7: loss and accuracy over labelled samples only, curvature over every sample. */
  @Test
  void lossAndAccuracyCountLabelledSamplesOnly() {
    StepAggregate a = new StepAggregate();
    double nan = Double.NaN;
    a.add(batch(new double[] {1, 3, 5}, new double[] {0.5, nan, 1.5}, new double[] {1, nan, 0}, null, false));
    assertEquals(3, a.samples());
    assertEquals(2, a.labelledSamples());
    assertEquals(1, a.batches());
    assertEquals(3.0, a.hessianTrace().mean(), 0.0);
    assertEquals(6.0, a.relativeFlatness().mean(), 0.0);
    assertEquals(12.0, a.classifierHessianTrace().mean(), 0.0);
    assertEquals(15.0, a.classifierRelativeFlatness().mean(), 0.0);
    assertEquals(1.0, a.loss().mean(), 0.0);
    assertEquals(0.5, a.accuracy().mean(), 0.0);
    assertEquals(0, a.relativeFlatnessNormalized().count(), "no ρ, no κ_norm");
    assertNull(a.inputChannelRms());
    assertFalse(a.nonFinite());
  }

  /** ρ is fixed by the first batch that has one (eq. 12) and offered for every later batch. */
  @Test
  void theFirstBatchFixesRho() {
    StepAggregate a = new StepAggregate();
    double[] one = {1, 1};
    a.add(batch(new double[] {1, 2}, one, one, new double[] {2.0}, false));
    a.add(batch(new double[] {3}, new double[] {1}, new double[] {1}, new double[] {7.0}, false));
    assertArrayEquals(new double[] {2.0}, a.inputChannelRms());
    assertEquals(3, a.relativeFlatnessNormalized().count());
    assertEquals(6.0, a.relativeFlatnessNormalized().mean(), 1e-15);
    HeadSnapshot head = HandComputedHeadTest.head();
    assertArrayEquals(new double[] {2.0}, a.normalizerFor(head, HandComputedHeadTest.batch()));
    // nothing fixed yet: the trainer's ρ if the snapshot has one, else the batch's RMS
    assertArrayEquals(new double[] {2.0}, new StepAggregate().normalizerFor(head, HandComputedHeadTest.batch()));
    HeadSnapshot withRho = HeadSnapshot.builder(1, 1, ConvGeometry.of(1, 1), 2).kernel(new float[] {0.5f})
        .activation(Activation.of(Activation.Kind.IDENTITY)).classifier(new float[] {1f, -1f}, null)
        .inputChannelRms(new double[] {5.0}).build();
    assertArrayEquals(new double[] {5.0}, new StepAggregate().normalizerFor(withRho, HandComputedHeadTest.batch()));
  }

  /** A non-finite input, Tr H or κ sets the flag, and it stays set through merges and the state. */
  @Test
  void nonFiniteValuesAreFlaggedAndStayFlagged() {
    double[] one = {1};
    StepAggregate input = new StepAggregate();
    input.add(batch(new double[] {1}, one, one, null, true));
    assertTrue(input.nonFinite());
    StepAggregate trace = new StepAggregate();
    trace.add(batch(new double[] {Double.POSITIVE_INFINITY}, one, one, null, false));
    assertTrue(trace.nonFinite());
    StepAggregate kappa = new StepAggregate();
    kappa.add(new BatchCurvature(new double[] {1}, new double[] {Double.NaN}, new double[] {1}, one, one,
        new double[] {1}, new double[] {1}, null, false));
    assertTrue(kappa.nonFinite());
    StepAggregate clean = new StepAggregate();
    clean.add(batch(new double[] {1}, one, one, null, false));
    assertFalse(clean.nonFinite());
    clean.add(batch(new double[] {2}, one, one, null, false));
    assertFalse(clean.nonFinite());
    clean.merge(input);
    assertTrue(clean.nonFinite());
    assertTrue(StepAggregate.fromState(clean.toState()).nonFinite());
    assertFalse(StepAggregate.fromState(new StepAggregate().toState()).nonFinite());
    assertNull(StepAggregate.fromState(new StepAggregate().toState()).inputChannelRms(), "no ρ stays no ρ");
  }

  /** Chan's merge equals adding everything to one aggregate, for every quantity and count (§7). */
  @Test
  void mergeEqualsAddingEverything() {
    double nan = Double.NaN;
    BatchCurvature b1 = batch(new double[] {1, 4}, new double[] {0.5, nan}, new double[] {1, nan}, null, false);
    BatchCurvature b2 = batch(new double[] {2, 8, 3}, new double[] {0.25, 2, 1}, new double[] {0, 1, 1},
        new double[] {3.0}, false);
    StepAggregate all = new StepAggregate();
    all.add(b1);
    all.add(b2);
    StepAggregate left = new StepAggregate();
    left.add(b1);
    StepAggregate right = new StepAggregate();
    right.add(b2);
    left.merge(right);
    assertSameAggregate(all, left);
    // and through the changelog state
    assertSameAggregate(all, StepAggregate.fromState(left.toState()));
  }

  private static void assertSameAggregate(StepAggregate e, StepAggregate a) {
    assertEquals(e.samples(), a.samples());
    assertEquals(e.labelledSamples(), a.labelledSamples());
    assertEquals(e.batches(), a.batches());
    assertEquals(e.nonFinite(), a.nonFinite());
    assertArrayEquals(e.inputChannelRms(), a.inputChannelRms());
    RunningMoments[][] pairs = {
        {e.hessianTrace(), a.hessianTrace()}, {e.relativeFlatness(), a.relativeFlatness()},
        {e.relativeFlatnessNormalized(), a.relativeFlatnessNormalized()}, {e.loss(), a.loss()},
        {e.accuracy(), a.accuracy()}, {e.classifierHessianTrace(), a.classifierHessianTrace()},
        {e.classifierRelativeFlatness(), a.classifierRelativeFlatness()}};
    for (RunningMoments[] p : pairs) {
      assertEquals(p[0].count(), p[1].count());
      assertEquals(p[0].mean(), p[1].mean(), 1e-14 * Math.abs(p[0].mean()));
      assertEquals(p[0].standardError(), p[1].standardError(), 1e-14 * Math.abs(p[0].standardError()));
    }
  }

  /** s/√n with the unbiased s from two values on: {1, 3} has s² = 2, so the standard error is 1. */
  @Test
  void standardErrorFromTwoValues() {
    RunningMoments m = new RunningMoments();
    m.add(1);
    assertTrue(Double.isNaN(m.standardError()));
    m.add(3);
    assertEquals(1.0, m.standardError(), 1e-15);
    assertEquals(2.0, m.mean(), 0.0);
    assertTrue(Double.isNaN(new RunningMoments().mean()));
  }
}
