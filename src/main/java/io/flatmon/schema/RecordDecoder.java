package io.flatmon.schema;

import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.BatchCost;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.WorkLimits;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import java.util.List;

/**
 * Validates telemetry messages and turns them into engine types. Every problem becomes a
 * {@link RejectedRecordException} naming the field and what was expected, never an unchecked error.
 *
 * <p>What a record will cost is checked from its declared shapes before any tensor is decoded
 * ({@link WorkLimits}): the decoded size of its tensors, and for a batch the engine's working memory
 * and work per sample ({@link BatchCost}); a snapshot whose cheapest possible batch (one 1×1 sample)
 * is already over the limits is rejected at once. Geometry that is invalid or overflows int
 * arithmetic is INVALID_GEOMETRY.
 */
public final class RecordDecoder {
  /** Default element limit per tensor: a 64 MiB record holds at most 2^24 float32 values. */
  public static final long DEFAULT_MAX_ELEMENTS = 1L << 25;

  /** Bytes of one decoded element: tensors are widened to float32, the engine's precision. */
  private static final int DECODED_ELEMENT_BYTES = 4;

  private final TensorCodec codec;
  private final WorkLimits limits;

  public RecordDecoder() {
    this(DEFAULT_MAX_ELEMENTS);
  }

  public RecordDecoder(long maxElementsPerTensor) {
    this(maxElementsPerTensor, WorkLimits.DEFAULT);
  }

  public RecordDecoder(long maxElementsPerTensor, WorkLimits limits) {
    this.codec = new TensorCodec(maxElementsPerTensor);
    this.limits = limits;
  }

  public WorkLimits limits() {
    return limits;
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
    requireDecodedSize("snapshot", elements(w) + elements(v)
        + (s.hasBias() ? c : 0) + (s.hasScale() ? c : 0) + (s.hasClassifierBias() ? k : 0)
        + (s.hasInputChannelRms() ? cin : 0));
    BatchCost cheapest = BatchCost.cheapest(c, cin, geometry, k, activation, DECODED_ELEMENT_BYTES);
    String excess = limits.excess(cheapest, 1);
    if (excess != null) {
      throw new RejectedRecordException(RejectReason.TOO_LARGE, String.format(
          "no batch can be measured with %s on this head (C=%d, C_in=%d, K=%d): even one 1×1 sample costs too "
              + "much: %s", geometry, c, cin, k, excess));
    }
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
    ConvGeometry geo = head.geometry();
    if (geo.paddedHeight(shape[2]) > Integer.MAX_VALUE || geo.paddedWidth(shape[3]) > Integer.MAX_VALUE) {
      throw new RejectedRecordException(RejectReason.INVALID_GEOMETRY, String.format(
          "input %dx%d with %s is wider than an int extent once padded", shape[2], shape[3], geo));
    }
    long outH = geo.outputHeightExact(shape[2]);
    long outW = geo.outputWidthExact(shape[3]);
    long decoded = elements(shape);
    if (a.hasPreActivation()) {
      long[] zs = codec.shape(a.getPreActivation(), "pre_activation", 4);
      if (zs[0] != shape[0] || zs[1] != head.channels() || zs[2] != outH || zs[3] != outW) {
        throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
            "pre_activation has shape %s, expected [%d, %d, %d, %d] for this input and head",
            a.getPreActivation().getShapeList(), shape[0], head.channels(), outH, outW));
      }
      decoded += elements(zs);
    }
    requireDecodedSize("batch", decoded);
    // κ_norm is computed for nearly every batch (ρ from the trainer or from the step's first batch):
    // bound with it.
    BatchCost cost = BatchCost.of(head, shape[0], shape[2], shape[3], a.hasPreActivation(), true,
        DECODED_ELEMENT_BYTES);
    String excess = limits.excess(cost, shape[0]);
    if (excess != null) {
      throw new RejectedRecordException(RejectReason.TOO_LARGE, String.format(
          "batch %s on %s (C=%d, K=%d): %s", a.getInput().getShapeList(), geo, head.channels(), head.classes(),
          excess));
    }
    float[] input = codec.decode(a.getInput(), "input", 4);
    float[] z = a.hasPreActivation() ? codec.decode(a.getPreActivation(), "pre_activation", 4) : null;
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

  /** Rejects a record whose tensors, decoded to float32, would exceed the limit. */
  private void requireDecodedSize(String what, long elements) throws RejectedRecordException {
    long bytes = elements > Long.MAX_VALUE / DECODED_ELEMENT_BYTES ? Long.MAX_VALUE : elements * DECODED_ELEMENT_BYTES;
    if (bytes > limits.maxDecodedBytes()) {
      throw new RejectedRecordException(RejectReason.TOO_LARGE, String.format(
          "%s tensors decode to %s, over the limit of %s", what, BatchCost.bytes(bytes),
          BatchCost.bytes(limits.maxDecodedBytes())));
    }
  }

  /** The product of extents already checked by {@link TensorCodec#shape} (each tensor under its element limit). */
  private static long elements(long[] shape) {
    long n = 1;
    for (long s : shape) {
      n *= s;
    }
    return n;
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
      throw new RejectedRecordException(RejectReason.INVALID_GEOMETRY, e.getMessage());
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
