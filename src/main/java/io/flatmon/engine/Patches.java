package io.flatmon.engine;

/** im2col in plain Java: the patches x_p of one sample as rows, in PyTorch unfold order (docs/math.md §1). */
final class Patches {
  private Patches() {
  }

  /**
   * @return X, row-major [P, d] with P = outH·outW and d = C_in·kh·kw; zero padding outside the input
   */
  static double[] extract(float[] input, int sample, int inputChannels, int height, int width,
      ConvGeometry geo, int outH, int outW) {
    int kh = geo.kernelHeight();
    int kw = geo.kernelWidth();
    int d = inputChannels * kh * kw;
    double[] x = new double[outH * outW * d];
    int base = sample * inputChannels * height * width;
    for (int oh = 0; oh < outH; oh++) {
      for (int ow = 0; ow < outW; ow++) {
        int row = (oh * outW + ow) * d;
        for (int i = 0; i < inputChannels; i++) {
          for (int u = 0; u < kh; u++) {
            int y = oh * geo.strideHeight() - geo.padHeight() + u * geo.dilationHeight();
            for (int v = 0; v < kw; v++) {
              int xx = ow * geo.strideWidth() - geo.padWidth() + v * geo.dilationWidth();
              if (y >= 0 && y < height && xx >= 0 && xx < width) {
                x[row + (i * kh + u) * kw + v] = input[base + (i * height + y) * width + xx];
              }
            }
          }
        }
      }
    }
    return x;
  }
}
