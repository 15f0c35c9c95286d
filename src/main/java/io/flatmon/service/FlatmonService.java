package io.flatmon.service;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.broker.TopicSetup;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.EngineInfo;
import io.flatmon.engine.EnginePool;
import io.flatmon.metrics.FlatmonMetrics;
import io.flatmon.service.http.HttpEndpoint;
import io.flatmon.service.http.QueryApi;
import io.flatmon.stream.DeadLetterExceptionHandler;
import io.flatmon.stream.FlatmonTopology;
import io.flatmon.stream.StreamsSettings;
import io.flatmon.stream.TopologySettings;
import io.flatmon.web.SignalLog;
import io.flatmon.web.WebPage;
import io.flatmon.wire.Topics;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.state.HostInfo;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One flatmon instance: an embedded single-node KRaft broker when no bootstrap servers are given,
 * the versioned topics (created if missing), the Kafka Streams application and the HTTP endpoint.
 * Instances pointed at the same cluster with the same application id share the work.
 */
public final class FlatmonService implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(FlatmonService.class);

  /**
   * What an instance needs to know.
   *
   * @param streamThreads Kafka Streams threads: they decode, keep state and commit; more of them than
   *     cores is fine, since they wait on the engine pool
   * @param engineThreads curvature engines shared by all stream threads (the compute parallelism;
   *     one per core with OMP_NUM_THREADS=1)
   */
  public record Config(
      String bootstrapServers,
      Path dataDir,
      int brokerPort,
      Map<String, Object> clientConfig,
      String applicationId,
      int partitions,
      short replicationFactor,
      long telemetryRetentionMs,
      int streamThreads,
      String httpHost,
      int httpPort,
      TopologySettings topology,
      String advertisedHost,
      int engineThreads) {

    /** The same, advertising the bind address to other instances, with one engine per core. */
    public Config(String bootstrapServers, Path dataDir, int brokerPort, Map<String, Object> clientConfig,
        String applicationId, int partitions, short replicationFactor, long telemetryRetentionMs, int streamThreads,
        String httpHost, int httpPort, TopologySettings topology) {
      this(bootstrapServers, dataDir, brokerPort, clientConfig, applicationId, partitions, replicationFactor,
          telemetryRetentionMs, streamThreads, httpHost, httpPort, topology, httpHost, defaultEngineThreads());
    }

    /** The same with other thread counts. */
    public Config withThreads(int stream, int engine) {
      return new Config(bootstrapServers, dataDir, brokerPort, clientConfig, applicationId, partitions,
          replicationFactor, telemetryRetentionMs, stream, httpHost, httpPort, topology, advertisedHost, engine);
    }
  }

  /** One engine per core (each single-threaded: OMP_NUM_THREADS=1, as bin/flatmon sets). */
  public static int defaultEngineThreads() {
    return Runtime.getRuntime().availableProcessors();
  }

  /**
   * Twice the engine threads, at most 8: while one stream thread waits for its batch, another has
   * the next one decoded, so the engines never wait for a stream thread.
   */
  public static int defaultStreamThreads(int engineThreads) {
    return Math.max(1, Math.min(8, 2 * engineThreads));
  }

  private final Config config;
  /** Wraps the engine pool the topology measures with: the identity, or a test's fault injection. */
  private UnaryOperator<CurvatureComputer> engineWrapper = e -> e;
  private final FlatmonMetrics metrics = new FlatmonMetrics();
  private EnginePool engines;
  private EmbeddedKafka broker;
  private KafkaStreams streams;
  private HttpEndpoint http;
  private SignalLog signalLog;
  private String bootstrap;

  public FlatmonService(Config config) {
    this.config = config;
  }

  /**
   * Starts everything and waits until the Streams application is RUNNING.
   *
   * @throws IllegalStateException with a readable message when Kafka is unreachable, refuses the
   *     credentials, or the application fails
   */
  public FlatmonService start(Duration timeout) throws IOException, InterruptedException {
    long t0 = System.nanoTime();
    EngineInfo.current();
    Files.createDirectories(config.dataDir());
    bootstrap = config.bootstrapServers();
    if (bootstrap == null) {
      broker = EmbeddedKafka.builder().dataDir(config.dataDir().resolve("kafka")).port(config.brokerPort()).build()
          .start();
      bootstrap = broker.bootstrapServers();
      LOG.info("embedded Kafka broker listening on {} (data in {})", bootstrap, config.dataDir().resolve("kafka"));
    }
    createTopics();
    http = new HttpEndpoint(new InetSocketAddress(config.httpHost(), config.httpPort()));
    HostInfo self = new HostInfo(config.advertisedHost(), http.port());
    Properties props = StreamsSettings.properties(bootstrap, config.applicationId(),
        config.dataDir().resolve("streams"), config.streamThreads(), config.replicationFactor(),
        self.host() + ":" + self.port(), config.clientConfig());
    // Static membership: an instance restarted on the same data dir (after a crash or a deploy) gets
    // its partitions back at once instead of waiting for the group to time it out.
    props.putIfAbsent(org.apache.kafka.streams.StreamsConfig.consumerPrefix(
        org.apache.kafka.clients.consumer.ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), instanceId());
    engines = new EnginePool(config.engineThreads());
    props.put(DeadLetterExceptionHandler.LISTENER_CONFIG, metrics);
    streams = new KafkaStreams(FlatmonTopology.build(config.topology(), metrics, engineWrapper.apply(engines)), props);
    CountDownLatch running = new CountDownLatch(1);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    streams.setStateListener((now, before) -> {
      LOG.info("Kafka Streams {} -> {}", before, now);
      if (now == KafkaStreams.State.RUNNING || now == KafkaStreams.State.ERROR) {
        running.countDown();
      }
    });
    streams.setUncaughtExceptionHandler(e -> {
      LOG.error("stream thread failed; replacing it", e);
      failure.compareAndSet(null, e);
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
    });
    signalLog = SignalLog.start(bootstrap, config.clientConfig(), Duration.ofMillis(config.telemetryRetentionMs()));
    routes(new QueryApi(streams, self), new WebPage(signalLog));
    http.start();
    streams.start();
    if (!running.await(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      throw new IllegalStateException("Kafka Streams did not reach RUNNING within " + timeout.toSeconds()
          + " s (state " + streams.state() + ")" + (failure.get() == null ? "" : ": " + failure.get()));
    }
    if (streams.state() == KafkaStreams.State.ERROR) {
      throw new IllegalStateException("Kafka Streams failed: " + failure.get());
    }
    // Bound once RUNNING, when the tasks and their store metrics exist (the binder rescans every 60 s).
    metrics.bind(streams);
    LOG.info("flatmon is running in {} s: reading {} from {} with {} stream threads and {} engine threads; "
            + "query API and metrics on http://{}:{}/",
        String.format("%.1f", (System.nanoTime() - t0) / 1e9), Topics.TELEMETRY, bootstrap,
        config.streamThreads(), config.engineThreads(), config.httpHost(), http.port());
    return this;
  }

  /** Measures with {@code wrapper.apply(pool)} instead of the engine pool (fault injection); before start. */
  public FlatmonService wrapEngine(UnaryOperator<CurvatureComputer> wrapper) {
    this.engineWrapper = wrapper;
    return this;
  }

  /** Every path of the HTTP port (documented in docs/ARCHITECTURE.md, "Query API"). */
  private void routes(QueryApi query, WebPage page) {
    http.route("/metrics", metrics.httpHandler())
        .route("/healthz", query::health)
        .route("/runs", query::runs)
        .route("/runs/{run}/latest", query::latest)
        .route("/runs/{run}/history", query::history);
    for (String template : WebPage.ROUTES) {
      http.route(template, page);
    }
  }

  /** A stable id for this instance, kept in its data dir. */
  private String instanceId() throws IOException {
    Path file = config.dataDir().resolve("instance-id");
    if (Files.exists(file)) {
      return Files.readString(file).strip();
    }
    String id = config.applicationId() + "-" + java.util.UUID.randomUUID();
    Files.writeString(file, id);
    return id;
  }

  private void createTopics() {
    Map<String, Object> adminConfig = new HashMap<>(config.clientConfig());
    adminConfig.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    adminConfig.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
    adminConfig.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
    try (Admin admin = Admin.create(adminConfig)) {
      TopicSetup.ensure(admin, config.partitions(), config.replicationFactor(), config.telemetryRetentionMs());
    } catch (RuntimeException e) {
      Throwable cause = e;
      while (cause.getCause() != null && !(cause instanceof org.apache.kafka.common.errors.ApiException)) {
        cause = cause.getCause();
      }
      if (cause instanceof org.apache.kafka.common.errors.AuthenticationException) {
        throw new IllegalStateException("Kafka at " + bootstrap + " refused the credentials: " + cause.getMessage()
            + " (check sasl.jaas.config / security.protocol in --kafka-config)", e);
      }
      throw new IllegalStateException("cannot set up topics on Kafka at " + bootstrap + ": " + cause, e);
    }
  }

  public String bootstrapServers() {
    return bootstrap;
  }

  public int httpPort() {
    return http.port();
  }

  public KafkaStreams streams() {
    return streams;
  }

  public FlatmonMetrics metrics() {
    return metrics;
  }

  /** Adds a route (a path template, see {@link HttpEndpoint#route}) to the instance's HTTP port. */
  public void addHttpRoute(String template, com.sun.net.httpserver.HttpHandler handler) {
    http.route(template, handler);
  }

  /** Stops the application, the HTTP endpoint and the embedded broker (within about 10 s). */
  @Override
  public void close() {
    long t0 = System.nanoTime();
    if (http != null) {
      http.close();
    }
    if (streams != null) {
      // Leave the group so the others take over this instance's partitions at once, not after a session timeout.
      streams.close(org.apache.kafka.streams.CloseOptions.groupMembershipOperation(
          org.apache.kafka.streams.CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
          .withTimeout(Duration.ofSeconds(5)));
    }
    if (signalLog != null) {
      signalLog.close();
    }
    if (engines != null) {
      engines.close();
    }
    if (broker != null) {
      broker.close();
    }
    metrics.close();
    LOG.info("flatmon stopped in {} s", String.format("%.1f", (System.nanoTime() - t0) / 1e9));
  }
}
