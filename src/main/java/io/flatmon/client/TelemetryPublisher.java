package io.flatmon.client;

import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.wire.Tensors;
import io.flatmon.wire.Topics;
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

/**
 * Publishes one training run's telemetry for JVM trainers. Per measured step: {@link #snapshot},
 * then {@link #batch}es (train and eval), then {@link #measurementDone}. Records are keyed by run id
 * (so they stay in order) with an idempotent, zstd-compressing producer sized for 64 MiB records.
 *
 * <p>The client needs only the wire schema ({@code io.flatmon.proto.v1}, {@code io.flatmon.wire}) and
 * kafka-clients: tensors are plain float arrays with their shapes (row-major, see {@link Tensors}), so a
 * trainer that publishes does not load ND4J or any native library. Engine types and ND4J arrays are
 * published through {@code io.flatmon.trainer.EngineTelemetry}.
 *
 * <pre>{@code
 * try (TelemetryPublisher p = new TelemetryPublisher("localhost:9092", "run-7", Map.of())) {
 *   p.runStarted(policy);
 *   p.snapshot("layer4", step, LayerSnapshot.newBuilder()
 *       .setKernel(Tensors.float32(kernel, c, cIn, 3, 3)).addStride(1).addStride(1).addPadding(1).addPadding(1)
 *       .setActivation(Activation.newBuilder().setKind(ActivationKind.RELU))
 *       .setClassifierWeight(Tensors.float32(classifier, k, c)));
 *   p.batch("layer4", step, Split.TRAIN, input, new long[] {b, cIn, h, w}, labels);
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

  /**
   * The head's weights at a step (starts that step's measurement of the layer). Run id, layer, step and
   * publish time are filled in here; the rest (kernel, geometry, activation, classifier) is the caller's.
   */
  public Future<RecordMetadata> snapshot(String layer, long step, LayerSnapshot.Builder snapshot) {
    batchIndex = 0;
    return send(TelemetryRecord.newBuilder().setLayerSnapshot(snapshot.clone()
        .setRunId(runId).setLayer(layer).setStep(step).setPublishTimeMicros(now())).build());
  }

  /**
   * Samples of a step: the conv layer's input [B, C_in, H, W] as a row-major float array, and the
   * labels (null if none).
   */
  public Future<RecordMetadata> batch(String layer, long step, Split split, float[] input, long[] inputShape,
      int[] labels) {
    ActivationBatch.Builder b = ActivationBatch.newBuilder().setInput(Tensors.float32(input, inputShape));
    if (labels != null) {
      for (int y : labels) {
        b.addLabels(y);
      }
    }
    return batch(layer, step, split, b);
  }

  /**
   * Samples of a step as a wire message (input, and optionally pre-activation Z and labels). Run id,
   * layer, step, split, batch index and publish time are filled in here.
   */
  public Future<RecordMetadata> batch(String layer, long step, Split split, ActivationBatch.Builder batch) {
    return send(TelemetryRecord.newBuilder().setActivationBatch(batch.clone()
        .setRunId(runId).setLayer(layer).setStep(step).setSplit(split).setBatchIndex(batchIndex++)
        .setPublishTimeMicros(now())).build());
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
