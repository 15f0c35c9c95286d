package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.Tensor;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.function.UnaryOperator;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `flatmon serve` in a child JVM on a real broker, fed snapshots whose padding makes the engine's
 * patch buffer terabytes (padding 30000) or gigabytes (3000) for an ordinary batch, geometry that
 * overflows int, and a 96 MiB zero-filled batch that zstd shrinks to kilobytes: each is dead-lettered
 * with its reason, the child stays up, and the valid runs beside them are measured as offline.
 */
class CostLimitStreamTest {
  @TempDir
  Path dir;

  private record Poison(String runId, RejectReason snapshotReason, UnaryOperator<LayerSnapshot.Builder> edit) {
  }

  @Test
  void explodingGeometryAndHugeBatchesAreDeadLetteredWhileValidRunsAreMeasured() throws Exception {
    List<List<TelemetryRecord>> good = List.of(TelemetryFixtures.smallRun("valid-a", 11),
        TelemetryFixtures.smallRun("valid-b", 12));
    List<Poison> poisons = List.of(
        new Poison("pad30000", RejectReason.TOO_LARGE, s -> s.clearPadding().addPadding(30000)),
        new Poison("pad3000", RejectReason.TOO_LARGE, s -> s.clearPadding().addPadding(3000)),
        new Poison("dilationmax", RejectReason.INVALID_GEOMETRY, s -> s.clearDilation().addDilation(Integer.MAX_VALUE)),
        new Poison("paddingmax", RejectReason.INVALID_GEOMETRY, s -> s.clearPadding().addPadding(Integer.MAX_VALUE)));
    List<TelemetryRecord> first = good.get(0);
    LayerSnapshot snapshot = first.stream().filter(TelemetryRecord::hasLayerSnapshot).findFirst().orElseThrow()
        .getLayerSnapshot();
    ActivationBatch batch = first.stream().filter(TelemetryRecord::hasActivationBatch)
        .map(TelemetryRecord::getActivationBatch).filter(a -> a.getLayer().equals(snapshot.getLayer()))
        .findFirst().orElseThrow();
    List<TelemetryRecord> poisonRecords = new ArrayList<>();
    Map<String, List<RejectReason>> expected = new TreeMap<>();
    for (Poison p : poisons) {
      poisonRecords.add(TelemetryRecord.newBuilder().setLayerSnapshot(p.edit.apply(snapshot.toBuilder()
          .setRunId(p.runId))).build());
      poisonRecords.add(TelemetryRecord.newBuilder().setActivationBatch(batch.toBuilder().setRunId(p.runId)).build());
      expected.put(p.runId, List.of(p.snapshotReason, RejectReason.MISSING_SNAPSHOT));
    }
    // 24 × 4 × 512 × 512 float32 zeros: 96 MiB decoded, a few KB compressed.
    ActivationBatch huge = batch.toBuilder().setRunId("valid-a").clearLabels()
        .setInput(Tensor.newBuilder().addShape(24).addShape(4).addShape(512).addShape(512)
            .setData(ByteString.copyFrom(new byte[4 * 24 * 4 * 512 * 512])))
        .build();

    // The valid runs, with the poison after valid-a's first batch and the huge batch after its second.
    List<TelemetryRecord> stream = new ArrayList<>();
    int batches = 0;
    for (TelemetryRecord r : first) {
      stream.add(r);
      if (r.hasActivationBatch()) {
        batches++;
        if (batches == 1) {
          stream.addAll(poisonRecords);
        } else if (batches == 2) {
          stream.add(TelemetryRecord.newBuilder().setActivationBatch(huge).build());
        }
      }
    }
    stream.addAll(good.get(1));
    List<TelemetryRecord> valid = new ArrayList<>(first);
    valid.addAll(good.get(1));
    int expectedFinals = TelemetryFixtures.expectedFinals(valid);
    var offline = TelemetryFixtures.offlineAsync(dir.resolve("valid.pb"), valid);

    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start()) {
      Properties client = kafka.clientProperties();
      List<String> args = List.of("--bootstrap-servers", kafka.bootstrapServers(),
          "--data-dir", dir.resolve("flatmon").toString(), "--http-port", "0",
          "--application-id", Services.applicationId("cost"), "--partitions", "2");
      try (ServeProcess serve = ServeProcess.start(args, dir.resolve("serve.log"), Duration.ofSeconds(90))) {
        Properties producerConfig = new Properties();
        producerConfig.putAll(client);
        producerConfig.putAll(io.flatmon.wire.Topics.largeMessageProducerConfig());
        producerConfig.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        producerConfig.put(ProducerConfig.ACKS_CONFIG, "all");
        // The 96 MiB record passes the producer's uncompressed size check; the broker sees kilobytes.
        producerConfig.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 128 << 20);
        producerConfig.put(ProducerConfig.BUFFER_MEMORY_CONFIG, 256L << 20);
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(producerConfig,
            new org.apache.kafka.common.serialization.StringSerializer(),
            new org.apache.kafka.common.serialization.ByteArraySerializer())) {
          TelemetryFixtures.produce(producer, TelemetryFixtures.messages(stream));
        }
        List<Rejected> rejected;
        try (ResultsReader dead = ResultsReader.deadLetter(client)) {
          int want = 2 * poisons.size() + 1; // + the huge batch
          dead.pollUntil(d -> d.records().size() >= want, Duration.ofSeconds(120),
              () -> dead.records().size() + " of " + want + " dead letters; child log:\n" + serve.logTail());
          dead.drainToEnd(Duration.ofSeconds(10));
          rejected = dead.rejected();
        }
        try (ResultsReader results = ResultsReader.results(client)) {
          results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(120),
              () -> results.finalCount() + " of " + expectedFinals + " finals; child log:\n" + serve.logTail());
          results.drainToEnd(Duration.ofSeconds(10));
          TelemetryFixtures.assertFinalsEqualOffline(offline.join(), results.finals());
        }
        assertTrue(serve.isAlive(), "the service died; log:\n" + serve.logTail());
        Map<String, List<RejectReason>> got = new TreeMap<>();
        for (Rejected r : rejected) {
          got.computeIfAbsent(r.getRunId(), k -> new ArrayList<>()).add(r.getReason());
        }
        List<RejectReason> validA = got.remove("valid-a");
        assertEquals(expected, got, "dead letters by run: " + rejected);
        assertEquals(List.of(RejectReason.TOO_LARGE), validA, "the 96 MiB batch: " + rejected);
        Rejected hugeRejection = rejected.stream().filter(r -> r.getRunId().equals("valid-a")).findFirst()
            .orElseThrow();
        assertTrue(hugeRejection.getDetail().contains("decode to"), hugeRejection.getDetail());
      }
    }
  }
}
