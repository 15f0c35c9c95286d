package io.flatmon.stream;

import io.flatmon.wire.Topics;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.streams.StreamsConfig;

/**
 * The Kafka Streams configuration of a flatmon instance. Records up to 64 MiB (a 512×512×3×3 kernel is
 * 9.4 MB) must pass every client Streams creates — its producer, its consumers and its internal
 * (changelog) topics — or the application stops on the first big snapshot; so each limit is raised
 * with the matching prefix.
 */
public final class StreamsSettings {
  private StreamsSettings() {
  }

  /**
   * @param clientConfig user-supplied client properties (security.protocol, SASL, TLS), applied to
   *     every client; they win over flatmon's defaults except the size limits
   * @param applicationServer this instance's query endpoint host:port, advertised to the others
   */
  public static Properties properties(String bootstrapServers, String applicationId, Path stateDir, int threads,
      int replicationFactor, String applicationServer, Map<String, Object> clientConfig) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, replicationFactor);
    p.put(StreamsConfig.APPLICATION_SERVER_CONFIG, applicationServer);
    // Per-record work is milliseconds to seconds (a batch is a curvature computation): small polls keep
    // the poll interval far from its limit. Results and early-stopping signals reach read_committed
    // readers at a commit, so the interval bounds their latency; each commit is a transaction per stream
    // thread (a marker on every partition it wrote). 100 ms: `flatmon bench signals` measured a signal
    // p99 of 0.24 s at 50 live runs with it, against 7.1 s with 500 ms on the same shared machine
    // (docs/early-stopping.md).
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 20);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    // A crashed instance's partitions move after 10 s instead of the default 45 s.
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10_000);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 3_000);
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put("processing.exception.handler.global.enabled", true);
    // A record that fails outside the processor's own catch goes to the dead-letter topic once, and
    // processing moves on: the default handlers stop the thread, and its replacement replays it.
    p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_CLASS_CONFIG, DeadLetterExceptionHandler.class);
    p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, DeadLetterExceptionHandler.class);
    p.put(StreamsConfig.PRODUCTION_EXCEPTION_HANDLER_CLASS_CONFIG, DeadLetterExceptionHandler.class);
    clientConfig.forEach(p::put);
    Topics.largeMessageProducerConfig().forEach((k, v) -> p.put(StreamsConfig.producerPrefix(k), v));
    Topics.largeMessageConsumerConfig().forEach((k, v) -> {
      p.put(StreamsConfig.consumerPrefix(k), v);
      p.put(StreamsConfig.restoreConsumerPrefix(k), v);
      p.put(StreamsConfig.globalConsumerPrefix(k), v);
    });
    // The main consumer prefetches what its stream thread will process next. A fetch of 64 MiB per
    // partition held up to a second of batches per stream thread on the heap, and every young
    // collection copied them; 8 MiB per fetch is enough to keep a thread busy, and a record larger
    // than that still arrives whole (a fetch always returns the first record batch, whatever its size).
    p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG), 4 << 20);
    p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.FETCH_MAX_BYTES_CONFIG), 8 << 20);
    p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), Topics.COMPRESSION);
    p.put(StreamsConfig.topicPrefix(TopicConfig.MAX_MESSAGE_BYTES_CONFIG), Integer.toString(Topics.MAX_MESSAGE_BYTES));
    return p;
  }
}
