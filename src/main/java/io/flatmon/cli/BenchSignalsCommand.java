package io.flatmon.cli;

import io.flatmon.service.FlatmonService;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** `flatmon bench signals`. */
@Command(
    name = "signals",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
        "How soon a trainer sees the early-stopping signal of its measurement, on an embedded broker.",
        "",
        "R synthetic runs each publish a measurement (snapshot, train batches, MeasurementDone) every",
        "--interval; a flatmon instance in this JVM answers each with a TrainerSignal. Two readers time",
        "MeasurementDone published -> signal received: read_committed (visible at flatmon's exactly-once",
        "commit) and read_uncommitted (visible when written; duplicates of a replayed transaction dropped,",
        "as the Python client does). Prints p50/p99/max delay of each.",
        ""},
    footer = {"", "Examples:",
        "  flatmon bench signals --runs 50",
        "  flatmon bench signals --runs 50 --streams-config commit.interval.ms=500"})
final class BenchSignalsCommand implements Callable<Integer> {
  @Spec
  CommandSpec spec;

  @Option(names = "--runs", defaultValue = "1", description = "Live runs (default ${DEFAULT-VALUE}).")
  int runs;

  @Option(names = "--interval", defaultValue = "PT3S",
      description = "Time between two measurements of a run (default ${DEFAULT-VALUE}).")
  Duration interval;

  @Option(names = "--duration", defaultValue = "PT60S", description = "Measuring period (default ${DEFAULT-VALUE}).")
  Duration duration;

  @Option(names = "--warmup", defaultValue = "PT30S", description = "Warm-up before measuring (default ${DEFAULT-VALUE}).")
  Duration warmup;

  @Option(names = "--channels", defaultValue = "64", description = "C = C_in of each head (default ${DEFAULT-VALUE}).")
  int channels;

  @Option(names = "--batch", defaultValue = "64", description = "Samples per batch (default ${DEFAULT-VALUE}).")
  int batch;

  @Option(names = "--batches", defaultValue = "2", description = "Batches per measurement (default ${DEFAULT-VALUE}).")
  int batches;

  @Mixin
  StreamsConfigOption streamsConfig;

  @Option(names = "--data-dir", description = "Where the broker and state live (default: a temp dir).")
  Path dataDir;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    int engines = FlatmonService.defaultEngineThreads();
    new SignalBenchmark(new SignalBenchmark.Options(runs, interval, duration, warmup, channels, batch, batches,
        streamsConfig.asMap(), dataDir, FlatmonService.defaultStreamThreads(engines), engines), out).run();
    return 0;
  }
}
