package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.FlatmonTopology;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.function.Supplier;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyQueryMetadata;
import org.apache.kafka.streams.ThreadMetadata;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two instances of one application on one broker: a run's series are exported by the instance that
 * owns its partition and by no other, when a second instance joins (the first gives partitions up) and
 * when it leaves (the survivor takes everything over).
 */
class MetricsOwnershipTest {
  private static final int PARTITIONS = 4;
  private static final int RUNS = 8;
  private static final String SERIES = "flatmon_measurement_step";

  @TempDir
  Path dir;

  @Test
  void eachRunIsExportedByItsOwnerOnlyAcrossRebalances() throws Exception {
    long t0 = System.nanoTime();
    String suffix = UUID.randomUUID().toString().substring(0, 6);
    List<SyntheticTelemetry> runs = new ArrayList<>();
    Set<String> all = new TreeSet<>();
    // Two runs on every partition (Kafka's default partitioner for keyed records), so that whichever
    // partitions each instance gets, both own runs.
    int[] perPartition = new int[PARTITIONS];
    for (int i = 0; runs.size() < RUNS; i++) {
      String id = "own-" + suffix + "-" + i;
      int partition = Utils.toPositive(Utils.murmur2(id.getBytes(StandardCharsets.UTF_8))) % PARTITIONS;
      if (perPartition[partition] < RUNS / PARTITIONS) {
        perPartition[partition]++;
        runs.add(new SyntheticTelemetry(id, 100 + i));
        all.add(id);
      }
    }
    String app = "flatmon-ownership-" + suffix;
    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start();
        KafkaProducer<String, byte[]> producer = SyntheticTelemetry.producer(kafka.bootstrapServers())) {
      FlatmonService a = SyntheticTelemetry.start(
          SyntheticTelemetry.config(kafka.bootstrapServers(), dir.resolve("a"), app, PARTITIONS));
      try {
        for (SyntheticTelemetry run : runs) {
          List<TelemetryRecord> records = new ArrayList<>();
          records.add(run.started());
          records.addAll(run.step(100, 1, 0, false));
          run.send(producer, records);
        }
        await("instance a alone exports every run", () -> exported(a).equals(all),
            () -> "a exports " + exported(a));
        System.out.println("MetricsOwnershipTest: a exports all " + RUNS + " runs after " + SyntheticTelemetry.since(t0));

        FlatmonService b = SyntheticTelemetry.start(
            SyntheticTelemetry.config(kafka.bootstrapServers(), dir.resolve("b"), app, PARTITIONS));
        try {
          await("both instances own partitions", () -> running(a) && running(b) && activeTasks(a) > 0
              && activeTasks(b) > 0 && activeTasks(a) + activeTasks(b) == PARTITIONS,
              () -> "a " + tasks(a) + ", b " + tasks(b));
          Set<String> ownedByB = owned(a, b, all);
          assertTrue(!ownedByB.isEmpty() && ownedByB.size() < RUNS, "both own runs: b owns " + ownedByB);
          System.out.println("MetricsOwnershipTest: rebalanced after " + SyntheticTelemetry.since(t0)
              + "; b owns " + ownedByB);
          // a gave those partitions up: it must stop exporting their runs at once (no new record needed).
          await("a stops exporting the runs it gave up", () -> disjoint(exported(a), ownedByB),
              () -> "a exports " + exported(a) + ", b owns " + ownedByB);

          // b exports a run once it has measured one of its batches.
          for (SyntheticTelemetry run : runs) {
            run.send(producer, run.step(200, 1, 0, false));
          }
          await("each run exported by its owner only", () -> {
            Set<String> byA = exported(a);
            Set<String> byB = exported(b);
            Set<String> ownedNowByB = owned(a, b, all);
            Set<String> ownedNowByA = new TreeSet<>(all);
            ownedNowByA.removeAll(ownedNowByB);
            return byA.equals(ownedNowByA) && byB.equals(ownedNowByB);
          }, () -> "a exports " + exported(a) + ", b exports " + exported(b) + ", b owns " + owned(a, b, all));
          assertTrue(disjoint(exported(a), exported(b)), "no run exported twice");
          System.out.println("MetricsOwnershipTest: each run exported once after " + SyntheticTelemetry.since(t0));
        } finally {
          long t1 = System.nanoTime();
          b.close();
          System.out.println("MetricsOwnershipTest: b closed in " + SyntheticTelemetry.since(t1));
        }
        // Closing released b's runs from its registry.
        assertEquals(Set.of(), SyntheticTelemetry.runsIn(b.metrics().scrape(null), SERIES),
            "a closed instance exports no run");

        await("a owns every partition again", () -> activeTasks(a) == PARTITIONS && running(a),
            () -> "a " + tasks(a));
        for (SyntheticTelemetry run : runs) {
          run.send(producer, run.step(300, 1, 0, false));
        }
        await("the survivor exports every run", () -> exported(a).equals(all), () -> "a exports " + exported(a));
        System.out.println("MetricsOwnershipTest: survivor exports every run after " + SyntheticTelemetry.since(t0));
      } finally {
        a.close();
      }
    }
  }

  private static Set<String> exported(FlatmonService s) {
    return SyntheticTelemetry.runsIn(s.metrics().scrape(null), SERIES);
  }

  /** The runs whose partition b owns (by Kafka Streams' metadata as seen from a). */
  private static Set<String> owned(FlatmonService a, FlatmonService b, Set<String> runs) {
    Set<String> out = new TreeSet<>();
    for (String run : runs) {
      KeyQueryMetadata md = a.streams().queryMetadataForKey(FlatmonTopology.RUN_STORE, run,
          Serdes.String().serializer());
      if (md.activeHost().port() == b.httpPort()) {
        out.add(run);
      }
    }
    return out;
  }

  private static boolean disjoint(Set<String> x, Set<String> y) {
    Set<String> both = new TreeSet<>(x);
    both.retainAll(y);
    return both.isEmpty();
  }

  private static boolean running(FlatmonService s) {
    return s.streams().state() == KafkaStreams.State.RUNNING;
  }

  private static int activeTasks(FlatmonService s) {
    return s.streams().metadataForLocalThreads().stream().mapToInt(t -> t.activeTasks().size()).sum();
  }

  private static String tasks(FlatmonService s) {
    List<String> out = new ArrayList<>();
    for (ThreadMetadata t : s.streams().metadataForLocalThreads()) {
      t.activeTasks().forEach(task -> out.add(task.taskId().toString()));
    }
    return s.streams().state() + " " + out;
  }

  private static void await(String what, Supplier<Boolean> condition, Supplier<String> state) {
    long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
    while (!condition.get()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out waiting until " + what + ": " + state.get());
      }
      Prometheus.sleep(200);
    }
  }
}
