package io.flatmon.stream;

import io.flatmon.engine.WorkLimits;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.schema.RecordDecoder;
import java.time.Duration;

/**
 * Tunables of the topology.
 *
 * @param maxTensorElements tensors above this are rejected as TOO_LARGE
 * @param workLimits records whose decoded tensors, engine memory or work per sample exceed these are
 *     rejected as TOO_LARGE before they are decoded
 * @param endedRetention how long an ended run's state is kept (late records are rejected as UNKNOWN_RUN)
 * @param idleExpiry a run with no record for this long is finalised and dropped
 * @param cleanupInterval how often (wall clock) the run store is swept for ended and idle runs
 * @param historySteps final results of this many most recent steps are kept per run for the query API
 * @param defaultPolicy the early-stop policy of runs that send none
 */
public record TopologySettings(long maxTensorElements, WorkLimits workLimits, Duration endedRetention,
    Duration idleExpiry, Duration cleanupInterval, int historySteps, EarlyStopPolicy defaultPolicy) {

  /**
   * The server's default policy, for runs that send none: it stops a run only for what is unambiguous —
   * a non-finite loss, Tr H, κ or κ_norm, or a train loss past 10 times its first measured value — and
   * gives no curvature advice (GUARD_ONLY). κ and Tr H rise 100-1000x from initialisation during healthy
   * training: "lower is better" stopped every healthy digits run, and without a warm-up tied to the
   * run's length (which the server does not know) even WARN-only curvature advice fired on every run,
   * healthy or not (docs/early-stopping.md).
   */
  public static final EarlyStopPolicy DEFAULT_POLICY = EarlyStopPolicy.newBuilder()
      .setMonitor(MonitoredQuantity.GUARD_ONLY).setMode(PolicyMode.MIN).setCheckFinite(true)
      .setLossDivergenceFactor(10).build();

  public static TopologySettings defaults() {
    return new TopologySettings(RecordDecoder.DEFAULT_MAX_ELEMENTS, WorkLimits.DEFAULT, Duration.ofMinutes(10),
        Duration.ofHours(6), Duration.ofSeconds(30), 100, DEFAULT_POLICY);
  }

  public TopologySettings withDefaultPolicy(EarlyStopPolicy policy) {
    return new TopologySettings(maxTensorElements, workLimits, endedRetention, idleExpiry, cleanupInterval,
        historySteps, policy);
  }

  public TopologySettings withRetention(Duration ended, Duration idle) {
    return new TopologySettings(maxTensorElements, workLimits, ended, idle, cleanupInterval, historySteps,
        defaultPolicy);
  }

  public TopologySettings withCleanupInterval(Duration interval) {
    return new TopologySettings(maxTensorElements, workLimits, endedRetention, idleExpiry, interval, historySteps,
        defaultPolicy);
  }

  public TopologySettings withLimits(long maxElements, int steps) {
    return new TopologySettings(maxElements, workLimits, endedRetention, idleExpiry, cleanupInterval, steps,
        defaultPolicy);
  }

  public TopologySettings withWorkLimits(WorkLimits limits) {
    return new TopologySettings(maxTensorElements, limits, endedRetention, idleExpiry, cleanupInterval, historySteps,
        defaultPolicy);
  }
}
