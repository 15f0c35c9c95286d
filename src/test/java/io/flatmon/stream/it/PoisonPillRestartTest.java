package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.BatchCurvature;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import io.flatmon.wire.Topics;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.streams.errors.ProcessorStateException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A record whose processing fails — the engine throws an Error on it (as a bug would), or a
 * Kafka-side failure (a state store's) escapes the processor — on a real broker: it is dead-lettered
 * exactly once as INTERNAL_ERROR with its source offset, it is not processed again (neither by a
 * replaced stream thread nor after a restart on the same data dir), the restarted instance reaches
 * RUNNING, and the runs around it are measured as offline.
 */
class PoisonPillRestartTest {
  /** input[0] of a batch that makes the engine throw an Error. */
  private static final float ERROR_MARK = 123456.5f;
  /** input[0] of a batch that makes a Kafka Streams exception escape the processor. */
  private static final float STORE_MARK = 654321.5f;

  @TempDir
  Path dir;

  /** Fault injection: the real engine, except on marked batches; counts how often each mark is met. */
  static final class FaultInjectingComputer implements CurvatureComputer {
    static final AtomicInteger ERRORS = new AtomicInteger();
    static final AtomicInteger STORE_FAILURES = new AtomicInteger();
    private final CurvatureComputer engine;

    FaultInjectingComputer(CurvatureComputer engine) {
      this.engine = engine;
    }

    @Override
    public BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
      if (batch.input()[0] == ERROR_MARK) {
        ERRORS.incrementAndGet();
        throw new AssertionError("injected engine failure");
      }
      if (batch.input()[0] == STORE_MARK) {
        STORE_FAILURES.incrementAndGet();
        throw new ProcessorStateException("injected state store failure");
      }
      return engine.compute(head, batch, inputChannelRms);
    }
  }

  /** The run's first batch again, input[0] set to the mark, as an extra batch of the same step. */
  private static List<TelemetryRecord> withMarkedBatch(List<TelemetryRecord> run, float mark) {
    List<TelemetryRecord> out = new ArrayList<>(run);
    for (int i = 0; i < out.size(); i++) {
      if (out.get(i).hasActivationBatch()) {
        io.flatmon.proto.v1.ActivationBatch a = out.get(i).getActivationBatch();
        byte[] data = a.getInput().getData().toByteArray();
        ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN).putFloat(0, mark);
        out.add(i + 1, TelemetryRecord.newBuilder().setActivationBatch(a.toBuilder().setBatchIndex(99)
            .setInput(a.getInput().toBuilder().setData(ByteString.copyFrom(data)))).build());
        return out;
      }
    }
    throw new AssertionError("no batch");
  }

  @Test
  void failingRecordIsDeadLetteredOnceAndTheRestartIsClean() throws Exception {
    List<List<TelemetryRecord>> runs = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      runs.add(TelemetryFixtures.smallRun("pill-" + i, 300 + i));
    }
    List<TelemetryRecord> valid = TelemetryFixtures.interleave(runs);
    List<List<TelemetryRecord>> withPills = new ArrayList<>(runs);
    withPills.set(1, withMarkedBatch(runs.get(1), ERROR_MARK));
    withPills.set(2, withMarkedBatch(runs.get(2), STORE_MARK));
    List<TelemetryRecord> records = TelemetryFixtures.interleave(withPills);
    List<TelemetryRecord> later = TelemetryFixtures.smallRun("after-restart", 399);
    List<TelemetryRecord> all = new ArrayList<>(valid);
    all.addAll(later);
    var offline = TelemetryFixtures.offlineAsync(dir.resolve("valid.pb"), all);
    FaultInjectingComputer.ERRORS.set(0);
    FaultInjectingComputer.STORE_FAILURES.set(0);

    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka")).build().start()) {
      Properties client = kafka.clientProperties();
      FlatmonService.Config config = Services.config(kafka.bootstrapServers(), dir.resolve("flatmon"),
          Services.applicationId("pill"), 2, Map.of());
      List<RecordMetadata> acks;
      long t0 = System.nanoTime();
      try (FlatmonService first = new FlatmonService(config).wrapEngine(FaultInjectingComputer::new)
          .start(Duration.ofSeconds(90));
          KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        System.out.println("PoisonPillRestartTest: first instance up in " + Services.since(t0));
        acks = TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records));
        int finals = TelemetryFixtures.expectedFinals(valid);
        try (ResultsReader results = ResultsReader.results(client)) {
          results.pollUntil(r -> r.finalCount() >= finals, Duration.ofSeconds(120),
              () -> results.finalCount() + " of " + finals + " finals; injected errors so far "
                  + FaultInjectingComputer.ERRORS.get() + ", store failures " + FaultInjectingComputer.STORE_FAILURES.get());
        }
        String metrics = first.metrics().scrape("text/plain");
        assertTrue(metrics.lines().anyMatch(l -> l.startsWith("flatmon_rejected_records_total")
            && l.contains("reason=\"internal_error\"") && l.endsWith(" 2.0")), "both counted as INTERNAL_ERROR:\n" + metrics);
      }
      long t1 = System.nanoTime();
      try (FlatmonService second = new FlatmonService(config).wrapEngine(FaultInjectingComputer::new)
          .start(Duration.ofSeconds(90));
          KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        System.out.println("PoisonPillRestartTest: restarted instance RUNNING in " + Services.since(t1));
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(later));
        int finals = TelemetryFixtures.expectedFinals(all);
        try (ResultsReader results = ResultsReader.results(client)) {
          results.pollUntil(r -> r.finalCount() >= finals, Duration.ofSeconds(120),
              () -> results.finalCount() + " of " + finals + " finals after the restart");
          results.drainToEnd(Duration.ofSeconds(10));
          TelemetryFixtures.uniqueByKey(results.finals());
          TelemetryFixtures.assertFinalsEqualOffline(offline.join(), results.finals());
        }
      }
      assertEquals(1, FaultInjectingComputer.ERRORS.get(), "the Error-throwing batch was processed once");
      assertEquals(1, FaultInjectingComputer.STORE_FAILURES.get(), "the store-failing batch was processed once");
      List<Rejected> rejected;
      try (ResultsReader dead = ResultsReader.deadLetter(client)) {
        dead.drainToEnd(Duration.ofSeconds(10));
        rejected = dead.rejected();
      }
      assertEquals(2, rejected.size(), "one dead letter per failing record: " + rejected);
      List<Long> markedOffsets = new ArrayList<>();
      for (int i = 0; i < records.size(); i++) {
        TelemetryRecord r = records.get(i);
        if (r.hasActivationBatch() && r.getActivationBatch().getBatchIndex() == 99) {
          markedOffsets.add(acks.get(i).offset() * 1000 + acks.get(i).partition());
        }
      }
      for (Rejected r : rejected) {
        assertEquals(RejectReason.INTERNAL_ERROR, r.getReason(), r.toString());
        assertEquals(Topics.TELEMETRY, r.getSourceTopic());
        assertTrue(markedOffsets.contains(r.getSourceOffset() * 1000 + r.getSourcePartition()), r.toString());
        assertTrue(r.getDetail().contains("injected"), r.getDetail());
      }
    }
  }
}
