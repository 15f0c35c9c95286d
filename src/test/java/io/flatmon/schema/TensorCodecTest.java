package io.flatmon.schema;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.protobuf.ByteString;
import io.flatmon.proto.v1.DType;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

/** Tensor decoding (proto/flatmon/v1/tensor.proto): limits at their exact boundaries, exact rejection details, bit-exact widening. */
class TensorCodecTest {

  static Tensor shaped(long... shape) {
    Tensor.Builder t = Tensor.newBuilder();
    for (long s : shape) {
      t.addShape(s);
    }
    return t.build();
  }

  static Tensor halves(DType dtype, int... bits) {
    ByteBuffer buf = ByteBuffer.allocate(bits.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int b : bits) {
      buf.putShort((short) b);
    }
    return Tensor.newBuilder().addShape(bits.length).setDtype(dtype).setData(ByteString.copyFrom(buf.array())).build();
  }

  static RejectedRecordException rejected(RejectReason reason, org.junit.jupiter.api.function.Executable e) {
    RejectedRecordException x = assertThrows(RejectedRecordException.class, e);
    assertEquals(reason, x.reason(), x.getMessage());
    return x;
  }

  @Test
  void exactlyTheElementLimitIsAccepted() throws Exception {
    TensorCodec codec = new TensorCodec(12);
    assertEquals(12, codec.maxElements());
    assertArrayEquals(new long[] {3, 4}, codec.shape(shaped(3, 4), "x", 2));
    assertArrayEquals(new long[] {12}, codec.shape(shaped(12), "x", 1));
    assertArrayEquals(new long[] {1, 1, 12}, codec.shape(shaped(1, 1, 12), "x", 3));
    assertEquals("x with shape [13] exceeds the limit of 12 elements",
        rejected(RejectReason.TOO_LARGE, () -> codec.shape(shaped(13), "x", 1)).getMessage());
    assertEquals("x with shape [3, 5] exceeds the limit of 12 elements",
        rejected(RejectReason.TOO_LARGE, () -> codec.shape(shaped(3, 5), "x", 2)).getMessage());
  }

  @Test
  void aScalarIsOneElement() throws Exception {
    assertArrayEquals(new long[0], new TensorCodec(1).shape(shaped(), "s", 0));
    assertEquals("s with shape [] has 1 elements, over the limit of 0",
        rejected(RejectReason.TOO_LARGE, () -> new TensorCodec(0).shape(shaped(), "s", 0)).getMessage());
    assertArrayEquals(new float[] {2.5f}, new TensorCodec(1).decode(TensorCodec.encode(new float[] {2.5f}), "s", 0));
  }

  @Test
  void overflowingShapesAreRejectedBeforeMultiplying() {
    // 2^40 · 2^40 overflows a long; the check divides instead
    assertEquals("x with shape [1099511627776, 1099511627776] exceeds the limit of 9223372036854775807 elements",
        rejected(RejectReason.TOO_LARGE,
            () -> new TensorCodec(Long.MAX_VALUE).shape(shaped(1L << 40, 1L << 40), "x", 2)).getMessage());
  }

  @Test
  void rankAndExtentsAreChecked() {
    TensorCodec codec = new TensorCodec(100);
    assertEquals("kernel must have rank 4, got shape [2, 3]",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.shape(shaped(2, 3), "kernel", 4)).getMessage());
    assertEquals("x must have rank 1, got shape [2, 3]",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.decode(shaped(2, 3), "x", 1)).getMessage());
    assertEquals("x has a non-positive extent in shape [2, 0]",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.shape(shaped(2, 0), "x", 2)).getMessage());
    assertEquals("x has a non-positive extent in shape [-1, 2]",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.shape(shaped(-1, 2), "x", 2)).getMessage());
  }

  @Test
  void dataLengthMustMatchShapeAndDtype() {
    TensorCodec codec = new TensorCodec(100);
    Tensor unspecified = Tensor.newBuilder().addShape(2).addShape(3).setData(ByteString.copyFrom(new byte[20])).build();
    assertEquals("x: shape [2, 3] needs 24 bytes of FLOAT32 but data has 20",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.decode(unspecified, "x", 2)).getMessage());
    Tensor f16 = unspecified.toBuilder().setDtype(DType.FLOAT16).setData(ByteString.copyFrom(new byte[13])).build();
    assertEquals("x: shape [2, 3] needs 12 bytes of FLOAT16 but data has 13",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.decode(f16, "x", 2)).getMessage());
    Tensor bf16 = unspecified.toBuilder().setDtype(DType.BFLOAT16).setData(ByteString.copyFrom(new byte[24])).build();
    assertEquals("x: shape [2, 3] needs 12 bytes of BFLOAT16 but data has 24",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.decode(bf16, "x", 2)).getMessage());
    Tensor f32 = unspecified.toBuilder().setDtype(DType.FLOAT32).setData(ByteString.copyFrom(new byte[12])).build();
    assertEquals("x: shape [2, 3] needs 24 bytes of FLOAT32 but data has 12",
        rejected(RejectReason.SHAPE_MISMATCH, () -> codec.decode(f32, "x", 2)).getMessage());
  }

  @Test
  void unknownDtypesAreInvalidValues() {
    Tensor t = TensorCodec.encode(new float[] {1}, 1).toBuilder().setDtypeValue(42).build();
    assertEquals("w: unsupported dtype UNRECOGNIZED (use FLOAT32, FLOAT16 or BFLOAT16)",
        rejected(RejectReason.INVALID_VALUE, () -> new TensorCodec(10).decode(t, "w", 1)).getMessage());
  }

  @Test
  void float32IsLittleEndianRowMajor() throws Exception {
    float[] values = {1.5f, -0.0f, Float.MIN_VALUE, Float.MAX_VALUE, Float.NEGATIVE_INFINITY, 3e-39f};
    Tensor t = TensorCodec.encode(values, 2, 3);
    assertEquals(DType.FLOAT32, t.getDtype());
    assertArrayEquals(values, new TensorCodec(6).decode(t, "x", 2));
    // hand-written bytes: 1.0f = 0x3f800000 little-endian, then 2.0f = 0x40000000
    Tensor raw = Tensor.newBuilder().addShape(2)
        .setData(ByteString.copyFrom(new byte[] {0, 0, (byte) 0x80, 0x3f, 0, 0, 0, 0x40})).build();
    assertArrayEquals(new float[] {1f, 2f}, new TensorCodec(2).decode(raw, "x", 1));
    assertArrayEquals(new float[] {1f, 2f},
        new TensorCodec(2).decode(raw.toBuilder().setDtype(DType.FLOAT32).build(), "x", 1));
  }

  @Test
  void bfloat16IsTheUpperHalfOfFloat32() throws Exception {
    float[] out = new TensorCodec(10).decode(halves(DType.BFLOAT16, 0x3f80, 0xc020, 0x4049, 0x8000, 0xff80, 0x0001),
        "x", 1);
    assertEquals(Float.floatToRawIntBits(1f), Float.floatToRawIntBits(out[0]));
    assertEquals(Float.floatToRawIntBits(-2.5f), Float.floatToRawIntBits(out[1]));
    assertEquals(0x40490000, Float.floatToRawIntBits(out[2]));
    assertEquals(0x80000000, Float.floatToRawIntBits(out[3]), "negative zero keeps its sign");
    assertEquals(Float.NEGATIVE_INFINITY, out[4]);
    assertEquals(0x00010000, Float.floatToRawIntBits(out[5]));
  }

  @Test
  void float16FollowsIeee754Binary16() throws Exception {
    int[] bits = {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff, 0x3555, 0x7c00, 0xfc00};
    float[] expected = {0f, -0f, 0x1p-24f, -0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 1f, -2f, 65504f,
        0x1.554p-2f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
    float[] out = new TensorCodec(20).decode(halves(DType.FLOAT16, bits), "x", 1);
    for (int i = 0; i < bits.length; i++) {
      assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(out[i]),
          String.format("0x%04x -> %s, expected %s", bits[i], out[i], expected[i]));
      assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(TensorCodec.halfToFloat((short) bits[i])));
    }
    // NaN keeps its payload in the top mantissa bits and its sign
    assertEquals(0x7fc00000, Float.floatToRawIntBits(TensorCodec.halfToFloat((short) 0x7e00)));
    assertEquals(0xff802000, Float.floatToRawIntBits(TensorCodec.halfToFloat((short) 0xfc01)));
  }
}
