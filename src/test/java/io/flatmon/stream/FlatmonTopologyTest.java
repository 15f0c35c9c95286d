package io.flatmon.stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import static io.flatmon.stream.it.TelemetryFixtures.assertSameValues;
import static io.flatmon.stream.it.TelemetryFixtures.key;
import static io.flatmon.stream.it.TelemetryFixtures.offline;

import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.Tensor;
import io.flatmon.schema.TelemetryReader;
import io.flatmon.stream.it.OracleFixtures;
import io.flatmon.wire.Topics;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.KeyValueStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The topology in TopologyTestDriver: the oracle fixtures' finals equal the oracle, results equal
 * `flatmon compute`, bad input is dead-lettered.
 */
class FlatmonTopologyTest {
  static final Path EXAMPLE = Path.of("examples/two-runs.pb");

  @TempDir
  Path stateDir;
  TopologyTestDriver driver;
  TestInputTopic<String, byte[]> telemetry;
  TestOutputTopic<String, byte[]> results;
  TestOutputTopic<String, byte[]> deadLetter;

  @BeforeEach
  void start() {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, "flatmon-test");
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    TopologySettings settings = TopologySettings.defaults()
        .withRetention(Duration.ofMinutes(1), Duration.ofMinutes(5)).withCleanupInterval(Duration.ofSeconds(10));
    driver = new TopologyTestDriver(FlatmonTopology.build(settings), p);
    telemetry = driver.createInputTopic(Topics.TELEMETRY, Serdes.String().serializer(), Serdes.ByteArray().serializer());
    results = driver.createOutputTopic(Topics.RESULTS, Serdes.String().deserializer(),
        Serdes.ByteArray().deserializer());
    deadLetter = driver.createOutputTopic(Topics.DEAD_LETTER, Serdes.String().deserializer(),
        Serdes.ByteArray().deserializer());
  }

  @AfterEach
  void stop() {
    driver.close();
  }

  static List<TelemetryRecord> example() throws Exception {
    List<TelemetryRecord> out = new ArrayList<>();
    try (InputStream in = Files.newInputStream(EXAMPLE)) {
      TelemetryReader reader = new TelemetryReader(in, 64 << 20);
      TelemetryReader.Item item;
      while ((item = reader.next()) != null) {
        out.add(item.record());
      }
    }
    return out;
  }

  static String runOf(TelemetryRecord r) {
    return switch (r.getRecordCase()) {
      case RUN_STARTED -> r.getRunStarted().getRunId();
      case LAYER_SNAPSHOT -> r.getLayerSnapshot().getRunId();
      case ACTIVATION_BATCH -> r.getActivationBatch().getRunId();
      case MEASUREMENT_DONE -> r.getMeasurementDone().getRunId();
      default -> r.getRunEnded().getRunId();
    };
  }

  private void send(TelemetryRecord r) {
    telemetry.pipeInput(runOf(r), r.toByteArray());
  }

  private List<FlatnessResult> finals() throws Exception {
    List<FlatnessResult> out = new ArrayList<>();
    for (byte[] v : results.readValuesToList()) {
      FlatnessResult r = FlatnessResult.parseFrom(v);
      if (r.getFinal()) {
        out.add(r);
      }
    }
    return out;
  }

  @Test
  void streamResultsEqualOfflineCompute() throws Exception {
    List<TelemetryRecord> records = example();
    records.forEach(this::send);
    List<FlatnessResult> finals = finals();
    Map<String, FlatnessResult> offline = offline(EXAMPLE);
    assertEquals(offline.size(), finals.size());
    for (FlatnessResult r : finals) {
      assertSameValues(offline.get(key(r)), r);
    }
    assertTrue(deadLetter.isEmpty());
    // every run ended: nothing open is left
    KeyValueStore<String, byte[]> measurements = driver.getKeyValueStore(FlatmonTopology.MEASUREMENT_STORE);
    try (var it = measurements.all()) {
      assertFalse(it.hasNext());
    }
  }

  /**
   * The oracle fixtures through the topology: every final equals expected.pb (float64 autograd or
   * 50-digit mpmath) at the engine's documented tolerance — values checked from outside, not against
   * another flatmon run.
   */
  @Test
  void finalsOfTheOracleFixturesEqualTheOracle() throws Exception {
    OracleFixtures.records().forEach(this::send);
    OracleFixtures.assertFinalsMatch(OracleFixtures.expected(), finals());
    assertTrue(deadLetter.isEmpty());
  }

  @Test
  void runningResultsFollowEveryBatchAndTheNextStepClosesTheLast() throws Exception {
    List<TelemetryRecord> records = example();
    // drop MeasurementDone and RunEnded: the next step's snapshot must close the previous step
    records.stream().filter(r -> r.hasLayerSnapshot() || r.hasActivationBatch() || r.hasRunStarted())
        .forEach(this::send);
    List<FlatnessResult> all = new ArrayList<>();
    for (byte[] v : results.readValuesToList()) {
      all.add(FlatnessResult.parseFrom(v));
    }
    long batches = records.stream().filter(TelemetryRecord::hasActivationBatch).count();
    assertEquals(batches, all.stream().filter(r -> !r.getFinal()).count(), "one running result per batch");
    // step 100 was closed by the step-200 snapshots, step 200 is still open
    assertTrue(all.stream().filter(FlatnessResult::getFinal).allMatch(r -> r.getStep() == 100));
    assertEquals(6, all.stream().filter(FlatnessResult::getFinal).count());
    FlatnessResult running = all.stream().filter(r -> !r.getFinal() && r.getBatches() == 1).findFirst().orElseThrow();
    assertEquals(8, running.getSamples());
  }

  @Test
  void poisonRecordsGoToTheDeadLetterTopicAndGoodOnesAreUnaffected() throws Exception {
    List<TelemetryRecord> records = example();
    SplittableRandom random = new SplittableRandom(3);
    List<RejectReason> expected = new ArrayList<>();
    int i = 0;
    for (TelemetryRecord r : records) {
      send(r);
      if (!r.hasActivationBatch() || i++ % 3 != 0) {
        continue;
      }
      var a = r.getActivationBatch();
      switch (expected.size() % 6) {
        case 0 -> {
          byte[] junk = new byte[200];
          random.nextBytes(junk);
          junk[0] = (byte) 0xff;
          telemetry.pipeInput(a.getRunId(), junk);
          expected.add(RejectReason.UNDECODABLE);
        }
        case 1 -> {
          Tensor wrong = a.getInput().toBuilder().setShape(1, a.getInput().getShape(1) + 1).build();
          send(TelemetryRecord.newBuilder().setActivationBatch(a.toBuilder().setInput(wrong)).build());
          expected.add(RejectReason.SHAPE_MISMATCH);
        }
        case 2 -> {
          Tensor huge = Tensor.newBuilder().addShape(1000).addShape(1000).addShape(1000).addShape(1).build();
          send(TelemetryRecord.newBuilder().setActivationBatch(a.toBuilder().setInput(huge)).build());
          expected.add(RejectReason.TOO_LARGE);
        }
        case 3 -> {
          send(TelemetryRecord.newBuilder().setActivationBatch(a.toBuilder().setStep(a.getStep() + 7)).build());
          expected.add(RejectReason.MISSING_SNAPSHOT);
        }
        case 4 -> {
          telemetry.pipeInput(a.getRunId(), new byte[0]);
          expected.add(RejectReason.UNDECODABLE);
        }
        default -> {
          telemetry.pipeInput(a.getRunId(), TelemetryRecord.getDefaultInstance().toByteArray());
          expected.add(RejectReason.UNDECODABLE);
        }
      }
    }
    List<Rejected> rejected = new ArrayList<>();
    for (byte[] v : deadLetter.readValuesToList()) {
      rejected.add(Rejected.parseFrom(v));
    }
    assertEquals(expected, rejected.stream().map(Rejected::getReason).toList());
    for (Rejected r : rejected) {
      assertEquals(Topics.TELEMETRY, r.getSourceTopic());
      assertFalse(r.getDetail().isEmpty());
    }
    Map<String, FlatnessResult> offline = offline(EXAMPLE);
    List<FlatnessResult> finals = finals();
    assertEquals(offline.size(), finals.size());
    for (FlatnessResult r : finals) {
      assertSameValues(offline.get(key(r)), r);
    }
  }

  @Test
  void nonFiniteInputYieldsAFlaggedResult() throws Exception {
    List<TelemetryRecord> records = example();
    TelemetryRecord snapshot = records.stream().filter(TelemetryRecord::hasLayerSnapshot).findFirst().orElseThrow();
    TelemetryRecord batch = records.stream().filter(TelemetryRecord::hasActivationBatch).findFirst().orElseThrow();
    send(snapshot);
    byte[] data = batch.getActivationBatch().getInput().getData().toByteArray();
    java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN).putFloat(40, Float.NaN);
    var a = batch.getActivationBatch().toBuilder().clearPreActivation();
    a.setInput(a.getInput().toBuilder().setData(com.google.protobuf.ByteString.copyFrom(data)));
    send(TelemetryRecord.newBuilder().setActivationBatch(a).build());
    FlatnessResult r = FlatnessResult.parseFrom(results.readValue());
    assertTrue(r.getNonFinite());
    assertTrue(deadLetter.isEmpty());
  }

  @Test
  void endedRunsAreRejectedThenForgottenAfterTheRetention() throws Exception {
    List<TelemetryRecord> records = example();
    records.stream().filter(r -> runOf(r).equals("run-a")).forEach(this::send);
    KeyValueStore<String, byte[]> runs = driver.getKeyValueStore(FlatmonTopology.RUN_STORE);
    KeyValueStore<String, byte[]> snapshots = driver.getKeyValueStore(FlatmonTopology.SNAPSHOT_STORE);
    assertTrue(runs.get("run-a") != null);
    // a late batch of the ended run
    send(records.stream().filter(TelemetryRecord::hasActivationBatch).findFirst().orElseThrow());
    assertEquals(RejectReason.UNKNOWN_RUN, Rejected.parseFrom(deadLetter.readValue()).getReason());
    driver.advanceWallClockTime(Duration.ofMinutes(2));
    assertNull(runs.get("run-a"));
    assertNull(snapshots.get(StateKeys.head("run-a", "layer4.1.conv2")));
  }

  @Test
  void idleRunsAreFinalisedAndExpire() throws Exception {
    List<TelemetryRecord> records = example();
    records.stream().filter(r -> runOf(r).equals("run-a") && (r.hasLayerSnapshot() || r.hasActivationBatch())
        && stepOf(r) == 100).forEach(this::send);
    results.readValuesToList();
    driver.advanceWallClockTime(Duration.ofMinutes(6));
    List<FlatnessResult> finals = finals();
    assertEquals(2, finals.size(), "train and eval of step 100 finalised on expiry");
    assertNull(driver.getKeyValueStore(FlatmonTopology.RUN_STORE).get("run-a"));
    // a MeasurementDone or RunEnded for nothing open is harmless
    send(TelemetryRecord.newBuilder().setMeasurementDone(MeasurementDone.newBuilder().setRunId("x").setStep(1)).build());
    send(TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId("x")).build());
    assertTrue(deadLetter.isEmpty());
    assertTrue(results.isEmpty());
    assertEquals(Split.TRAIN, finals.get(0).getSplit());
  }

  static long stepOf(TelemetryRecord r) {
    return r.hasLayerSnapshot() ? r.getLayerSnapshot().getStep() : r.getActivationBatch().getStep();
  }
}
