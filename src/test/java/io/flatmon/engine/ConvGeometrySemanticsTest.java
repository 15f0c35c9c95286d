package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Output sizes with torch.nn.Conv2d semantics (docs/math.md §1):
 * {@code out = floor((in + 2·pad − dilation·(k − 1) − 1) / stride) + 1}, and no output (0) when the
 * dilated kernel does not fit into the padded input. Expected sizes below are what PyTorch gives.
 */
class ConvGeometrySemanticsTest {

  @ParameterizedTest(name = "in={0} k={1} s={2} p={3} d={4} -> {5}")
  @CsvSource({
      "5, 3, 1, 0, 1, 3",
      "5, 3, 1, 1, 1, 5",
      "5, 3, 2, 1, 1, 3",
      "6, 3, 2, 1, 1, 3",
      "7, 3, 2, 1, 2, 3",
      "9, 3, 2, 1, 2, 4",
      "3, 3, 1, 0, 1, 1",
      "2, 3, 1, 0, 1, 0",
      "2, 3, 1, 1, 1, 2",
      "1, 1, 1, 0, 1, 1",
      "8, 2, 3, 0, 1, 3",
      "5, 2, 1, 0, 4, 1",
      "4, 2, 1, 0, 4, 0",
      "6, 1, 2, 2, 1, 5"})
  void outputSizeFollowsConv2d(int in, int k, int stride, int pad, int dilation, int out) {
    ConvGeometry asHeight = new ConvGeometry(k, 1, stride, 1, pad, 0, dilation, 1);
    ConvGeometry asWidth = new ConvGeometry(1, k, 1, stride, 0, pad, 1, dilation);
    assertEquals(out, asHeight.outputHeight(in));
    assertEquals(out, asWidth.outputWidth(in));
    assertEquals(in, asHeight.outputWidth(in), "the other axis is 1×1, stride 1: unchanged");
    assertEquals(in, asWidth.outputHeight(in));
  }

  @Test
  void ofMeansStrideOneNoPaddingNoDilation() {
    assertEquals(new ConvGeometry(3, 2, 1, 1, 0, 0, 1, 1), ConvGeometry.of(3, 2));
    assertEquals(3, ConvGeometry.of(3, 2).outputHeight(5));
    assertEquals(4, ConvGeometry.of(3, 2).outputWidth(5));
  }

  @Test
  void rejectsSizesConv2dRejects() {
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(0, 3, 1, 1, 0, 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 0, 1, 1, 0, 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 0, 1, 0, 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 0, 0, 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, -1, 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, 0, -1, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, 0, 0, 0, 1));
    assertThrows(IllegalArgumentException.class, () -> new ConvGeometry(3, 3, 1, 1, 0, 0, 1, 0));
  }
}
