package io.flatmon.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/** The two yardsticks of the engine benchmark: measured ND4J sgemm peak and the physical FMA limit. */
public final class MachinePeak {

  private MachinePeak() {
  }

  /** Median and spread of repeated n×n×n float32 GEMMs. */
  public record Sgemm(int size, int repeats, int threads, double medianGflops, double minGflops,
      double maxGflops) {
    @Override
    public String toString() {
      return String.format(Locale.ROOT, "%.1f GFLOP/s (median of %d rounds of %d concurrent %d³ sgemm; min %.1f, "
          + "max %.1f)", medianGflops, repeats, threads, size, minGflops, maxGflops);
    }
  }

  /** The physical float32 limit: cores × FMA units × lanes × 2 flops × clock. */
  public record Physical(int cores, int fmaUnits, int lanes, double clockGhz, String clockSource, String isa) {
    public double gflops() {
      return cores * (double) fmaUnits * lanes * 2.0 * clockGhz;
    }

    /** The same limit for 256-bit (AVX2) code, what OpenBLAS's Haswell kernels can reach. */
    public double avx2Gflops() {
      return cores * (double) fmaUnits * 8 * 2.0 * clockGhz;
    }

    @Override
    public String toString() {
      String s = String.format(Locale.ROOT,
          "%.1f GFLOP/s (%d cores × %d FMA units × %d floats (%s) × 2 flops × %.3f GHz from %s)",
          gflops(), cores, fmaUnits, lanes, isa, clockGhz, clockSource);
      if (lanes != 8) {
        s += String.format(Locale.ROOT, "; 256-bit AVX2 code: %.1f GFLOP/s", avx2Gflops());
      }
      return s;
    }
  }

  /**
   * Times {@code Nd4j.gemm(a, b, c, false, false, 1, 0)} on n×n float arrays in {@code threads}
   * concurrent Java threads, each with its own arrays — the engine benchmark's parallelism (one engine
   * per thread, OMP_NUM_THREADS per JVM), so with OMP_NUM_THREADS=1 and two threads the peak is that of
   * two cores, not one. One untimed warm-up call per thread, then {@code repeats} rounds in which every
   * thread runs one GEMM; a round's rate is threads·2n³ flops over the round's wall time.
   */
  public static Sgemm sgemm(int n, int repeats, int threads) {
    INDArray[][] arrays = new INDArray[threads][];
    for (int t = 0; t < threads; t++) {
      arrays[t] = new INDArray[] {Nd4j.rand(DataType.FLOAT, n, n), Nd4j.rand(DataType.FLOAT, n, n),
          Nd4j.createUninitialized(DataType.FLOAT, n, n)};
    }
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    try {
      round(pool, arrays);
      double flops = threads * 2.0 * n * n * (double) n;
      double[] g = new double[repeats];
      for (int i = 0; i < repeats; i++) {
        long t0 = System.nanoTime();
        round(pool, arrays);
        g[i] = flops / (System.nanoTime() - t0);
      }
      double[] sorted = g.clone();
      Arrays.sort(sorted);
      double median = repeats % 2 == 1 ? sorted[repeats / 2]
          : 0.5 * (sorted[repeats / 2 - 1] + sorted[repeats / 2]);
      return new Sgemm(n, repeats, threads, median, sorted[0], sorted[repeats - 1]);
    } finally {
      pool.shutdownNow();
    }
  }

  private static void round(ExecutorService pool, INDArray[][] arrays) {
    List<Future<?>> done = new ArrayList<>();
    for (INDArray[] abc : arrays) {
      done.add(pool.submit(() -> Nd4j.gemm(abc[0], abc[1], abc[2], false, false, 1.0, 0.0)));
    }
    try {
      for (Future<?> f : done) {
        f.get();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while measuring the sgemm peak", e);
    } catch (ExecutionException e) {
      throw new IllegalStateException("sgemm failed: " + e.getCause(), e.getCause());
    }
  }

  /**
   * The physical limit of this machine: {@link Runtime#availableProcessors()} cores, 2 FMA pipes per
   * core, 8 float lanes with AVX2 (16 with AVX-512, 4 otherwise), clock from the largest "cpu MHz" in
   * /proc/cpuinfo (the nominal clock on most VMs, so a core that boosts can exceed it), else
   * {@code fallbackGhz}.
   */
  public static Physical physical(double fallbackGhz) {
    int cores = Runtime.getRuntime().availableProcessors();
    double mhz = -1;
    String flags = "";
    try {
      List<String> lines = Files.readAllLines(Path.of("/proc/cpuinfo"));
      for (String line : lines) {
        int colon = line.indexOf(':');
        if (colon < 0) {
          continue;
        }
        String key = line.substring(0, colon).trim();
        String value = line.substring(colon + 1).trim();
        if (key.equals("cpu MHz")) {
          try {
            mhz = Math.max(mhz, Double.parseDouble(value));
          } catch (NumberFormatException ignored) {
            // keep looking
          }
        } else if (key.equals("flags") && flags.isEmpty()) {
          flags = " " + value + " ";
        }
      }
    } catch (IOException | RuntimeException ignored) {
      // not Linux: fall back below
    }
    String isa;
    int lanes;
    if (flags.contains(" avx512f ")) {
      isa = "AVX-512";
      lanes = 16;
    } else if (flags.contains(" avx2 ") && flags.contains(" fma ") || flags.isEmpty()) {
      isa = flags.isEmpty() ? "AVX2 assumed" : "AVX2+FMA";
      lanes = 8;
    } else {
      isa = "SSE";
      lanes = 4;
    }
    if (mhz > 0) {
      return new Physical(cores, 2, lanes, mhz / 1000.0, "/proc/cpuinfo", isa);
    }
    return new Physical(cores, 2, lanes, fallbackGhz, "--clock-ghz (no cpu MHz in /proc/cpuinfo)", isa);
  }
}
