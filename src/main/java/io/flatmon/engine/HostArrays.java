package io.flatmon.engine;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.concurrency.AffinityManager;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Bulk copies between Java arrays and ND4J arrays. DataBuffer.setData(float[]) and asDouble() move
 * one element per call (600 µs and 1.6 ms for 256 Ki floats, against 25 µs through the buffer's NIO
 * view), which was a fifth of the engine's time. The affinity calls keep a device backend coherent:
 * they are no-ops on the CPU backend.
 */
final class HostArrays {
  private HostArrays() {
  }

  /** The elements of a in row-major order, as doubles. */
  static double[] toDoubles(INDArray a) {
    int n = (int) a.length();
    return toDoubles(a, new double[n], new float[n]);
  }

  /**
   * The elements of a in row-major order, as doubles, in out (length a.length()); a FLOAT array goes
   * through staging (at least that long). Returns out.
   */
  static double[] toDoubles(INDArray a, double[] out, float[] staging) {
    INDArray c = a.isView() || a.ordering() != 'c' || a.length() != a.data().length() ? a.dup('c') : a;
    int n = (int) c.length();
    Nd4j.getAffinityManager().ensureLocation(c, AffinityManager.Location.HOST);
    if (c.dataType() == DataType.FLOAT) {
      nio(c).asFloatBuffer().get(staging, 0, n);
      for (int i = 0; i < n; i++) {
        out[i] = staging[i];
      }
    } else if (c.dataType() == DataType.DOUBLE) {
      nio(c).asDoubleBuffer().get(out, 0, n);
    } else {
      System.arraycopy(c.data().asDouble(), 0, out, 0, n);
    }
    // The NIO view does not keep the array alive, and a dup is referenced nowhere else (see NativeOps).
    Reference.reachabilityFence(c);
    Reference.reachabilityFence(a);
    return out;
  }

  /** Overwrites the contiguous row-major array a (FLOAT or DOUBLE) with data. */
  static void write(INDArray a, float[] data) {
    if (a.dataType() == DataType.FLOAT) {
      nio(a).asFloatBuffer().put(data);
      Nd4j.getAffinityManager().tagLocation(a, AffinityManager.Location.HOST);
      Reference.reachabilityFence(a);
    } else {
      double[] d = new double[data.length];
      for (int i = 0; i < d.length; i++) {
        d[i] = data[i];
      }
      write(a, d);
    }
  }

  /** Overwrites the contiguous row-major array a (FLOAT or DOUBLE) with data, rounded to a's type. */
  static void write(INDArray a, double[] data) {
    write(a, data, new float[data.length]);
  }

  /** The same, rounding to float through staging (at least data.length long) for a FLOAT array. */
  static void write(INDArray a, double[] data, float[] staging) {
    if (a.dataType() == DataType.DOUBLE) {
      nio(a).asDoubleBuffer().put(data);
    } else {
      for (int i = 0; i < data.length; i++) {
        staging[i] = (float) data[i];
      }
      nio(a).asFloatBuffer().put(staging, 0, data.length);
    }
    Nd4j.getAffinityManager().tagLocation(a, AffinityManager.Location.HOST);
    Reference.reachabilityFence(a);
  }

  private static ByteBuffer nio(INDArray a) {
    if (a.length() != a.data().length()) {
      throw new IllegalArgumentException("not a whole buffer: " + a.shapeInfoToString());
    }
    return a.data().asNio().order(ByteOrder.nativeOrder());
  }
}
