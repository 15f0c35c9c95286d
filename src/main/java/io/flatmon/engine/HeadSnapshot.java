package io.flatmon.engine;

import java.util.Arrays;

/**
 * The weights of a monitored head at one step (docs/math.md §1): conv kernel W [C, C_in, kh, kw],
 * optional bias β [C], optional per-channel scale a [C] (folded eval-mode BatchNorm), activation σ,
 * global average pooling, classifier V [K, C] and b [K]. Arrays are row-major and not copied:
 * callers hand over ownership.
 */
public final class HeadSnapshot {
  /**
   * The smallest non-zero input-channel RMS ρ (float32's smallest normal number): the engine works
   * in float32 with 1/ρ (eq. 12), which overflows below it. ρ = 0 leaves a channel out of κ_norm.
   */
  public static final double MIN_INPUT_CHANNEL_RMS = Float.MIN_NORMAL;

  private final int channels;
  private final int inputChannels;
  private final ConvGeometry geometry;
  private final float[] kernel;
  private final float[] bias;
  private final float[] scale;
  private final Activation activation;
  private final int classes;
  private final float[] classifierWeight;
  private final float[] classifierBias;
  private final double weightDecay;
  private final double[] inputChannelRms;
  /** Checked once here rather than per batch: O(Cd) on every batch was 2 % of the engine's time. */
  private final boolean nonFiniteWeights;

  private HeadSnapshot(Builder b) {
    this.channels = b.channels;
    this.inputChannels = b.inputChannels;
    this.geometry = b.geometry;
    this.kernel = b.kernel;
    this.bias = b.bias;
    this.scale = b.scale;
    this.activation = b.activation;
    this.classes = b.classes;
    this.classifierWeight = b.classifierWeight;
    this.classifierBias = b.classifierBias;
    this.weightDecay = b.weightDecay;
    this.inputChannelRms = b.inputChannelRms;
    this.nonFiniteWeights = !(allFinite(kernel) && allFinite(bias) && allFinite(scale)
        && allFinite(classifierWeight) && allFinite(classifierBias));
  }

  /** Starts a snapshot with kernel shape [channels, inputChannels, kh, kw] and V of shape [classes, channels]. */
  public static Builder builder(int channels, int inputChannels, ConvGeometry geometry, int classes) {
    return new Builder(channels, inputChannels, geometry, classes);
  }

  /** C, the number of filters. */
  public int channels() {
    return channels;
  }

  /** C_in. */
  public int inputChannels() {
    return inputChannels;
  }

  /** d = C_in·kh·kw, the length of a patch and of a filter. */
  public int patchLength() {
    return inputChannels * geometry.kernelHeight() * geometry.kernelWidth();
  }

  public ConvGeometry geometry() {
    return geometry;
  }

  /** W, row-major [C, C_in, kh, kw] = W_f [C, d] in unfold order. */
  public float[] kernel() {
    return kernel;
  }

  /** β [C] or null. */
  public float[] bias() {
    return bias;
  }

  /** a [C] or null (a = 1). */
  public float[] scale() {
    return scale;
  }

  /** a_c, 1 when no scale is set. */
  public double scale(int c) {
    return scale == null ? 1.0 : scale[c];
  }

  public Activation activation() {
    return activation;
  }

  /** K. */
  public int classes() {
    return classes;
  }

  /** V, row-major [K, C]. */
  public float[] classifierWeight() {
    return classifierWeight;
  }

  /** b [K] or null. */
  public float[] classifierBias() {
    return classifierBias;
  }

  /** α of a weight-decay term α‖W‖² in the loss, 0 if none. */
  public double weightDecay() {
    return weightDecay;
  }

  /** ρ [C_in] sent by the trainer, or null. */
  public double[] inputChannelRms() {
    return inputChannelRms;
  }

  /** Whether any weight is NaN or infinite. */
  public boolean hasNonFiniteWeights() {
    return nonFiniteWeights;
  }

  static boolean allFinite(float[] values) {
    if (values == null) {
      return true;
    }
    for (float v : values) {
      if (!Float.isFinite(v)) {
        return false;
      }
    }
    return true;
  }

  /** Weight-decay term 2αCd of Tr H (docs/math.md eq. 8), reported apart from the data term. */
  public double weightDecayTrace() {
    return 2.0 * weightDecay * channels * patchLength();
  }

  /** Weight-decay term 2αd‖W‖²_F of κ (docs/math.md eq. 8). */
  public double weightDecayRelativeFlatness() {
    if (weightDecay == 0.0) {
      return 0.0;
    }
    double norm = 0.0;
    for (float w : kernel) {
      norm += (double) w * w;
    }
    return 2.0 * weightDecay * patchLength() * norm;
  }

  @Override
  public String toString() {
    return String.format("head[C=%d C_in=%d %s %s K=%d%s%s]", channels, inputChannels, geometry,
        activation, classes, bias != null ? " bias" : "", scale != null ? " scale" : "");
  }

  /** Builder validating every shape once, so the engines can trust a snapshot. */
  public static final class Builder {
    private final int channels;
    private final int inputChannels;
    private final ConvGeometry geometry;
    private final int classes;
    private float[] kernel;
    private float[] bias;
    private float[] scale;
    private Activation activation;
    private float[] classifierWeight;
    private float[] classifierBias;
    private double weightDecay;
    private double[] inputChannelRms;

    private Builder(int channels, int inputChannels, ConvGeometry geometry, int classes) {
      if (channels < 1 || inputChannels < 1 || classes < 2) {
        throw new IllegalArgumentException(String.format(
            "need C >= 1, C_in >= 1 and K >= 2, got C=%d C_in=%d K=%d", channels, inputChannels, classes));
      }
      this.channels = channels;
      this.inputChannels = inputChannels;
      this.geometry = geometry;
      this.classes = classes;
    }

    public Builder kernel(float[] kernel) {
      this.kernel = kernel;
      return this;
    }

    public Builder bias(float[] bias) {
      this.bias = bias;
      return this;
    }

    public Builder scale(float[] scale) {
      this.scale = scale;
      return this;
    }

    public Builder activation(Activation activation) {
      this.activation = activation;
      return this;
    }

    public Builder classifier(float[] weight, float[] bias) {
      this.classifierWeight = weight;
      this.classifierBias = bias;
      return this;
    }

    public Builder weightDecay(double weightDecay) {
      this.weightDecay = weightDecay;
      return this;
    }

    public Builder inputChannelRms(double[] rms) {
      this.inputChannelRms = rms;
      return this;
    }

    public HeadSnapshot build() {
      int d = inputChannels * geometry.kernelHeight() * geometry.kernelWidth();
      requireLength("kernel", kernel, (long) channels * d);
      requireOptionalLength("bias", bias, channels);
      requireOptionalLength("scale", scale, channels);
      requireLength("classifier weight", classifierWeight, (long) classes * channels);
      requireOptionalLength("classifier bias", classifierBias, classes);
      if (inputChannelRms != null && inputChannelRms.length != inputChannels) {
        throw new IllegalArgumentException("input channel rms has " + inputChannelRms.length
            + " elements, expected " + inputChannels);
      }
      if (activation == null) {
        throw new IllegalArgumentException("activation is required");
      }
      if (!Double.isFinite(weightDecay) || weightDecay < 0) {
        throw new IllegalArgumentException("weight decay must be finite and >= 0, got " + weightDecay);
      }
      if (inputChannelRms != null) {
        for (double r : inputChannelRms) {
          if (!(r == 0 || r >= MIN_INPUT_CHANNEL_RMS) || !Double.isFinite(r)) {
            throw new IllegalArgumentException("input channel rms must be 0 or finite and >= "
                + MIN_INPUT_CHANNEL_RMS + ": "
                + Arrays.toString(inputChannelRms));
          }
        }
      }
      return new HeadSnapshot(this);
    }

    private static void requireLength(String what, float[] values, long expected) {
      if (values == null) {
        throw new IllegalArgumentException(what + " is required");
      }
      requireOptionalLength(what, values, expected);
    }

    private static void requireOptionalLength(String what, float[] values, long expected) {
      if (values != null && values.length != expected) {
        throw new IllegalArgumentException(
            what + " has " + values.length + " elements, expected " + expected);
      }
    }
  }
}
