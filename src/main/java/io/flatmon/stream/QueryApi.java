package io.flatmon.stream;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RunState;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.function.Function;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyQueryMetadata;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsMetadata;
import org.apache.kafka.streams.state.HostInfo;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP JSON query API, served by every instance on the same port as /metrics:
 *
 * <pre>
 * GET /runs[?all=1]               live runs of the whole application (all=1: ended ones too)
 * GET /runs/{run}/latest          latest result per (layer, split) of a run
 * GET /runs/{run}/history?steps=N final results of the run's last N steps (default 20)
 * GET /healthz                    the Kafka Streams state of this instance
 * </pre>
 *
 * A run's state lives on the instance that owns its partition: Kafka Streams' metadata names it, and
 * the request is forwarded there (one hop, marked so it is never forwarded again).
 */
public final class QueryApi implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(QueryApi.class);
  private static final String LOCAL = "local=1";
  private static final JsonFormat.Printer JSON = JsonFormat.printer().preservingProtoFieldNames()
      .omittingInsignificantWhitespace();

  private volatile KafkaStreams streams;
  private volatile HostInfo self;
  private final HttpServer server;
  private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  /** Binds the port (0: any free one); queries answer 503 until {@link #attach} is called. */
  public QueryApi(InetSocketAddress bindAddress) throws IOException {
    this.server = HttpServer.create(bindAddress, 64);
    server.setExecutor(Executors.newFixedThreadPool(4, r -> {
      Thread t = new Thread(r, "flatmon-http");
      t.setDaemon(true);
      return t;
    }));
    server.createContext("/runs", this::runs);
    server.createContext("/healthz", ex -> {
      KafkaStreams.State state = streams == null ? null : streams.state();
      boolean ready = state == KafkaStreams.State.RUNNING || state == KafkaStreams.State.REBALANCING;
      respond(ex, ready ? 200 : 503, "{\"state\":\"" + (state == null ? "STARTING" : state) + "\"}");
    });
  }

  /**
   * @param self the host:port advertised as application.server (where other instances reach this one)
   */
  public void attach(KafkaStreams streams, HostInfo self) {
    this.streams = streams;
    this.self = self;
  }

  /** Adds another handler (e.g. /metrics) to the same server. */
  public void addContext(String path, com.sun.net.httpserver.HttpHandler handler) {
    server.createContext(path, handler);
  }

  public void start() {
    server.start();
  }

  public int port() {
    return server.getAddress().getPort();
  }

  private void runs(HttpExchange ex) throws IOException {
    if (streams == null) {
      respond(ex, 503, error("starting"));
      return;
    }
    try {
      String path = ex.getRequestURI().getPath();
      String query = ex.getRequestURI().getRawQuery() == null ? "" : ex.getRequestURI().getRawQuery();
      boolean local = query.contains(LOCAL);
      String[] parts = path.split("/");
      if (parts.length == 2) {
        boolean all = query.contains("all=1");
        respond(ex, 200, local ? localRuns(all) : allRuns(all));
        return;
      }
      if (parts.length != 4 || !(parts[3].equals("latest") || parts[3].equals("history"))) {
        respond(ex, 404, error("unknown path " + path + "; try /runs, /runs/RUN/latest, /runs/RUN/history?steps=N"));
        return;
      }
      String run = URLDecoder.decode(parts[2], StandardCharsets.UTF_8);
      int steps = intParam(query, "steps", 20);
      if (!local) {
        KeyQueryMetadata md = streams.queryMetadataForKey(FlatmonTopology.RUN_STORE, run,
            Serdes.String().serializer());
        if (md == null || md == KeyQueryMetadata.NOT_AVAILABLE) {
          respond(ex, 503, error("the application is rebalancing; retry shortly"));
          return;
        }
        if (!md.activeHost().equals(self)) {
          respond(ex, 200, fetch(md.activeHost(), path + "?" + LOCAL + "&steps=" + steps));
          return;
        }
      }
      respond(ex, 200, parts[3].equals("latest") ? latest(run) : history(run, steps));
    } catch (RuntimeException e) {
      LOG.warn("query {} failed", ex.getRequestURI(), e);
      respond(ex, 503, error(e.toString()));
    }
  }

  private String allRuns(boolean includeEnded) throws IOException {
    List<String> items = new ArrayList<>();
    for (StreamsMetadata md : streams.streamsMetadataForStore(FlatmonTopology.RUN_STORE)) {
      String body = md.hostInfo().equals(self) ? localRuns(includeEnded)
          : fetch(md.hostInfo(), "/runs?" + LOCAL + (includeEnded ? "&all=1" : ""));
      String inner = body.strip();
      if (inner.length() > 2) {
        items.add(inner.substring(1, inner.length() - 1));
      }
    }
    return "[" + String.join(",", items) + "]";
  }

  private String localRuns(boolean includeEnded) {
    List<String> items = new ArrayList<>();
    forEach(FlatmonTopology.RUN_STORE, null, bytes -> {
      try {
        RunState r = RunState.parseFrom(bytes);
        if (r.getEnded() && !includeEnded) {
          return null;
        }
        return String.format("{\"run_id\":%s,\"ended\":%s,\"layers\":%s,\"open_measurements\":%d,"
                + "\"last_seen_ms\":%d,\"instance\":%s}", quote(r.getRunId()), r.getEnded(),
            r.getLayersList().stream().map(QueryApi::quote).toList(), r.getOpenMeasurementsCount(),
            r.getLastSeenMs(), quote(self.host() + ":" + self.port()));
      } catch (InvalidProtocolBufferException e) {
        return null;
      }
    }, items);
    return "[" + String.join(",", items) + "]";
  }

  private String latest(String run) {
    List<String> items = new ArrayList<>();
    forEach(FlatmonTopology.LATEST_STORE, StateKeys.runPrefix(run), QueryApi::resultJson, items);
    return "[" + String.join(",", items) + "]";
  }

  private String history(String run, int steps) {
    TreeMap<Long, List<String>> byStep = new TreeMap<>(Comparator.reverseOrder());
    List<FlatnessResult> results = new ArrayList<>();
    forEach(FlatmonTopology.HISTORY_STORE, StateKeys.runPrefix(run), bytes -> {
      try {
        results.add(FlatnessResult.parseFrom(bytes));
      } catch (InvalidProtocolBufferException e) {
        // skipped
      }
      return null;
    }, new ArrayList<>());
    for (FlatnessResult r : results) {
      byStep.computeIfAbsent(r.getStep(), s -> new ArrayList<>()).add(resultJson(r.toByteArray()));
    }
    List<String> items = new ArrayList<>();
    byStep.entrySet().stream().limit(steps).forEach(e -> items.addAll(e.getValue()));
    return "[" + String.join(",", items) + "]";
  }

  private void forEach(String storeName, String prefix, Function<byte[], String> render, List<String> out) {
    ReadOnlyKeyValueStore<String, byte[]> store = streams.store(
        StoreQueryParameters.fromNameAndType(storeName, QueryableStoreTypes.<String, byte[]>keyValueStore()));
    try (KeyValueIterator<String, byte[]> it = prefix == null ? store.all()
        : store.prefixScan(prefix, Serdes.String().serializer())) {
      while (it.hasNext()) {
        String s = render.apply(it.next().value);
        if (s != null) {
          out.add(s);
        }
      }
    }
  }

  private static String resultJson(byte[] bytes) {
    try {
      return JSON.print(FlatnessResult.parseFrom(bytes));
    } catch (InvalidProtocolBufferException e) {
      return null;
    }
  }

  private String fetch(HostInfo host, String pathAndQuery) throws IOException {
    HttpRequest request = HttpRequest.newBuilder(URI.create("http://" + host.host() + ":" + host.port() + pathAndQuery))
        .timeout(Duration.ofSeconds(5)).GET().build();
    try {
      HttpResponse<String> r = client.send(request, HttpResponse.BodyHandlers.ofString());
      if (r.statusCode() != 200) {
        throw new IOException("instance " + host + " answered " + r.statusCode() + ": " + r.body());
      }
      return r.body();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
  }

  private static int intParam(String query, String name, int fallback) {
    for (String kv : query.split("&")) {
      String[] p = kv.split("=", 2);
      if (p.length == 2 && p[0].equals(name)) {
        try {
          return Math.max(1, Integer.parseInt(p[1]));
        } catch (NumberFormatException e) {
          return fallback;
        }
      }
    }
    return fallback;
  }

  static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }

  private static String error(String message) {
    return "{\"error\":" + quote(message) + "}";
  }

  static void respond(HttpExchange ex, int status, String body) throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "application/json; charset=utf-8");
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
