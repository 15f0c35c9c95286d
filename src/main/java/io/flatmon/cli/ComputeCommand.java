package io.flatmon.cli;

import com.google.protobuf.util.JsonFormat;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.BatchCurvature;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.CurvatureEngine;
import io.flatmon.engine.EngineCapacityException;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.ReferenceCurvature;
import io.flatmon.engine.StepAggregate;
import io.flatmon.engine.WorkLimits;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordDecoder;
import io.flatmon.schema.RejectedRecordException;
import io.flatmon.schema.ResultBuilder;
import io.flatmon.schema.TelemetryReader;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** `flatmon compute FILE...`: offline measurement of telemetry files. */
@Command(
    name = "compute",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
        "Computes Tr H, κ, κ_norm (and λ_max with --eigen), loss and accuracy from telemetry files.",
        "",
        "Each FILE holds length-delimited flatmon.v1.TelemetryRecord messages (the format of the",
        "trainer clients; protobuf writeDelimitedTo). Results are per (run, layer, step, split):",
        "means over all the step's samples with standard errors. A batch is measured against the",
        "latest LayerSnapshot of its (run, layer), which must be of the same step.",
        "",
        "Bad records are reported on stderr with their index and reason and skipped; the rest",
        "is still computed. The exit status is 1 only when nothing could be measured.",
        ""},
    footer = {
        "",
        "Examples:",
        "  flatmon compute examples/resnet-head.pb",
        "  flatmon compute --json --eigen src/test/resources/oracle/cases.pb",
        "  cat run.pb | flatmon compute -"})
final class ComputeCommand implements Callable<Integer> {

  /** Which implementation computes the curvature. */
  enum EngineChoice { nd4j, reference }

  @Spec
  CommandSpec spec;

  @Parameters(paramLabel = "FILE", arity = "1..*", description = "Telemetry files; '-' reads standard input.")
  List<String> files;

  @Option(names = "--json", description = "Print one FlatnessResult as JSON per line instead of a table.")
  boolean json;

  @Option(names = "--eigen", description = {
      "Also compute λ_max, the largest Hessian eigenvalue over each step's samples, exactly by " +
      "Lanczos in float64 (memory and time grow with samples × C × d: slow for big layers)."})
  boolean eigen;

  @Option(names = "--engine", defaultValue = "nd4j", description = {
      "nd4j: the fast float32 engine (default); reference: the float64 plain-Java oracle."})
  EngineChoice engineChoice;

  @Option(names = "--time-engine", paramLabel = "N", defaultValue = "0", description = {
      "Also time the engine: after reading, recompute each measurement's batches once to warm up " +
      "and then N times, each time against a freshly decoded snapshot (Ω included), and report " +
      "the median seconds per measurement: as \"engine_seconds\" (and \"engine_runs\") added to " +
      "each --json line, else on stderr; then N times against one prepared snapshot (Ω cached): " +
      "\"engine_seconds_same_snapshot\"; \"engine_cpu_seconds\": the process CPU time of a " +
      "fresh-snapshot run (mean over \"engine_cpu_runs\" ≥ N runs that add up to at least " +
      "--time-engine-window). Excludes JVM start-up, reading and decoding."})
  int timeEngine;

  @Option(names = "--time-engine-window", paramLabel = "SECONDS", defaultValue = "0.5", description = {
      "With --time-engine: fresh-snapshot runs go on until they add up to this many seconds, for " +
      "the CPU-time mean (the JVM reads CPU time in 10 ms clock ticks; default ${DEFAULT-VALUE})."})
  double timeEngineWindow;

  @Option(names = "--max-elements", defaultValue = "" + RecordDecoder.DEFAULT_MAX_ELEMENTS,
      description = "Largest tensor accepted, in elements (default ${DEFAULT-VALUE}).")
  long maxElements;

  @Mixin
  WorkLimitOptions workLimits;

  @Option(names = "--max-record-bytes", defaultValue = "" + (64 * 1024 * 1024 + 4096),
      description = "Largest record accepted, in bytes (default ${DEFAULT-VALUE}).")
  int maxRecordBytes;

  private record HeadKey(String run, String layer) {
  }

  private record MeasurementKey(String run, String layer, long step, Split split) {
  }

  private static final class Measurement {
    final StepAggregate aggregate = new StepAggregate();
    final List<ActivationBatch> batches = new ArrayList<>();
    HeadSnapshot head;
    LayerSnapshot snapshotRecord;
  }

  private final Map<HeadKey, Long> snapshotSteps = new HashMap<>();
  private final Map<HeadKey, HeadSnapshot> snapshots = new HashMap<>();
  private final Map<HeadKey, LayerSnapshot> snapshotRecords = new HashMap<>();
  private final Map<MeasurementKey, Measurement> measurements = new LinkedHashMap<>();
  private CurvatureComputer engine;
  private RecordDecoder decoder;
  private Progress progress;
  private long rejected;

  @Override
  public Integer call() throws Exception {
    PrintWriter err = spec.commandLine().getErr();
    PrintWriter out = spec.commandLine().getOut();
    if (timeEngine < 0) {
      err.println("flatmon compute: --time-engine must be >= 0");
      return 2;
    }
    WorkLimits limits = workLimits.limits("compute", err);
    if (limits == null) {
      return 2;
    }
    decoder = new RecordDecoder(maxElements, limits);
    engine = engineChoice == EngineChoice.reference ? new ReferenceCurvature() : new CurvatureEngine();
    progress = new Progress(err);
    for (String file : files) {
      try (InputStream in = open(file)) {
        read(file, in, err);
      } catch (NoSuchFileException e) {
        err.println(file + ": no such file");
        rejected++;
      } catch (IOException e) {
        err.println(file + ": cannot read: " + e.getMessage());
        rejected++;
      }
    }
    progress.done();
    if (measurements.isEmpty()) {
      err.println("flatmon compute: nothing could be measured (no valid LayerSnapshot followed by "
          + "ActivationBatches of its step)" + (rejected > 0 ? "; " + rejected + " record(s) rejected" : ""));
      return 1;
    }
    List<FlatnessResult> results = new ArrayList<>();
    List<EngineTimer.Timing> timings = new ArrayList<>();
    for (Map.Entry<MeasurementKey, Measurement> e : measurements.entrySet()) {
      MeasurementKey k = e.getKey();
      Measurement m = e.getValue();
      double lambda = Double.NaN;
      if (eigen) {
        progress.note(String.format("λ_max of %s/%s step %d %s (%d samples)", k.run, k.layer, k.step,
            k.split, m.aggregate.samples()));
        lambda = new ReferenceCurvature().maxEigenvalue(m.head, m.batches);
      }
      results.add(ResultBuilder.build(k.run, k.layer, k.step, k.split, true, m.aggregate, m.head, lambda));
      if (timeEngine > 0) {
        progress.note(String.format("timing the engine on %s/%s step %d %s", k.run, k.layer, k.step, k.split));
        EngineTimer.Timing t = EngineTimer.time(engine, () -> redecode(m.snapshotRecord), m.batches, timeEngine,
            timeEngineWindow);
        timings.add(t);
        if (!json) {
          err.printf(Locale.ROOT, "engine: %s/%s step %d %s: median %.6f s over %d runs (%d batches, %d samples);"
              + " %.6f s with the snapshot already prepared; process CPU %.6f s (mean of %d runs)%n", k.run, k.layer,
              k.step, k.split, t.medianSeconds(), timeEngine, m.batches.size(), m.aggregate.samples(),
              t.medianSecondsSameSnapshot(), t.cpuSeconds(), t.cpuRuns());
        }
      }
    }
    progress.done();
    if (json) {
      JsonFormat.Printer printer = JsonFormat.printer().preservingProtoFieldNames()
          .omittingInsignificantWhitespace();
      for (int i = 0; i < results.size(); i++) {
        String line = printer.print(results.get(i));
        if (timeEngine > 0) {
          line = line.substring(0, line.length() - 1) + String.format(Locale.ROOT,
              ",\"engine_seconds\":%.9g,\"engine_runs\":%d,\"engine_seconds_same_snapshot\":%.9g"
              + (Double.isNaN(timings.get(i).cpuSeconds()) ? "}"
                  : ",\"engine_cpu_seconds\":%.9g,\"engine_cpu_runs\":%d}"),
              timings.get(i).medianSeconds(), timeEngine, timings.get(i).medianSecondsSameSnapshot(),
              timings.get(i).cpuSeconds(), timings.get(i).cpuRuns());
        }
        out.println(line);
      }
    } else {
      ResultTable.print(results, eigen, out);
    }
    if (rejected > 0) {
      err.printf("%d record(s) rejected (see above); %d measurement(s) computed%n", rejected, results.size());
    }
    out.flush();
    return 0;
  }

  private static InputStream open(String file) throws IOException {
    return "-".equals(file) ? new BufferedInputStream(System.in, 1 << 16)
        : new BufferedInputStream(Files.newInputStream(Path.of(file)), 1 << 16);
  }

  private void read(String file, InputStream in, PrintWriter err) throws IOException {
    TelemetryReader reader = new TelemetryReader(in, maxRecordBytes);
    TelemetryReader.Item item;
    while ((item = reader.next()) != null) {
      RejectedRecordException problem = item.rejection();
      if (problem == null) {
        try {
          apply(item.record());
        } catch (RejectedRecordException e) {
          problem = e;
        } catch (RuntimeException e) {
          // A bug, not bad input: reported with its stack trace, and the rest of the file still computed.
          e.printStackTrace(err);
          problem = new RejectedRecordException(RejectReason.INTERNAL_ERROR, "internal error: " + e);
        }
      }
      if (problem != null) {
        rejected++;
        err.printf("%s: record %d: %s: %s%n", file, item.index(), problem.reason(), problem.getMessage());
      }
      progress.record();
    }
  }

  private void apply(TelemetryRecord record) throws RejectedRecordException {
    switch (record.getRecordCase()) {
      case LAYER_SNAPSHOT -> {
        var s = record.getLayerSnapshot();
        HeadSnapshot head = decoder.snapshot(s);
        HeadKey key = new HeadKey(s.getRunId(), s.getLayer());
        snapshots.put(key, head);
        snapshotSteps.put(key, s.getStep());
        if (timeEngine > 0) {
          snapshotRecords.put(key, s);
        }
      }
      case ACTIVATION_BATCH -> measure(record.getActivationBatch());
      case RUN_STARTED, MEASUREMENT_DONE, RUN_ENDED -> {
        // Offline, every measurement is final at the end of the input: nothing to do.
      }
      default -> throw new RejectedRecordException(RejectReason.UNKNOWN_RECORD_TYPE,
          "record type " + record.getRecordCase() + " is not supported");
    }
  }

  private void measure(io.flatmon.proto.v1.ActivationBatch a) throws RejectedRecordException {
    HeadKey headKey = new HeadKey(a.getRunId(), a.getLayer());
    HeadSnapshot head = snapshots.get(headKey);
    Long step = snapshotSteps.get(headKey);
    if (head == null || step != a.getStep()) {
      throw new RejectedRecordException(RejectReason.MISSING_SNAPSHOT, String.format(
          "batch of run '%s' layer '%s' step %d has no snapshot of that step%s", a.getRunId(), a.getLayer(),
          a.getStep(), step == null ? "" : " (latest snapshot: step " + step + ")"));
    }
    ActivationBatch batch = decoder.batch(a, head);
    Split split = a.getSplit() == Split.SPLIT_UNSPECIFIED ? Split.TRAIN : a.getSplit();
    MeasurementKey key = new MeasurementKey(a.getRunId(), a.getLayer(), a.getStep(), split);
    Measurement m = measurements.computeIfAbsent(key, k -> new Measurement());
    m.head = head;
    if (timeEngine > 0) {
      m.snapshotRecord = snapshotRecords.get(headKey);    // timed against the step's latest snapshot
    }
    BatchCurvature curvature;
    try {
      curvature = engine.compute(head, batch, m.aggregate.normalizerFor(head, batch));
    } catch (EngineCapacityException e) {
      throw new RejectedRecordException(RejectReason.TOO_LARGE, e.getMessage());
    } catch (IllegalArgumentException e) {
      throw new RejectedRecordException(RejectReason.INVALID_VALUE, e.getMessage());
    }
    m.aggregate.add(curvature);
    if (eigen || timeEngine > 0) {
      m.batches.add(batch);
    }
    progress.samples(batch.samples());
  }

  /** The same snapshot as a new object, so that the engine's per-snapshot cache misses (Ω is recomputed). */
  private HeadSnapshot redecode(LayerSnapshot record) {
    try {
      return decoder.snapshot(record);
    } catch (RejectedRecordException e) {
      throw new IllegalStateException("a snapshot that decoded once no longer decodes", e);
    }
  }

  /** Prints a progress line on stderr about once a second, once work has taken more than two seconds. */
  static final class Progress {
    private final PrintWriter err;
    private final long start = System.nanoTime();
    private long lastPrint;
    private long records;
    private long samples;
    private boolean printed;

    Progress(PrintWriter err) {
      this.err = err;
    }

    void record() {
      records++;
      maybePrint(null);
    }

    void samples(int n) {
      samples += n;
    }

    void note(String what) {
      maybePrint(what);
    }

    private void maybePrint(String what) {
      long now = System.nanoTime();
      if (now - start < 2_000_000_000L || now - lastPrint < 1_000_000_000L) {
        return;
      }
      lastPrint = now;
      printed = true;
      err.printf(Locale.ROOT, "compute: %d records, %d samples, %.1f s%s%n", records, samples,
          (now - start) / 1e9, what == null ? "" : " — " + what);
      err.flush();
    }

    void done() {
      if (printed) {
        err.printf(Locale.ROOT, "compute: %d records, %d samples in %.1f s%n", records, samples,
            (System.nanoTime() - start) / 1e9);
        err.flush();
        printed = false;
      }
    }
  }
}
