package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.util.JsonFormat;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * 50 concurrent runs × 2 layers, interleaved on one producer, through the service with its own
 * embedded broker: every final result equals `flatmon compute` over the same records, and the query
 * API answers for every run.
 */
class ConcurrentRunsTest {
  private static final int RUNS = 50;

  @TempDir
  Path dir;

  @Test
  void everyFinalOfFiftyInterleavedRunsEqualsOfflineCompute() throws Exception {
    List<List<TelemetryRecord>> runs = new ArrayList<>();
    for (int i = 0; i < RUNS; i++) {
      runs.add(TelemetryFixtures.smallRun(String.format("run-%02d", i), i));
    }
    List<TelemetryRecord> records = TelemetryFixtures.interleave(runs);
    int expectedFinals = TelemetryFixtures.expectedFinals(records);
    assertEquals(RUNS * 2 * 2 * 2, expectedFinals);
    long batches = records.stream().filter(TelemetryRecord::hasActivationBatch).count();

    long t0 = System.nanoTime();
    try (FlatmonService service = Services.start(Services.config(null, dir.resolve("flatmon"),
        Services.applicationId("concurrent"), 4, Map.of()))) {
      System.out.println("ConcurrentRunsTest: service with embedded broker up in " + Services.since(t0));
      var client = Services.bootstrap(service.bootstrapServers());
      long t1 = System.nanoTime();
      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records));
      }
      var offline = TelemetryFixtures.offlineAsync(dir.resolve("runs.pb"), records);
      ResultsReader results = ResultsReader.results(client);
      try (results) {
        results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(120),
            () -> results.finalCount() + " of " + expectedFinals + " finals, " + results.records().size()
                + " results");
        results.drainToEnd(Duration.ofSeconds(30));
      }
      System.out.println("ConcurrentRunsTest: " + records.size() + " records → " + results.records().size()
          + " results in " + Services.since(t1));
      List<FlatnessResult> all = results.results();
      assertEquals(batches, all.stream().filter(r -> !r.getFinal()).count(), "one running result per batch");
      List<FlatnessResult> finals = results.finals();
      assertEquals(expectedFinals, finals.size());
      try (ResultsReader dead = ResultsReader.deadLetter(client)) {
        dead.drainToEnd(Duration.ofSeconds(10));
        assertEquals(List.of(), dead.rejected(), "nothing rejected");
      }

      TelemetryFixtures.assertFinalsEqualOffline(offline.join(), finals);

      checkQueryApi(service.httpPort(), TelemetryFixtures.uniqueByKey(finals));
    }
  }

  private static void checkQueryApi(int port, Map<String, FlatnessResult> finals) throws Exception {
    // Every run has ended: /runs lists them while they are retained, with their state and end time.
    JsonArray runs = JsonParser.parseString(Services.get(port, "/runs")).getAsJsonObject().getAsJsonArray("runs");
    Set<String> ids = new TreeSet<>();
    for (JsonElement e : runs) {
      JsonObject run = e.getAsJsonObject();
      ids.add(run.get("run_id").getAsString());
      assertEquals("ENDED", run.get("state").getAsString(), run.toString());
      assertTrue(run.has("ended"), run.toString());
      assertEquals(0, run.get("open_measurements").getAsInt(), run.toString());
      assertEquals(Set.of("layer4.relu", "layer4.gelu"), strings(run.getAsJsonArray("layers")), run.toString());
    }
    Set<String> expectedIds = new TreeSet<>();
    for (int i = 0; i < RUNS; i++) {
      expectedIds.add(String.format("run-%02d", i));
    }
    assertEquals(expectedIds, ids, "/runs lists every run once");

    String run = "run-07";
    List<FlatnessResult> latest = parseResults(Services.get(port, "/runs/" + run + "/latest"));
    assertEquals(4, latest.size(), "latest per (layer, split)");
    Set<String> seen = new HashSet<>();
    for (FlatnessResult r : latest) {
      assertEquals(run, r.getRunId());
      assertEquals(200, r.getStep(), "the latest result is of the last step");
      assertTrue(r.getFinal());
      assertTrue(seen.add(r.getLayer() + "/" + r.getSplit()));
      TelemetryFixtures.assertSameValues(finals.get(TelemetryFixtures.key(r)), r);
    }

    List<FlatnessResult> history = parseResults(Services.get(port, "/runs/" + run + "/history?steps=2"));
    assertEquals(8, history.size(), "2 steps × 2 layers × 2 splits");
    assertEquals(Set.of(100L, 200L), new HashSet<>(history.stream().map(FlatnessResult::getStep).toList()));
    for (FlatnessResult r : history) {
      assertTrue(r.getFinal());
      TelemetryFixtures.assertSameValues(finals.get(TelemetryFixtures.key(r)), r);
    }
    List<FlatnessResult> last = parseResults(Services.get(port, "/runs/" + run + "/history?steps=1"));
    assertEquals(4, last.size());
    assertTrue(last.stream().allMatch(r -> r.getStep() == 200));

    assertThrows(AssertionError.class, () -> Services.get(port, "/runs/no-such-run/latest"), "404");
    assertFalse(Services.get(port, "/healthz").isEmpty());
  }

  private static Set<String> strings(JsonArray a) {
    Set<String> out = new HashSet<>();
    a.forEach(e -> out.add(e.getAsString()));
    return out;
  }

  private static List<FlatnessResult> parseResults(String json) throws Exception {
    List<FlatnessResult> out = new ArrayList<>();
    for (JsonElement e : JsonParser.parseString(json).getAsJsonObject().getAsJsonArray("results")) {
      FlatnessResult.Builder b = FlatnessResult.newBuilder();
      JsonFormat.parser().merge(e.toString(), b);
      out.add(b.build());
    }
    return out;
  }
}
