package io.flatmon.schema;

import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.RunningMoments;
import io.flatmon.engine.StepAggregate;
import io.flatmon.proto.v1.Estimate;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RmsSource;
import io.flatmon.proto.v1.Split;

/** Builds the {@link FlatnessResult} of a measurement from its {@link StepAggregate}. */
public final class ResultBuilder {
  private ResultBuilder() {
  }

  /**
   * @param maxEigenvalue λ_max to report, or NaN if not computed
   */
  public static FlatnessResult build(String runId, String layer, long step, Split split, boolean last,
      StepAggregate aggregate, HeadSnapshot head, double maxEigenvalue) {
    return build(runId, layer, step, split, last, aggregate, head.weightDecayTrace(),
        head.weightDecayRelativeFlatness(), head.inputChannelRms() != null, maxEigenvalue);
  }

  /**
   * @param weightDecayTrace 2αCd of the measured step's snapshot
   * @param weightDecayRelativeFlatness 2αd‖W‖² of that snapshot
   * @param trainerRms whether ρ was sent by the trainer (else: the measurement's first batch)
   * @param maxEigenvalue λ_max to report, or NaN if not computed
   */
  public static FlatnessResult build(String runId, String layer, long step, Split split, boolean last,
      StepAggregate aggregate, double weightDecayTrace, double weightDecayRelativeFlatness, boolean trainerRms,
      double maxEigenvalue) {
    FlatnessResult.Builder b = FlatnessResult.newBuilder()
        .setRunId(runId)
        .setLayer(layer)
        .setStep(step)
        .setSplit(split == Split.SPLIT_UNSPECIFIED ? Split.TRAIN : split)
        .setFinal(last)
        .setSamples(aggregate.samples())
        .setLabelledSamples(aggregate.labelledSamples())
        .setBatches(aggregate.batches())
        .setHessianTrace(estimate(aggregate.hessianTrace()))
        .setRelativeFlatness(estimate(aggregate.relativeFlatness()))
        .setRelativeFlatnessNormalized(estimate(aggregate.relativeFlatnessNormalized()))
        .setLoss(estimate(aggregate.loss()))
        .setAccuracy(estimate(aggregate.accuracy()))
        .setClassifierHessianTrace(estimate(aggregate.classifierHessianTrace()))
        .setClassifierRelativeFlatness(estimate(aggregate.classifierRelativeFlatness()))
        .setWeightDecayTrace(weightDecayTrace)
        .setWeightDecayRelativeFlatness(weightDecayRelativeFlatness)
        .setNonFinite(aggregate.nonFinite())
        .setComputedTimeMicros(System.currentTimeMillis() * 1000L);
    if (!Double.isNaN(maxEigenvalue)) {
      b.setHessianMaxEigenvalue(maxEigenvalue);
    }
    double[] rms = aggregate.inputChannelRms();
    if (rms != null) {
      for (double r : rms) {
        b.addInputChannelRms((float) r);
      }
      b.setInputChannelRmsSource(trainerRms ? RmsSource.TRAINER : RmsSource.FIRST_BATCH);
    }
    return b.build();
  }

  private static Estimate estimate(RunningMoments m) {
    return Estimate.newBuilder().setMean(m.mean()).setStandardError(m.standardError()).build();
  }
}
