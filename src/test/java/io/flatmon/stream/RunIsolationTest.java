package io.flatmon.stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.stream.it.TelemetryFixtures;
import io.flatmon.wire.Topics;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
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
 * One run's state can neither be read nor deleted through another run id: ids outside the grammar
 * are rejected at the edge, and store keys are prefix-free per run whatever the id.
 */
class RunIsolationTest {
  @TempDir
  Path stateDir;
  TopologyTestDriver driver;
  TestInputTopic<String, byte[]> telemetry;
  TestOutputTopic<String, byte[]> deadLetter;

  @BeforeEach
  void start() {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, "flatmon-isolation");
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    TopologySettings settings = TopologySettings.defaults()
        .withRetention(Duration.ofMinutes(1), Duration.ofMinutes(5)).withCleanupInterval(Duration.ofSeconds(10));
    driver = new TopologyTestDriver(FlatmonTopology.build(settings), p);
    telemetry = driver.createInputTopic(Topics.TELEMETRY, Serdes.String().serializer(), Serdes.ByteArray().serializer());
    deadLetter = driver.createOutputTopic(Topics.DEAD_LETTER, Serdes.String().deserializer(),
        Serdes.ByteArray().deserializer());
  }

  @AfterEach
  void stop() {
    driver.close();
  }

  @Test
  void anIdWithTheKeySeparatorIsRejectedAndNeitherReadsNorWipesItsNeighbour() throws Exception {
    List<TelemetryRecord> victim = TelemetryFixtures.smallRun("victim", 1);
    List<TelemetryRecord> victimLive = victim.subList(0, victim.size() - 1); // without RunEnded
    victimLive.forEach(this::send);
    List<TelemetryRecord> intruder = TelemetryFixtures.smallRun("victim\u001fx", 2);
    intruder.forEach(this::send); // ends with RunEnded

    List<Rejected> rejected = rejected();
    assertEquals(intruder.size(), rejected.size(), "every record of the intruder is dead-lettered");
    assertTrue(rejected.stream().allMatch(r -> r.getReason() == RejectReason.INVALID_RUN_ID), rejected.toString());
    assertFalse(rejected.get(0).getDetail().contains("\u001f"), "the detail quotes the id: " + rejected.get(0));

    driver.advanceWallClockTime(Duration.ofMinutes(2)); // past the ended-run retention
    assertEquals(Set.of("victim"), runIdsUnder(FlatmonTopology.LATEST_STORE, "victim"));
    assertEquals(2 * 2, latestOf("victim").size(), "the victim's latest per (layer, split) survive");
    assertEquals(Set.of("victim"), runIdsUnder(FlatmonTopology.HISTORY_STORE, "victim"));
  }

  @Test
  void aRunIdWithANewlineCannotForgeALogLineOrADetail() throws Exception {
    List<TelemetryRecord> forger = TelemetryFixtures.smallRun("x\n[main] INFO forged line", 3);
    java.io.PrintStream err = System.err;
    java.io.ByteArrayOutputStream log = new java.io.ByteArrayOutputStream();
    System.setErr(new java.io.PrintStream(log, true, java.nio.charset.StandardCharsets.UTF_8));
    try {
      forger.forEach(this::send); // slf4j-simple logs to the current System.err
    } finally {
      System.setErr(err);
    }
    List<String> lines = log.toString(java.nio.charset.StandardCharsets.UTF_8).lines()
        .filter(l -> l.contains("forged")).toList();
    assertEquals(forger.size(), lines.size(), String.join("\n", lines));
    assertTrue(lines.stream().allMatch(l -> l.contains("rejected record") && l.contains("\\n[main] INFO forged")),
        String.join("\n", lines));
    List<Rejected> rejected = rejected();
    assertEquals(forger.size(), rejected.size());
    for (Rejected r : rejected) {
      assertEquals(RejectReason.INVALID_RUN_ID, r.getReason());
      assertFalse(r.getDetail().contains("\n"), r.getDetail());
    }
  }

  /** Store keys are prefix-free per run even for ids the grammar rejects (defence in depth). */
  @Test
  void storeKeysOfOneRunNeverStartWithAnotherRunsPrefix() {
    String[] ids = {"a", "a\u001fb", "a\u001f", "ab", "a b", "1", "1:a", "10", "\u001f", "a\u001fmain\u001fTRAIN"};
    for (String run : ids) {
      for (String other : ids) {
        if (run.equals(other)) {
          continue;
        }
        String prefix = StateKeys.runPrefix(run);
        for (String layer : new String[] {"main", "b", "\u001fb", ""}) {
          for (String key : new String[] {StateKeys.head(other, layer), StateKeys.latest(other, layer, Split.TRAIN),
              StateKeys.measurement(other, layer, 7, Split.EVAL)}) {
            assertFalse(key.startsWith(prefix), "run " + run.replace("\u001f", "<US>") + "'s prefix matches key "
                + key.replace("\u001f", "<US>") + " of run " + other.replace("\u001f", "<US>"));
          }
        }
      }
      assertTrue(StateKeys.latest(run, "main", Split.TRAIN).startsWith(StateKeys.runPrefix(run)));
      assertTrue(StateKeys.measurement(run, "main", 7, Split.TRAIN).startsWith(StateKeys.runPrefix(run)));
    }
  }

  private void send(TelemetryRecord r) {
    telemetry.pipeInput(TelemetryFixtures.runOf(r), r.toByteArray());
  }

  private List<Rejected> rejected() throws Exception {
    List<Rejected> out = new ArrayList<>();
    for (byte[] v : deadLetter.readValuesToList()) {
      out.add(Rejected.parseFrom(v));
    }
    return out;
  }

  private List<FlatnessResult> latestOf(String run) throws Exception {
    KeyValueStore<String, byte[]> store = driver.getKeyValueStore(FlatmonTopology.LATEST_STORE);
    List<FlatnessResult> out = new ArrayList<>();
    try (var it = store.prefixScan(StateKeys.runPrefix(run), Serdes.String().serializer())) {
      while (it.hasNext()) {
        out.add(FlatnessResult.parseFrom(it.next().value));
      }
    }
    return out;
  }

  private Set<String> runIdsUnder(String storeName, String run) throws Exception {
    KeyValueStore<String, byte[]> store = driver.getKeyValueStore(storeName);
    Set<String> out = new TreeSet<>();
    try (var it = store.prefixScan(StateKeys.runPrefix(run), Serdes.String().serializer())) {
      while (it.hasNext()) {
        out.add(FlatnessResult.parseFrom(it.next().value).getRunId().replace("\u001f", "<US>"));
      }
    }
    return out;
  }
}
