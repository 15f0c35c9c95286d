package io.flatmon.cli;

import io.flatmon.engine.WorkLimits;
import io.flatmon.schema.RecordDecoder;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.TopologySettings;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** `flatmon serve`: the streaming service. */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
        "Runs the flatmon streaming service until Ctrl-C.",
        "",
        "Without --bootstrap-servers it starts a real single-node Kafka broker (KRaft) itself,",
        "bound to 127.0.0.1:--broker-port, with its data under --data-dir: nothing to install.",
        "With --bootstrap-servers it joins that cluster as a Kafka Streams instance; start more",
        "instances with the same --application-id to share the work.",
        "",
        "Trainers publish flatmon.v1.TelemetryRecord messages (key = run_id) to flatmon.v1.telemetry;",
        "results appear on flatmon.v1.results, rejected input on flatmon.v1.dead-letter, and the",
        "query API on http://HOST:--http-port/runs.",
        ""},
    footer = {
        "",
        "Examples:",
        "  flatmon serve                          # embedded broker on 127.0.0.1:9092",
        "  flatmon serve --bootstrap-servers kafka:9092 \\",
        "      --kafka-config client.properties --replication-factor 3 --partitions 12"})
final class ServeCommand implements Callable<Integer> {

  @Spec
  CommandSpec spec;

  @Option(names = "--bootstrap-servers", paramLabel = "HOST:PORT,...",
      description = "Kafka cluster to join. Default: start an embedded single-node broker.")
  String bootstrapServers;

  @Option(names = "--kafka-config", paramLabel = "FILE",
      description = "Kafka client properties file (security protocol, SASL, TLS), applied to every Kafka client.")
  Path kafkaConfig;

  @Option(names = "--data-dir", paramLabel = "DIR", defaultValue = "${sys:user.home}/.flatmon",
      description = "State stores and the embedded broker's log (default ${DEFAULT-VALUE}).")
  Path dataDir;

  @Option(names = "--broker-port", defaultValue = "9092",
      description = "Port of the embedded broker (default ${DEFAULT-VALUE}; 0 picks a free one).")
  int brokerPort;

  @Option(names = "--application-id", defaultValue = "flatmon",
      description = "Kafka Streams application id shared by all instances (default ${DEFAULT-VALUE}).")
  String applicationId;

  @Option(names = "--partitions", defaultValue = "6",
      description = "Partitions of topics flatmon creates: the most instances that can share work (default ${DEFAULT-VALUE}).")
  int partitions;

  @Option(names = "--replication-factor", defaultValue = "1",
      description = "Replication of created and internal topics (default ${DEFAULT-VALUE}; use 3 on a real cluster).")
  short replicationFactor;

  @Option(names = "--retention", defaultValue = "P1D",
      description = "Retention of the topics flatmon creates, ISO-8601 (default ${DEFAULT-VALUE}).")
  Duration retention;

  @Option(names = "--ended-run-retention", defaultValue = "PT10M",
      description = "How long an ended run's state is kept (default ${DEFAULT-VALUE}).")
  Duration endedRetention;

  @Option(names = "--idle-expiry", defaultValue = "PT6H",
      description = "A run silent this long is finalised and forgotten (default ${DEFAULT-VALUE}).")
  Duration idleExpiry;

  @Option(names = "--history-steps", defaultValue = "100",
      description = "Final results kept per run for the query API, in steps (default ${DEFAULT-VALUE}).")
  int historySteps;

  @Option(names = "--max-tensor-elements", defaultValue = "" + RecordDecoder.DEFAULT_MAX_ELEMENTS,
      description = "Tensors with more elements are rejected (default ${DEFAULT-VALUE}).")
  long maxTensorElements;

  @Mixin
  WorkLimitOptions workLimits;

  @Option(names = "--engine-threads", description = {
      "Curvature engines shared by all stream threads: the compute parallelism (default: the number " +
      "of cores; each engine is single-threaded with OMP_NUM_THREADS=1, as bin/flatmon sets)."})
  Integer engineThreads;

  @Option(names = "--stream-threads", description = {
      "Kafka Streams threads: they decode records, keep state and commit, and wait on the engines " +
      "(default: twice --engine-threads, at most 8; threads beyond the partitions this instance owns " +
      "stay idle)."})
  Integer streamThreads;

  @Option(names = "--http-host", defaultValue = "127.0.0.1",
      description = "Address of the query API / metrics endpoint, also advertised to other instances (default ${DEFAULT-VALUE}).")
  String httpHost;

  @Option(names = "--advertised-host",
      description = "Host other instances use to reach this one's query API (default: --http-host).")
  String advertisedHost;

  @Option(names = {"--http-port", "--metrics-port"}, defaultValue = "9404",
      description = "Port of the query API and /metrics (default ${DEFAULT-VALUE}).")
  int httpPort;

  @Override
  public Integer call() throws Exception {
    Map<String, Object> clientConfig = new HashMap<>();
    if (kafkaConfig != null) {
      clientConfig.putAll(load(kafkaConfig));
    }
    WorkLimits limits = workLimits.limits("serve", spec.commandLine().getErr());
    if (limits == null) {
      return 2;
    }
    TopologySettings topology = TopologySettings.defaults().withRetention(endedRetention, idleExpiry)
        .withLimits(maxTensorElements, historySteps)
        .withWorkLimits(limits);
    int engines = engineThreads != null ? engineThreads : FlatmonService.defaultEngineThreads();
    if (engines < 1 || (streamThreads != null && streamThreads < 1)) {
      spec.commandLine().getErr().println("flatmon serve: --engine-threads and --stream-threads must be at least 1");
      return 2;
    }
    FlatmonService.Config config = new FlatmonService.Config(bootstrapServers, dataDir, brokerPort, clientConfig,
        applicationId, partitions, replicationFactor, retention.toMillis(),
        streamThreads != null ? streamThreads : FlatmonService.defaultStreamThreads(engines), httpHost, httpPort,
        topology, advertisedHost == null ? httpHost : advertisedHost, engines);
    FlatmonService service = new FlatmonService(config);
    CountDownLatch stopped = new CountDownLatch(1);
    Thread hook = new Thread(() -> {
      spec.commandLine().getErr().println("flatmon: shutting down...");
      service.close();
      stopped.countDown();
    }, "flatmon-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    try {
      service.start(Duration.ofSeconds(120));
    } catch (IllegalStateException | IOException e) {
      spec.commandLine().getErr().println("flatmon serve: " + e.getMessage());
      Runtime.getRuntime().removeShutdownHook(hook);
      service.close();
      return 2;
    }
    spec.commandLine().getOut().printf("flatmon serving: Kafka %s, query API and metrics http://%s:%d/runs,"
        + " live page http://%2$s:%3$d/%n", service.bootstrapServers(), httpHost, service.httpPort());
    spec.commandLine().getOut().flush();
    stopped.await();
    return 0;
  }

  private static Map<String, Object> load(Path file) throws IOException {
    Properties p = new Properties();
    try (InputStream in = Files.newInputStream(file)) {
      p.load(in);
    }
    Map<String, Object> out = new HashMap<>();
    p.forEach((k, v) -> out.put(k.toString(), v));
    return out;
  }
}
