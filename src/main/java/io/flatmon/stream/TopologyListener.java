package io.flatmon.stream;

import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.TrainerSignal;

/**
 * What the topology reports as it works, for metrics. Called on stream threads; implementations
 * must be thread-safe and fast.
 */
public interface TopologyListener {

  /**
   * A result was emitted.
   *
   * @param computeSeconds time the engine spent on the batch (NaN for final results)
   * @param batchSamples samples of the batch just measured (0 for final results)
   */
  void onResult(FlatnessResult result, double computeSeconds, int batchSamples);

  /** A record went to the dead-letter topic. */
  void onRejected(RejectReason reason);

  /** This instance now holds the run (first record here, or RunStarted with new metadata). */
  default void onRunSeen(String runId, String displayName, String framework) {
  }

  /** A signal was sent to the run's trainer. */
  default void onSignal(String runId, TrainerSignal signal) {
  }

  /** This instance no longer holds the run: it ended or expired, or its partition moved elsewhere. */
  void onRunReleased(String runId);

  /** Ignores everything. */
  TopologyListener NONE = new TopologyListener() {
    @Override
    public void onResult(FlatnessResult result, double computeSeconds, int batchSamples) {
    }

    @Override
    public void onRejected(RejectReason reason) {
    }

    @Override
    public void onRunReleased(String runId) {
    }
  };
}
