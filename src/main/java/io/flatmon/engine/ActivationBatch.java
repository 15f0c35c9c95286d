package io.flatmon.engine;

/**
 * Samples run through a head: the conv's input feature map F [B, C_in, H, W], optionally the
 * pre-activation Z [B, C, H', W'] (required when the head has an additive term r), and optionally
 * labels [B]. Arrays are row-major and not copied.
 */
public record ActivationBatch(
    int samples, int inputChannels, int height, int width,
    float[] input, float[] preActivation, int[] labels) {

  public ActivationBatch {
    if (samples < 1) {
      throw new IllegalArgumentException("a batch needs at least one sample");
    }
    if (inputChannels < 1 || height < 1 || width < 1) {
      throw new IllegalArgumentException(String.format(
          "input must be [B, C_in, H, W] with positive sizes, got C_in=%d H=%d W=%d", inputChannels, height, width));
    }
    long expected = (long) samples * inputChannels * height * width;
    if (input == null || input.length != expected) {
      throw new IllegalArgumentException("input has " + (input == null ? 0 : input.length)
          + " elements, expected " + expected);
    }
    if (labels != null && labels.length != samples) {
      throw new IllegalArgumentException("labels has " + labels.length + " entries for " + samples + " samples");
    }
  }

  public boolean hasLabels() {
    return labels != null;
  }

  public boolean hasPreActivation() {
    return preActivation != null;
  }

  /** Elements of one sample's input, C_in·H·W. */
  public int sampleSize() {
    return inputChannels * height * width;
  }

  /**
   * Checks this batch against a head: channel counts, a non-empty conv output, the pre-activation's
   * size, labels in [0, K) and labels present for smooth activations.
   *
   * @throws IllegalArgumentException naming the first inconsistency
   */
  public void checkAgainst(HeadSnapshot head) {
    if (inputChannels != head.inputChannels()) {
      throw new IllegalArgumentException("input has C_in=" + inputChannels + " but the kernel expects "
          + head.inputChannels());
    }
    int outH = head.geometry().outputHeight(height);
    int outW = head.geometry().outputWidth(width);
    if (outH < 1 || outW < 1) {
      throw new IllegalArgumentException(String.format("input %dx%d is too small for %s", height, width,
          head.geometry()));
    }
    if (preActivation != null) {
      long expected = (long) samples * head.channels() * outH * outW;
      if (preActivation.length != expected) {
        throw new IllegalArgumentException(String.format(
            "pre-activation has %d elements, expected [B=%d, C=%d, %d, %d] = %d", preActivation.length,
            samples, head.channels(), outH, outW, expected));
      }
    }
    if (labels == null) {
      if (head.activation().hasCurvature()) {
        throw new IllegalArgumentException("labels are required for activation " + head.activation()
            + " (its Hessian depends on them)");
      }
    } else {
      for (int n = 0; n < samples; n++) {
        if (labels[n] < 0 || labels[n] >= head.classes()) {
          throw new IllegalArgumentException("label " + labels[n] + " of sample " + n
              + " is outside [0, " + head.classes() + ")");
        }
      }
    }
  }

  /** Whether any input or pre-activation value is NaN or infinite. */
  public boolean hasNonFiniteValues() {
    return !(HeadSnapshot.allFinite(input) && HeadSnapshot.allFinite(preActivation));
  }

  /**
   * Per-input-channel RMS ρ_i = sqrt(mean over samples and positions of F_i²), the normaliser of
   * κ_norm (docs/math.md §3). A channel that is identically zero here gets ρ = 0, which leaves it out
   * of κ_norm (eq. 12's pseudo-inverse); so does one whose RMS is not finite or below float32's
   * smallest normal number (only subnormal values: 1/ρ would overflow the engine's float32).
   */
  public double[] inputChannelRms() {
    double[] sums = new double[inputChannels];
    int plane = height * width;
    for (int n = 0; n < samples; n++) {
      for (int i = 0; i < inputChannels; i++) {
        int base = (n * inputChannels + i) * plane;
        double s = 0.0;
        for (int j = 0; j < plane; j++) {
          double v = input[base + j];
          s += v * v;
        }
        sums[i] += s;
      }
    }
    double[] rms = new double[inputChannels];
    for (int i = 0; i < inputChannels; i++) {
      double r = Math.sqrt(sums[i] / ((double) samples * plane));
      rms[i] = Double.isFinite(r) && r >= HeadSnapshot.MIN_INPUT_CHANNEL_RMS ? r : 0.0;
    }
    return rms;
  }
}
