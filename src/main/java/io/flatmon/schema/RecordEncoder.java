package io.flatmon.schema;

import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;

/** Engine types to wire messages: the inverse of {@link RecordDecoder}, for JVM trainers and benchmarks. */
public final class RecordEncoder {
  private RecordEncoder() {
  }

  /** A LayerSnapshot record of a head at a step. */
  public static TelemetryRecord snapshot(String runId, String layer, long step, HeadSnapshot head,
      long publishTimeMicros) {
    ConvGeometry g = head.geometry();
    LayerSnapshot.Builder s = LayerSnapshot.newBuilder()
        .setRunId(runId).setLayer(layer).setStep(step)
        .setKernel(TensorCodec.encode(head.kernel(), head.channels(), head.inputChannels(), g.kernelHeight(),
            g.kernelWidth()))
        .addStride(g.strideHeight()).addStride(g.strideWidth())
        .addPadding(g.padHeight()).addPadding(g.padWidth())
        .addDilation(g.dilationHeight()).addDilation(g.dilationWidth())
        .setActivation(io.flatmon.proto.v1.Activation.newBuilder()
            .setKind(kind(head.activation()))
            .setNegativeSlope(head.activation().negativeSlope()))
        .setClassifierWeight(TensorCodec.encode(head.classifierWeight(), head.classes(), head.channels()))
        .setPublishTimeMicros(publishTimeMicros);
    if (head.bias() != null) {
      s.setBias(TensorCodec.encode(head.bias(), head.channels()));
    }
    if (head.scale() != null) {
      s.setScale(TensorCodec.encode(head.scale(), head.channels()));
    }
    if (head.classifierBias() != null) {
      s.setClassifierBias(TensorCodec.encode(head.classifierBias(), head.classes()));
    }
    if (head.weightDecay() != 0) {
      s.setWeightDecay(head.weightDecay());
    }
    if (head.inputChannelRms() != null) {
      float[] r = new float[head.inputChannels()];
      for (int i = 0; i < r.length; i++) {
        r[i] = (float) head.inputChannelRms()[i];
      }
      s.setInputChannelRms(TensorCodec.encode(r, r.length));
    }
    return TelemetryRecord.newBuilder().setLayerSnapshot(s).build();
  }

  /** An ActivationBatch record; Z is included when the batch carries it. */
  public static TelemetryRecord batch(String runId, String layer, long step, Split split, int batchIndex,
      HeadSnapshot head, ActivationBatch batch, long publishTimeMicros) {
    io.flatmon.proto.v1.ActivationBatch.Builder a = io.flatmon.proto.v1.ActivationBatch.newBuilder()
        .setRunId(runId).setLayer(layer).setStep(step).setSplit(split).setBatchIndex(batchIndex)
        .setInput(TensorCodec.encode(batch.input(), batch.samples(), batch.inputChannels(), batch.height(),
            batch.width()))
        .setPublishTimeMicros(publishTimeMicros);
    if (batch.hasPreActivation()) {
      ConvGeometry g = head.geometry();
      a.setPreActivation(TensorCodec.encode(batch.preActivation(), batch.samples(), head.channels(),
          g.outputHeight(batch.height()), g.outputWidth(batch.width())));
    }
    if (batch.hasLabels()) {
      for (int y : batch.labels()) {
        a.addLabels(y);
      }
    }
    return TelemetryRecord.newBuilder().setActivationBatch(a).build();
  }

  static ActivationKind kind(Activation a) {
    return switch (a.kind()) {
      case IDENTITY -> ActivationKind.IDENTITY;
      case RELU -> ActivationKind.RELU;
      case LEAKY_RELU -> ActivationKind.LEAKY_RELU;
      case GELU -> ActivationKind.GELU;
      case GELU_TANH -> ActivationKind.GELU_TANH;
      case SILU -> ActivationKind.SILU;
      case TANH -> ActivationKind.TANH;
    };
  }
}
