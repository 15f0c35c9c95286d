package io.flatmon.engine;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * An engine's reusable working memory: device arrays by name and shape, host arrays by name and
 * length, each kept between calls (contents undefined on reuse). Keys include the size, so a batch's
 * last, smaller chunk does not evict the full-size arrays. Why: first-touch of fresh native memory
 * costs milliseconds per MB, and fresh host arrays — 20 MB per ResNet-18/CIFAR batch of 32 before
 * they were reused — made the JVM collect its young generation several times a second. Not
 * thread-safe, like the engine that owns it.
 */
final class Workspace {
  /** A few batch shapes' worth of each kind. */
  private static final int KEPT = 64;
  /**
   * Device arrays kept for reuse, in bytes: a batch of an unusual shape must not leave its arrays
   * pinned beside the usual ones for ever (they are freed when collected once evicted).
   */
  static final long KEPT_DEVICE_BYTES = 1L << 30;

  private final DataType dtype;
  private final Map<Key, INDArray> device = lru();
  private long deviceBytes;
  private final Map<Key, double[]> doubles = lru();
  private final Map<Key, float[]> floats = lru();

  /** A name and a size; built per call, so no string concatenation (it was 3 % of the engine's time). */
  private record Key(String name, long[] shape) {
    @Override
    public boolean equals(Object o) {
      return o instanceof Key k && name.equals(k.name) && Arrays.equals(shape, k.shape);
    }

    @Override
    public int hashCode() {
      return 31 * name.hashCode() + Arrays.hashCode(shape);
    }
  }

  Workspace(DataType dtype) {
    this.dtype = dtype;
  }

  private <V> Map<Key, V> lru() {
    return new LinkedHashMap<>(16, 0.75f, true) {
      @Override
      protected boolean removeEldestEntry(Map.Entry<Key, V> eldest) {
        if (size() <= KEPT) {
          return false;
        }
        if (eldest.getValue() instanceof INDArray a) {
          deviceBytes -= bytes(a);
        }
        return true;
      }
    };
  }

  /**
   * A device array of exactly this shape in the engine's precision.
   *
   * @throws EngineCapacityException if the native allocator refuses (the batch's cost was checked
   *     before, so this means the machine has less memory than the limits assume)
   */
  INDArray device(String name, long... shape) {
    INDArray a = device.get(new Key(name, shape));
    if (a == null) {
      a = allocate(name, shape);
      device.put(new Key(name, shape.clone()), a);
      deviceBytes += bytes(a);
      trimDevice();
    }
    return a;
  }

  /**
   * A fresh uninitialised array, or an exception — never a NULL buffer: libnd4j does not check its
   * malloc, and ND4J only retries (five times, with a GC) when the native side reports an error.
   */
  private INDArray allocate(String name, long[] shape) {
    INDArray a;
    try {
      a = Nd4j.createUninitialized(dtype, shape);
    } catch (OutOfMemoryError | RuntimeException e) {
      throw new EngineCapacityException("cannot allocate " + name + " " + Arrays.toString(shape) + " of " + dtype
          + ": " + e.getMessage(), e);
    }
    if (a.data() == null || a.data().addressPointer() == null || a.data().addressPointer().address() == 0) {
      throw new EngineCapacityException("the native allocator returned no memory for " + name + " "
          + Arrays.toString(shape) + " of " + dtype);
    }
    return a;
  }

  private static long bytes(INDArray a) {
    return a.length() * a.dataType().width();
  }

  /** Bytes of the device arrays kept (for tests). */
  long deviceBytes() {
    return deviceBytes;
  }

  /** Evicts the least recently used device arrays beyond {@link #KEPT_DEVICE_BYTES}, the newest kept. */
  private void trimDevice() {
    var it = device.entrySet().iterator();
    while (deviceBytes > KEPT_DEVICE_BYTES && device.size() > 1 && it.hasNext()) {
      deviceBytes -= bytes(it.next().getValue());
      it.remove();
    }
  }

  /** A host double array of exactly length n. */
  double[] doubles(String name, int n) {
    return doubles.computeIfAbsent(new Key(name, new long[] {n}), key -> new double[n]);
  }

  /** A host float array of exactly length n. */
  float[] floats(String name, int n) {
    return floats.computeIfAbsent(new Key(name, new long[] {n}), key -> new float[n]);
  }

  /** a's elements in row-major order, in the host array {@code name} (valid until its next use). */
  double[] read(String name, INDArray a) {
    int n = (int) a.length();
    return HostArrays.toDoubles(a, doubles(name, n), floats("staging", n));
  }

  /** Overwrites the contiguous row-major device array a with data, rounded to a's type. */
  void write(INDArray a, double[] data) {
    HostArrays.write(a, data, floats("staging", data.length));
  }

  /** Host data into the device array {@code name} of this shape. */
  INDArray upload(String name, float[] data, long... shape) {
    INDArray a = device(name, shape);
    HostArrays.write(a, data);
    return a;
  }

  /** Host data into the device array {@code name} of this shape, rounded to the engine's precision. */
  INDArray upload(String name, double[] data, long... shape) {
    INDArray a = device(name, shape);
    write(a, data);
    return a;
  }
}
