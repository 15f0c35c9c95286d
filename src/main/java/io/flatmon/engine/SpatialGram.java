package io.flatmon.engine;

/**
 * The patch Gram K_p = X Xᵀ (eq. 3) of one sample from the spatial Gram of its input,
 * S = F̂ᵀ F̂ with F̂ the input as [C_in, H·W] (eq. 14): a patch coordinate is a (channel, tap) pair, so
 *
 * <pre>  K_p[p, p'] = Σ_taps S[q_t(p), q_t(p')]</pre>
 *
 * where q_t(p) is the input position that tap t of output position p reads, and a tap that falls in
 * the zero padding contributes nothing. S costs 2(HW)²C_in flops against 2P²·C_in·kh·kw for X Xᵀ, and
 * needs no im2col, so late layers with Z sent never unfold their input at all.
 */
final class SpatialGram {
  private final int positions;
  private final int inputPositions;
  private final int taps;
  /** sourceOf[t·P + p]: the input position read by tap t at output position p, or -1 in the padding. */
  private final int[] sourceOf;

  SpatialGram(ConvGeometry geo, int height, int width) {
    int outH = geo.outputHeight(height);
    int outW = geo.outputWidth(width);
    this.positions = outH * outW;
    this.inputPositions = height * width;
    this.taps = geo.kernelHeight() * geo.kernelWidth();
    this.sourceOf = new int[taps * positions];
    for (int u = 0; u < geo.kernelHeight(); u++) {
      for (int v = 0; v < geo.kernelWidth(); v++) {
        int t = u * geo.kernelWidth() + v;
        for (int oh = 0; oh < outH; oh++) {
          int y = oh * geo.strideHeight() - geo.padHeight() + u * geo.dilationHeight();
          for (int ow = 0; ow < outW; ow++) {
            int x = ow * geo.strideWidth() - geo.padWidth() + v * geo.dilationWidth();
            boolean inside = y >= 0 && y < height && x >= 0 && x < width;
            sourceOf[t * positions + oh * outW + ow] = inside ? y * width + x : -1;
          }
        }
      }
    }
  }

  /** Whether eq. (14) costs fewer flops than X Xᵀ: (HW)² ≤ P²·kh·kw (always so at stride 1). */
  static boolean isCheaper(ConvGeometry geo, long height, long width) {
    long hw = BatchCost.mul(height, width);
    long p = BatchCost.mul(geo.outputHeightExact(height), geo.outputWidthExact(width));
    return BatchCost.mul(hw, hw) <= BatchCost.mul(p, p, geo.kernelHeight(), geo.kernelWidth());
  }

  /**
   * K_p of every sample, row-major [B, P, P] in double, from S as row-major [B, HW, HW].
   * O(B·P²·kh·kw).
   */
  double[] patchGrams(double[] spatial, int samples) {
    int p = positions;
    int hw = inputPositions;
    double[] out = new double[samples * p * p];
    for (int n = 0; n < samples; n++) {
      int sBase = n * hw * hw;
      int kBase = n * p * p;
      for (int t = 0; t < taps; t++) {
        int tBase = t * p;
        for (int i = 0; i < p; i++) {
          int qi = sourceOf[tBase + i];
          if (qi < 0) {
            continue;
          }
          int row = sBase + qi * hw;
          int outRow = kBase + i * p;
          for (int j = 0; j < p; j++) {
            int qj = sourceOf[tBase + j];
            if (qj >= 0) {
              out[outRow + j] += spatial[row + qj];
            }
          }
        }
      }
    }
    return out;
  }
}
