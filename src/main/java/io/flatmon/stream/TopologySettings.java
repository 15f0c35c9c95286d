package io.flatmon.stream;

import io.flatmon.schema.RecordDecoder;
import java.time.Duration;

/**
 * Tunables of the topology.
 *
 * @param maxTensorElements tensors above this are rejected as TOO_LARGE
 * @param endedRetention how long an ended run's state is kept (late records are rejected as UNKNOWN_RUN)
 * @param idleExpiry a run with no record for this long is finalised and dropped
 * @param cleanupInterval how often (wall clock) the run store is swept for ended and idle runs
 * @param historySteps final results of this many most recent steps are kept per run for the query API
 */
public record TopologySettings(long maxTensorElements, Duration endedRetention, Duration idleExpiry,
    Duration cleanupInterval, int historySteps) {

  public static TopologySettings defaults() {
    return new TopologySettings(RecordDecoder.DEFAULT_MAX_ELEMENTS, Duration.ofMinutes(10), Duration.ofHours(6),
        Duration.ofSeconds(30), 100);
  }

  public TopologySettings withRetention(Duration ended, Duration idle) {
    return new TopologySettings(maxTensorElements, ended, idle, cleanupInterval, historySteps);
  }

  public TopologySettings withCleanupInterval(Duration interval) {
    return new TopologySettings(maxTensorElements, endedRetention, idleExpiry, interval, historySteps);
  }

  public TopologySettings withLimits(long maxElements, int steps) {
    return new TopologySettings(maxElements, endedRetention, idleExpiry, cleanupInterval, steps);
  }
}
