package io.flatmon.engine;

/**
 * Conv geometry with torch.nn.Conv2d semantics (groups = 1): kernel size, stride, zero padding and
 * dilation, each (height, width).
 *
 * <p>Sizes are computed in long arithmetic: a trainer may send any int, and dilation·(k − 1) or
 * H + 2·padding of int values overflow int. A geometry whose dilated kernel span or whose padded
 * extent of a one-pixel input does not fit in an int is rejected here: the engine indexes its arrays
 * with ints, and no tensor that a record can carry is that wide.
 */
public record ConvGeometry(
    int kernelHeight, int kernelWidth,
    int strideHeight, int strideWidth,
    int padHeight, int padWidth,
    int dilationHeight, int dilationWidth) {

  public ConvGeometry {
    if (kernelHeight < 1 || kernelWidth < 1) {
      throw new IllegalArgumentException("kernel size must be positive, got " + kernelHeight + "x" + kernelWidth);
    }
    if (strideHeight < 1 || strideWidth < 1) {
      throw new IllegalArgumentException("stride must be positive, got " + strideHeight + "x" + strideWidth);
    }
    if (padHeight < 0 || padWidth < 0) {
      throw new IllegalArgumentException("padding must be non-negative, got " + padHeight + "x" + padWidth);
    }
    if (dilationHeight < 1 || dilationWidth < 1) {
      throw new IllegalArgumentException("dilation must be positive, got " + dilationHeight + "x" + dilationWidth);
    }
    long spanH = span(kernelHeight, dilationHeight);
    long spanW = span(kernelWidth, dilationWidth);
    if (spanH > Integer.MAX_VALUE || spanW > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(String.format(
          "the dilated kernel spans %dx%d pixels (dilation·(k − 1) + 1), more than an int extent", spanH, spanW));
    }
    if (1 + 2L * padHeight > Integer.MAX_VALUE || 1 + 2L * padWidth > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(String.format(
          "padding %dx%d makes even a one-pixel input wider than an int extent", padHeight, padWidth));
    }
  }

  /** Stride 1, no padding, dilation 1. */
  public static ConvGeometry of(int kernelHeight, int kernelWidth) {
    return new ConvGeometry(kernelHeight, kernelWidth, 1, 1, 0, 0, 1, 1);
  }

  /**
   * H' for an input of height H.
   *
   * @throws ArithmeticException if H' or H + 2·padding does not fit in an int
   */
  public int outputHeight(int inputHeight) {
    return Math.toIntExact(outputHeightExact(inputHeight));
  }

  /** W' for an input of width W; see {@link #outputHeight}. */
  public int outputWidth(int inputWidth) {
    return Math.toIntExact(outputWidthExact(inputWidth));
  }

  /** H' in long arithmetic, for any non-negative H (0 when the input is smaller than the kernel span). */
  public long outputHeightExact(long inputHeight) {
    return outputSize(inputHeight, kernelHeight, strideHeight, padHeight, dilationHeight);
  }

  public long outputWidthExact(long inputWidth) {
    return outputSize(inputWidth, kernelWidth, strideWidth, padWidth, dilationWidth);
  }

  /** H + 2·padding, the extent im2col walks (long: an int input plus int padding overflows int). */
  public long paddedHeight(long inputHeight) {
    return inputHeight + 2L * padHeight;
  }

  public long paddedWidth(long inputWidth) {
    return inputWidth + 2L * padWidth;
  }

  private static long span(int k, int dilation) {
    return (long) dilation * (k - 1) + 1;
  }

  private static long outputSize(long in, int k, int stride, int pad, int dilation) {
    long span = span(k, dilation);
    long padded = in + 2L * pad;
    return padded < span ? 0 : (padded - span) / stride + 1;
  }

  @Override
  public String toString() {
    return String.format("k=%dx%d s=%dx%d p=%dx%d d=%dx%d", kernelHeight, kernelWidth,
        strideHeight, strideWidth, padHeight, padWidth, dilationHeight, dilationWidth);
  }
}
