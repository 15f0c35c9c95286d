package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnknownFieldSet;
import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.Tensor;
import io.flatmon.schema.TensorCodec;
import io.flatmon.service.FlatmonService;
import io.flatmon.wire.Topics;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Good runs interleaved with poison — garbage bytes, wrong shapes, a tensor claiming 10⁹ elements, a
 * record keyed by another run, a record type from a newer schema, … — through the real service: every
 * good final is present and correct, NaN input yields a result flagged non-finite (not a dead letter),
 * and every bad record is in the dead-letter topic with its reason and its source topic/partition/offset.
 */
class PoisonStreamTest {
  private static final int RUNS = 6;

  @TempDir
  Path dir;

  /** A poison message and what the dead-letter record must say about it. */
  private record Poison(TelemetryFixtures.Message message, RejectReason reason, String runId) {
  }

  private record Source(int partition, long offset) {
  }

  @Test
  void badRecordsAreDeadLetteredAndGoodRunsAreUnaffected() throws Exception {
    SplittableRandom random = new SplittableRandom(7);
    List<List<TelemetryRecord>> goodRuns = new ArrayList<>();
    for (int i = 0; i < RUNS; i++) {
      goodRuns.add(TelemetryFixtures.smallRun(String.format("good-%02d", i), 500 + i));
    }
    // A run whose one batch holds a NaN: measured, its result flagged non_finite.
    List<TelemetryRecord> nanRun = new ArrayList<>(TelemetryFixtures.run("nan-run", 77,
        List.of(new TelemetryFixtures.LayerSpec("layer4.relu", 8, 4, 10, 3, 1, 4, ActivationKind.RELU, true, null)),
        1, 2, 0, 4));
    for (int i = 0; i < nanRun.size(); i++) {
      if (nanRun.get(i).hasActivationBatch()) {
        nanRun.set(i, withNaN(nanRun.get(i)));
        break;
      }
    }

    // Each run's messages, poison inserted after the run's first batch (its snapshot exists by then).
    List<List<Object>> streams = new ArrayList<>();
    List<Poison> poison = new ArrayList<>();
    // An empty batch (B = 0): must be rejected as EMPTY_BATCH, checked last (see below).
    ActivationBatch someBatch = goodRuns.get(5).stream().filter(TelemetryRecord::hasActivationBatch).findFirst()
        .orElseThrow().getActivationBatch();
    Poison empty = poison(someBatch.toBuilder().clearLabels()
        .setInput(Tensor.newBuilder().addShape(0).addShape(4).addShape(4).addShape(4)), RejectReason.EMPTY_BATCH);
    for (int i = 0; i < RUNS; i++) {
      List<TelemetryRecord> run = goodRuns.get(i);
      String id = TelemetryFixtures.runOf(run.get(0));
      ActivationBatch first = run.stream().filter(TelemetryRecord::hasActivationBatch).findFirst().orElseThrow()
          .getActivationBatch();
      LayerSnapshot snapshot = run.stream().filter(TelemetryRecord::hasLayerSnapshot).findFirst().orElseThrow()
          .getLayerSnapshot();
      List<Poison> mine = switch (i) {
        case 0 -> List.of(
            new Poison(new TelemetryFixtures.Message(id, garbage(random, 300)), RejectReason.UNDECODABLE, id),
            new Poison(new TelemetryFixtures.Message(id, new byte[0]), RejectReason.UNDECODABLE, id),
            new Poison(new TelemetryFixtures.Message(id, null), RejectReason.UNDECODABLE, id));
        case 1 -> List.of(
            poison(first.toBuilder().setInput(TensorCodec.encode(new float[4 * 5 * 4 * 4], 4, 5, 4, 4)),
                RejectReason.SHAPE_MISMATCH),
            poison(first.toBuilder().setInput(first.getInput().toBuilder()
                .setData(first.getInput().getData().substring(0, 20))), RejectReason.SHAPE_MISMATCH));
        case 2 -> List.of(
            poison(first.toBuilder().setInput(Tensor.newBuilder().addShape(1000).addShape(1000).addShape(1000)
                .addShape(1).setData(ByteString.copyFrom(new byte[16]))), RejectReason.TOO_LARGE),
            poison(first.toBuilder().setStep(first.getStep() + 7), RejectReason.MISSING_SNAPSHOT));
        case 3 -> List.of(
            new Poison(new TelemetryFixtures.Message("someone-else",
                TelemetryRecord.newBuilder().setActivationBatch(first).build().toByteArray()),
                RejectReason.INVALID_VALUE, id),
            poison(first.toBuilder().clearLabels().addLabels(0).addLabels(1).addLabels(2).addLabels(99),
                RejectReason.INVALID_LABEL));
        case 4 -> List.of(
            new Poison(new TelemetryFixtures.Message(id, newerSchemaRecord()), RejectReason.UNKNOWN_RECORD_TYPE, id),
            poisonSnapshot(snapshot.toBuilder().setLayer("other-layer").clearActivation(),
                RejectReason.UNKNOWN_ACTIVATION),
            poisonSnapshot(snapshot.toBuilder().setLayer("other-layer").setGroups(2),
                RejectReason.UNSUPPORTED_GROUPS));
        default -> List.of(empty);
      };
      poison.addAll(mine);
      List<Object> stream = new ArrayList<>();
      boolean inserted = false;
      for (TelemetryRecord r : run) {
        stream.add(TelemetryFixtures.Message.of(r));
        if (r.hasActivationBatch() && !inserted) {
          stream.addAll(mine);
          inserted = true;
        }
      }
      streams.add(stream);
    }
    streams.add(new ArrayList<>(nanRun.stream().map(TelemetryFixtures.Message::of).toList()));

    List<Object> interleaved = TelemetryFixtures.interleave(streams);
    List<TelemetryFixtures.Message> messages = new ArrayList<>();
    for (Object o : interleaved) {
      messages.add(o instanceof Poison p ? p.message() : (TelemetryFixtures.Message) o);
    }
    List<TelemetryRecord> good = new ArrayList<>();
    goodRuns.forEach(good::addAll);
    good.addAll(nanRun);
    int expectedFinals = TelemetryFixtures.expectedFinals(good);

    long t0 = System.nanoTime();
    try (FlatmonService service = Services.start(Services.config(null, dir.resolve("flatmon"),
        Services.applicationId("poison"), 2, Map.of()))) {
      System.out.println("PoisonStreamTest: service up in " + Services.since(t0));
      var client = Services.bootstrap(service.bootstrapServers());
      List<RecordMetadata> acks;
      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        acks = TelemetryFixtures.produce(producer, messages);
      }
      Map<Source, Poison> expected = new HashMap<>();
      for (int i = 0; i < interleaved.size(); i++) {
        if (interleaved.get(i) instanceof Poison p) {
          expected.put(new Source(acks.get(i).partition(), acks.get(i).offset()), p);
        }
      }
      assertEquals(poison.size(), expected.size());

      List<FlatnessResult> finals;
      try (ResultsReader results = ResultsReader.results(client)) {
        results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(120),
            () -> results.finalCount() + " of " + expectedFinals + " finals");
        results.drainToEnd(Duration.ofSeconds(20));
        finals = results.finals();
      }
      List<Rejected> rejected;
      try (ResultsReader dead = ResultsReader.deadLetter(client)) {
        dead.pollUntil(d -> d.records().size() >= expected.size(), Duration.ofSeconds(30),
            () -> dead.records().size() + " of " + expected.size() + " dead letters");
        dead.drainToEnd(Duration.ofSeconds(10));
        rejected = dead.rejected();
      }

      // Every good final present and equal to offline compute over the good records alone.
      Map<String, FlatnessResult> offline = TelemetryFixtures.offline(
          TelemetryFixtures.writeDelimited(dir.resolve("good.pb"), good));
      TelemetryFixtures.assertFinalsEqualOffline(offline, finals);
      List<FlatnessResult> nan = finals.stream().filter(r -> r.getRunId().equals("nan-run")).toList();
      assertEquals(1, nan.size());
      assertTrue(nan.get(0).getNonFinite(), "NaN input yields a result flagged non_finite");
      assertTrue(finals.stream().filter(r -> !r.getRunId().equals("nan-run")).noneMatch(FlatnessResult::getNonFinite));

      // Every bad record dead-lettered once, with its reason and where it came from.
      assertEquals(expected.size(), rejected.size(), "one dead letter per bad record: " + rejected);
      List<String> emptyBatchProblems = new ArrayList<>();
      for (Rejected r : rejected) {
        Source source = new Source(r.getSourcePartition(), r.getSourceOffset());
        Poison p = expected.get(source);
        assertTrue(p != null, "dead letter for a record that was not poison: " + r);
        assertEquals(Topics.TELEMETRY, r.getSourceTopic());
        assertFalse(r.getDetail().isBlank(), r.toString());
        assertTrue(r.getRejectedTimeMicros() > 0, r.toString());
        int size = p.message().value() == null ? 0 : p.message().value().length;
        assertEquals(size, r.getRecordSizeBytes(), r.toString());
        if (p == empty) {
          if (r.getReason() != RejectReason.EMPTY_BATCH) {
            emptyBatchProblems.add(r.getReason() + ": " + r.getDetail());
          }
          continue;
        }
        assertEquals(p.reason(), r.getReason(), "reason of " + r);
        assertEquals(p.runId(), r.getRunId(), "run id of " + r);
      }
      assertTrue(emptyBatchProblems.isEmpty(), "a batch with no samples (input shape [0, 4, 4, 4]) must be"
          + " rejected as EMPTY_BATCH, got " + emptyBatchProblems);
    }
  }

  private static Poison poison(ActivationBatch.Builder batch, RejectReason reason) {
    TelemetryRecord r = TelemetryRecord.newBuilder().setActivationBatch(batch).build();
    return new Poison(TelemetryFixtures.Message.of(r), reason, batch.getRunId());
  }

  private static Poison poisonSnapshot(LayerSnapshot.Builder snapshot, RejectReason reason) {
    TelemetryRecord r = TelemetryRecord.newBuilder().setLayerSnapshot(snapshot).build();
    return new Poison(TelemetryFixtures.Message.of(r), reason, snapshot.getRunId());
  }

  /** Bytes that are not a protobuf message (0xff: field 31 with the invalid wire type 7). */
  private static byte[] garbage(SplittableRandom random, int n) {
    byte[] b = new byte[n];
    random.nextBytes(b);
    b[0] = (byte) 0xff;
    return b;
  }

  /** A TelemetryRecord from a newer schema: only a variant this version does not know (field 42). */
  private static byte[] newerSchemaRecord() {
    UnknownFieldSet unknown = UnknownFieldSet.newBuilder()
        .addField(42, UnknownFieldSet.Field.newBuilder()
            .addLengthDelimited(ByteString.copyFromUtf8("\n\u0007good-04")).build())
        .build();
    byte[] bytes = TelemetryRecord.newBuilder().setUnknownFields(unknown).build().toByteArray();
    assertTrue(bytes.length > 0);
    return bytes;
  }

  private static TelemetryRecord withNaN(TelemetryRecord r) {
    ActivationBatch a = r.getActivationBatch();
    byte[] data = a.getInput().getData().toByteArray();
    ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN).putFloat(40, Float.NaN);
    return TelemetryRecord.newBuilder().setActivationBatch(a.toBuilder()
        .setInput(a.getInput().toBuilder().setData(ByteString.copyFrom(data)))).build();
  }
}
