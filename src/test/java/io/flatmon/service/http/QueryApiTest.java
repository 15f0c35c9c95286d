package io.flatmon.service.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.QueryError;
import io.flatmon.proto.v1.ResultList;
import io.flatmon.proto.v1.RunList;
import io.flatmon.proto.v1.RunPhase;
import io.flatmon.proto.v1.RunSummary;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.FlatmonTopology;
import io.flatmon.stream.it.ResultsReader;
import io.flatmon.stream.it.Services;
import io.flatmon.stream.it.TelemetryFixtures;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyQueryMetadata;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The query API with run ids containing +, /, %, spaces, quotes and non-ASCII, on one instance and
 * then on two (/runs aggregated, a run's queries forwarded to its owner): every id reaches its own
 * run, exactly.
 */
class QueryApiTest {
  static final String[] IDS = {"a+b", "resnet/lr=0.1+wd", "50%", "100%25", "run 7", "say \"hi\"", "it's",
      "Läufe-ü", "训练-1", "emoji-\uD83D\uDE80", "a?b#c&d=e", "..", "back\\slash", "a b+c/d%e"};
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  @TempDir
  Path dir;

  @Test
  void awkwardRunIdsOnOneAndTwoInstances() throws Exception {
    List<List<TelemetryRecord>> runs = new ArrayList<>();
    for (int i = 0; i < IDS.length; i++) {
      List<TelemetryRecord> run = TelemetryFixtures.smallRun(IDS[i], i);
      runs.add(i % 2 == 0 ? run : run.subList(0, run.size() - 1)); // odd ones stay live (no RunEnded)
    }
    List<TelemetryRecord> records = TelemetryFixtures.interleave(runs);
    int expectedFinals = TelemetryFixtures.expectedFinals(records);
    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start()) {
      Properties client = kafka.clientProperties();
      String app = Services.applicationId("query");
      long t0 = System.nanoTime();
      try (FlatmonService a = start(kafka, "a", app)) {
        try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client);
            ResultsReader results = ResultsReader.results(client)) {
          TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records));
          results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(120),
              () -> results.finalCount() + " of " + expectedFinals + " finals");
        }
        System.out.println("QueryApiTest: " + IDS.length + " runs measured by one instance after " + Services.since(t0));
        check(List.of(a));
        healthzBesideSlowConnections(a.httpPort());

        try (FlatmonService b = start(kafka, "b", app)) {
          awaitShared(a, b);
          Map<String, Integer> owners = owners(a, b);
          System.out.println("QueryApiTest: two instances after " + Services.since(t0) + "; owners " + owners);
          assertTrue(owners.containsValue(a.httpPort()) && owners.containsValue(b.httpPort()),
              "each instance owns some of the runs, so some queries are forwarded: " + owners);
          check(List.of(a, b));
        }
      }
    }
  }

  /** Every instance answers /runs with all runs, and every run's latest and history, whoever owns it. */
  private static void check(List<FlatmonService> instances) throws Exception {
    for (FlatmonService s : instances) {
      RunList list = awaitRunList(s.httpPort());
      assertEquals(List.of(), list.getUnreachableInstancesList());
      Map<String, RunSummary> byId = new HashMap<>();
      list.getRunsList().forEach(r -> byId.put(r.getRunId(), r));
      assertEquals(new TreeSet<>(List.of(IDS)), new TreeSet<>(byId.keySet()));
      for (int i = 0; i < IDS.length; i++) {
        RunSummary r = byId.get(IDS[i]);
        assertEquals(i % 2 == 0 ? RunPhase.ENDED : RunPhase.LIVE, r.getState(), r.toString());
        assertEquals(i % 2 == 0, r.hasEnded(), r.toString());
        assertEquals("synthetic " + IDS[i], r.getDisplayName());

        ResultList latest = get(s.httpPort(), "/runs/" + encode(IDS[i]) + "/latest", 200, ResultList.newBuilder()).build();
        assertEquals(IDS[i], latest.getRunId());
        assertEquals(4, latest.getResultsCount(), IDS[i] + ": latest per (layer, split)");
        Set<String> seen = new HashSet<>();
        for (FlatnessResult f : latest.getResultsList()) {
          assertEquals(IDS[i], f.getRunId());
          assertEquals(200, f.getStep());
          assertTrue(seen.add(f.getLayer() + "/" + f.getSplit()));
        }
        ResultList history = get(s.httpPort(), "/runs/" + encode(IDS[i]) + "/history?steps=1", 200,
            ResultList.newBuilder()).build();
        assertEquals(4, history.getResultsCount(), IDS[i]);
        String id = IDS[i];
        assertTrue(history.getResultsList().stream().allMatch(f -> f.getRunId().equals(id) && f.getStep() == 200));
      }
      // A run id outside the grammar is a 400; a valid but unknown one a 404.
      assertEquals(400, get(s.httpPort(), "/runs/a%0Ab/latest", 400, QueryError.newBuilder()).getStatus());
      assertEquals(400, get(s.httpPort(), "/runs/victim%1Fx/history", 400, QueryError.newBuilder()).getStatus());
      assertEquals(400, get(s.httpPort(), "/runs/" + "x".repeat(129) + "/latest", 400, QueryError.newBuilder()).getStatus());
      assertEquals(404, get(s.httpPort(), "/runs/no-such-run/latest", 404, QueryError.newBuilder()).getStatus());
      assertEquals(400, get(s.httpPort(), "/runs/a+b/history?steps=0", 400, QueryError.newBuilder()).getStatus());
      assertEquals(400, get(s.httpPort(), "/runs/a+b/history?steps=x", 400, QueryError.newBuilder()).getStatus());
    }
  }

  /** Four connections that never finish their headers leave /healthz and /runs answering within 1 s. */
  private static void healthzBesideSlowConnections(int port) throws Exception {
    List<java.net.Socket> held = new ArrayList<>();
    try {
      for (int i = 0; i < 4; i++) {
        java.net.Socket s = new java.net.Socket("127.0.0.1", port);
        s.getOutputStream().write("GET /runs HTTP/1.1\r\nHost: x\r\n".getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().flush();
        held.add(s);
      }
      for (String path : new String[] {"/healthz", "/runs", "/healthz"}) {
        long t0 = System.nanoTime();
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
            .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertEquals(200, r.statusCode(), path);
        assertTrue(seconds < 1.0, path + " took " + seconds + " s beside 4 slow connections");
      }
    } finally {
      for (java.net.Socket s : held) {
        s.close();
      }
    }
  }

  /**
   * Percent-encodes a path segment: everything but unreserved characters and the sub-delimiters
   * RFC 3986 allows raw in a path (so {@code +} and {@code =} are sent as they are).
   */
  static String encode(String segment) {
    StringBuilder b = new StringBuilder();
    for (byte x : segment.getBytes(StandardCharsets.UTF_8)) {
      char c = (char) (x & 0xff);
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "-._~!$&'()*+,;=:@".indexOf(c) >= 0) {
        b.append(c);
      } else {
        b.append(String.format("%%%02X", (int) c));
      }
    }
    return b.toString();
  }

  private static <B extends com.google.protobuf.Message.Builder> B get(int port, String rawPath, int status, B builder)
      throws Exception {
    HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + rawPath))
        .timeout(Duration.ofSeconds(15)).GET().build(), HttpResponse.BodyHandlers.ofString());
    assertEquals(status, r.statusCode(), rawPath + ": " + r.body());
    assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
    return Json.parse(r.body(), builder);
  }

  /** /runs once every instance's stores are queryable (after a rebalance they restore first). */
  private static RunList awaitRunList(int port) throws Exception {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    while (true) {
      HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/runs"))
          .timeout(Duration.ofSeconds(15)).GET().build(), HttpResponse.BodyHandlers.ofString());
      if (r.statusCode() == 200) {
        RunList list = Json.parse(r.body(), RunList.newBuilder()).build();
        if (list.getRunsCount() == IDS.length && list.getUnreachableInstancesCount() == 0) {
          return list;
        }
      }
      assertTrue(System.nanoTime() < deadline, "/runs did not list every run: " + r.statusCode() + " " + r.body());
      Thread.sleep(250);
    }
  }

  private FlatmonService start(EmbeddedKafka kafka, String name, String app) throws Exception {
    return Services.start(Services.config(kafka.bootstrapServers(), dir.resolve(name), app, 4,
        Services.fastFailover()));
  }

  private static void awaitShared(FlatmonService a, FlatmonService b) throws InterruptedException {
    long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
    while (!(a.streams().state() == KafkaStreams.State.RUNNING && b.streams().state() == KafkaStreams.State.RUNNING
        && active(a) > 0 && active(b) > 0 && active(a) + active(b) == 4)) {
      assertTrue(System.nanoTime() < deadline, "the instances did not share the 4 tasks");
      Thread.sleep(200);
    }
  }

  private static int active(FlatmonService s) {
    return s.streams().metadataForLocalThreads().stream().mapToInt(t -> t.activeTasks().size()).sum();
  }

  private static Map<String, Integer> owners(FlatmonService a, FlatmonService b) {
    Map<String, Integer> out = new HashMap<>();
    for (String id : IDS) {
      KeyQueryMetadata md = a.streams().queryMetadataForKey(FlatmonTopology.RUN_STORE, id, Serdes.String().serializer());
      out.put(id, md.activeHost().port());
    }
    return out;
  }
}
