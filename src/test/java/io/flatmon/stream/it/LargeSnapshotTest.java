package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Large kernel snapshots — 512×512×3×3 float32 (≈9.4 MB in one record) and 768×768×3×3 (≈21 MB) —
 * flow through the real broker, the Streams consumer, the snapshot store's changelog and the engine;
 * their finals equal `flatmon compute`.
 */
class LargeSnapshotTest {
  @TempDir
  Path dir;

  @Test
  void largeSnapshotsFlowThroughTheService() throws Exception {
    // 512×512×3×3 float32 = 9.4 MB (the size of ResNet-18's last conv), 768×768×3×3 = 21.2 MB.
    List<TelemetryRecord> records = new ArrayList<>();
    records.addAll(bigRun("big-512", 512));
    records.addAll(bigRun("big-768", 768));
    List<Integer> sizes = records.stream().filter(TelemetryRecord::hasLayerSnapshot)
        .map(TelemetryRecord::getSerializedSize).toList();
    assertTrue(sizes.get(0) > 9_400_000 && sizes.get(1) > 21_000_000, "snapshot records of " + sizes + " bytes");

    long t0 = System.nanoTime();
    try (FlatmonService service = Services.start(Services.config(null, dir.resolve("flatmon"),
        Services.applicationId("large"), 1, Map.of()))) {
      System.out.println("LargeSnapshotTest: service up in " + Services.since(t0));
      var client = Services.bootstrap(service.bootstrapServers());
      long t1 = System.nanoTime();
      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records));
      }
      List<FlatnessResult> finals;
      try (ResultsReader results = ResultsReader.results(client)) {
        results.pollUntil(r -> r.finalCount() >= 2, Duration.ofSeconds(120),
            () -> results.records().size() + " results so far");
        results.drainToEnd(Duration.ofSeconds(20));
        finals = results.finals();
        assertEquals(4, results.records().size(), "one running and one final result per run");
      }
      System.out.printf("LargeSnapshotTest: %s byte snapshots → final results in %s%n", sizes, Services.since(t1));
      try (ResultsReader dead = ResultsReader.deadLetter(client)) {
        dead.drainToEnd(Duration.ofSeconds(10));
        assertEquals(List.of(), dead.rejected(), "nothing rejected");
      }
      assertEquals(2, finals.size());
      for (FlatnessResult r : finals) {
        assertEquals(2, r.getSamples());
        assertFalse(r.getNonFinite());
      }
      Map<String, FlatnessResult> offline = TelemetryFixtures.offline(
          TelemetryFixtures.writeDelimited(dir.resolve("large.pb"), records));
      TelemetryFixtures.assertFinalsEqualOffline(offline, finals);
    }
  }

  /** RunStarted, one C×C×3×3 snapshot (K = 10, GELU, weight decay), one batch of 2 samples 4×4, done, ended. */
  private static List<TelemetryRecord> bigRun(String run, int channels) {
    TelemetryFixtures.LayerSpec layer = new TelemetryFixtures.LayerSpec("layer4.1.conv2", channels, channels, 10, 3,
        1, 4, ActivationKind.GELU, true, 5e-4);
    SyntheticHeads gen = new SyntheticHeads(channels);
    HeadSnapshot head = TelemetryFixtures.head(gen, layer);
    ActivationBatch batch = gen.batch(head, 2, 4, 4, true);
    return List.of(
        TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(run)).build(),
        TelemetryRecord.newBuilder().setLayerSnapshot(TelemetryFixtures.snapshot(run, layer, 100, head)).build(),
        TelemetryRecord.newBuilder().setActivationBatch(
            TelemetryFixtures.batch(run, layer.name(), 100, Split.TRAIN, 0, batch)).build(),
        TelemetryRecord.newBuilder().setMeasurementDone(MeasurementDone.newBuilder().setRunId(run).setStep(100))
            .build(),
        TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId(run)).build());
  }
}
