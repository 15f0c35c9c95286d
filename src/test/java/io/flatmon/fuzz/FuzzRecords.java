package io.flatmon.fuzz;

import com.google.protobuf.ByteString;
import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.Tensor;
import java.util.List;
import java.util.SplittableRandom;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;

/**
 * Random and adversarial telemetry: a snapshot and a batch built from specs whose extents, strides,
 * paddings, dilations, dtypes, activation kinds, labels and data are mostly small and valid and
 * sometimes extreme — zero, negative, int max, 30000, huge declared shapes with little data,
 * truncated or zero-filled data, wrong pre-activation shapes.
 */
final class FuzzRecords {
  private FuzzRecords() {
  }

  /** How a tensor's data relates to its declared shape. */
  enum Data { EXACT, ZEROS, TRUNCATED, EXTRA, EMPTY }

  record HeadSpec(long c, long cin, long kh, long kw, List<Integer> stride, List<Integer> padding,
      List<Integer> dilation, long k, int activation, int dtype, Data data, long seed) {
  }

  record BatchSpec(long b, long h, long w, int dtype, Data data, int labels, int preActivation, boolean sameStep,
      long seed) {
  }

  static Arbitrary<Long> extent() {
    return Arbitraries.frequencyOf(
        net.jqwik.api.Tuple.of(12, Arbitraries.longs().between(1, 6)),
        net.jqwik.api.Tuple.of(1, Arbitraries.of(0L, -1L, 64L, 1000L, 1L << 16, 1L << 31, Long.MAX_VALUE)));
  }

  static Arbitrary<Integer> geometryValue() {
    return Arbitraries.frequencyOf(
        net.jqwik.api.Tuple.of(12, Arbitraries.integers().between(0, 3)),
        net.jqwik.api.Tuple.of(1, Arbitraries.of(-1, 300, 3000, 30000, Integer.MAX_VALUE, Integer.MIN_VALUE)));
  }

  static Arbitrary<List<Integer>> geometryList() {
    return Arbitraries.frequencyOf(
        net.jqwik.api.Tuple.of(3, Arbitraries.just(List.<Integer>of())),
        net.jqwik.api.Tuple.of(6, geometryValue().list().ofSize(1)),
        net.jqwik.api.Tuple.of(2, geometryValue().list().ofSize(2)),
        net.jqwik.api.Tuple.of(1, geometryValue().list().ofSize(3)));
  }

  static Arbitrary<Integer> dtype() {
    return Arbitraries.frequencyOf(
        net.jqwik.api.Tuple.of(10, Arbitraries.integers().between(0, 3)),
        net.jqwik.api.Tuple.of(1, Arbitraries.of(4, 99, -5)));
  }

  static Arbitrary<Data> data() {
    return Arbitraries.frequencyOf(
        net.jqwik.api.Tuple.of(12, Arbitraries.just(Data.EXACT)),
        net.jqwik.api.Tuple.of(2, Arbitraries.just(Data.ZEROS)),
        net.jqwik.api.Tuple.of(1, Arbitraries.of(Data.TRUNCATED, Data.EXTRA, Data.EMPTY)));
  }

  static Arbitrary<HeadSpec> heads() {
    Arbitrary<long[]> shape = Combinators.combine(extent(), extent(), Arbitraries.frequencyOf(
            net.jqwik.api.Tuple.of(8, Arbitraries.longs().between(1, 3)),
            net.jqwik.api.Tuple.of(1, extent())),
        Arbitraries.frequencyOf(net.jqwik.api.Tuple.of(8, Arbitraries.longs().between(1, 3)),
            net.jqwik.api.Tuple.of(1, extent())),
        Arbitraries.frequencyOf(net.jqwik.api.Tuple.of(8, Arbitraries.longs().between(2, 10)),
            net.jqwik.api.Tuple.of(1, extent())))
        .as((c, cin, kh, kw, k) -> new long[] {c, cin, kh, kw, k});
    return Combinators.combine(shape, geometryList(), geometryList(), geometryList(),
            Arbitraries.frequencyOf(net.jqwik.api.Tuple.of(12, Arbitraries.integers().between(1, 7)),
                net.jqwik.api.Tuple.of(1, Arbitraries.of(0, 8, -1))), dtype(), data(), Arbitraries.longs())
        .as((s, stride, padding, dilation, act, dt, data, seed) -> new HeadSpec(s[0], s[1], s[2], s[3], stride,
            padding, dilation, s[4], act, dt, data, seed));
  }

  static Arbitrary<BatchSpec> batches() {
    Arbitrary<long[]> shape = Combinators.combine(extent(), Arbitraries.frequencyOf(
            net.jqwik.api.Tuple.of(8, Arbitraries.longs().between(1, 9)), net.jqwik.api.Tuple.of(1, extent())),
        Arbitraries.frequencyOf(
            net.jqwik.api.Tuple.of(8, Arbitraries.longs().between(1, 9)), net.jqwik.api.Tuple.of(1, extent())))
        .as((b, h, w) -> new long[] {b, h, w});
    return Combinators.combine(shape, dtype(), data(), Arbitraries.integers().between(0, 4),
            Arbitraries.integers().between(0, 2), Arbitraries.frequencyOf(
                net.jqwik.api.Tuple.of(9, Arbitraries.just(true)), net.jqwik.api.Tuple.of(1, Arbitraries.just(false))),
            Arbitraries.longs())
        .as((s, dt, data, labels, z, same, seed) -> new BatchSpec(s[0], s[1], s[2], dt, data, labels, z, same, seed));
  }

  /** Data bytes for a declared shape: at most 4 MiB of it is ever built (a huge shape gets little data). */
  static Tensor tensor(long[] shape, int dtype, Data data, SplittableRandom random) {
    Tensor.Builder t = Tensor.newBuilder().setDtypeValue(dtype);
    long elements = 1;
    boolean overflow = false;
    for (long s : shape) {
      t.addShape(s);
      if (s <= 0) {
        elements = 0;
      } else if (elements > Long.MAX_VALUE / s) {
        overflow = true;
      } else {
        elements *= s;
      }
    }
    long width = dtype == 2 || dtype == 3 ? 2 : 4;
    long bytes = overflow || elements > Long.MAX_VALUE / width ? Long.MAX_VALUE : elements * width;
    long built = switch (data) {
      case EXACT, ZEROS -> bytes;
      case TRUNCATED -> bytes / 2;
      case EXTRA -> bytes == Long.MAX_VALUE ? bytes : bytes + 3;
      case EMPTY -> 0;
    };
    if (built > 4L << 20) {
      built = 16 + random.nextInt(64);   // a huge declared size with little data
    }
    byte[] b = new byte[(int) built];
    if (data != Data.ZEROS) {
      // Mostly moderate float32 values (random bytes would be NaN/huge too often to reach the engine).
      for (int i = 0; i + 4 <= b.length; i += 4) {
        int bits = Float.floatToIntBits((float) (random.nextGaussian() * (random.nextInt(50) == 0 ? 1e30 : 1)));
        if (width == 2) {
          bits = random.nextInt();
        }
        b[i] = (byte) bits;
        b[i + 1] = (byte) (bits >>> 8);
        b[i + 2] = (byte) (bits >>> 16);
        b[i + 3] = (byte) (bits >>> 24);
      }
    }
    return t.setData(ByteString.copyFrom(b)).build();
  }

  static TelemetryRecord snapshot(String run, HeadSpec h) {
    SplittableRandom random = new SplittableRandom(h.seed());
    LayerSnapshot.Builder s = LayerSnapshot.newBuilder().setRunId(run).setLayer("head").setStep(1)
        .setKernel(tensor(new long[] {h.c(), h.cin(), h.kh(), h.kw()}, h.dtype(), h.data(), random))
        .setClassifierWeight(tensor(new long[] {h.k(), h.c()}, 1, Data.EXACT, random))
        .addAllStride(h.stride()).addAllPadding(h.padding()).addAllDilation(h.dilation())
        .setActivation(io.flatmon.proto.v1.Activation.newBuilder().setKindValue(h.activation())
            .setNegativeSlope(random.nextInt(10) == 0 ? -1 : 0.01));
    if (random.nextBoolean()) {
      s.setBias(tensor(new long[] {h.c()}, 1, Data.EXACT, random));
    }
    if (random.nextInt(4) == 0) {
      s.setScale(tensor(new long[] {h.c()}, 1, Data.EXACT, random));
    }
    if (random.nextInt(4) == 0) {
      s.setInputChannelRms(tensor(new long[] {random.nextInt(5) == 0 ? 3 : h.cin()}, 1, Data.EXACT, random));
    }
    return TelemetryRecord.newBuilder().setLayerSnapshot(s).build();
  }

  private static int[] pair(List<Integer> v, int empty) {
    return switch (v.size()) {
      case 0 -> new int[] {empty, empty};
      case 1 -> new int[] {v.get(0), v.get(0)};
      default -> new int[] {v.get(0), v.get(1)};
    };
  }

  static TelemetryRecord batch(String run, HeadSpec h, BatchSpec b) {
    SplittableRandom random = new SplittableRandom(b.seed());
    ActivationBatch.Builder a = ActivationBatch.newBuilder().setRunId(run).setLayer("head")
        .setStep(b.sameStep() ? 1 : 2)
        .setInput(tensor(new long[] {b.b(), h.cin(), b.h(), b.w()}, b.dtype(), b.data(), random));
    long k = Math.max(1, Math.min(h.k(), 1 << 20));
    long samples = Math.max(0, Math.min(b.b(), 4096));
    switch (b.labels()) {
      case 1, 2 -> {
        for (int n = 0; n < samples; n++) {
          a.addLabels((int) random.nextLong(k));
        }
      }
      case 3 -> {
        for (int n = 0; n < samples; n++) {
          a.addLabels(random.nextInt(5) == 0 ? -1 - random.nextInt(3) : (int) (k + random.nextInt(3)));
        }
      }
      case 4 -> a.addLabels(0);
      default -> {
      }
    }
    if (b.preActivation() > 0) {
      long[] zShape = {b.b(), h.c(), b.h(), b.w() + 1};      // wrong unless the output happens to be so
      if (b.preActivation() == 1) {
        try {
          io.flatmon.engine.ConvGeometry g = new io.flatmon.engine.ConvGeometry((int) h.kh(), (int) h.kw(),
              pair(h.stride(), 1)[0], pair(h.stride(), 1)[1], pair(h.padding(), 0)[0], pair(h.padding(), 0)[1],
              pair(h.dilation(), 1)[0], pair(h.dilation(), 1)[1]);
          zShape = new long[] {b.b(), h.c(), g.outputHeightExact(b.h()), g.outputWidthExact(b.w())};
        } catch (RuntimeException e) {
          // an invalid geometry: keep the wrong shape
        }
      }
      a.setPreActivation(tensor(zShape, 1, Data.EXACT, random));
    }
    return TelemetryRecord.newBuilder().setActivationBatch(a).build();
  }
}
