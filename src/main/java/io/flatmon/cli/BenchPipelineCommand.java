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

/** `flatmon bench pipeline`. */
@Command(
    name = "pipeline",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
        "End-to-end benchmark of the streaming service on an embedded broker.",
        "",
        "R synthetic runs (ResNet-18/CIFAR last conv: C = C_in = 512, 3x3, 4x4 output, K = 10)",
        "publish snapshots and batches concurrently; a flatmon instance in this JVM measures them;",
        "a read_committed consumer times publish -> result. Prints records/s, samples/s, MB/s,",
        "p50/p99 latency, CPU (cores of the whole process, and of its engine threads), CPU-ms per",
        "sample and heap every 5 s and for the whole measuring period. The publishers, the broker and",
        "the results consumer share the JVM and its cores with flatmon.",
        ""},
    footer = {"", "Examples:",
        "  flatmon bench pipeline                          # as fast as it sustains",
        "  flatmon bench pipeline --rate 500 --idle-runs 500"})
final class BenchPipelineCommand implements Callable<Integer> {
  @Spec
  CommandSpec spec;

  @Option(names = "--runs", defaultValue = "8", description = "Concurrent publishing runs (default ${DEFAULT-VALUE}).")
  int runs;

  @Option(names = "--rate", defaultValue = "0",
      description = "Target samples/s over all runs; 0 = as fast as the pipeline keeps up (default).")
  double rate;

  @Option(names = "--duration", defaultValue = "PT60S", description = "Measuring period (default ${DEFAULT-VALUE}).")
  Duration duration;

  @Option(names = "--warmup", defaultValue = "PT120S", description = {
      "Warm-up before measuring (default ${DEFAULT-VALUE}: on 2 cores the JIT still compiles and " +
      "deoptimises the broker, Streams and the engine 1-2 minutes in, at up to 10 %% of the CPU)."})
  Duration warmup;

  @Option(names = "--batch", defaultValue = "32", description = "Samples per batch (default ${DEFAULT-VALUE}).")
  int batch;

  @Option(names = "--no-z", description = "Do not send the pre-activation Z (flatmon runs the conv forward).")
  boolean noZ;

  @Option(names = "--channels", defaultValue = "512", description = "C = C_in (default ${DEFAULT-VALUE}).")
  int channels;

  @Option(names = "--classes", defaultValue = "10", description = "K (default ${DEFAULT-VALUE}).")
  int classes;

  @Option(names = "--batches-per-step", defaultValue = "50",
      description = "Batches per run before its next step's snapshot (default ${DEFAULT-VALUE}).")
  int batchesPerStep;

  @Option(names = "--idle-runs", defaultValue = "0",
      description = "Extra runs that start, send one snapshot (C = 64) and stay idle: heap is reported with them.")
  int idleRuns;

  @Option(names = "--data-dir", description = "Where the broker and state live (default: a temp dir).")
  Path dataDir;

  @Option(names = "--engine-threads", description = {
      "Curvature engines (default: as flatmon serve, the number of cores)."})
  Integer engineThreads;

  @Option(names = "--stream-threads", description = {
      "Kafka Streams threads (default: as flatmon serve, twice --engine-threads, at most 8)."})
  Integer streamThreads;

  @Mixin
  StreamsConfigOption streamsConfig;

  @Option(names = "--in-flight", defaultValue = "64", description = {
      "With --rate 0: batches published but not yet measured (default ${DEFAULT-VALUE}). Too small a window",
      "measures the window, not the pipeline: throughput <= window / latency."})
  int inFlight;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    int engines = engineThreads != null ? engineThreads : FlatmonService.defaultEngineThreads();
    new PipelineBenchmark(new PipelineBenchmark.Options(runs, rate, duration, warmup, batch, !noZ, channels, classes,
        batchesPerStep, idleRuns, dataDir,
        streamThreads != null ? streamThreads : FlatmonService.defaultStreamThreads(engines), engines, inFlight,
        streamsConfig.asMap()),
        out).run();
    return 0;
  }
}
