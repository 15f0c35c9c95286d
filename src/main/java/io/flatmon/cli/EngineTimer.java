package io.flatmon.cli;

import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.StepAggregate;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.List;
import java.util.function.Supplier;

/**
 * Times the curvature engine on a measurement's decoded batches, without JVM start-up, reading or decoding:
 * one warm-up pass, then {@code runs} timed passes, each computing every batch into a fresh
 * {@link StepAggregate} (κ_norm's ρ included) against a freshly decoded {@link HeadSnapshot}, so that the
 * per-snapshot work (Ω = W_f W_fᵀ, the weights' upload) is counted as it is for each new snapshot in a
 * live run. The result is the median pass, in seconds. A second series of {@code runs} passes reuses one
 * snapshot (prepared by an untimed pass), which is the cost of a measurement's batches once Ω is cached.
 * The process's CPU time (all threads: Java, OpenMP, GC) is recorded with the fresh-snapshot passes: on a
 * shared machine it is less affected by time-slicing than wall time.
 */
final class EngineTimer {

  private EngineTimer() {
  }

  /**
   * @param medianSeconds median pass with a fresh snapshot (per-snapshot work included)
   * @param seconds those passes, in the order run
   * @param medianSecondsSameSnapshot median pass against one already prepared snapshot
   * @param medianCpuSeconds median process CPU seconds of the fresh-snapshot passes (NaN if unavailable)
   */
  record Timing(double medianSeconds, double[] seconds, double medianSecondsSameSnapshot, double medianCpuSeconds) {
  }

  static Timing time(CurvatureComputer engine, Supplier<HeadSnapshot> snapshot, List<ActivationBatch> batches,
      int runs) {
    if (runs < 1) {
      throw new IllegalArgumentException("runs must be >= 1");
    }
    pass(engine, snapshot.get(), batches);
    double[] seconds = new double[runs];
    double[] cpu = new double[runs];
    for (int i = 0; i < runs; i++) {
      HeadSnapshot head = snapshot.get();
      long c0 = processCpuNanos();
      long t0 = System.nanoTime();
      pass(engine, head, batches);
      seconds[i] = (System.nanoTime() - t0) / 1e9;
      long c1 = processCpuNanos();
      cpu[i] = c0 < 0 || c1 < 0 ? Double.NaN : (c1 - c0) / 1e9;
    }
    HeadSnapshot same = snapshot.get();
    pass(engine, same, batches);
    double[] cached = new double[runs];
    for (int i = 0; i < runs; i++) {
      long t0 = System.nanoTime();
      pass(engine, same, batches);
      cached[i] = (System.nanoTime() - t0) / 1e9;
    }
    return new Timing(median(seconds), seconds, median(cached), median(cpu));
  }

  /** CPU time of the whole process in nanoseconds, or -1 where the JVM does not expose it. */
  static long processCpuNanos() {
    if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
      return os.getProcessCpuTime();
    }
    return -1;
  }

  private static StepAggregate pass(CurvatureComputer engine, HeadSnapshot head, List<ActivationBatch> batches) {
    StepAggregate aggregate = new StepAggregate();
    for (ActivationBatch b : batches) {
      aggregate.add(engine.compute(head, b, aggregate.normalizerFor(head, b)));
    }
    return aggregate;
  }

  static double median(double[] values) {
    double[] s = values.clone();
    Arrays.sort(s);
    int n = s.length;
    return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  }
}
