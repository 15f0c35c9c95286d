package io.flatmon.bench;

import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import java.util.SplittableRandom;

/**
 * Random heads and batches of a given shape, for benchmarks and tests. Weights are scaled like a
 * trained network's (He-style fan-in scaling) so activations and logits have realistic magnitudes.
 */
public final class SyntheticHeads {
  private final SplittableRandom random;

  public SyntheticHeads(long seed) {
    this.random = new SplittableRandom(seed);
  }

  /** A head with kernel [c, cin, k, k] under the given geometry and a K-class classifier. */
  public HeadSnapshot head(int c, int cin, ConvGeometry geometry, int classes, Activation activation,
      boolean bias, boolean scale, double classifierGain) {
    int d = cin * geometry.kernelHeight() * geometry.kernelWidth();
    HeadSnapshot.Builder b = HeadSnapshot.builder(c, cin, geometry, classes)
        .kernel(gaussian(c * d, Math.sqrt(2.0 / d)))
        .activation(activation)
        .classifier(gaussian(classes * c, classifierGain / Math.sqrt(c)), gaussian(classes, 0.1));
    if (bias) {
      b.bias(gaussian(c, 0.1));
    }
    if (scale) {
      float[] a = new float[c];
      for (int i = 0; i < c; i++) {
        a[i] = (float) (0.5 + 1.5 * random.nextDouble());
      }
      b.scale(a);
    }
    return b.build();
  }

  /** F [samples, cin, h, w] with per-channel scales varying over an order of magnitude, labels in [0, K). */
  public ActivationBatch batch(HeadSnapshot head, int samples, int h, int w, boolean labels) {
    int cin = head.inputChannels();
    float[] input = new float[samples * cin * h * w];
    double[] channelScale = new double[cin];
    for (int i = 0; i < cin; i++) {
      channelScale[i] = Math.exp(random.nextDouble(-1.0, 1.0));
    }
    for (int j = 0; j < input.length; j++) {
      int ch = (j / (h * w)) % cin;
      input[j] = (float) (channelScale[ch] * random.nextGaussian());
    }
    int[] y = null;
    if (labels) {
      y = new int[samples];
      for (int n = 0; n < samples; n++) {
        y[n] = random.nextInt(head.classes());
      }
    }
    return new ActivationBatch(samples, cin, h, w, input, null, y);
  }

  /** The same batch with its pre-activation Z = a(conv(F) + β) + r sent, r Gaussian with the given scale. */
  public ActivationBatch withPreActivation(HeadSnapshot head, ActivationBatch batch, double residual) {
    ConvGeometry g = head.geometry();
    int outH = g.outputHeight(batch.height());
    int outW = g.outputWidth(batch.width());
    int p = outH * outW;
    int c = head.channels();
    int d = head.patchLength();
    float[] z = new float[batch.samples() * c * p];
    float[] w = head.kernel();
    for (int n = 0; n < batch.samples(); n++) {
      for (int oh = 0; oh < outH; oh++) {
        for (int ow = 0; ow < outW; ow++) {
          double[] x = patch(batch, n, g, oh, ow, d);
          for (int ch = 0; ch < c; ch++) {
            double s = head.bias() == null ? 0.0 : head.bias()[ch];
            for (int j = 0; j < d; j++) {
              s += w[ch * d + j] * x[j];
            }
            z[(n * c + ch) * p + oh * outW + ow] = (float) (head.scale(ch) * s + residual * random.nextGaussian());
          }
        }
      }
    }
    return new ActivationBatch(batch.samples(), batch.inputChannels(), batch.height(), batch.width(),
        batch.input(), z, batch.labels());
  }

  private static double[] patch(ActivationBatch batch, int n, ConvGeometry g, int oh, int ow, int d) {
    double[] x = new double[d];
    int kh = g.kernelHeight();
    int kw = g.kernelWidth();
    for (int i = 0; i < batch.inputChannels(); i++) {
      for (int u = 0; u < kh; u++) {
        for (int v = 0; v < kw; v++) {
          int yy = oh * g.strideHeight() - g.padHeight() + u * g.dilationHeight();
          int xx = ow * g.strideWidth() - g.padWidth() + v * g.dilationWidth();
          if (yy >= 0 && yy < batch.height() && xx >= 0 && xx < batch.width()) {
            x[(i * kh + u) * kw + v] =
                batch.input()[((n * batch.inputChannels() + i) * batch.height() + yy) * batch.width() + xx];
          }
        }
      }
    }
    return x;
  }

  private float[] gaussian(int n, double std) {
    float[] a = new float[n];
    for (int i = 0; i < n; i++) {
      a[i] = (float) (std * random.nextGaussian());
    }
    return a;
  }
}
