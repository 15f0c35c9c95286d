package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Eq. (14) against X Xᵀ formed from plain-Java im2col ({@link Patches}), over many geometries. */
class SpatialGramTest {

  static Stream<Arguments> geometries() {
    return Stream.of(
        Arguments.of(new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 4, 4),
        Arguments.of(new ConvGeometry(3, 3, 1, 1, 0, 0, 1, 1), 7, 5),
        Arguments.of(new ConvGeometry(1, 1, 1, 1, 0, 0, 1, 1), 7, 7),
        Arguments.of(new ConvGeometry(3, 3, 2, 2, 1, 1, 1, 1), 8, 8),
        Arguments.of(new ConvGeometry(3, 2, 2, 1, 1, 0, 2, 1), 9, 6),
        Arguments.of(new ConvGeometry(5, 3, 1, 3, 2, 1, 1, 2), 6, 11),
        Arguments.of(new ConvGeometry(2, 2, 1, 1, 3, 3, 3, 3), 3, 3));
  }

  @ParameterizedTest(name = "{0} on {1}x{2}")
  @MethodSource("geometries")
  void patchGramEqualsPatchesTimesPatchesTransposed(ConvGeometry geo, int height, int width) {
    int samples = 2;
    int channels = 3;
    int hw = height * width;
    Random random = new Random(7);
    float[] input = new float[samples * channels * hw];
    for (int i = 0; i < input.length; i++) {
      input[i] = (float) random.nextGaussian();
    }
    double[] spatial = new double[samples * hw * hw];
    for (int n = 0; n < samples; n++) {
      for (int a = 0; a < hw; a++) {
        for (int b = 0; b < hw; b++) {
          double s = 0.0;
          for (int i = 0; i < channels; i++) {
            int base = (n * channels + i) * hw;
            s += (double) input[base + a] * input[base + b];
          }
          spatial[(n * hw + a) * hw + b] = s;
        }
      }
    }
    int outH = geo.outputHeight(height);
    int outW = geo.outputWidth(width);
    int p = outH * outW;
    int d = channels * geo.kernelHeight() * geo.kernelWidth();
    double[] grams = new SpatialGram(geo, height, width).patchGrams(spatial, samples);
    for (int n = 0; n < samples; n++) {
      double[] x = Patches.extract(input, n, channels, height, width, geo, outH, outW);
      for (int i = 0; i < p; i++) {
        for (int j = 0; j < p; j++) {
          double expected = 0.0;
          for (int t = 0; t < d; t++) {
            expected += x[i * d + t] * x[j * d + t];
          }
          assertEquals(expected, grams[(n * p + i) * p + j], 1e-12 * (1 + Math.abs(expected)),
              "sample " + n + " K_p[" + i + "," + j + "]");
        }
      }
    }
  }
}
