package io.flatmon.broker;

import io.flatmon.wire.Topics;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.BindException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import kafka.server.KafkaConfig;
import kafka.server.KafkaRaftServer;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.metadata.storage.Formatter;
import org.apache.kafka.server.common.MetadataVersion;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine;

/**
 * A real single-node Kafka broker (KRaft, combined broker + controller) running in this JVM.
 *
 * <p>Storage is formatted with {@link Formatter} only when {@code meta.properties} is missing from the
 * data directory, so a persistent data directory keeps its topics and records across restarts. All
 * listeners bind to {@link Builder#host(String) host} (loopback by default):
 *
 * <ul>
 *   <li>{@code CLIENT} — the listener clients use ({@link #bootstrapServers()}); {@code PLAINTEXT}, or
 *       {@code SASL_PLAINTEXT} with mechanism {@code PLAIN} when {@link Builder#saslUsers(Map)} is set;
 *   <li>{@code INTERNAL} — {@code PLAINTEXT} inter-broker listener, only in SASL mode (otherwise the
 *       broker talks to itself over {@code CLIENT});
 *   <li>{@code CONTROLLER} — {@code PLAINTEXT} KRaft controller listener (static quorum of one voter).
 * </ul>
 *
 * <p>Broker settings: every internal topic (consumer offsets, transaction state with min ISR 1,
 * share-group state) has replication factor 1 and 4 partitions (the defaults of 50 cost seconds of
 * start-up on two cores); {@code group.initial.rebalance.delay.ms} and its Streams-protocol twin are 0;
 * {@code message.max.bytes}, {@code replica.fetch.max.bytes} and {@code fetch.max.bytes} are
 * {@value #BROKER_MAX_MESSAGE_BYTES} (64 MiB payload + 1 MiB for batch overhead, see {@link Topics});
 * the log cleaner dedupe buffer is 8 MiB instead of 128 MiB; topics are never auto-created. Anything
 * can be overridden with {@link Builder#brokerProperty(String, String)}.
 *
 * <p>A fatal broker fault makes Kafka exit the JVM; run the broker in a child JVM ({@link #main}) when
 * that must not take the caller down.
 */
public final class EmbeddedKafka implements AutoCloseable {

  /** The KRaft node id of the single node (stored in {@code meta.properties}). */
  public static final int NODE_ID = 1;
  /** Broker/replica/fetch size limit: 64 MiB of record payload plus 1 MiB of batch overhead. */
  public static final int BROKER_MAX_MESSAGE_BYTES = Topics.MAX_MESSAGE_BYTES + (1 << 20);

  static final String CLIENT_LISTENER = "CLIENT";
  static final String INTERNAL_LISTENER = "INTERNAL";
  static final String CONTROLLER_LISTENER = "CONTROLLER";
  private static final int INTERNAL_TOPIC_PARTITIONS = 4;
  private static final int BIND_ATTEMPTS = 3;

  private final Path dataDir;
  private final String host;
  private final int requestedPort;
  private final Map<String, String> saslUsers;
  private final Map<String, String> extraProperties;
  private final Duration startupTimeout;

  private KafkaRaftServer server;
  private int port = -1;
  private boolean closed;
  private Duration startupTime;

  private EmbeddedKafka(Builder b) {
    this.dataDir = Objects.requireNonNull(b.dataDir, "dataDir").toAbsolutePath();
    this.host = b.host;
    this.requestedPort = b.port;
    this.saslUsers = Collections.unmodifiableMap(new LinkedHashMap<>(b.saslUsers));
    this.extraProperties = Collections.unmodifiableMap(new LinkedHashMap<>(b.extraProperties));
    this.startupTimeout = b.startupTimeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Builder; only {@link #dataDir(Path)} is required. */
  public static final class Builder {
    private Path dataDir;
    private String host = "127.0.0.1";
    private int port;
    private final Map<String, String> saslUsers = new LinkedHashMap<>();
    private final Map<String, String> extraProperties = new LinkedHashMap<>();
    private Duration startupTimeout = Duration.ofSeconds(60);

    private Builder() {}

    /** Log and metadata directory; created if missing, formatted only if it has no meta.properties. */
    public Builder dataDir(Path dir) {
      this.dataDir = dir;
      return this;
    }

    /** Address every listener binds to and advertises; default 127.0.0.1 (loopback only). */
    public Builder host(String host) {
      this.host = Objects.requireNonNull(host, "host");
      return this;
    }

    /** Client listener port; 0 (default) picks a free port. */
    public Builder port(int port) {
      if (port < 0 || port > 65535) {
        throw new IllegalArgumentException("port out of range: " + port);
      }
      this.port = port;
      return this;
    }

    /**
     * Username → password for SASL/PLAIN on the client listener. Empty (default) means PLAINTEXT
     * without authentication.
     */
    public Builder saslUsers(Map<String, String> users) {
      this.saslUsers.clear();
      users.forEach((u, p) -> {
        if (u == null || u.isEmpty() || p == null) {
          throw new IllegalArgumentException("SASL user names must be non-empty and passwords non-null");
        }
        this.saslUsers.put(u, p);
      });
      return this;
    }

    /** An extra broker property; overrides the defaults described on {@link EmbeddedKafka}. */
    public Builder brokerProperty(String key, String value) {
      this.extraProperties.put(key, value);
      return this;
    }

    public Builder brokerProperties(Map<String, String> props) {
      this.extraProperties.putAll(props);
      return this;
    }

    /** How long {@link EmbeddedKafka#start()} waits for the broker to answer; default 60 s. */
    public Builder startupTimeout(Duration timeout) {
      this.startupTimeout = Objects.requireNonNull(timeout);
      return this;
    }

    public EmbeddedKafka build() {
      return new EmbeddedKafka(this);
    }
  }

  private static Logger log() {
    // Looked up lazily so that main() can configure slf4j-simple before the first logger exists.
    return LoggerFactory.getLogger(EmbeddedKafka.class);
  }

  /**
   * Formats the storage if needed, starts the broker and blocks until it answers an Admin
   * {@code describeCluster} listing itself.
   *
   * @throws IllegalStateException if already started or closed, or if the broker does not become
   *     ready within the start-up timeout
   */
  public synchronized EmbeddedKafka start() {
    if (closed || server != null) {
      throw new IllegalStateException(closed ? "closed" : "already started");
    }
    long t0 = System.nanoTime();
    try {
      Files.createDirectories(dataDir);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create data dir " + dataDir, e);
    }
    boolean formatted = false;
    for (int attempt = 1; ; attempt++) {
      int clientPort = requestedPort != 0 ? requestedPort : freePort();
      int internalPort = sasl() ? freePort() : -1;
      int controllerPort = freePort();
      KafkaConfig config = KafkaConfig.fromProps(brokerProperties(clientPort, internalPort, controllerPort), false);
      if (!Files.exists(dataDir.resolve("meta.properties"))) {
        format(config);
        formatted = true;
      }
      KafkaRaftServer candidate = new KafkaRaftServer(config, Time.SYSTEM);
      try {
        candidate.startup();
      } catch (RuntimeException e) {
        stopQuietly(candidate);
        // Free ports are picked before binding, so another process may take one in between.
        if (isBindFailure(e) && attempt < BIND_ATTEMPTS) {
          log().warn("embedded Kafka broker could not bind ({}); retrying with other ports", e.toString());
          continue;
        }
        throw e;
      }
      server = candidate;
      port = clientPort;
      break;
    }
    try {
      awaitReady(t0 + startupTimeout.toNanos());
    } catch (RuntimeException e) {
      close();
      throw e;
    }
    startupTime = Duration.ofNanos(System.nanoTime() - t0);
    log().info(String.format(Locale.ROOT,
        "embedded Kafka broker listening on %s (%s) (data dir %s%s) in %.1f s",
        bootstrapServers(), sasl() ? "SASL_PLAINTEXT/PLAIN" : "PLAINTEXT", dataDir,
        formatted ? ", newly formatted" : "", startupTime.toNanos() / 1e9));
    return this;
  }

  private boolean sasl() {
    return !saslUsers.isEmpty();
  }

  /** The broker properties for the given ports (package-private for tests). */
  Properties brokerProperties(int clientPort, int internalPort, int controllerPort) {
    Properties p = new Properties();
    p.put("process.roles", "broker,controller");
    p.put("node.id", Integer.toString(NODE_ID));
    p.put("controller.quorum.voters", NODE_ID + "@" + hostPort(controllerPort));
    p.put("controller.listener.names", CONTROLLER_LISTENER);
    String protocolMap;
    if (sasl()) {
      p.put("listeners", CLIENT_LISTENER + "://" + hostPort(clientPort) + "," + INTERNAL_LISTENER + "://"
          + hostPort(internalPort) + "," + CONTROLLER_LISTENER + "://" + hostPort(controllerPort));
      p.put("advertised.listeners",
          CLIENT_LISTENER + "://" + hostPort(clientPort) + "," + INTERNAL_LISTENER + "://" + hostPort(internalPort));
      p.put("inter.broker.listener.name", INTERNAL_LISTENER);
      protocolMap = CLIENT_LISTENER + ":SASL_PLAINTEXT," + INTERNAL_LISTENER + ":PLAINTEXT,"
          + CONTROLLER_LISTENER + ":PLAINTEXT";
      String prefix = "listener.name." + CLIENT_LISTENER.toLowerCase(Locale.ROOT) + ".";
      p.put(prefix + "sasl.enabled.mechanisms", "PLAIN");
      p.put("sasl.enabled.mechanisms", "PLAIN");
      StringBuilder jaas = new StringBuilder("org.apache.kafka.common.security.plain.PlainLoginModule required");
      saslUsers.forEach((u, pw) -> jaas.append(' ').append("user_").append(u).append("=\"").append(jaasEscape(pw)).append('"'));
      p.put(prefix + "plain.sasl.jaas.config", jaas.append(';').toString());
    } else {
      p.put("listeners", CLIENT_LISTENER + "://" + hostPort(clientPort) + "," + CONTROLLER_LISTENER + "://"
          + hostPort(controllerPort));
      p.put("advertised.listeners", CLIENT_LISTENER + "://" + hostPort(clientPort));
      p.put("inter.broker.listener.name", CLIENT_LISTENER);
      protocolMap = CLIENT_LISTENER + ":PLAINTEXT," + CONTROLLER_LISTENER + ":PLAINTEXT";
    }
    p.put("listener.security.protocol.map", protocolMap);
    p.put("log.dirs", dataDir.toString());
    p.put("metadata.log.dir", dataDir.toString());

    String partitions = Integer.toString(INTERNAL_TOPIC_PARTITIONS);
    p.put("offsets.topic.replication.factor", "1");
    p.put("offsets.topic.num.partitions", partitions);
    p.put("transaction.state.log.replication.factor", "1");
    p.put("transaction.state.log.min.isr", "1");
    p.put("transaction.state.log.num.partitions", partitions);
    p.put("share.coordinator.state.topic.replication.factor", "1");
    p.put("share.coordinator.state.topic.min.isr", "1");
    p.put("share.coordinator.state.topic.num.partitions", partitions);
    p.put("default.replication.factor", "1");
    p.put("min.insync.replicas", "1");
    p.put("num.partitions", "1");
    p.put("auto.create.topics.enable", "false");

    p.put("group.initial.rebalance.delay.ms", "0");
    p.put("group.streams.initial.rebalance.delay.ms", "0");

    String maxBytes = Integer.toString(BROKER_MAX_MESSAGE_BYTES);
    p.put("message.max.bytes", maxBytes);
    p.put("replica.fetch.max.bytes", maxBytes);
    p.put("fetch.max.bytes", maxBytes);
    p.put("log.cleaner.dedupe.buffer.size", Integer.toString(8 << 20));
    p.put("log.segment.bytes", Integer.toString(128 << 20));
    p.put("log.index.size.max.bytes", Integer.toString(1 << 20));
    p.put("num.network.threads", "2");
    p.put("num.io.threads", "4");
    p.put("background.threads", "4");
    p.putAll(extraProperties);
    return p;
  }

  private String hostPort(int port) {
    return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
  }

  private static String jaasEscape(String s) {
    return s.replace("\\", "\\\\").replace("\"", "\\\"");
  }

  private void format(KafkaConfig config) {
    Formatter formatter = new Formatter()
        .setPrintStream(new PrintStream(OutputStream.nullOutputStream()))
        .setNodeId(NODE_ID)
        .setClusterId(Uuid.randomUuid().toString())
        .setReleaseVersion(MetadataVersion.LATEST_PRODUCTION)
        .setUnstableFeatureVersionsEnabled(false)
        .setIgnoreFormatted(true)
        .setControllerListenerName(CONTROLLER_LISTENER)
        .setMetadataLogDirectory(config.metadataLogDir())
        .setHasDynamicQuorum(false)
        .setWriteBootstrapSnapshot(true);
    formatter.addDirectory(dataDir.toString());
    try {
      formatter.run();
    } catch (Exception e) {
      throw new IllegalStateException("formatting Kafka storage in " + dataDir + " failed: " + e.getMessage(), e);
    }
  }

  private void awaitReady(long deadlineNanos) {
    Properties props = clientProperties();
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
    props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "50");
    Exception last = null;
    try (Admin admin = Admin.create(props)) {
      while (System.nanoTime() < deadlineNanos) {
        try {
          long leftMs = Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime()));
          var nodes = admin.describeCluster().nodes().get(leftMs, TimeUnit.MILLISECONDS);
          for (Node n : nodes) {
            if (n.id() == NODE_ID) {
              return;
            }
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("interrupted while waiting for the broker", e);
        } catch (Exception e) {
          last = e;
        }
        try {
          Thread.sleep(50);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("interrupted while waiting for the broker", e);
        }
      }
    }
    throw new IllegalStateException("embedded Kafka broker on " + hostPort(port) + " did not answer within "
        + startupTimeout.toSeconds() + " s", last);
  }

  /** {@code host:port} of the client listener; valid after {@link #start()}. */
  public synchronized String bootstrapServers() {
    if (port < 0) {
      throw new IllegalStateException("not started");
    }
    return hostPort(port);
  }

  /** The client listener port; valid after {@link #start()}. */
  public synchronized int port() {
    if (port < 0) {
      throw new IllegalStateException("not started");
    }
    return port;
  }

  public Path dataDir() {
    return dataDir;
  }

  /** Wall time of the last successful {@link #start()}, or null. */
  public synchronized Duration startupTime() {
    return startupTime;
  }

  /** The SASL users (empty when the client listener is PLAINTEXT). */
  public Map<String, String> saslUsers() {
    return saslUsers;
  }

  /**
   * What a client needs to connect: {@code bootstrap.servers}, and with SASL the security protocol,
   * mechanism and JAAS config of the first configured user.
   */
  public Properties clientProperties() {
    return sasl() ? clientProperties(saslUsers.keySet().iterator().next()) : clientProperties(null, null);
  }

  /** As {@link #clientProperties()}, authenticating as {@code user} (must be a configured user). */
  public Properties clientProperties(String user) {
    if (!saslUsers.containsKey(user)) {
      throw new IllegalArgumentException("no SASL user " + user + " configured");
    }
    return clientProperties(user, saslUsers.get(user));
  }

  /**
   * Client properties with explicit credentials (any, to test rejection); {@code user == null} gives
   * a plain {@code bootstrap.servers}-only configuration.
   */
  public Properties clientProperties(String user, String password) {
    Properties p = new Properties();
    p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
    if (user != null) {
      p.putAll(saslPlainClientConfig(user, password));
    }
    return p;
  }

  /** Client settings for SASL/PLAIN over plaintext (security.protocol, mechanism, JAAS config). */
  public static Map<String, String> saslPlainClientConfig(String user, String password) {
    Map<String, String> m = new LinkedHashMap<>();
    m.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_PLAINTEXT");
    m.put(SaslConfigs.SASL_MECHANISM, "PLAIN");
    m.put(SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
        + jaasEscape(user) + "\" password=\"" + jaasEscape(password) + "\";");
    return m;
  }

  /** Shuts the broker down and waits for it; idempotent. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (server == null) {
      return;
    }
    long t0 = System.nanoTime();
    stopQuietly(server);
    server = null;
    log().info(String.format(Locale.ROOT, "embedded Kafka broker on %s stopped in %.1f s", hostPort(port),
        (System.nanoTime() - t0) / 1e9));
  }

  private static void stopQuietly(KafkaRaftServer s) {
    try {
      s.shutdown();
      s.awaitShutdown();
    } catch (RuntimeException e) {
      log().warn("error while stopping the embedded Kafka broker", e);
    }
  }

  private static boolean isBindFailure(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof BindException || String.valueOf(t.getMessage()).contains("failed to bind")) {
        return true;
      }
    }
    return false;
  }

  private int freePort() {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName(host))) {
      s.setReuseAddress(true);
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free port on " + host, e);
    }
  }

  /**
   * Runs the broker as a process: {@code --data-dir DIR [--port N] [--host H] [--sasl-users
   * user:pass,...] [--broker-property key=value]... [--exit-on-stdin-eof]}. Prints one line
   * {@code READY <bootstrap>} on stdout once the broker answers; logs go to stderr. SIGTERM (or, with
   * {@code --exit-on-stdin-eof}, the parent closing stdin) shuts it down cleanly via a shutdown hook.
   */
  public static void main(String[] args) {
    setIfAbsent("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    setIfAbsent("org.slf4j.simpleLogger.log.kafka", "warn");
    setIfAbsent("org.slf4j.simpleLogger.log.org.apache.kafka", "warn");
    setIfAbsent("org.slf4j.simpleLogger.log.io.flatmon", "info");
    setIfAbsent("org.slf4j.simpleLogger.showDateTime", "true");
    int exit = new CommandLine(new ChildProcess()).execute(args);
    if (exit != 0) {
      System.exit(exit);
    }
  }

  /** The command line of {@link #main}: the broker in a child JVM, started by {@link BrokerProcess}. */
  @Command(name = "EmbeddedKafka", description = "Runs a single-node KRaft broker until SIGTERM and prints"
      + " READY <bootstrap> on stdout once it answers.")
  static final class ChildProcess implements Callable<Integer> {
    @Spec
    CommandSpec spec;
    @Option(names = "--data-dir", required = true, description = "Directory of the log and metadata.")
    Path dataDir;
    @Option(names = "--port", description = "Listener port (default: a free one).")
    Integer port;
    @Option(names = "--host", description = "Listener address (default: 127.0.0.1).")
    String host;
    @Option(names = "--sasl-users", paramLabel = "user:pass[,user:pass...]",
        description = "SASL/PLAIN users; the listener is PLAINTEXT without them.")
    String saslUsers;
    @Option(names = "--broker-property", paramLabel = "key=value", description = "Extra broker property.")
    Map<String, String> brokerProperties = new LinkedHashMap<>();
    @Option(names = "--exit-on-stdin-eof", description = "Shut down when the parent closes stdin.")
    boolean exitOnStdinEof;

    @Override
    public Integer call() throws Exception {
      Builder b = builder().dataDir(dataDir);
      if (port != null) {
        b.port(port);
      }
      if (host != null) {
        b.host(host);
      }
      if (saslUsers != null) {
        try {
          b.saslUsers(parseUsers(saslUsers));
        } catch (IllegalArgumentException e) {
          throw new ParameterException(spec.commandLine(), e.getMessage());
        }
      }
      brokerProperties.forEach(b::brokerProperty);
      EmbeddedKafka kafka = b.build();
      CountDownLatch stopped = new CountDownLatch(1);
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        kafka.close();
        stopped.countDown();
      }, "embedded-kafka-shutdown"));
      kafka.start();
      System.out.println("READY " + kafka.bootstrapServers());
      System.out.flush();
      if (exitOnStdinEof) {
        Thread t = new Thread(() -> {
          try {
            while (System.in.read() >= 0) {
              // drain until the parent closes the pipe
            }
          } catch (IOException ignored) {
            // treat as EOF
          }
          System.exit(0);
        }, "embedded-kafka-stdin-watch");
        t.setDaemon(true);
        t.start();
      }
      stopped.await();
      return 0;
    }
  }

  private static void setIfAbsent(String key, String value) {
    if (System.getProperty(key) == null) {
      System.setProperty(key, value);
    }
  }

  static Map<String, String> parseUsers(String spec) {
    Map<String, String> users = new LinkedHashMap<>();
    List<String> bad = new ArrayList<>();
    for (String pair : spec.split(",")) {
      int c = pair.indexOf(':');
      if (c <= 0) {
        bad.add(pair);
      } else {
        users.put(pair.substring(0, c), pair.substring(c + 1));
      }
    }
    if (!bad.isEmpty() || users.isEmpty()) {
      throw new IllegalArgumentException("--sasl-users needs user:pass[,user:pass...], got " + spec);
    }
    return users;
  }
}
