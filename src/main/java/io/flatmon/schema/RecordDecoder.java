package io.flatmon.schema;

import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import java.util.List;

/**
 * Validates telemetry messages and turns them into engine types. Every problem becomes a
 * {@link RejectedRecordException} naming the field and what was expected, never an unchecked error.
 */
public final class RecordDecoder {
  /** Default element limit per tensor: a 64 MiB record holds at most 2^24 float32 values. */
  public static final long DEFAULT_MAX_ELEMENTS = 1L << 25;

  private final TensorCodec codec;

  public RecordDecoder() {
    this(DEFAULT_MAX_ELEMENTS);
  }

  public RecordDecoder(long maxElementsPerTensor) {
    this.codec = new TensorCodec(maxElementsPerTensor);
  }

  /** The head described by a snapshot. */
  public HeadSnapshot snapshot(LayerSnapshot s) throws RejectedRecordException {
    requireIdentity(s.getRunId(), s.getLayer());
    if (s.getGroups() != 0 && s.getGroups() != 1) {
      throw new RejectedRecordException(RejectReason.UNSUPPORTED_GROUPS,
          "groups=" + s.getGroups() + " is not supported: only groups = 1 convolutions can be measured");
    }
    if (!s.hasKernel()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "kernel is required");
    }
    if (!s.hasClassifierWeight()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "classifier_weight is required");
    }
    long[] w = codec.shape(s.getKernel(), "kernel", 4);
    long[] v = codec.shape(s.getClassifierWeight(), "classifier_weight", 2);
    int c = (int) w[0];
    int cin = (int) w[1];
    if (v[1] != c) {
      throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
          "classifier_weight is [%d, %d] but the kernel has C=%d filters", v[0], v[1], c));
    }
    if (v[0] < 2) {
      throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH,
          "classifier_weight needs K >= 2 classes, got " + v[0]);
    }
    ConvGeometry geometry = geometry(s, (int) w[2], (int) w[3]);
    Activation activation = activation(s.getActivation());
    int k = (int) v[0];
    try {
      HeadSnapshot.Builder b = HeadSnapshot.builder(c, cin, geometry, k)
          .kernel(codec.decode(s.getKernel(), "kernel", 4))
          .activation(activation)
          .classifier(codec.decode(s.getClassifierWeight(), "classifier_weight", 2),
              optionalVector(s.hasClassifierBias(), s.getClassifierBias(), "classifier_bias", k));
      b.bias(optionalVector(s.hasBias(), s.getBias(), "bias", c));
      b.scale(optionalVector(s.hasScale(), s.getScale(), "scale", c));
      if (s.hasWeightDecay()) {
        b.weightDecay(s.getWeightDecay());
      }
      float[] rms = optionalVector(s.hasInputChannelRms(), s.getInputChannelRms(), "input_channel_rms", cin);
      if (rms != null) {
        double[] r = new double[cin];
        for (int i = 0; i < cin; i++) {
          r[i] = rms[i];
        }
        b.inputChannelRms(r);
      }
      return b.build();
    } catch (IllegalArgumentException e) {
      throw new RejectedRecordException(RejectReason.INVALID_VALUE, e.getMessage());
    }
  }

  /** A batch checked against the head it will be measured with. */
  public ActivationBatch batch(io.flatmon.proto.v1.ActivationBatch a, HeadSnapshot head)
      throws RejectedRecordException {
    requireIdentity(a.getRunId(), a.getLayer());
    if (!a.hasInput()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "input is required");
    }
    if (a.getInput().getShapeCount() == 4 && a.getInput().getShape(0) == 0) {
      throw new RejectedRecordException(RejectReason.EMPTY_BATCH, "input has no samples (B = 0)");
    }
    long[] shape = codec.shape(a.getInput(), "input", 4);
    float[] input = codec.decode(a.getInput(), "input", 4);
    float[] z = null;
    if (a.hasPreActivation()) {
      long[] zs = codec.shape(a.getPreActivation(), "pre_activation", 4);
      int outH = head.geometry().outputHeight((int) shape[2]);
      int outW = head.geometry().outputWidth((int) shape[3]);
      if (zs[0] != shape[0] || zs[1] != head.channels() || zs[2] != outH || zs[3] != outW) {
        throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
            "pre_activation has shape %s, expected [%d, %d, %d, %d] for this input and head",
            a.getPreActivation().getShapeList(), shape[0], head.channels(), outH, outW));
      }
      z = codec.decode(a.getPreActivation(), "pre_activation", 4);
    }
    int[] labels = null;
    if (a.getLabelsCount() > 0) {
      if (a.getLabelsCount() != shape[0]) {
        throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
            "%d labels for %d samples", a.getLabelsCount(), shape[0]));
      }
      labels = a.getLabelsList().stream().mapToInt(Integer::intValue).toArray();
      for (int n = 0; n < labels.length; n++) {
        if (labels[n] < 0 || labels[n] >= head.classes()) {
          throw new RejectedRecordException(RejectReason.INVALID_LABEL, String.format(
              "label %d of sample %d is outside [0, %d)", labels[n], n, head.classes()));
        }
      }
    }
    ActivationBatch batch = new ActivationBatch((int) shape[0], (int) shape[1], (int) shape[2], (int) shape[3],
        input, z, labels);
    try {
      batch.checkAgainst(head);
    } catch (IllegalArgumentException e) {
      RejectReason reason = e.getMessage().startsWith("labels are required")
          ? RejectReason.MISSING_FIELD : RejectReason.SHAPE_MISMATCH;
      throw new RejectedRecordException(reason, e.getMessage());
    }
    return batch;
  }

  private static void requireIdentity(String runId, String layer) throws RejectedRecordException {
    if (runId.isEmpty()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "run_id is required");
    }
    if (layer.isEmpty()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "layer is required");
    }
  }

  private float[] optionalVector(boolean present, Tensor t, String name, int length)
      throws RejectedRecordException {
    if (!present) {
      return null;
    }
    long[] shape = codec.shape(t, name, 1);
    if (shape[0] != length) {
      throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
          "%s has %d elements, expected %d", name, shape[0], length));
    }
    return codec.decode(t, name, 1);
  }

  private static ConvGeometry geometry(LayerSnapshot s, int kh, int kw) throws RejectedRecordException {
    int[] stride = pair(s.getStrideList(), 1, "stride");
    int[] padding = pair(s.getPaddingList(), 0, "padding");
    int[] dilation = pair(s.getDilationList(), 1, "dilation");
    try {
      return new ConvGeometry(kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]);
    } catch (IllegalArgumentException e) {
      throw new RejectedRecordException(RejectReason.INVALID_VALUE, e.getMessage());
    }
  }

  private static int[] pair(List<Integer> values, int empty, String name) throws RejectedRecordException {
    return switch (values.size()) {
      case 0 -> new int[] {empty, empty};
      case 1 -> new int[] {values.get(0), values.get(0)};
      case 2 -> new int[] {values.get(0), values.get(1)};
      default -> throw new RejectedRecordException(RejectReason.INVALID_VALUE,
          name + " takes one or two values, got " + values);
    };
  }

  private static Activation activation(io.flatmon.proto.v1.Activation a) throws RejectedRecordException {
    return switch (a.getKind()) {
      case IDENTITY -> Activation.of(Activation.Kind.IDENTITY);
      case RELU -> Activation.of(Activation.Kind.RELU);
      case LEAKY_RELU -> {
        try {
          yield Activation.leakyRelu(a.getNegativeSlope());
        } catch (IllegalArgumentException e) {
          throw new RejectedRecordException(RejectReason.INVALID_VALUE, e.getMessage());
        }
      }
      case GELU -> Activation.of(Activation.Kind.GELU);
      case GELU_TANH -> Activation.of(Activation.Kind.GELU_TANH);
      case SILU -> Activation.of(Activation.Kind.SILU);
      case TANH -> Activation.of(Activation.Kind.TANH);
      default -> throw new RejectedRecordException(RejectReason.UNKNOWN_ACTIVATION,
          "activation kind " + a.getKind() + " is not supported (identity, relu, leaky_relu, gelu, gelu_tanh, silu, tanh)");
    };
  }
}
