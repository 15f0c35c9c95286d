package io.flatmon.cli;

import io.flatmon.bench.EngineBenchmark;
import io.flatmon.bench.EngineShape;
import io.flatmon.bench.MachinePeak;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.regex.Pattern;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
import org.openjdk.jmh.runner.options.VerboseMode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code flatmon bench engine}: JMH on {@link io.flatmon.engine.CurvatureEngine} for standard head shapes,
 * with the scores turned into samples/s and GFLOP/s and compared with the physical limit — the samples/s
 * this machine's measured sgemm peak would give if every flop of MATH.md §6 ran at that peak — and with
 * the FMA roofline of the CPU.
 *
 * <p>Flops per sample are MATH.md §6's count (see {@link EngineShape#flopsPerSample}): 2·P·d·C for the
 * conv forward unless Z is sent, 2·P²·d for the patch Gram K_p, 2·C·P² + 2·C²·P for T = M̃K_p and
 * Γ = T M̃ᵀ (the patch-Gram route, chosen when P(C+d) &lt; Cd, which holds for every shape here), and
 * 2·K·C² for the full A of κ; κ_norm repeats the last three on the 1/ρ-scaled patches.
 */
@Command(
    name = "engine",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    abbreviateSynopsis = true,
    description = {
        "JMH benchmark of the float32 curvature engine (Tr H + κ + classifier terms per batch) on the last",
        "conv of ResNet-18/CIFAR (C = C_in = 512, 3×3, 4×4, K = 10 / 100), ResNet-18/ImageNet (7×7,",
        "K = 1000) and ResNet-50 (C = 2048, C_in = 512, 1×1, 7×7, K = 1000), ReLU, with and without the",
        "pre-activation Z sent. Before and after each JMH run it measures ND4J's sgemm peak (median of",
        "rounds of --threads concurrent n×n float GEMMs) and prints a Markdown table of samples/s,",
        "flops/sample, GFLOP/s and",
        "  %% of limit    achieved GFLOP/s ÷ the sgemm peak, i.e. samples/s as a fraction of the physical",
        "                limit (the samples/s the peak gives on MATH.md §6's flops)",
        "  %% of FMA      achieved GFLOP/s ÷ cores × 2 FMA units × 8 floats (16 with AVX-512) × 2 × clock,",
        "                the clock from \"cpu MHz\" in /proc/cpuinfo (nominal; boost can exceed it)",
        "",
        "flops/sample is MATH.md §6's count for Tr H + κ (docs/math.md §6), GEMMs only:",
        "  2·P·d·C      conv forward Zᵀ = X W_fᵀ (only when Z is not sent)",
        "  2·P²·d       patch Gram K_p = X Xᵀ (the engine uses the cheaper eq. 14 and is credited the count)",
        "  2·C·P² + 2·C²·P   T = M̃ K_p and Γ = T M̃ᵀ (patch-Gram route, P(C+d) < Cd; else 2CPd + 2C²d)",
        "  2·K·C²       full A for κ (the engine's Yᵀ = (Ω∘Γ)Rᵀ with K rows costs the same)",
        "  κ_norm adds the Gram, Γ and A terms once more. Ω = W_f W_fᵀ is once per snapshot, not counted.",
        "",
        "Set OMP_NUM_THREADS before starting the JVM (ND4J ignores later changes), e.g.",
        "  OMP_NUM_THREADS=2 bin/flatmon bench engine --quick",
        ""})
final class BenchEngineCommand implements Callable<Integer> {

  @Option(names = "--shapes", split = ",", paramLabel = "SHAPE",
      description = "Shapes: cifar10, cifar100, imagenet, resnet50 (default: all).")
  List<String> shapes = List.of("cifar10", "cifar100", "imagenet", "resnet50");

  @Option(names = "--batch", split = ",", paramLabel = "B", description = "Batch sizes (default: 32,128).")
  List<Integer> batches = List.of(32, 128);

  @Option(names = "--send-z", split = ",", arity = "1", paramLabel = "BOOL",
      description = "Whether Z is sent: true, false or both (default: true,false).")
  List<Boolean> sendZ = List.of(true, false);

  @Option(names = "--threads", defaultValue = "1",
      description = {"JMH threads, each with its own engine (default ${DEFAULT-VALUE}); samples/s is their sum.",
          "On 2 cores, --threads 2 with OMP_NUM_THREADS=1 uses both cores for the small per-sample ops."})
  int threads;

  @Option(names = "--quantities", split = ",", paramLabel = "Q",
      description = "trace_kappa (Tr H + κ) and/or with_kappa_norm (also κ_norm) (default: trace_kappa).")
  List<String> quantities = List.of(EngineBenchmark.TRACE_KAPPA);

  @Option(names = "--warmup", paramLabel = "N", description = "Warm-up iterations of --time each (default: 8).")
  Integer warmup;

  @Option(names = "--iterations", paramLabel = "N",
      description = "Measurement iterations (default: 3; 2 with --quick).")
  Integer iterations;

  @Option(names = "--time", paramLabel = "T",
      description = "Time per iteration, e.g. 2s or 500ms; a bare number is seconds (default: 2s; 1s with --quick)."
          + " An iteration always runs at least one batch.")
  String time;

  @Option(names = "--forks", paramLabel = "N",
      description = "JMH forks; 0 runs in this JVM (default: 1; the fork gets this JVM's class path and options).")
  int forks = 1;

  @Option(names = "--quick", description = "2 measurement iterations instead of 3 (8 warm-up iterations of 2 s either way).")
  boolean quick;

  @Option(names = "--peak-size", paramLabel = "N", description = "Side of the square sgemm for the peak (default: 4096).")
  int peakSize = 4096;

  @Option(names = "--peak-repeats", paramLabel = "N", description = "Timed sgemm calls per peak measurement (default: 5).")
  int peakRepeats = 5;

  @Option(names = "--clock-ghz", paramLabel = "GHZ",
      description = "Clock for the FMA roofline when /proc/cpuinfo has no \"cpu MHz\" (default: 2.45).")
  double clockGhz = 2.45;

  @Option(names = "--json", paramLabel = "FILE", description = "Also write the peaks and the table as JSON.")
  Path json;

  /** One row of the result table. */
  record Row(String shape, int batch, boolean sendZ, String quantities, double samplesPerSecond, double error,
      double flopsPerSample, double gflops, double sgemmPeak, double fractionOfSgemm, double fractionOfPhysical,
      String route) {
  }

  @Override
  public Integer call() throws RunnerException, IOException {
    PrintStream out = System.out;
    long started = System.nanoTime();
    List<EngineShape> shapeList = new ArrayList<>();
    for (String s : shapes) {
      shapeList.add(EngineShape.parse(s));
    }
    for (String q : quantities) {
      if (!q.equals(EngineBenchmark.TRACE_KAPPA) && !q.equals(EngineBenchmark.WITH_KAPPA_NORM)) {
        throw new IllegalArgumentException("unknown --quantities '" + q + "' (expected "
            + EngineBenchmark.TRACE_KAPPA + " or " + EngineBenchmark.WITH_KAPPA_NORM + ")");
      }
    }
    // Even --quick warms up for 16 s: the CIFAR shape on two threads still sped up 25 % between the 4th
    // and the 14th second (JIT of the host-side loops, first touch of the working arrays).
    int warmupIterations = warmup != null ? warmup : 8;
    int measurementIterations = iterations != null ? iterations : quick ? 2 : 3;
    TimeValue iterationTime = parseTime(time != null ? time : "2s");

    String omp = System.getenv("OMP_NUM_THREADS");
    int cores = Runtime.getRuntime().availableProcessors();
    if (omp == null || omp.isBlank()) {
      out.println("WARNING: OMP_NUM_THREADS is not set. ND4J/OpenBLAS read it only at JVM start; unset, OpenMP"
          + " threads spin and the figures are unreliable. Rerun with e.g. OMP_NUM_THREADS=" + cores + ".");
    } else {
      out.println("OMP_NUM_THREADS=" + omp + ", " + cores + " processors available to the JVM.");
    }
    MachinePeak.Physical physical = MachinePeak.physical(clockGhz);
    out.println("FMA roofline: " + physical);
    String coreType = System.getenv("OPENBLAS_CORETYPE");
    if (coreType != null && !coreType.isBlank()) {
      out.println("Note: OPENBLAS_CORETYPE=" + coreType + " pins OpenBLAS's kernels to that CPU type.");
    }
    MachinePeak.Sgemm before = MachinePeak.sgemm(peakSize, peakRepeats, threads);
    out.println("sgemm peak before: " + before);
    out.flush();

    List<String> jvmArgs = new ArrayList<>();
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (!a.startsWith("-agentlib:jdwp") && !a.startsWith("-Xrunjdwp")) {
        jvmArgs.add(a);
      }
    }
    // One JMH run per parameter combination with the sgemm peak measured between them: on a shared
    // machine the load changes within minutes, so each row is divided by the peak adjacent in time
    // (the larger of the measurements just before and just after it).
    List<Row> rows = new ArrayList<>();
    MachinePeak.Sgemm previous = before;
    MachinePeak.Sgemm after = before;
    for (EngineShape s : new LinkedHashSet<>(shapeList)) {
      for (int b : new LinkedHashSet<>(batches)) {
        for (boolean z : new LinkedHashSet<>(sendZ)) {
          for (String q : new LinkedHashSet<>(quantities)) {
            ChainedOptionsBuilder options = new OptionsBuilder()
                .include("^" + Pattern.quote(EngineBenchmark.class.getName()) + "\\.")
                .param("shape", s.id())
                .param("batch", String.valueOf(b))
                .param("sendZ", String.valueOf(z))
                .param("quantities", q)
                .warmupIterations(warmupIterations)
                .warmupTime(iterationTime)
                .measurementIterations(measurementIterations)
                .measurementTime(iterationTime)
                .forks(forks)
                .threads(threads)
                .shouldFailOnError(true)
                .timeout(TimeValue.minutes(10))
                .verbosity(VerboseMode.NORMAL);
            if (forks > 0) {
              options.jvmArgs(jvmArgs.toArray(String[]::new));
            }
            RunResult r = new Runner(options.build()).runSingle();
            after = MachinePeak.sgemm(peakSize, peakRepeats, threads);
            out.println("sgemm peak after " + s.id() + " batch " + b + (z ? " Z" : " no Z") + ": " + after);
            out.flush();
            double peak = Math.max(previous.medianGflops(), after.medianGflops());
            previous = after;
            double batchesPerSecond = r.getPrimaryResult().getScore();
            double error = r.getPrimaryResult().getScoreError();
            double samples = batchesPerSecond * b;
            double flops = s.flopsPerSample(z, q.equals(EngineBenchmark.WITH_KAPPA_NORM));
            double gflops = samples * flops / 1e9;
            rows.add(new Row(s.id(), b, z, q, samples, error * b, flops, gflops, peak, gflops / peak,
                gflops / physical.gflops(), s.gammaRoute()));
          }
        }
      }
    }
    out.println();
    out.println("sgemm peak first: " + before);
    out.println("sgemm peak last:  " + after);
    out.println("FMA roofline: " + physical);
    out.println();
    rows.sort(Comparator.comparing((Row r) -> EngineShape.parse(r.shape()).ordinal())
        .thenComparingInt(Row::batch).thenComparing(r -> !r.sendZ()).thenComparing(Row::quantities));

    String table = table(rows);
    out.print(table);
    out.println();
    out.printf(Locale.ROOT, "JMH: %d fork(s), %d warm-up + %d measurement iterations of %s; ± is JMH's 99.9 %% "
        + "confidence half-width (n/a with fewer than 3 measurement iterations).%n", forks, warmupIterations,
        measurementIterations, iterationTime);
    double seconds = (System.nanoTime() - started) / 1e9;
    out.printf(Locale.ROOT, "Total time: %.0f s%n", seconds);

    if (json != null) {
      Files.writeString(json, json(rows, before, after, physical, omp, forks, warmupIterations,
          measurementIterations, iterationTime, seconds), StandardCharsets.UTF_8);
      out.println("Wrote " + json);
    }
    return 0;
  }

  static TimeValue parseTime(String s) {
    String t = s.trim();
    if (t.matches("[0-9]+")) {
      return TimeValue.seconds(Long.parseLong(t));
    }
    return TimeValue.fromString(t);
  }

  static String table(List<Row> rows) {
    StringBuilder sb = new StringBuilder();
    sb.append("| shape | batch | Z sent | quantities | samples/s | ± | MFLOP/sample | GFLOP/s | sgemm peak "
        + "| % of limit | % of FMA |\n");
    sb.append("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (Row r : rows) {
      sb.append(String.format(Locale.ROOT, "| %s | %d | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |%n",
          r.shape(), r.batch(), r.sendZ() ? "yes" : "no", r.quantities(), number(r.samplesPerSecond()),
          Double.isFinite(r.error()) ? number(r.error()) : "n/a", r.flopsPerSample() / 1e6, r.gflops(),
          r.sgemmPeak(), 100 * r.fractionOfSgemm(), 100 * r.fractionOfPhysical()));
    }
    return sb.toString();
  }

  private static String number(double v) {
    return Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.2f", v);
  }

  private static String json(List<Row> rows, MachinePeak.Sgemm before, MachinePeak.Sgemm after,
      MachinePeak.Physical physical, String omp, int forks, int warmup, int iterations, TimeValue time,
      double seconds) {
    StringBuilder sb = new StringBuilder("{\n");
    sb.append("  \"ompNumThreads\": ").append(omp == null ? "null" : quote(omp)).append(",\n");
    sb.append("  \"processors\": ").append(Runtime.getRuntime().availableProcessors()).append(",\n");
    sb.append("  \"sgemmBefore\": ").append(sgemm(before)).append(",\n");
    sb.append("  \"sgemmAfter\": ").append(sgemm(after)).append(",\n");
    sb.append(String.format(Locale.ROOT, "  \"physical\": {\"gflops\": %s, \"cores\": %d, \"fmaUnits\": %d, "
            + "\"lanes\": %d, \"clockGhz\": %s, \"clockSource\": %s, \"isa\": %s},%n",
        num(physical.gflops()), physical.cores(), physical.fmaUnits(), physical.lanes(), num(physical.clockGhz()),
        quote(physical.clockSource()), quote(physical.isa())));
    sb.append(String.format(Locale.ROOT, "  \"jmh\": {\"forks\": %d, \"warmupIterations\": %d, "
        + "\"measurementIterations\": %d, \"iterationTime\": %s},%n", forks, warmup, iterations,
        quote(time.toString())));
    sb.append("  \"totalSeconds\": ").append(num(seconds)).append(",\n");
    sb.append("  \"results\": [");
    for (int i = 0; i < rows.size(); i++) {
      Row r = rows.get(i);
      sb.append(i == 0 ? "\n" : ",\n");
      sb.append(String.format(Locale.ROOT, "    {\"shape\": %s, \"batch\": %d, \"sendZ\": %s, \"quantities\": %s, "
              + "\"gammaRoute\": %s, \"samplesPerSecond\": %s, \"error\": %s, \"flopsPerSample\": %s, "
              + "\"gflops\": %s, \"sgemmPeakGflops\": %s, \"fractionOfLimit\": %s, \"fractionOfFmaRoofline\": %s}",
          quote(r.shape()), r.batch(), r.sendZ(), quote(r.quantities()), quote(r.route()),
          num(r.samplesPerSecond()), num(r.error()), num(r.flopsPerSample()), num(r.gflops()), num(r.sgemmPeak()),
          num(r.fractionOfSgemm()), num(r.fractionOfPhysical())));
    }
    sb.append("\n  ]\n}\n");
    return sb.toString();
  }

  private static String sgemm(MachinePeak.Sgemm s) {
    return String.format(Locale.ROOT, "{\"size\": %d, \"repeats\": %d, \"threads\": %d, \"medianGflops\": %s, "
        + "\"minGflops\": %s, \"maxGflops\": %s}", s.size(), s.repeats(), s.threads(), num(s.medianGflops()),
        num(s.minGflops()),
        num(s.maxGflops()));
  }

  private static String num(double v) {
    return Double.isFinite(v) ? String.format(Locale.ROOT, "%.6g", v) : "null";
  }

  private static String quote(String s) {
    StringBuilder sb = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      switch (ch) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        default -> {
          if (ch < 0x20) {
            sb.append(String.format(Locale.ROOT, "\\u%04x", (int) ch));
          } else {
            sb.append(ch);
          }
        }
      }
    }
    return sb.append('"').toString();
  }
}
