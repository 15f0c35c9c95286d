package io.flatmon.schema;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.Activation;
import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.DType;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/** Wire decoding: every bad input is a RejectedRecordException with the right reason. */
class RecordDecoderTest {
  private final RecordDecoder decoder = new RecordDecoder(1_000_000);

  static LayerSnapshot.Builder snapshot(ActivationKind kind) {
    return LayerSnapshot.newBuilder().setRunId("r").setLayer("l").setStep(3)
        .setKernel(TensorCodec.encode(new float[4 * 2 * 3 * 3], 4, 2, 3, 3))
        .addPadding(1)
        .setActivation(Activation.newBuilder().setKind(kind))
        .setClassifierWeight(TensorCodec.encode(new float[5 * 4], 5, 4));
  }

  static ActivationBatch.Builder batch(int samples) {
    return ActivationBatch.newBuilder().setRunId("r").setLayer("l").setStep(3)
        .setInput(TensorCodec.encode(new float[samples * 2 * 4 * 4], samples, 2, 4, 4));
  }

  private HeadSnapshot head(ActivationKind kind) throws RejectedRecordException {
    return decoder.snapshot(snapshot(kind).build());
  }

  @Test
  void decodesAValidSnapshotAndBatch() throws Exception {
    HeadSnapshot head = head(ActivationKind.RELU);
    assertEquals(4, head.channels());
    assertEquals(18, head.patchLength());
    assertEquals(1, head.geometry().padHeight());
    assertEquals(4, head.geometry().outputHeight(4));
    var b = decoder.batch(batch(3).addAllLabels(java.util.List.of(0, 4, 2)).build(), head);
    assertEquals(3, b.samples());
    assertArrayEquals(new int[] {0, 4, 2}, b.labels());
  }

  @Test
  void rejectsWhatCannotBeMeasured() throws Exception {
    HeadSnapshot relu = head(ActivationKind.RELU);
    HeadSnapshot gelu = head(ActivationKind.GELU);
    expectSnapshot(RejectReason.UNSUPPORTED_GROUPS, s -> s.setGroups(2), "groups=2");
    expectSnapshot(RejectReason.UNKNOWN_ACTIVATION,
        s -> s.setActivation(Activation.newBuilder().setKindValue(99)), "not supported");
    expectSnapshot(RejectReason.UNKNOWN_ACTIVATION, s -> s.clearActivation(), "not supported");
    expectSnapshot(RejectReason.MISSING_FIELD, s -> s.setRunId(""), "run_id");
    expectSnapshot(RejectReason.MISSING_FIELD, s -> s.clearKernel(), "kernel");
    expectSnapshot(RejectReason.SHAPE_MISMATCH,
        s -> s.setClassifierWeight(TensorCodec.encode(new float[15], 5, 3)), "C=4");
    expectSnapshot(RejectReason.SHAPE_MISMATCH,
        s -> s.setKernel(s.getKernel().toBuilder().setData(ByteString.copyFrom(new byte[10]))), "bytes");
    expectSnapshot(RejectReason.TOO_LARGE,
        s -> s.setKernel(Tensor.newBuilder().addShape(1000).addShape(1000).addShape(1000).addShape(1)),
        "limit");
    expectSnapshot(RejectReason.INVALID_GEOMETRY, s -> s.clearStride().addStride(0), "stride");
    expectSnapshot(RejectReason.SHAPE_MISMATCH, s -> s.setBias(TensorCodec.encode(new float[3], 3)), "bias");

    expectBatch(RejectReason.SHAPE_MISMATCH, relu, batch(2).setInput(TensorCodec.encode(new float[96], 2, 3, 4, 4)),
        "C_in=3");
    expectBatch(RejectReason.INVALID_LABEL, relu, batch(2).addLabels(0).addLabels(5), "outside [0, 5)");
    expectBatch(RejectReason.SHAPE_MISMATCH, relu, batch(2).addLabels(0), "1 labels for 2 samples");
    expectBatch(RejectReason.MISSING_FIELD, gelu, batch(2), "labels are required");
    expectBatch(RejectReason.SHAPE_MISMATCH, relu,
        batch(2).setPreActivation(TensorCodec.encode(new float[2 * 4 * 3 * 3], 2, 4, 3, 3)), "pre_activation");
    // a shape claiming 10⁹ elements is refused before any allocation
    expectBatch(RejectReason.TOO_LARGE, relu,
        batch(2).setInput(Tensor.newBuilder().addShape(1000).addShape(1000).addShape(1000).addShape(1)), "limit");
    expectBatch(RejectReason.EMPTY_BATCH, relu,
        batch(2).setInput(Tensor.newBuilder().addShape(0).addShape(2).addShape(4).addShape(4)), "no samples");
    expectBatch(RejectReason.SHAPE_MISMATCH, relu,
        batch(2).setInput(Tensor.newBuilder().addShape(2).addShape(0).addShape(4).addShape(4)), "non-positive");
    expectBatch(RejectReason.INVALID_VALUE, relu,
        batch(1).setInput(batch(1).getInput().toBuilder().setDtypeValue(42)), "dtype");
  }

  @Test
  void widensHalfPrecisionTensors() throws Exception {
    float[] values = {1.0f, -2.5f, 0.0f, 65504f, 6.1035156e-05f, 5.9604645e-08f};
    assertArrayEquals(values, new TensorCodec(100).decode(half(values, DType.FLOAT16), "x", 1));
    float[] bf = {1.0f, -2.5f, 3.140625f, 1.0e30f};
    float[] decoded = new TensorCodec(100).decode(half(bf, DType.BFLOAT16), "x", 1);
    for (int i = 0; i < bf.length; i++) {
      assertEquals(bf[i], decoded[i], Math.abs(bf[i]) / 128, "bfloat16 keeps 8 significant bits");
    }
    assertEquals(Float.POSITIVE_INFINITY, TensorCodec.halfToFloat((short) 0x7c00));
    assertTrue(Float.isNaN(TensorCodec.halfToFloat((short) 0x7e00)));
  }

  /** float16 by the IEEE rules (values chosen exact), bfloat16 by truncating float32. */
  private static Tensor half(float[] values, DType dtype) {
    ByteBuffer buf = ByteBuffer.allocate(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : values) {
      int bits = Float.floatToIntBits(v);
      if (dtype == DType.BFLOAT16) {
        buf.putShort((short) (bits >>> 16));
      } else {
        buf.putShort(floatToHalf(v));
      }
    }
    return Tensor.newBuilder().addShape(values.length).setDtype(dtype).setData(ByteString.copyFrom(buf.array()))
        .build();
  }

  private static short floatToHalf(float v) {
    if (v == 0) {
      return 0;
    }
    int sign = v < 0 ? 0x8000 : 0;
    float a = Math.abs(v);
    int exp = Math.getExponent(a);
    if (exp < -14) {
      return (short) (sign | Math.round(a / 0x1p-24f));
    }
    int mantissa = Math.round((a / (float) Math.pow(2, exp) - 1f) * 1024f);
    return (short) (sign | ((exp + 15) << 10) | mantissa);
  }

  private void expectSnapshot(RejectReason reason, Consumer<LayerSnapshot.Builder> change, String detail) {
    LayerSnapshot.Builder s = snapshot(ActivationKind.RELU);
    change.accept(s);
    RejectedRecordException e = assertThrows(RejectedRecordException.class, () -> decoder.snapshot(s.build()));
    assertEquals(reason, e.reason(), e.getMessage());
    assertTrue(e.getMessage().contains(detail), e.getMessage());
  }

  private void expectBatch(RejectReason reason, HeadSnapshot head, ActivationBatch.Builder b, String detail) {
    RejectedRecordException e = assertThrows(RejectedRecordException.class, () -> decoder.batch(b.build(), head));
    assertEquals(reason, e.reason(), e.getMessage());
    assertTrue(e.getMessage().contains(detail), e.getMessage());
  }
}
