package io.flatmon.client;

import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.wire.Topics;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Follows flatmon.v1.signals for one run on a background thread (read_committed, so only signals of
 * committed measurements arrive). {@link #shouldStop()} turns true on STOP; a callback sees every signal.
 */
public final class SignalSubscriber implements AutoCloseable {
  private final String runId;
  private final KafkaConsumer<String, byte[]> consumer;
  private final Thread thread;
  private final AtomicReference<TrainerSignal> last = new AtomicReference<>();
  private volatile boolean running = true;

  public SignalSubscriber(String bootstrapServers, String runId, Map<String, Object> clientConfig,
      Consumer<TrainerSignal> onSignal) {
    this.runId = runId;
    Map<String, Object> cfg = new HashMap<>(clientConfig);
    cfg.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    cfg.put(ConsumerConfig.GROUP_ID_CONFIG, "flatmon-signals-" + runId + "-" + UUID.randomUUID());
    cfg.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cfg.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    cfg.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    this.consumer = new KafkaConsumer<>(cfg, new StringDeserializer(), new ByteArrayDeserializer());
    consumer.subscribe(List.of(Topics.SIGNALS));
    this.thread = new Thread(() -> poll(onSignal), "flatmon-signals-" + runId);
    thread.setDaemon(true);
    thread.start();
  }

  private void poll(Consumer<TrainerSignal> onSignal) {
    try {
      while (running) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
          if (!runId.equals(r.key())) {
            continue;
          }
          try {
            TrainerSignal s = TrainerSignal.parseFrom(r.value());
            last.set(s);
            if (onSignal != null) {
              onSignal.accept(s);
            }
          } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            // not a signal: skip
          }
        }
      }
    } catch (WakeupException e) {
      // closing
    } finally {
      consumer.close();
    }
  }

  /** The latest signal, or null. */
  public TrainerSignal lastSignal() {
    return last.get();
  }

  /** Whether flatmon has told this run to stop. */
  public boolean shouldStop() {
    TrainerSignal s = last.get();
    return s != null && s.getAction() == SignalAction.STOP;
  }

  @Override
  public void close() {
    running = false;
    consumer.wakeup();
    try {
      thread.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
