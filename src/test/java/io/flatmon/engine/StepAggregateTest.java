package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
}
