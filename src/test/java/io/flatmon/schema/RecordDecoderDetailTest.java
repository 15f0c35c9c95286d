package io.flatmon.schema;

import static io.flatmon.schema.RecordDecoderTest.batch;
import static io.flatmon.schema.RecordDecoderTest.snapshot;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.flatmon.engine.Activation;
import io.flatmon.engine.BatchCost;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.WorkLimits;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * RecordDecoder's exact rejection details, its size limits at their boundaries (one element either side)
 * and the values it passes through. The snapshot is kernel [4, 2, 3, 3], padding 1, classifier [5, 4].
 */
class RecordDecoderDetailTest {
  private final RecordDecoder decoder = new RecordDecoder(1_000_000);

  static RejectedRecordException rejected(RejectReason reason, Executable e) {
    RejectedRecordException x = assertThrows(RejectedRecordException.class, e);
    assertEquals(reason, x.reason(), x.getMessage());
    return x;
  }

  static Tensor vector(float... v) {
    return TensorCodec.encode(v, v.length);
  }

  /** All optional vectors: bias (C=4), scale (C=4), classifier bias (K=5), input channel rms (C_in=2). */
  static LayerSnapshot.Builder full() {
    return snapshot(ActivationKind.RELU).setBias(vector(1, 2, 3, 4)).setScale(vector(0.5f, 1, 1.5f, 2))
        .setClassifierBias(vector(-1, 0, 1, 2, 3)).setInputChannelRms(vector(0.25f, 4)).setWeightDecay(0.01);
  }

  @Test
  void passesEveryFieldThrough() throws Exception {
    float[] kernel = new float[72];
    for (int i = 0; i < kernel.length; i++) {
      kernel[i] = i * 0.5f - 3;
    }
    HeadSnapshot h = decoder.snapshot(full().setKernel(TensorCodec.encode(kernel, 4, 2, 3, 3)).build());
    assertArrayEquals(kernel, h.kernel());
    assertArrayEquals(new float[] {1, 2, 3, 4}, h.bias());
    assertArrayEquals(new float[] {0.5f, 1, 1.5f, 2}, h.scale());
    assertArrayEquals(new float[] {-1, 0, 1, 2, 3}, h.classifierBias());
    assertArrayEquals(new double[] {0.25, 4}, h.inputChannelRms());
    assertEquals(0.01, h.weightDecay(), 0);
    assertEquals(5, h.classes());
    assertEquals(2, h.inputChannels());
    HeadSnapshot bare = decoder.snapshot(snapshot(ActivationKind.RELU).build());
    assertNull(bare.inputChannelRms());
    assertEquals(0, bare.weightDecay(), 0);
    assertEquals("weight decay must be finite and >= 0, got -1.0", rejected(RejectReason.INVALID_VALUE,
        () -> decoder.snapshot(full().setWeightDecay(-1).build())).getMessage());
  }

  /** ρ = 0 marks a channel that is zero on the measurement set (left out of κ_norm); ρ < 0 or subnormal is invalid. */
  @Test
  void inputChannelRmsMayBeZeroButNotNegative() throws Exception {
    assertArrayEquals(new double[] {0, 4},
        decoder.snapshot(full().setInputChannelRms(vector(0, 4)).build()).inputChannelRms());
    assertEquals("input channel rms must be 0 or finite and >= 1.1754943508222875E-38: [-0.5, 4.0]",
        rejected(RejectReason.INVALID_VALUE,
            () -> decoder.snapshot(full().setInputChannelRms(vector(-0.5f, 4)).build())).getMessage());
    // a subnormal ρ: 1/ρ would overflow the engine's float32
    rejected(RejectReason.INVALID_VALUE, () -> decoder.snapshot(full().setInputChannelRms(vector(1e-40f, 4)).build()));
  }

  @Test
  void geometryTakesOneOrTwoValues() throws Exception {
    assertEquals(new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), decoder.snapshot(snapshot(ActivationKind.RELU).build())
        .geometry());
    assertEquals(new ConvGeometry(3, 3, 2, 2, 0, 0, 1, 1), decoder.snapshot(snapshot(ActivationKind.RELU)
        .clearPadding().addStride(2).build()).geometry());
    assertEquals(new ConvGeometry(3, 3, 1, 2, 1, 0, 2, 3), decoder.snapshot(snapshot(ActivationKind.RELU)
        .clearPadding().addPadding(1).addPadding(0).addStride(1).addStride(2).addDilation(2).addDilation(3).build())
        .geometry());
    for (String name : List.of("stride", "padding", "dilation")) {
      LayerSnapshot.Builder s = snapshot(ActivationKind.RELU).clearPadding();
      List<Integer> three = List.of(1, 2, 3);
      switch (name) {
        case "stride" -> s.addAllStride(three);
        case "padding" -> s.addAllPadding(three);
        default -> s.addAllDilation(three);
      }
      assertEquals(name + " takes one or two values, got [1, 2, 3]",
          rejected(RejectReason.INVALID_VALUE, () -> decoder.snapshot(s.build())).getMessage());
    }
  }

  @Test
  void everySupportedActivationIsMapped() throws Exception {
    assertEquals(Activation.of(Activation.Kind.IDENTITY), decoder.snapshot(snapshot(ActivationKind.IDENTITY).build())
        .activation());
    assertEquals(Activation.of(Activation.Kind.RELU), decoder.snapshot(snapshot(ActivationKind.RELU).build())
        .activation());
    assertEquals(Activation.of(Activation.Kind.GELU), decoder.snapshot(snapshot(ActivationKind.GELU).build())
        .activation());
    assertEquals(Activation.of(Activation.Kind.GELU_TANH),
        decoder.snapshot(snapshot(ActivationKind.GELU_TANH).build()).activation());
    assertEquals(Activation.of(Activation.Kind.SILU), decoder.snapshot(snapshot(ActivationKind.SILU).build())
        .activation());
    assertEquals(Activation.of(Activation.Kind.TANH), decoder.snapshot(snapshot(ActivationKind.TANH).build())
        .activation());
    LayerSnapshot.Builder leaky = snapshot(ActivationKind.LEAKY_RELU);
    leaky.getActivationBuilder().setNegativeSlope(0.2);
    assertEquals(Activation.leakyRelu(0.2), decoder.snapshot(leaky.build()).activation());
    leaky.getActivationBuilder().setNegativeSlope(Double.NaN);
    assertEquals("leaky_relu negative_slope must be finite, got NaN",
        rejected(RejectReason.INVALID_VALUE, () -> decoder.snapshot(leaky.build())).getMessage());
  }

  @Test
  void snapshotRejectionsNameTheField() {
    assertEquals("layer is required", rejected(RejectReason.MISSING_FIELD,
        () -> decoder.snapshot(snapshot(ActivationKind.RELU).setLayer("").build())).getMessage());
    assertEquals("classifier_weight is required", rejected(RejectReason.MISSING_FIELD,
        () -> decoder.snapshot(snapshot(ActivationKind.RELU).clearClassifierWeight().build())).getMessage());
    assertEquals("classifier_weight is [5, 3] but the kernel has C=4 filters", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.snapshot(snapshot(ActivationKind.RELU)
            .setClassifierWeight(TensorCodec.encode(new float[15], 5, 3)).build())).getMessage());
    assertEquals("classifier_weight needs K >= 2 classes, got 1", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.snapshot(snapshot(ActivationKind.RELU)
            .setClassifierWeight(TensorCodec.encode(new float[4], 1, 4)).build())).getMessage());
    assertEquals("classifier_bias has 4 elements, expected 5", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.snapshot(full().setClassifierBias(vector(1, 2, 3, 4)).build())).getMessage());
    assertEquals("input_channel_rms has 3 elements, expected 2", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.snapshot(full().setInputChannelRms(vector(1, 2, 3)).build())).getMessage());
    assertEquals("scale has 5 elements, expected 4", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.snapshot(full().setScale(vector(1, 2, 3, 4, 5)).build())).getMessage());
    assertEquals("groups=3 is not supported: only groups = 1 convolutions can be measured",
        rejected(RejectReason.UNSUPPORTED_GROUPS,
            () -> decoder.snapshot(snapshot(ActivationKind.RELU).setGroups(3).build())).getMessage());
  }

  @Test
  void groupsZeroAndOneAreTheSame() throws Exception {
    assertEquals(4, decoder.snapshot(snapshot(ActivationKind.RELU).setGroups(1).build()).channels());
    assertEquals(4, decoder.snapshot(snapshot(ActivationKind.RELU).setGroups(0).build()).channels());
  }

  @Test
  void theDefaultsAreTheDocumentedOnes() {
    assertSame(WorkLimits.DEFAULT, new RecordDecoder().limits());
    assertSame(WorkLimits.DEFAULT, new RecordDecoder(10).limits());
    assertEquals(1L << 25, RecordDecoder.DEFAULT_MAX_ELEMENTS);
    // one element over the default per-tensor limit
    assertEquals("kernel with shape [1, 1, 1, 33554433] exceeds the limit of 33554432 elements",
        rejected(RejectReason.TOO_LARGE, () -> new RecordDecoder().snapshot(snapshot(ActivationKind.RELU)
            .setKernel(Tensor.newBuilder().addShape(1).addShape(1).addShape(1).addShape((1L << 25) + 1)).build()))
            .getMessage());
  }

  @Test
  void snapshotDecodedSizeCountsEveryTensorExactly() throws Exception {
    // kernel 72 + classifier 20 + bias 4 + scale 4 + classifier bias 5 + rms 2 = 107 elements = 428 bytes
    WorkLimits exact = new WorkLimits(428, WorkLimits.DEFAULT_MAX_WORKING_BYTES, WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    new RecordDecoder(1_000_000, exact).snapshot(full().build());
    WorkLimits under = new WorkLimits(427, WorkLimits.DEFAULT_MAX_WORKING_BYTES, WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    RecordDecoder d = new RecordDecoder(1_000_000, under);
    assertSame(under, d.limits());
    assertEquals("snapshot tensors decode to 428 B (0.0 MiB), over the limit of 427 B (0.0 MiB)",
        rejected(RejectReason.TOO_LARGE, () -> d.snapshot(full().build())).getMessage());
  }

  @Test
  void batchDecodedSizeCountsInputAndPreActivation() throws Exception {
    // input [3, 2, 4, 4] = 96 and pre-activation [3, 4, 4, 4] = 192 elements: 1152 bytes
    var b = batch(3).addAllLabels(List.of(0, 1, 2))
        .setPreActivation(TensorCodec.encode(new float[192], 3, 4, 4, 4)).build();
    WorkLimits exact = new WorkLimits(1152, WorkLimits.DEFAULT_MAX_WORKING_BYTES,
        WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    RecordDecoder ok = new RecordDecoder(1_000_000, exact);
    assertEquals(192, ok.batch(b, ok.snapshot(snapshot(ActivationKind.RELU).build())).preActivation().length);
    RecordDecoder d = new RecordDecoder(1_000_000, new WorkLimits(1151, WorkLimits.DEFAULT_MAX_WORKING_BYTES,
        WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE));
    HeadSnapshot head = d.snapshot(snapshot(ActivationKind.RELU).build());
    assertEquals("batch tensors decode to 1152 B (0.0 MiB), over the limit of 1151 B (0.0 MiB)",
        rejected(RejectReason.TOO_LARGE, () -> d.batch(b, head)).getMessage());
  }

  @Test
  void batchWorkingMemoryIsCheckedAtItsLimit() throws Exception {
    HeadSnapshot head = decoder.snapshot(snapshot(ActivationKind.RELU).build());
    BatchCost cost = BatchCost.of(head, 3, 4, 4, false, true, 4);
    var b = batch(3).addAllLabels(List.of(0, 1, 2)).build();
    WorkLimits exact = new WorkLimits(WorkLimits.DEFAULT_MAX_DECODED_BYTES, cost.workingBytes(),
        WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    new RecordDecoder(1_000_000, exact).batch(b, head);
    WorkLimits under = new WorkLimits(WorkLimits.DEFAULT_MAX_DECODED_BYTES, cost.workingBytes() - 1,
        WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    String detail = rejected(RejectReason.TOO_LARGE, () -> new RecordDecoder(1_000_000, under).batch(b, head))
        .getMessage();
    assertEquals("batch [3, 2, 4, 4] on k=3x3 s=1x1 p=1x1 d=1x1 (C=4, K=5): " + under.excess(cost, 3), detail);
  }

  @Test
  void aHeadNoBatchCanAffordIsRejectedAtOnce() {
    BatchCost cheapest = BatchCost.cheapest(4, 2, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 5,
        Activation.of(Activation.Kind.RELU), 4);
    WorkLimits under = new WorkLimits(WorkLimits.DEFAULT_MAX_DECODED_BYTES, cheapest.workingBytes() - 1,
        WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE);
    assertEquals("no batch can be measured with k=3x3 s=1x1 p=1x1 d=1x1 on this head (C=4, C_in=2, K=5): even one "
        + "1×1 sample costs too much: " + under.excess(cheapest, 1), rejected(RejectReason.TOO_LARGE,
            () -> new RecordDecoder(1_000_000, under).snapshot(snapshot(ActivationKind.RELU).build())).getMessage());
  }

  @Test
  void batchRejectionsNameTheField() throws Exception {
    HeadSnapshot head = decoder.snapshot(snapshot(ActivationKind.RELU).build());
    assertEquals("run_id is required", rejected(RejectReason.MISSING_FIELD,
        () -> decoder.batch(batch(1).setRunId("").build(), head)).getMessage());
    assertEquals("layer is required", rejected(RejectReason.MISSING_FIELD,
        () -> decoder.batch(batch(1).setLayer("").build(), head)).getMessage());
    assertEquals("input is required", rejected(RejectReason.MISSING_FIELD,
        () -> decoder.batch(batch(1).clearInput().build(), head)).getMessage());
    assertEquals("input must have rank 4, got shape [0, 2, 4]", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.batch(batch(1).setInput(Tensor.newBuilder().addShape(0).addShape(2).addShape(4)).build(),
            head)).getMessage());
    assertEquals("label -1 of sample 1 is outside [0, 5)", rejected(RejectReason.INVALID_LABEL,
        () -> decoder.batch(batch(2).addLabels(4).addLabels(-1).build(), head)).getMessage());
    assertEquals("label 5 of sample 0 is outside [0, 5)", rejected(RejectReason.INVALID_LABEL,
        () -> decoder.batch(batch(2).addLabels(5).addLabels(0).build(), head)).getMessage());
    assertEquals("3 labels for 2 samples", rejected(RejectReason.SHAPE_MISMATCH,
        () -> decoder.batch(batch(2).addAllLabels(List.of(0, 1, 2)).build(), head)).getMessage());
  }

  @Test
  void preActivationMustMatchEveryExtent() throws Exception {
    HeadSnapshot head = decoder.snapshot(snapshot(ActivationKind.RELU).build());
    float[] z = new float[192];
    for (int i = 0; i < z.length; i++) {
      z[i] = i - 96;
    }
    var ok = decoder.batch(batch(3).setPreActivation(TensorCodec.encode(z, 3, 4, 4, 4)).build(), head);
    assertArrayEquals(z, ok.preActivation());
    long[][] wrong = {{2, 4, 4, 4}, {3, 5, 4, 4}, {3, 4, 3, 4}, {3, 4, 4, 3}};
    for (long[] shape : wrong) {
      int n = (int) (shape[0] * shape[1] * shape[2] * shape[3]);
      String detail = rejected(RejectReason.SHAPE_MISMATCH, () -> decoder.batch(batch(3)
          .setPreActivation(TensorCodec.encode(new float[n], shape)).build(), head)).getMessage();
      assertEquals("pre_activation has shape " + java.util.Arrays.toString(shape)
          + ", expected [3, 4, 4, 4] for this input and head", detail);
    }
  }

  @Test
  void paddedExtentsMustFitAnInt() throws Exception {
    RecordDecoder huge = new RecordDecoder(Long.MAX_VALUE);
    HeadSnapshot head = huge.snapshot(snapshot(ActivationKind.RELU).build()); // padding 1
    int max = Integer.MAX_VALUE;
    Tensor tall = Tensor.newBuilder().addShape(1).addShape(2).addShape(max - 1).addShape(1).build();
    assertEquals("input 2147483646x1 with k=3x3 s=1x1 p=1x1 d=1x1 is wider than an int extent once padded",
        rejected(RejectReason.INVALID_GEOMETRY, () -> huge.batch(batch(1).setInput(tall).build(), head))
            .getMessage());
    Tensor wide = Tensor.newBuilder().addShape(1).addShape(2).addShape(1).addShape(max - 1).build();
    assertEquals("input 1x2147483646 with k=3x3 s=1x1 p=1x1 d=1x1 is wider than an int extent once padded",
        rejected(RejectReason.INVALID_GEOMETRY, () -> huge.batch(batch(1).setInput(wide).build(), head))
            .getMessage());
    // padded to exactly Integer.MAX_VALUE fits: the record is then refused for its size, not its geometry
    Tensor fits = Tensor.newBuilder().addShape(1).addShape(2).addShape(max - 2).addShape(1).build();
    rejected(RejectReason.TOO_LARGE, () -> huge.batch(batch(1).setInput(fits).build(), head));
    Tensor fitsWide = Tensor.newBuilder().addShape(1).addShape(2).addShape(1).addShape(max - 2).build();
    rejected(RejectReason.TOO_LARGE, () -> huge.batch(batch(1).setInput(fitsWide).build(), head));
  }

  @Test
  void decodedSizeSaturatesInsteadOfOverflowing() throws Exception {
    RecordDecoder huge = new RecordDecoder(Long.MAX_VALUE);
    HeadSnapshot head = huge.snapshot(snapshot(ActivationKind.RELU).build());
    // 2^61 elements: 2^63 bytes overflows a long; the detail says "over 8 EiB"
    Tensor t = Tensor.newBuilder().addShape(1L << 31).addShape(2).addShape(1L << 14).addShape(1L << 15).build();
    assertEquals("batch tensors decode to over 8 EiB, over the limit of 67108864 B (64.0 MiB)",
        rejected(RejectReason.TOO_LARGE, () -> huge.batch(batch(1).setInput(t).build(), head)).getMessage());
    // (2^63 − 1) / 4 = 2^61 − 1 elements (a prime: one sample per extent) is the largest count whose bytes are exact
    Tensor edge = Tensor.newBuilder().addShape((1L << 61) - 1).addShape(1).addShape(1).addShape(1).build();
    String detail = rejected(RejectReason.TOO_LARGE, () -> huge.batch(batch(1).setInput(edge).build(), head))
        .getMessage();
    assertEquals("batch tensors decode to 9223372036854775804 B", detail.substring(0, detail.indexOf(" (")), detail);
    // 2^60 elements: 2^62 bytes is still exact
    Tensor u = Tensor.newBuilder().addShape(1L << 30).addShape(2).addShape(1L << 14).addShape(1L << 15).build();
    assertEquals("batch tensors decode to 4611686018427387904 B (4398046511104.0 MiB), over the limit of 67108864 B "
        + "(64.0 MiB)", rejected(RejectReason.TOO_LARGE, () -> huge.batch(batch(1).setInput(u).build(), head))
            .getMessage());
  }
}
