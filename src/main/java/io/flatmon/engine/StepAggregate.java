package io.flatmon.engine;

import io.flatmon.proto.v1.StepAggregateState;
import java.util.Arrays;

/**
 * The running state of one measurement — (run, layer, step, split) — as mergeable moments of every
 * per-sample quantity (docs/math.md §7). Adding batches one by one, or merging aggregates of any
 * partition of the samples, gives the one-shot result up to rounding; the state round-trips through
 * {@link StepAggregateState}.
 */
public final class StepAggregate {
  private final RunningMoments hessianTrace = new RunningMoments();
  private final RunningMoments relativeFlatness = new RunningMoments();
  private final RunningMoments relativeFlatnessNormalized = new RunningMoments();
  private final RunningMoments loss = new RunningMoments();
  private final RunningMoments accuracy = new RunningMoments();
  private final RunningMoments classifierHessianTrace = new RunningMoments();
  private final RunningMoments classifierRelativeFlatness = new RunningMoments();
  private long samples;
  private long labelledSamples;
  private long batches;
  private boolean nonFinite;
  private double[] inputChannelRms;

  /**
   * The ρ for κ_norm of the next batch of this measurement (docs/math.md eq. 12): the one already
   * fixed for the measurement, else the trainer's, else the RMS of this (its first) batch.
   */
  public double[] normalizerFor(HeadSnapshot head, ActivationBatch batch) {
    if (inputChannelRms != null) {
      return inputChannelRms;
    }
    return head.inputChannelRms() != null ? head.inputChannelRms() : batch.inputChannelRms();
  }

  /** Adds every sample of a batch. */
  public void add(BatchCurvature batch) {
    for (int n = 0; n < batch.samples(); n++) {
      hessianTrace.add(batch.hessianTrace()[n]);
      relativeFlatness.add(batch.relativeFlatness()[n]);
      if (batch.inputChannelRms() != null) {
        relativeFlatnessNormalized.add(batch.relativeFlatnessNormalized()[n]);
      }
      classifierHessianTrace.add(batch.classifierHessianTrace()[n]);
      classifierRelativeFlatness.add(batch.classifierRelativeFlatness()[n]);
      if (!Double.isNaN(batch.loss()[n]) || !Double.isNaN(batch.correct()[n])) {
        loss.add(batch.loss()[n]);
        accuracy.add(batch.correct()[n]);
        labelledSamples++;
      }
    }
    samples += batch.samples();
    batches++;
    nonFinite |= batch.nonFiniteInput() || !allFinite(batch.hessianTrace()) || !allFinite(batch.relativeFlatness());
    if (inputChannelRms == null && batch.inputChannelRms() != null) {
      inputChannelRms = batch.inputChannelRms().clone();
    }
  }

  /** Adds every sample of another aggregate of the same measurement. */
  public void merge(StepAggregate other) {
    hessianTrace.merge(other.hessianTrace);
    relativeFlatness.merge(other.relativeFlatness);
    relativeFlatnessNormalized.merge(other.relativeFlatnessNormalized);
    loss.merge(other.loss);
    accuracy.merge(other.accuracy);
    classifierHessianTrace.merge(other.classifierHessianTrace);
    classifierRelativeFlatness.merge(other.classifierRelativeFlatness);
    samples += other.samples;
    labelledSamples += other.labelledSamples;
    batches += other.batches;
    nonFinite |= other.nonFinite;
    if (inputChannelRms == null && other.inputChannelRms != null) {
      inputChannelRms = other.inputChannelRms.clone();
    }
  }

  private static boolean allFinite(double[] values) {
    for (double v : values) {
      if (!Double.isFinite(v)) {
        return false;
      }
    }
    return true;
  }

  public RunningMoments hessianTrace() {
    return hessianTrace;
  }

  public RunningMoments relativeFlatness() {
    return relativeFlatness;
  }

  public RunningMoments relativeFlatnessNormalized() {
    return relativeFlatnessNormalized;
  }

  /** Cross-entropy over labelled samples. */
  public RunningMoments loss() {
    return loss;
  }

  /** Correctness (1/0) over labelled samples: its mean is the accuracy. */
  public RunningMoments accuracy() {
    return accuracy;
  }

  public RunningMoments classifierHessianTrace() {
    return classifierHessianTrace;
  }

  public RunningMoments classifierRelativeFlatness() {
    return classifierRelativeFlatness;
  }

  public long samples() {
    return samples;
  }

  public long labelledSamples() {
    return labelledSamples;
  }

  public long batches() {
    return batches;
  }

  public boolean nonFinite() {
    return nonFinite;
  }

  /** The ρ κ_norm was computed with, or null. */
  public double[] inputChannelRms() {
    return inputChannelRms == null ? null : inputChannelRms.clone();
  }

  public StepAggregateState toState() {
    StepAggregateState.Builder b = StepAggregateState.newBuilder()
        .setSamples(samples)
        .setLabelledSamples(labelledSamples)
        .setBatches(batches)
        .setNonFinite(nonFinite)
        .setHessianTrace(hessianTrace.toState())
        .setRelativeFlatness(relativeFlatness.toState())
        .setRelativeFlatnessNormalized(relativeFlatnessNormalized.toState())
        .setLoss(loss.toState())
        .setAccuracy(accuracy.toState())
        .setClassifierHessianTrace(classifierHessianTrace.toState())
        .setClassifierRelativeFlatness(classifierRelativeFlatness.toState());
    if (inputChannelRms != null) {
      for (double r : inputChannelRms) {
        b.addInputChannelRms(r);
      }
    }
    return b.build();
  }

  public static StepAggregate fromState(StepAggregateState state) {
    StepAggregate a = new StepAggregate();
    a.hessianTrace.merge(RunningMoments.fromState(state.getHessianTrace()));
    a.relativeFlatness.merge(RunningMoments.fromState(state.getRelativeFlatness()));
    a.relativeFlatnessNormalized.merge(RunningMoments.fromState(state.getRelativeFlatnessNormalized()));
    a.loss.merge(RunningMoments.fromState(state.getLoss()));
    a.accuracy.merge(RunningMoments.fromState(state.getAccuracy()));
    a.classifierHessianTrace.merge(RunningMoments.fromState(state.getClassifierHessianTrace()));
    a.classifierRelativeFlatness.merge(RunningMoments.fromState(state.getClassifierRelativeFlatness()));
    a.samples = state.getSamples();
    a.labelledSamples = state.getLabelledSamples();
    a.batches = state.getBatches();
    a.nonFinite = state.getNonFinite();
    if (state.getInputChannelRmsCount() > 0) {
      a.inputChannelRms = state.getInputChannelRmsList().stream().mapToDouble(Double::doubleValue).toArray();
    }
    return a;
  }

  @Override
  public String toString() {
    return String.format("StepAggregate[n=%d trH=%.6g κ=%.6g rms=%s]", samples, hessianTrace.mean(),
        relativeFlatness.mean(), Arrays.toString(inputChannelRms));
  }
}
