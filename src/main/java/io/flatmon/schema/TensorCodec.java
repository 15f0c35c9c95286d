package io.flatmon.schema;

import io.flatmon.proto.v1.DType;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Tensor;
import io.flatmon.wire.Tensors;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Converts {@link Tensor}s to and from float arrays: little-endian row-major float32, float16 or
 * bfloat16 (widened to float32), with shape and size checks before any allocation.
 */
public final class TensorCodec {
  private final long maxElements;

  /** @param maxElements the largest tensor accepted; bigger ones are rejected as TOO_LARGE */
  public TensorCodec(long maxElements) {
    this.maxElements = maxElements;
  }

  public long maxElements() {
    return maxElements;
  }

  /**
   * Decodes a tensor that must have exactly the given rank.
   *
   * @param name used in rejection details, e.g. "kernel"
   */
  public float[] decode(Tensor t, String name, int rank) throws RejectedRecordException {
    long[] shape = shape(t, name, rank);
    long elements = 1;
    for (long s : shape) {
      elements *= s;
    }
    int width = bytesPerElement(t.getDtype(), name);
    if (t.getData().size() != elements * width) {
      throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
          "%s: shape %s needs %d bytes of %s but data has %d", name, Arrays.toString(shape), elements * width,
          dtypeName(t.getDtype()), t.getData().size()));
    }
    ByteBuffer buf = t.getData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    float[] out = new float[(int) elements];
    switch (width) {
      case 4 -> buf.asFloatBuffer().get(out);
      default -> {
        boolean half = t.getDtype() == DType.FLOAT16;
        for (int i = 0; i < out.length; i++) {
          short bits = buf.getShort();
          out[i] = half ? halfToFloat(bits) : Float.intBitsToFloat((bits & 0xffff) << 16);
        }
      }
    }
    return out;
  }

  /**
   * The shape of a tensor after checking its rank, positive extents and the element limit.
   */
  public long[] shape(Tensor t, String name, int rank) throws RejectedRecordException {
    if (t.getShapeCount() != rank) {
      throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
          "%s must have rank %d, got shape %s", name, rank, t.getShapeList()));
    }
    long[] shape = new long[rank];
    long elements = 1;
    for (int i = 0; i < rank; i++) {
      shape[i] = t.getShape(i);
      if (shape[i] < 1) {
        throw new RejectedRecordException(RejectReason.SHAPE_MISMATCH, String.format(
            "%s has a non-positive extent in shape %s", name, t.getShapeList()));
      }
      if (elements > maxElements / shape[i]) {
        throw new RejectedRecordException(RejectReason.TOO_LARGE, String.format(
            "%s with shape %s exceeds the limit of %d elements", name, t.getShapeList(), maxElements));
      }
      elements *= shape[i];
    }
    if (elements > maxElements) {
      throw new RejectedRecordException(RejectReason.TOO_LARGE, String.format(
          "%s with shape %s has %d elements, over the limit of %d", name, t.getShapeList(), elements, maxElements));
    }
    return shape;
  }

  /** A float32 tensor of the given shape ({@link Tensors#float32}). */
  public static Tensor encode(float[] values, long... shape) {
    return Tensors.float32(values, shape);
  }

  private static int bytesPerElement(DType dtype, String name) throws RejectedRecordException {
    return switch (dtype) {
      case DTYPE_UNSPECIFIED, FLOAT32 -> 4;
      case FLOAT16, BFLOAT16 -> 2;
      default -> throw new RejectedRecordException(RejectReason.INVALID_VALUE,
          name + ": unsupported dtype " + dtype + " (use FLOAT32, FLOAT16 or BFLOAT16)");
    };
  }

  private static String dtypeName(DType dtype) {
    return dtype == DType.DTYPE_UNSPECIFIED ? "FLOAT32" : dtype.name();
  }

  /** IEEE 754 binary16 to binary32, including subnormals, infinities and NaN. */
  static float halfToFloat(short half) {
    int h = half & 0xffff;
    int sign = (h & 0x8000) << 16;
    int exponent = (h >>> 10) & 0x1f;
    int mantissa = h & 0x3ff;
    if (exponent == 0x1f) {
      return Float.intBitsToFloat(sign | 0x7f800000 | (mantissa << 13));
    }
    if (exponent == 0) {
      if (mantissa == 0) {
        return Float.intBitsToFloat(sign);
      }
      float value = mantissa * 0x1p-24f;
      return sign == 0 ? value : -value;
    }
    return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
}
