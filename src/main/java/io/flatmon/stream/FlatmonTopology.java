package io.flatmon.stream;

import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.EnginePool;
import io.flatmon.wire.Topics;
import java.util.Map;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The flatmon topology: telemetry (key run_id) → {@link TelemetryProcessor} with five persistent
 * stores (snapshots, measurements, runs, latest and history results) → results, signals,
 * dead-letter. One processor sees each run's records in order, which is what the
 * snapshot-before-batches protocol needs; runs are spread over partitions, so instances scale out.
 */
public final class FlatmonTopology {
  public static final String SNAPSHOT_STORE = "flatmon-snapshots";
  public static final String MEASUREMENT_STORE = "flatmon-measurements";
  public static final String RUN_STORE = "flatmon-runs";
  /** Latest result (running or final) per (run, layer, split), for the query API. */
  public static final String LATEST_STORE = "flatmon-latest";
  /** Final results per (run, layer, step, split), the last {@code historySteps} steps of each run. */
  public static final String HISTORY_STORE = "flatmon-history";
  static final String SOURCE = "telemetry-source";
  static final String PROCESSOR = "telemetry-processor";
  static final String RESULTS_SINK = "results-sink";
  static final String DEAD_LETTER_SINK = "dead-letter-sink";
  static final String SIGNALS_SINK = "signals-sink";

  /**
   * Changelog topics carry snapshots as big as the largest accepted record. They are compacted, and
   * the log cleaner recompresses what it copies at the topic's zstd level: the producers' level, not
   * zstd's default 3 (which made compaction of 9 MB snapshot changelogs 2 % of the CPU).
   */
  static final Map<String, String> CHANGELOG_CONFIG = Map.of(
      TopicConfig.MAX_MESSAGE_BYTES_CONFIG, Integer.toString(Topics.MAX_MESSAGE_BYTES),
      TopicConfig.COMPRESSION_TYPE_CONFIG, Topics.COMPRESSION,
      TopicConfig.COMPRESSION_ZSTD_LEVEL_CONFIG, Integer.toString(Topics.ZSTD_LEVEL));

  private FlatmonTopology() {
  }

  /** The topology with engines on the calling (stream) threads, as for a {@code TopologyTestDriver}. */
  public static Topology build(TopologySettings settings) {
    return build(settings, TopologyListener.NONE, new EnginePool(0));
  }

  /**
   * The topology, reporting results, rejections and released runs to the listener (metrics), and
   * measuring batches on {@code engine}, which every task shares (so it must be thread-safe: an
   * {@link EnginePool}, closed by the caller after the Streams application).
   */
  public static Topology build(TopologySettings settings, TopologyListener listener, CurvatureComputer engine) {
    Topology t = new Topology();
    t.addSource(SOURCE, Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), Topics.TELEMETRY);
    t.addProcessor(PROCESSOR, () -> new TelemetryProcessor(settings, listener, engine), SOURCE);
    t.addStateStore(store(SNAPSHOT_STORE), PROCESSOR);
    t.addStateStore(store(MEASUREMENT_STORE), PROCESSOR);
    t.addStateStore(store(RUN_STORE), PROCESSOR);
    t.addStateStore(store(LATEST_STORE), PROCESSOR);
    t.addStateStore(store(HISTORY_STORE), PROCESSOR);
    t.addSink(RESULTS_SINK, Topics.RESULTS, Serdes.String().serializer(), Serdes.ByteArray().serializer(),
        PROCESSOR);
    t.addSink(SIGNALS_SINK, Topics.SIGNALS, Serdes.String().serializer(), Serdes.ByteArray().serializer(),
        PROCESSOR);
    t.addSink(DEAD_LETTER_SINK, Topics.DEAD_LETTER, Serdes.String().serializer(), Serdes.ByteArray().serializer(),
        PROCESSOR);
    return t;
  }

  private static StoreBuilder<KeyValueStore<String, byte[]>> store(String name) {
    return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.ByteArray())
        .withLoggingEnabled(CHANGELOG_CONFIG);
  }
}
