package io.flatmon.engine;

/**
 * Conv geometry with torch.nn.Conv2d semantics (groups = 1): kernel size, stride, zero padding and
 * dilation, each (height, width).
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
  }

  /** Stride 1, no padding, dilation 1. */
  public static ConvGeometry of(int kernelHeight, int kernelWidth) {
    return new ConvGeometry(kernelHeight, kernelWidth, 1, 1, 0, 0, 1, 1);
  }

  public int outputHeight(int inputHeight) {
    return outputSize(inputHeight, kernelHeight, strideHeight, padHeight, dilationHeight);
  }

  public int outputWidth(int inputWidth) {
    return outputSize(inputWidth, kernelWidth, strideWidth, padWidth, dilationWidth);
  }

  private static int outputSize(int in, int k, int stride, int pad, int dilation) {
    int span = dilation * (k - 1) + 1;
    int padded = in + 2 * pad;
    return padded < span ? 0 : (padded - span) / stride + 1;
  }

  @Override
  public String toString() {
    return String.format("k=%dx%d s=%dx%d p=%dx%d d=%dx%d", kernelHeight, kernelWidth,
        strideHeight, strideWidth, padHeight, padWidth, dilationHeight, dilationWidth);
  }
}
