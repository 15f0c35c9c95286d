package io.flatmon.client;

import io.flatmon.wire.Topics;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordEncoder;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Publishes one training run's telemetry for JVM trainers. Per measured step: {@link #snapshot},
 * then {@link #batch}es (train and eval), then {@link #measurementDone}. Records are keyed by run id
 * (so they stay in order) with an idempotent, zstd-compressing producer sized for 64 MiB records.
 *
 * <pre>{@code
 * try (TelemetryPublisher p = new TelemetryPublisher("localhost:9092", "run-7", Map.of())) {
 *   p.runStarted(policy);
 *   p.snapshot("layer4", step, head);
 *   p.batch("layer4", step, Split.TRAIN, head, batch);
 *   p.measurementDone(step);
 *   p.runEnded("completed", step);
 * }
 * }</pre>
 */
public final class TelemetryPublisher implements AutoCloseable {
  private final String runId;
  private final KafkaProducer<String, byte[]> producer;
  private int batchIndex;

  /**
   * @param clientConfig extra producer properties (security.protocol, SASL, TLS ...)
   */
  public TelemetryPublisher(String bootstrapServers, String runId, Map<String, Object> clientConfig) {
    this.runId = runId;
    Map<String, Object> cfg = new HashMap<>(clientConfig);
    cfg.putAll(Topics.largeMessageProducerConfig());
    cfg.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    cfg.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    cfg.put(ProducerConfig.ACKS_CONFIG, "all");
    cfg.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    this.producer = new KafkaProducer<>(cfg, new StringSerializer(), new ByteArraySerializer());
  }

  public String runId() {
    return runId;
  }

  /** Announces the run; policy may be null for the server's default. */
  public Future<RecordMetadata> runStarted(EarlyStopPolicy policy) {
    RunStarted.Builder s = RunStarted.newBuilder().setRunId(runId).setFramework("java")
        .setPublishTimeMicros(now());
    if (policy != null) {
      s.setEarlyStopPolicy(policy);
    }
    return send(TelemetryRecord.newBuilder().setRunStarted(s).build());
  }

  /** The head's weights at a step (starts that step's measurement of the layer). */
  public Future<RecordMetadata> snapshot(String layer, long step, HeadSnapshot head) {
    batchIndex = 0;
    return send(RecordEncoder.snapshot(runId, layer, step, head, now()));
  }

  /** Samples of a step from float arrays (see {@link ActivationBatch}). */
  public Future<RecordMetadata> batch(String layer, long step, Split split, HeadSnapshot head, ActivationBatch batch) {
    return send(RecordEncoder.batch(runId, layer, step, split, batchIndex++, head, batch, now()));
  }

  /**
   * Samples from ND4J arrays: input [B, C_in, H, W], optional pre-activation [B, C, H', W'] (null if
   * none) and labels (null if none).
   */
  public Future<RecordMetadata> batch(String layer, long step, Split split, HeadSnapshot head, INDArray input,
      INDArray preActivation, int[] labels) {
    long[] s = input.shape();
    ActivationBatch b = new ActivationBatch((int) s[0], (int) s[1], (int) s[2], (int) s[3],
        input.dup('c').data().asFloat(), preActivation == null ? null : preActivation.dup('c').data().asFloat(),
        labels);
    return batch(layer, step, split, head, b);
  }

  /** Every batch of the step has been sent: results become final. */
  public Future<RecordMetadata> measurementDone(long step) {
    return send(TelemetryRecord.newBuilder().setMeasurementDone(
        MeasurementDone.newBuilder().setRunId(runId).setStep(step).setPublishTimeMicros(now())).build());
  }

  public Future<RecordMetadata> runEnded(String reason, long finalStep) {
    return send(TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId(runId).setReason(reason)
        .setFinalStep(finalStep).setPublishTimeMicros(now())).build());
  }

  /** Blocks until everything sent so far is acknowledged. */
  public void flush() {
    producer.flush();
  }

  private Future<RecordMetadata> send(TelemetryRecord record) {
    return producer.send(new ProducerRecord<>(Topics.TELEMETRY, runId, record.toByteArray()));
  }

  private static long now() {
    return System.currentTimeMillis() * 1000L;
  }

  @Override
  public void close() {
    producer.close();
  }

  /** Waits for a send, rethrowing its failure unchecked. */
  public static RecordMetadata await(Future<RecordMetadata> f) {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    } catch (ExecutionException e) {
      throw new IllegalStateException("publish failed: " + e.getCause(), e.getCause());
    }
  }
}
