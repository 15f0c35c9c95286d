package io.flatmon.trainer;

import io.flatmon.client.TelemetryPublisher;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.Split;
import io.flatmon.schema.RecordEncoder;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Publishes engine types ({@link HeadSnapshot}, {@link ActivationBatch}) and ND4J arrays through a
 * {@link TelemetryPublisher}, for JVM trainers that already hold them. It sits outside the client
 * package so that the client itself stays free of ND4J: a trainer with plain arrays uses the publisher
 * directly.
 */
public final class EngineTelemetry {
  private final TelemetryPublisher publisher;

  public EngineTelemetry(TelemetryPublisher publisher) {
    this.publisher = publisher;
  }

  /** The head's weights at a step (starts that step's measurement of the layer). */
  public Future<RecordMetadata> snapshot(String layer, long step, HeadSnapshot head) {
    return publisher.snapshot(layer, step,
        RecordEncoder.snapshot(publisher.runId(), layer, step, head, 0).getLayerSnapshot().toBuilder());
  }

  /** Samples of a step from float arrays (see {@link ActivationBatch}); Z is sent when the batch has it. */
  public Future<RecordMetadata> batch(String layer, long step, Split split, HeadSnapshot head, ActivationBatch batch) {
    return publisher.batch(layer, step, split,
        RecordEncoder.batch(publisher.runId(), layer, step, split, 0, head, batch, 0).getActivationBatch().toBuilder());
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
}
