package io.flatmon.stream.it;

import com.google.protobuf.InvalidProtocolBufferException;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.wire.Topics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.function.Predicate;
import java.util.function.Supplier;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads one output topic (results or dead-letter) from the beginning of every partition, without a
 * consumer group, with the large-message consumer limits; {@code read_committed} or
 * {@code read_uncommitted}.
 */
public final class ResultsReader implements AutoCloseable {
  private final String topic;
  private final KafkaConsumer<String, byte[]> consumer;
  private final List<ConsumerRecord<String, byte[]>> records = new ArrayList<>();
  private List<TopicPartition> partitions;

  public ResultsReader(Properties client, String topic, boolean readCommitted) {
    this.topic = topic;
    Properties p = new Properties();
    p.putAll(client);
    p.putAll(Topics.largeMessageConsumerConfig());
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, readCommitted ? "read_committed" : "read_uncommitted");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    this.consumer = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
  }

  public static ResultsReader results(Properties client) {
    return new ResultsReader(client, Topics.RESULTS, true);
  }

  public static ResultsReader deadLetter(Properties client) {
    return new ResultsReader(client, Topics.DEAD_LETTER, true);
  }

  private void assignIfNeeded() {
    if (partitions != null) {
      return;
    }
    List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(30));
    if (infos == null || infos.isEmpty()) {
      throw new AssertionError("topic " + topic + " does not exist");
    }
    partitions = infos.stream().map(i -> new TopicPartition(i.topic(), i.partition())).toList();
    consumer.assign(partitions);
    consumer.seekToBeginning(partitions);
  }

  /** Polls once (up to {@code wait}) and returns how many records arrived. */
  public int pollOnce(Duration wait) {
    assignIfNeeded();
    int n = 0;
    for (ConsumerRecord<String, byte[]> r : consumer.poll(wait)) {
      records.add(r);
      n++;
    }
    return n;
  }

  /**
   * Polls until {@code done} holds for this reader, or fails after {@code timeout} with the state
   * described by {@code progress}.
   */
  public ResultsReader pollUntil(Predicate<ResultsReader> done, Duration timeout, Supplier<String> progress) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!done.test(this)) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError(String.format(Locale.ROOT, "%s: condition not met within %d s: %s", topic,
            timeout.toSeconds(), progress.get()));
      }
      pollOnce(Duration.ofMillis(200));
    }
    return this;
  }

  /** Keeps polling until the position of every partition reaches its end offset (the LSO under read_committed). */
  public ResultsReader drainToEnd(Duration timeout) {
    assignIfNeeded();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
      boolean atEnd = true;
      for (TopicPartition tp : partitions) {
        if (consumer.position(tp) < end.get(tp)) {
          atEnd = false;
        }
      }
      if (atEnd) {
        return this;
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError(topic + " not drained to its end offsets " + end + " within " + timeout);
      }
      pollOnce(Duration.ofMillis(200));
    }
  }

  public List<ConsumerRecord<String, byte[]>> records() {
    return records;
  }

  public List<FlatnessResult> results() {
    List<FlatnessResult> out = new ArrayList<>(records.size());
    for (ConsumerRecord<String, byte[]> r : records) {
      try {
        out.add(FlatnessResult.parseFrom(r.value()));
      } catch (InvalidProtocolBufferException e) {
        throw new AssertionError("undecodable result at " + r.topic() + "/" + r.partition() + "@" + r.offset(), e);
      }
    }
    return out;
  }

  public List<FlatnessResult> finals() {
    return results().stream().filter(FlatnessResult::getFinal).toList();
  }

  public long finalCount() {
    return finals().size();
  }

  public List<Rejected> rejected() {
    List<Rejected> out = new ArrayList<>(records.size());
    for (ConsumerRecord<String, byte[]> r : records) {
      try {
        out.add(Rejected.parseFrom(r.value()));
      } catch (InvalidProtocolBufferException e) {
        throw new AssertionError("undecodable dead letter at " + r.partition() + "@" + r.offset(), e);
      }
    }
    return out;
  }

  @Override
  public void close() {
    consumer.close(org.apache.kafka.clients.consumer.CloseOptions.timeout(Duration.ofSeconds(2)));
  }
}
