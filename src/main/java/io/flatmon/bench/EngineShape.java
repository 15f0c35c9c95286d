package io.flatmon.bench;

import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import java.util.Locale;
import java.util.SplittableRandom;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.convolution.Convolution;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The monitored-head shapes of the engine benchmark: the last conv of standard networks, followed by
 * ReLU, global average pooling and a K-class classifier.
 *
 * <ul>
 *   <li>{@code cifar10} / {@code cifar100}: ResNet-18 on CIFAR, last conv C = C_in = 512, 3×3, padding 1,
 *       4×4 input and output, K = 10 / 100.
 *   <li>{@code imagenet}: ResNet-18 on ImageNet, the same conv on 7×7, K = 1000.
 *   <li>{@code resnet50}: ResNet-50's last conv (conv3 of the last bottleneck), C = 2048, C_in = 512, 1×1,
 *       7×7, K = 1000.
 * </ul>
 */
public enum EngineShape {
  CIFAR10(512, 512, 3, 1, 4, 10, 0x5eed_0010L),
  CIFAR100(512, 512, 3, 1, 4, 100, 0x5eed_0100L),
  IMAGENET(512, 512, 3, 1, 7, 1000, 0x5eed_1000L),
  RESNET50(2048, 512, 1, 0, 7, 1000, 0x5eed_2048L);

  /** Scale of the Gaussian additive term r (BN shift + shortcut) in a sent pre-activation. */
  static final double RESIDUAL = 0.5;

  public final int channels;
  public final int inputChannels;
  public final int kernel;
  public final int padding;
  /** Input and (stride 1, "same" padding) output side. */
  public final int side;
  public final int classes;
  final long seed;

  EngineShape(int channels, int inputChannels, int kernel, int padding, int side, int classes, long seed) {
    this.channels = channels;
    this.inputChannels = inputChannels;
    this.kernel = kernel;
    this.padding = padding;
    this.side = side;
    this.classes = classes;
    this.seed = seed;
  }

  /** The lower-case name used in JMH params and on the command line. */
  public String id() {
    return name().toLowerCase(Locale.ROOT);
  }

  public static EngineShape parse(String name) {
    try {
      return valueOf(name.trim().toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown shape '" + name + "' (expected cifar10, cifar100, imagenet or resnet50)");
    }
  }

  public ConvGeometry geometry() {
    return new ConvGeometry(kernel, kernel, 1, 1, padding, padding, 1, 1);
  }

  /** d = C_in·k². */
  public int patchLength() {
    return inputChannels * kernel * kernel;
  }

  /** P, output positions per sample. */
  public int positions() {
    int out = geometry().outputHeight(side);
    return out * geometry().outputWidth(side);
  }

  /** A fixed-seed head: He-scaled kernel, conv bias and folded-BN scale, ReLU, classifier gain 1. */
  public HeadSnapshot head() {
    return new SyntheticHeads(seed).head(channels, inputChannels, geometry(), classes,
        Activation.of(Activation.Kind.RELU), true, true, 1.0);
  }

  /** A fixed-seed labelled batch for the head, with the pre-activation Z sent when asked. */
  public ActivationBatch batch(HeadSnapshot head, int samples, boolean sendZ) {
    ActivationBatch x = new SyntheticHeads(seed + samples).batch(head, samples, side, side, true);
    return sendZ ? withPreActivation(head, x, RESIDUAL, seed ^ samples) : x;
  }

  /**
   * The batch with Z = a(conv(F) + β) + r sent, r Gaussian with scale {@code residual}. Same result as
   * {@link SyntheticHeads#withPreActivation} (up to the random r), but the conv runs as one ND4J GEMM
   * instead of a plain-Java loop that takes many seconds on the ImageNet shape at batch 128.
   */
  static ActivationBatch withPreActivation(HeadSnapshot head, ActivationBatch batch, double residual, long seed) {
    ConvGeometry g = head.geometry();
    int b = batch.samples();
    int c = head.channels();
    int d = head.patchLength();
    int outH = g.outputHeight(batch.height());
    int outW = g.outputWidth(batch.width());
    int p = outH * outW;
    INDArray input = Nd4j.create(batch.input(), new long[] {b, batch.inputChannels(), batch.height(), batch.width()}, 'c');
    INDArray cols = Nd4j.createUninitialized(DataType.FLOAT, b, outH, outW, batch.inputChannels(),
        g.kernelHeight(), g.kernelWidth());
    Convolution.im2col(input, g.kernelHeight(), g.kernelWidth(), g.strideHeight(), g.strideWidth(),
        g.padHeight(), g.padWidth(), g.dilationHeight(), g.dilationWidth(), false, cols.permute(0, 3, 4, 5, 1, 2));
    INDArray rows = cols.reshape('c', (long) b * p, d);
    INDArray w = Nd4j.create(head.kernel(), new long[] {c, d}, 'c');
    INDArray zt = Nd4j.createUninitialized(DataType.FLOAT, (long) b * p, c);
    Nd4j.gemm(rows, w, zt, false, true, 1.0, 0.0);
    float[] zr = zt.reshape('c', b, p, c).permute(0, 2, 1).dup('c').data().asFloat();
    SplittableRandom random = new SplittableRandom(seed);
    float[] bias = head.bias();
    for (int n = 0; n < b; n++) {
      for (int ch = 0; ch < c; ch++) {
        double a = head.scale(ch);
        double beta = bias == null ? 0.0 : bias[ch];
        int base = (n * c + ch) * p;
        for (int q = 0; q < p; q++) {
          zr[base + q] = (float) (a * (zr[base + q] + beta) + residual * random.nextGaussian());
        }
      }
    }
    return new ActivationBatch(b, batch.inputChannels(), batch.height(), batch.width(), batch.input(), zr,
        batch.labels());
  }

  /**
   * Flops per sample of Tr H + κ for this shape (ReLU, so no σ'' terms) as counted by docs/math.md §6
   * — the yardstick that the benchmark's "fraction of the physical limit" divides by the sgemm peak.
   * Only matrix products are counted (2mnk each); elementwise work, im2col, the O(KC) softmax side
   * and Ω = W_f W_fᵀ (once per weight snapshot) are not. The engine does less than
   * this where it can (eq. 14 forms K_p from the input's spatial Gram), and is credited with the count.
   *
   * <pre>
   *   conv forward  Zᵀ = X W_fᵀ           2·P·d·C      only when Z is not sent
   *   patch Gram    K_p = X Xᵀ            2·P²·d       (patch-Gram route, or σ'' ≠ 0)
   *   Γ             T = M̃ K_p, Γ = T M̃ᵀ   2·C·P² + 2·C²·P    when P(C+d) &lt; Cd (the engine's AUTO route)
   *                 G = M̃ X,   Γ = G Gᵀ   2·C·P·d + 2·C²·d   otherwise
   *   κ             Yᵀ = (Ω∘Γ)Rᵀ, R K×C   2·K·C²  (§6: "full A, 2KC²")
   *   κ_norm        the Gram, Γ and Y again on the 1/ρ-scaled patches (Ω' once per ρ, not counted)
   * </pre>
   *
   * Tr H only needs diag Γ, but the engine forms the full Γ for κ, so Tr H + κ costs the sum above.
   */
  public double flopsPerSample(boolean sendZ, boolean kappaNorm) {
    double c = channels;
    double d = patchLength();
    double p = positions();
    double k = classes;
    boolean patchGram = (long) positions() * (channels + patchLength()) < (long) channels * patchLength();
    double conv = sendZ ? 0.0 : 2 * p * d * c;
    double gram = patchGram ? 2 * p * p * d : 0.0;
    double gamma = patchGram ? 2 * c * p * p + 2 * c * c * p : 2 * c * p * d + 2 * c * c * d;
    double kappa = 2 * k * c * c;
    double once = gram + gamma + kappa;
    return conv + once * (kappaNorm ? 2 : 1);
  }

  /** The Γ route the engine's AUTO picks for this shape. */
  public String gammaRoute() {
    return (long) positions() * (channels + patchLength()) < (long) channels * patchLength()
        ? "patch-Gram" : "filter-Gram";
  }
}
