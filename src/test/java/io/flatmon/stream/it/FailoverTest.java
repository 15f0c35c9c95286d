package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.ThreadMetadata;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two instances share the work (same application id, 4 partitions); one is stopped mid-stream and
 * the survivor completes every run: all finals present, unique and equal to the offline values.
 */
class FailoverTest {
  private static final int RUNS = 16;

  @TempDir
  Path dir;

  @Test
  void survivorCompletesEveryRunAfterTheOtherInstanceStops() throws Exception {
    List<List<TelemetryRecord>> runs = new ArrayList<>();
    for (int i = 0; i < RUNS; i++) {
      runs.add(TelemetryFixtures.smallRun(String.format("failover-%02d", i), 300 + i));
    }
    List<TelemetryRecord> records = TelemetryFixtures.interleave(runs);
    int expectedFinals = TelemetryFixtures.expectedFinals(records);
    int split = records.size() / 2;

    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start()) {
      Properties client = kafka.clientProperties();
      String applicationId = Services.applicationId("failover");
      long t0 = System.nanoTime();
      // Start both at once: each start is mostly waiting (rebalance), so they overlap well.
      CompletableFuture<FlatmonService> startA = CompletableFuture.supplyAsync(() -> start(kafka, "a", applicationId));
      CompletableFuture<FlatmonService> startB = CompletableFuture.supplyAsync(() -> start(kafka, "b", applicationId));
      FlatmonService a = startA.join();
      try (FlatmonService b = startB.join()) {
        try {
          awaitBothActive(a, b);
          System.out.println("FailoverTest: two instances sharing the work after " + Services.since(t0));
          try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client);
              ResultsReader results = ResultsReader.results(client)) {
            TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records.subList(0, split)));
            results.pollUntil(r -> r.records().size() >= 20, Duration.ofSeconds(90),
                () -> results.records().size() + " results so far");
            long t1 = System.nanoTime();
            a.close();
            System.out.println("FailoverTest: instance a closed in " + Services.since(t1));
            TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records.subList(split, records.size())));
            var offline = TelemetryFixtures.offlineAsync(dir.resolve("failover.pb"), records);
            results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(120),
                () -> results.finalCount() + " of " + expectedFinals + " finals; survivor "
                    + tasks(b.streams()));
            results.drainToEnd(Duration.ofSeconds(30));
            System.out.println("FailoverTest: survivor completed every run " + Services.since(t1)
                + " after the stop");
            assertEquals(4, activeTasks(b.streams()), "the survivor owns every partition: " + tasks(b.streams()));

            List<FlatnessResult> finals = results.finals();
            assertEquals(expectedFinals, finals.size());
            TelemetryFixtures.assertFinalsEqualOffline(offline.join(), finals);
            try (ResultsReader dead = ResultsReader.deadLetter(client)) {
              dead.drainToEnd(Duration.ofSeconds(10));
              assertEquals(List.of(), dead.rejected(), "nothing rejected");
            }
          }
        } finally {
          a.close();
        }
      }
    }
  }

  private FlatmonService start(EmbeddedKafka kafka, String name, String applicationId) {
    try {
      return Services.start(Services.config(kafka.bootstrapServers(), dir.resolve(name), applicationId, 4,
          Services.fastFailover()));
    } catch (Exception e) {
      throw new IllegalStateException("instance " + name + " did not start: " + e, e);
    }
  }

  private static void awaitBothActive(FlatmonService a, FlatmonService b) throws InterruptedException {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    while (!(a.streams().state() == KafkaStreams.State.RUNNING && b.streams().state() == KafkaStreams.State.RUNNING
        && activeTasks(a.streams()) > 0 && activeTasks(b.streams()) > 0
        && activeTasks(a.streams()) + activeTasks(b.streams()) == 4)) {
      assertTrue(System.nanoTime() < deadline, "the two instances did not share the 4 tasks: a "
          + tasks(a.streams()) + ", b " + tasks(b.streams()));
      Thread.sleep(200);
    }
  }

  private static int activeTasks(KafkaStreams streams) {
    return streams.metadataForLocalThreads().stream().mapToInt(t -> t.activeTasks().size()).sum();
  }

  private static String tasks(KafkaStreams streams) {
    List<String> out = new ArrayList<>();
    for (ThreadMetadata t : streams.metadataForLocalThreads()) {
      t.activeTasks().forEach(task -> out.add(task.taskId().toString()));
    }
    return streams.state() + " " + out;
  }
}
