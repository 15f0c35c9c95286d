package io.flatmon.stream;

import com.google.protobuf.InvalidProtocolBufferException;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RunState;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyQueryMetadata;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsMetadata;
import org.apache.kafka.streams.state.HostInfo;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * Reads of this instance's run, latest and history stores (interactive queries), and which instance
 * owns a run. A run's state lives only on the instance whose task owns its partition; the caller
 * asks {@link #owner} and forwards there.
 */
public final class RunStores {
  private final KafkaStreams streams;

  public RunStores(KafkaStreams streams) {
    this.streams = streams;
  }

  public KafkaStreams.State state() {
    return streams.state();
  }

  /** Every run held here, live and ended (ended ones until their retention has passed). */
  public List<RunState> runs() {
    List<RunState> out = new ArrayList<>();
    try (KeyValueIterator<String, byte[]> it = store(FlatmonTopology.RUN_STORE).all()) {
      while (it.hasNext()) {
        out.add(parse(it.next().value, RunState.parser()));
      }
    }
    return out;
  }

  /** The run, if held here. */
  public Optional<RunState> run(String runId) {
    byte[] bytes = store(FlatmonTopology.RUN_STORE).get(runId);
    return bytes == null ? Optional.empty() : Optional.of(parse(bytes, RunState.parser()));
  }

  /** The latest result per (layer, split) of the run. */
  public List<FlatnessResult> latest(String runId) {
    return scan(FlatmonTopology.LATEST_STORE, runId);
  }

  /** The final results of the run's last {@code steps} steps, newest step first. */
  public List<FlatnessResult> history(String runId, int steps) {
    TreeMap<Long, List<FlatnessResult>> byStep = new TreeMap<>(Comparator.reverseOrder());
    for (FlatnessResult r : scan(FlatmonTopology.HISTORY_STORE, runId)) {
      byStep.computeIfAbsent(r.getStep(), s -> new ArrayList<>()).add(r);
    }
    List<FlatnessResult> out = new ArrayList<>();
    byStep.values().stream().limit(steps).forEach(out::addAll);
    return out;
  }

  /** The instance whose active task holds the run; empty while the application rebalances. */
  public Optional<HostInfo> owner(String runId) {
    KeyQueryMetadata md = streams.queryMetadataForKey(FlatmonTopology.RUN_STORE, runId, Serdes.String().serializer());
    if (md == null || md == KeyQueryMetadata.NOT_AVAILABLE) {
      return Optional.empty();
    }
    return Optional.of(md.activeHost());
  }

  /** The instances (application.server of each) that hold a part of the run store. */
  public List<HostInfo> instances() {
    return streams.streamsMetadataForStore(FlatmonTopology.RUN_STORE).stream().map(StreamsMetadata::hostInfo)
        .distinct().toList();
  }

  private List<FlatnessResult> scan(String storeName, String runId) {
    List<FlatnessResult> out = new ArrayList<>();
    try (KeyValueIterator<String, byte[]> it = store(storeName).prefixScan(StateKeys.runPrefix(runId),
        Serdes.String().serializer())) {
      while (it.hasNext()) {
        out.add(parse(it.next().value, FlatnessResult.parser()));
      }
    }
    return out;
  }

  private ReadOnlyKeyValueStore<String, byte[]> store(String name) {
    return streams.store(StoreQueryParameters.fromNameAndType(name, QueryableStoreTypes.<String, byte[]>keyValueStore()));
  }

  private static <T> T parse(byte[] bytes, com.google.protobuf.Parser<T> parser) {
    try {
      return parser.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("corrupt state store entry", e);
    }
  }
}
