package io.flatmon.web;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.wire.Topics;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The signals sent to trainers, read back from the signals topic for the page: per run its last
 * signal and its WARN/STOP signals (a STOP repeated for every later measurement is kept once).
 *
 * <p>The state stores keep no signal history, and the signals of a run are not on its owning instance
 * alone, so every instance reads all partitions of the topic itself (no consumer group), starting
 * {@code lookback} ago. Bounded: {@value #MAX_RUNS} runs (least recently signalled dropped first),
 * {@value #MAX_PER_RUN} WARN/STOP signals per run.
 */
public final class SignalLog implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(SignalLog.class);
  static final int MAX_RUNS = 4096;
  static final int MAX_PER_RUN = 256;
  private static final JsonFormat.Printer JSON = JsonFormat.printer().preservingProtoFieldNames()
      .omittingInsignificantWhitespace();

  private static final class RunSignals {
    TrainerSignal last;
    final ArrayDeque<TrainerSignal> notable = new ArrayDeque<>();
  }

  private final Map<String, RunSignals> runs = new LinkedHashMap<>(64, 0.75f, true) {
    @Override
    protected boolean removeEldestEntry(Map.Entry<String, RunSignals> eldest) {
      return size() > MAX_RUNS;
    }
  };
  private final KafkaConsumer<String, byte[]> consumer;
  private final Thread poller;
  private volatile boolean closed;

  private SignalLog(KafkaConsumer<String, byte[]> consumer, Duration lookback) {
    this.consumer = consumer;
    this.poller = new Thread(() -> run(lookback), "flatmon-signal-log");
    poller.setDaemon(true);
  }

  /** Starts reading the signals topic (which must exist) with the given client properties. */
  public static SignalLog start(String bootstrapServers, Map<String, Object> clientConfig, Duration lookback) {
    Map<String, Object> config = new HashMap<>(clientConfig);
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    config.put(ConsumerConfig.CLIENT_ID_CONFIG, "flatmon-signal-log-" + java.util.UUID.randomUUID());
    config.remove(ConsumerConfig.GROUP_ID_CONFIG);
    SignalLog log = new SignalLog(new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer()),
        lookback);
    log.poller.start();
    return log;
  }

  private void run(Duration lookback) {
    try {
      List<TopicPartition> partitions = new ArrayList<>();
      while (partitions.isEmpty() && !closed) {
        try {
          consumer.partitionsFor(Topics.SIGNALS, Duration.ofSeconds(10))
              .forEach(p -> partitions.add(new TopicPartition(p.topic(), p.partition())));
        } catch (org.apache.kafka.common.errors.TimeoutException e) {
          LOG.debug("no metadata for {} yet", Topics.SIGNALS);
        }
        if (partitions.isEmpty()) {
          Thread.sleep(1000);
        }
      }
      consumer.assign(partitions);
      long since = System.currentTimeMillis() - lookback.toMillis();
      Map<TopicPartition, Long> query = new HashMap<>();
      partitions.forEach(p -> query.put(p, since));
      Map<TopicPartition, OffsetAndTimestamp> offsets = consumer.offsetsForTimes(query, Duration.ofSeconds(30));
      for (TopicPartition p : partitions) {
        OffsetAndTimestamp o = offsets.get(p);
        if (o == null) {
          consumer.seekToEnd(List.of(p));
        } else {
          consumer.seek(p, o.offset());
        }
      }
      while (!closed) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofSeconds(1))) {
          try {
            add(TrainerSignal.parseFrom(r.value()));
          } catch (InvalidProtocolBufferException e) {
            LOG.debug("undecodable signal at {}-{}@{}", r.topic(), r.partition(), r.offset());
          }
        }
      }
    } catch (WakeupException e) {
      // closing
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException e) {
      if (!closed) {
        LOG.warn("the signal log stopped reading {}; the page shows no new signals", Topics.SIGNALS, e);
      }
    } finally {
      consumer.close(Duration.ofSeconds(2));
    }
  }

  synchronized void add(TrainerSignal s) {
    RunSignals r = runs.computeIfAbsent(s.getRunId(), k -> new RunSignals());
    r.last = s;
    if (s.getAction() == SignalAction.WARN || s.getAction() == SignalAction.STOP) {
      TrainerSignal previous = r.notable.peekLast();
      boolean repeatedStop = previous != null && previous.getAction() == SignalAction.STOP
          && s.getAction() == SignalAction.STOP && previous.getReason() == s.getReason();
      if (!repeatedStop) {
        r.notable.addLast(s);
        if (r.notable.size() > MAX_PER_RUN) {
          r.notable.removeFirst();
        }
      }
    }
  }

  /** JSON array: the last signal of every run known. */
  synchronized String lastSignalsJson() {
    List<String> items = new ArrayList<>();
    runs.values().forEach(r -> items.add(json(r.last)));
    return "[" + String.join(",", items) + "]";
  }

  /** JSON array: the run's WARN/STOP signals in order, then its last signal if that is a CONTINUE. */
  synchronized String runSignalsJson(String runId) {
    RunSignals r = runs.get(runId);
    List<String> items = new ArrayList<>();
    if (r != null) {
      r.notable.forEach(s -> items.add(json(s)));
      if (r.last.getAction() != SignalAction.WARN && r.last.getAction() != SignalAction.STOP) {
        items.add(json(r.last));
      }
    }
    return "[" + String.join(",", items) + "]";
  }

  private static String json(TrainerSignal s) {
    try {
      return JSON.print(s);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void close() {
    closed = true;
    consumer.wakeup();
    try {
      poller.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
