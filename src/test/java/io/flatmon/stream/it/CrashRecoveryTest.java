package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.wire.Topics;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Streams instance is a child JVM killed with SIGKILL mid-stream and restarted on the same data
 * dir and application id: under read_committed every (run, layer, step, split) has exactly one final
 * result, every batch exactly one running result, and the values equal an undisturbed (offline) run.
 */
class CrashRecoveryTest {
  private static final int RUNS = 20;
  private static final Duration START = Duration.ofSeconds(90);

  @TempDir
  Path dir;

  @Test
  void killedInstanceRestartsWithoutDuplicateOrWrongFinals() throws Exception {
    List<List<TelemetryRecord>> runs = new ArrayList<>();
    for (int i = 0; i < RUNS; i++) {
      runs.add(TelemetryFixtures.smallRun(String.format("crash-%02d", i), 100 + i));
    }
    List<TelemetryRecord> records = TelemetryFixtures.interleave(runs);
    int expectedFinals = TelemetryFixtures.expectedFinals(records);
    long batches = records.stream().filter(TelemetryRecord::hasActivationBatch).count();
    int split = records.size() * 3 / 5;

    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start()) {
      Properties client = kafka.clientProperties();
      // A killed member keeps its partitions until its session times out (45 s by default): 6 s here.
      Path clientConfig = dir.resolve("client.properties");
      Files.writeString(clientConfig, "session.timeout.ms=6000\nheartbeat.interval.ms=1000\n");
      List<String> args = List.of("--bootstrap-servers", kafka.bootstrapServers(),
          "--data-dir", dir.resolve("flatmon").toString(), "--http-port", "0",
          "--application-id", Services.applicationId("crash"), "--partitions", "4",
          "--kafka-config", clientConfig.toString());
      Path log = dir.resolve("serve.log");

      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        long t0 = System.nanoTime();
        ServeProcess first = ServeProcess.start(args, log, START);
        System.out.println("CrashRecoveryTest: first child " + first.pid() + " serving in " + Services.since(t0));
        try {
          TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records.subList(0, split)));
          try (ResultsReader peek = new ResultsReader(client, Topics.RESULTS, false)) {
            peek.pollUntil(r -> r.records().size() >= 25, Duration.ofSeconds(90),
                () -> peek.records().size() + " results so far; child log:\n" + first.logTail());
            first.kill();
            int uncommitted = peek.records().size();
            try (ResultsReader committed = ResultsReader.results(client)) {
              committed.drainToEnd(Duration.ofSeconds(20));
              System.out.printf("CrashRecoveryTest: SIGKILL after %d results seen read_uncommitted"
                  + " (%d committed at that point)%n", uncommitted, committed.records().size());
            }
          }
        } finally {
          first.close();
        }
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records.subList(split, records.size())));
        var offline = TelemetryFixtures.offlineAsync(dir.resolve("crash.pb"), records);

        long t1 = System.nanoTime();
        try (ServeProcess second = ServeProcess.start(args, log, START);
            ResultsReader results = ResultsReader.results(client)) {
          System.out.println("CrashRecoveryTest: second child " + second.pid() + " serving in "
              + Services.since(t1));
          results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(150),
              () -> results.finalCount() + " of " + expectedFinals + " finals; child log:\n" + second.logTail());
          results.drainToEnd(Duration.ofSeconds(30));
          System.out.println("CrashRecoveryTest: all finals " + Services.since(t1) + " after the restart");

          List<FlatnessResult> finals = results.finals();
          TelemetryFixtures.uniqueByKey(finals);
          assertEquals(expectedFinals, finals.size(), "exactly one final per (run, layer, step, split)");
          Map<String, Integer> running = new HashMap<>();
          for (FlatnessResult r : results.results()) {
            if (!r.getFinal()) {
              running.merge(TelemetryFixtures.key(r) + "#" + r.getBatches(), 1, Integer::sum);
            }
          }
          assertEquals(batches, running.size(), "a running result for every batch");
          assertTrue(running.values().stream().allMatch(n -> n == 1),
              "no running result committed twice: " + running.entrySet().stream().filter(e -> e.getValue() > 1)
                  .limit(5).toList());

          TelemetryFixtures.assertFinalsEqualOffline(offline.join(), finals);
          try (ResultsReader dead = ResultsReader.deadLetter(client)) {
            dead.drainToEnd(Duration.ofSeconds(10));
            assertEquals(List.of(), dead.rejected(), "nothing rejected");
          }
        }
      }
    }
  }
}
