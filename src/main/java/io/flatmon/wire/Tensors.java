package io.flatmon.wire;

import com.google.protobuf.ByteString;
import io.flatmon.proto.v1.DType;
import io.flatmon.proto.v1.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Plain float arrays to wire {@link Tensor}s: little-endian, row-major float32 with its shape. The
 * encoding side of the tensor format, shared by JVM trainers (which need nothing beyond the wire
 * schema) and the service's own encoders; decoding with its checks is {@code schema.TensorCodec}.
 */
public final class Tensors {
  private Tensors() {
  }

  /**
   * A float32 tensor of the given shape.
   *
   * @throws IllegalArgumentException when the shape's product is not {@code values.length}
   */
  public static Tensor float32(float[] values, long... shape) {
    long elements = 1;
    for (long s : shape) {
      elements *= s;
    }
    if (elements != values.length) {
      throw new IllegalArgumentException(
          "shape " + Arrays.toString(shape) + " has " + elements + " elements, the array " + values.length);
    }
    ByteBuffer buf = ByteBuffer.allocate(values.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
    buf.asFloatBuffer().put(values);
    Tensor.Builder b = Tensor.newBuilder().setDtype(DType.FLOAT32).setData(ByteString.copyFrom(buf.array()));
    for (long s : shape) {
      b.addShape(s);
    }
    return b.build();
  }
}
