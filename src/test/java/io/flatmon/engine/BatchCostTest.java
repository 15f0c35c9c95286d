package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import org.junit.jupiter.api.Test;

/**
 * {@link BatchCost} against independent counts: the output size against a brute-force walk of the
 * kernel's positions, the device bytes against what the engine's workspaces actually allocate, and
 * the documented default limits against the shapes they are documented for.
 */
class BatchCostTest {

  /** Output positions counted one by one: starts s·i − pad whose dilated span stays inside the padded input. */
  private static long bruteForce(long in, int k, int stride, int pad, int dilation) {
    long count = 0;
    for (long start = -pad; start + (long) dilation * (k - 1) <= in - 1 + pad; start += stride) {
      count++;
    }
    return count;
  }

  @Test
  void outputSizeMatchesABruteForceWalk() {
    for (int in = 1; in <= 9; in++) {
      for (int k = 1; k <= 4; k++) {
        for (int s = 1; s <= 3; s++) {
          for (int p = 0; p <= 3; p++) {
            for (int d = 1; d <= 3; d++) {
              ConvGeometry g = new ConvGeometry(k, k, s, s, p, p, d, d);
              assertEquals(bruteForce(in, k, s, p, d), g.outputHeightExact(in), g + " on " + in);
            }
          }
        }
      }
    }
  }

  @Test
  void geometryThatOverflowsIntIsRefusedAndLargeGeometryIsExact() {
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, 0, 0, Integer.MAX_VALUE, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, Integer.MAX_VALUE, 0, 1, 1));
    ConvGeometry g = new ConvGeometry(3, 3, 1, 1, 1 << 29, 1 << 29, 1, 1);
    // 2^30 + 1 − 3 + 1 positions for a one-pixel input: over int in the product, exact here.
    assertEquals((1L << 30) - 1, g.outputHeightExact(1));
    assertThrows(ArithmeticException.class, () -> g.outputHeight(Integer.MAX_VALUE));
    BatchCost c = BatchCost.of(8, 4, g, 10, Activation.of(Activation.Kind.RELU), 1, 1, 1, false, true, 4);
    assertEquals(Long.MAX_VALUE, c.workingBytes(), "saturated, not wrapped");
    assertNotNull(WorkLimits.DEFAULT.excess(c, 1));
  }

  /** Device bytes of an engine's workspaces after one batch: a lower bound of what the batch needed. */
  @Test
  void deviceBytesBoundWhatTheEngineAllocates() {
    SyntheticHeads gen = new SyntheticHeads(5);
    int[][] shapes = {
        // C, C_in, K, k, pad, stride, H, B, activation (0 relu, 1 gelu), Z sent
        {8, 4, 10, 3, 1, 1, 6, 4, 0, 0},
        {8, 4, 10, 3, 1, 1, 6, 4, 1, 0},
        {64, 16, 10, 3, 1, 2, 8, 8, 0, 1},
        {256, 32, 10, 3, 1, 1, 4, 16, 1, 0},   // two blocks, patch-Gram route
        {16, 64, 5, 1, 0, 1, 12, 3, 0, 0},     // filter route
    };
    for (int[] s : shapes) {
      ConvGeometry geo = new ConvGeometry(s[3], s[3], s[5], s[5], s[4], s[4], 1, 1);
      Activation act = Activation.of(s[8] == 0 ? Activation.Kind.RELU : Activation.Kind.GELU);
      HeadSnapshot head = gen.head(s[0], s[1], geo, s[2], act, true, true, 2.0);
      ActivationBatch batch = gen.batch(head, s[7], s[6], s[6], true);
      if (s[9] == 1) {
        batch = gen.withPreActivation(head, batch, 0.0);
      }
      CurvatureEngine engine = new CurvatureEngine();
      engine.compute(head, batch, batch.inputChannelRms());
      long allocated = engine.workspaceBytes();
      BatchCost cost = BatchCost.of(head, s[7], s[6], s[6], s[9] == 1, true, 4);
      String what = java.util.Arrays.toString(s) + ": estimated " + cost.deviceBytes() + " B, workspaces "
          + allocated + " B";
      System.out.println("BatchCostTest " + what + "; " + cost.describe(s[7]));
      assertTrue(cost.deviceBytes() >= allocated, what);
      assertTrue(cost.deviceBytes() <= 16 * allocated, "estimate far above the allocation: " + what);
    }
  }

  /** The figures the defaults are documented with (WorkLimits, README). */
  @Test
  void documentedFiguresHold() {
    Activation relu = Activation.of(Activation.Kind.RELU);
    BatchCost resnet50 = BatchCost.of(2048, 512, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 1000, relu,
        256, 7, 7, false, true, 4);
    System.out.println("ResNet-50 last conv, B = 256, K = 1000: " + resnet50.describe(256));
    assertTrue(resnet50.workingBytes() < WorkLimits.DEFAULT_MAX_WORKING_BYTES, resnet50.describe(256));
    assertTrue(resnet50.workPerSample() < WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE, resnet50.describe(256));
    BatchCost pad3000 = BatchCost.cheapest(8, 4, new ConvGeometry(3, 3, 1, 1, 3000, 3000, 1, 1), 10, relu, 4);
    System.out.println("padding 3000, one 1×1 sample: " + pad3000.describe(1));
    assertNotNull(WorkLimits.DEFAULT.excess(pad3000, 1));
    BatchCost small = BatchCost.of(8, 4, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 10, relu, 4, 4, 4, false, true, 4);
    assertNull(WorkLimits.DEFAULT.excess(small, 4));
  }
}
