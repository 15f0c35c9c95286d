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
 * shared machine it is less affected by time-slicing than wall time. The JVM reads it in clock ticks (10 ms
 * on Linux), so the fresh-snapshot passes go on past {@code runs} until they add up to at least
 * {@code cpuWindowSeconds}, and the CPU time is their mean.
 */
final class EngineTimer {

  private static final int MAX_CPU_RUNS = 1000;

  private EngineTimer() {
  }

  /**
   * @param medianSeconds median pass with a fresh snapshot (per-snapshot work included)
   * @param seconds those passes, in the order run
   * @param medianSecondsSameSnapshot median pass against one already prepared snapshot
   * @param cpuSeconds mean process CPU seconds of a fresh-snapshot pass (NaN if unavailable)
   * @param cpuRuns the fresh-snapshot passes that mean is over (at least {@code runs})
   */
  record Timing(double medianSeconds, double[] seconds, double medianSecondsSameSnapshot, double cpuSeconds,
      int cpuRuns) {
  }

  static Timing time(CurvatureComputer engine, Supplier<HeadSnapshot> snapshot, List<ActivationBatch> batches,
      int runs, double cpuWindowSeconds) {
    if (runs < 1) {
      throw new IllegalArgumentException("runs must be >= 1");
    }
    pass(engine, snapshot.get(), batches);
    double[] seconds = new double[runs];
    long c0 = processCpuNanos();
    double total = 0;
    int done = 0;
    while (done < runs || (total < cpuWindowSeconds && done < MAX_CPU_RUNS)) {
      HeadSnapshot head = snapshot.get();
      long t0 = System.nanoTime();
      pass(engine, head, batches);
      double dt = (System.nanoTime() - t0) / 1e9;
      if (done < runs) {
        seconds[done] = dt;
      }
      total += dt;
      done++;
    }
    long c1 = processCpuNanos();
    double cpu = c0 < 0 || c1 < 0 ? Double.NaN : (c1 - c0) / 1e9 / done;
    HeadSnapshot same = snapshot.get();
    pass(engine, same, batches);
    double[] cached = new double[runs];
    for (int i = 0; i < runs; i++) {
      long t0 = System.nanoTime();
      pass(engine, same, batches);
      cached[i] = (System.nanoTime() - t0) / 1e9;
    }
    return new Timing(median(seconds), seconds, median(cached), cpu, done);
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
