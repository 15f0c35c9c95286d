package io.flatmon.wire;

import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;

/**
 * The topics of flatmon and the client limits that go with them.
 *
 * <p><b>Names</b> carry a format version ({@code flatmon.v1.*}): a change of the record encoding that
 * old readers cannot decode gets new topics ({@code flatmon.v2.*}) rather than mixing formats in one
 * log, so old and new services can run side by side during a migration.
 *
 * <p><b>Size limit.</b> A layer snapshot of a large conv kernel (e.g. 512×512×3×3 float32 = 9 MiB, plus
 * Ω) is one record, so every topic accepts {@value #MAX_MESSAGE_BYTES} bytes (64 MiB) per record
 * batch. The limit applies to the batch as stored, i.e. after compression and including the batch
 * header, so a record's payload must stay a little under 64 MiB when it does not compress (float
 * weights barely do). Producers need {@code max.request.size} and {@code buffer.memory} above the
 * record size (checked before compression), consumers {@code max.partition.fetch.bytes} and
 * {@code fetch.max.bytes}: see {@link #largeMessageProducerConfig()} and
 * {@link #largeMessageConsumerConfig()}; Kafka Streams needs the same through
 * {@code StreamsConfig.producerPrefix/consumerPrefix}, and its internal (changelog/repartition) topics
 * through {@code StreamsConfig.topicPrefix("max.message.bytes")}.
 *
 * <p><b>Compression</b> is {@code zstd} on the topic: the best ratio of Kafka's codecs on float data
 * and protobuf framing. Producers should compress with zstd too, otherwise the broker recompresses
 * every batch. flatmon's Java producers use zstd's fast level {@value #ZSTD_LEVEL} instead of the
 * default 3, because every batch is decompressed twice on flatmon's side — by the broker validating
 * it and by the Streams consumer — and that cost is flatmon's, not the trainer's. Measured on a 2 MB
 * activation batch (ResNet-18/CIFAR head, 32 samples with Z), compress / decompress / ratio:
 * <ul>
 *   <li>input half zeros, as after a ReLU: level 3 202 / 950 MB/s / 1.35; level 1 321 / 807 / 1.33;
 *       level −1 383 / 1609 / 1.24;
 *   <li>dense floats (no zeros): level 3 430 / 942 / 1.09; level 1 499 / 950 / 1.09; level −1 1163 /
 *       6890 / 1.00 (stored raw: the mantissas do not compress).
 * </ul>
 * Level −1 gives up 8 % of the ratio on realistic activations for half the decompression work.
 * librdkafka (the Python client) takes levels from 1 up only and uses 1.
 */
public final class Topics {

  /** Per-batch size limit of every flatmon topic: 64 MiB. */
  public static final int MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
  /** Client-side request/fetch limit: 64 MiB payload + 1 MiB for record and batch overhead. */
  public static final int CLIENT_MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES + (1 << 20);
  /** Topic compression codec. */
  public static final String COMPRESSION = "zstd";
  /** zstd level of flatmon's Java producers and topics (Kafka's {@code compression.zstd.level}; zstd's default is 3). */
  public static final int ZSTD_LEVEL = -1;

  public static final String PREFIX = "flatmon.v1.";
  /** Training-side input: layer snapshots, activation batches, step/run markers; key = run id. */
  public static final String TELEMETRY = PREFIX + "telemetry";
  /** Flatness results (running and final); key = run id. */
  public static final String RESULTS = PREFIX + "results";
  /** Signals derived from results (alerts, run lifecycle); key = run id. */
  public static final String SIGNALS = PREFIX + "signals";
  /** Rejected input with a reason code and the source topic/partition/offset. */
  public static final String DEAD_LETTER = PREFIX + "dead-letter";

  /** All flatmon topics, in creation order. */
  public static final List<String> ALL = List.of(TELEMETRY, RESULTS, SIGNALS, DEAD_LETTER);

  private Topics() {}

  /**
   * Producer settings for records up to 64 MiB: {@code max.request.size} = {@value
   * #CLIENT_MAX_REQUEST_BYTES}, {@code buffer.memory} = twice that (a record larger than the buffer is
   * rejected outright; the default is 32 MiB), zstd compression at level {@value #ZSTD_LEVEL}.
   */
  public static Map<String, Object> largeMessageProducerConfig() {
    return Map.of(
        ProducerConfig.MAX_REQUEST_SIZE_CONFIG, CLIENT_MAX_REQUEST_BYTES,
        ProducerConfig.BUFFER_MEMORY_CONFIG, 2L * CLIENT_MAX_REQUEST_BYTES,
        ProducerConfig.COMPRESSION_TYPE_CONFIG, COMPRESSION,
        ProducerConfig.COMPRESSION_ZSTD_LEVEL_CONFIG, ZSTD_LEVEL);
  }

  /** Consumer settings for records up to 64 MiB (per-partition and per-fetch limits). */
  public static Map<String, Object> largeMessageConsumerConfig() {
    return Map.of(
        ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, CLIENT_MAX_REQUEST_BYTES,
        ConsumerConfig.FETCH_MAX_BYTES_CONFIG, CLIENT_MAX_REQUEST_BYTES);
  }
}
