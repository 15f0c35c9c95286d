package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The float32 ND4J engine against the float64 reference on random heads of every kind and route. */
class CurvatureEngineTest {

  static Stream<Arguments> heads() {
    List<Arguments> cases = new ArrayList<>();
    Activation[] activations = {
        Activation.of(Activation.Kind.IDENTITY), Activation.of(Activation.Kind.RELU), Activation.leakyRelu(0.1),
        Activation.of(Activation.Kind.GELU), Activation.of(Activation.Kind.GELU_TANH),
        Activation.of(Activation.Kind.SILU), Activation.of(Activation.Kind.TANH)};
    ConvGeometry[] geometries = {
        ConvGeometry.of(3, 3), new ConvGeometry(3, 3, 2, 2, 1, 1, 1, 1), new ConvGeometry(2, 3, 1, 2, 0, 1, 2, 1),
        ConvGeometry.of(1, 1)};
    int i = 0;
    for (Activation a : activations) {
      for (ConvGeometry g : geometries) {
        for (CurvatureEngine.GramRoute route : new CurvatureEngine.GramRoute[] {
            CurvatureEngine.GramRoute.PATCH_GRAM, CurvatureEngine.GramRoute.FILTER_GRAM}) {
          boolean sendZ = i % 3 == 0;
          cases.add(Arguments.of(a, g, route, i % 2 == 0, i % 4 == 1, sendZ, 2 + (i * 7) % 30, i));
          i++;
        }
      }
    }
    return cases.stream();
  }

  @ParameterizedTest(name = "{0} {1} {2} bias={3} scale={4} Z={5} K={6}")
  @MethodSource("heads")
  void engineMatchesReference(Activation activation, ConvGeometry geometry, CurvatureEngine.GramRoute route,
      boolean bias, boolean scale, boolean sendZ, int classes, int seed) {
    SyntheticHeads random = new SyntheticHeads(seed);
    HeadSnapshot head = random.head(6, 3, geometry, classes, activation, bias, scale, 3.0);
    ActivationBatch batch = random.batch(head, 5, 7, 6, true);
    if (sendZ) {
      batch = random.withPreActivation(head, batch, 0.3);
    }
    assertEngineMatchesReference(head, batch, route);
  }

  /**
   * A channel holding only subnormal values (RMS below float32's smallest normal) counts as zero for
   * κ_norm: 1/ρ would overflow the engine's float32 and make κ_norm infinite or NaN.
   */
  @Test
  void channelOfSubnormalValuesIsLeftOutOfNormalizedKappa() {
    SyntheticHeads random = new SyntheticHeads(5);
    HeadSnapshot head = random.head(6, 3, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 5, Activation.of(Activation.Kind.RELU),
        true, false, 3.0);
    ActivationBatch batch = random.batch(head, 4, 5, 5, true);
    float[] subnormal = batch.input().clone();
    float[] zero = batch.input().clone();
    int plane = 25;
    for (int j = 0; j < subnormal.length; j++) {
      if ((j / plane) % 3 == 1) {
        subnormal[j] = j % 2 == 0 ? 1e-41f : 0f;
        zero[j] = 0f;
      }
    }
    ActivationBatch withSubnormal = new ActivationBatch(4, 3, 5, 5, subnormal, null, batch.labels());
    ActivationBatch withZero = new ActivationBatch(4, 3, 5, 5, zero, null, batch.labels());
    double[] got = new CurvatureEngine().compute(head, withSubnormal, withSubnormal.inputChannelRms())
        .relativeFlatnessNormalized();
    double[] expected = new CurvatureEngine().compute(head, withZero, withZero.inputChannelRms())
        .relativeFlatnessNormalized();
    for (int n = 0; n < got.length; n++) {
      assertTrue(Double.isFinite(got[n]), "κ_norm of sample " + n + ": " + got[n]);
      assertEquals(expected[n], got[n], 1e-6 * Math.abs(expected[n]), "sample " + n);
    }
    assertEquals(0.0, withSubnormal.inputChannelRms()[1]);
  }

  /** Every per-sample output of the engine within 1e-5 of the float64 reference, with κ_norm. */
  private static void assertEngineMatchesReference(HeadSnapshot head, ActivationBatch batch,
      CurvatureEngine.GramRoute route) {
    double[] rho = batch.inputChannelRms();
    BatchCurvature expected = new ReferenceCurvature().compute(head, batch, rho);
    BatchCurvature actual = new CurvatureEngine(route).compute(head, batch, rho);
    double[][] scales = new ReferenceCurvature().cancellationScales(head, batch, rho);
    assertClose("Tr H", expected.hessianTrace(), actual.hessianTrace(), scales[0]);
    assertClose("kappa", expected.relativeFlatness(), actual.relativeFlatness(), scales[1]);
    assertClose("kappa_norm", expected.relativeFlatnessNormalized(), actual.relativeFlatnessNormalized(),
        scales[2]);
    assertClose("loss", expected.loss(), actual.loss());
    assertClose("classifier Tr", expected.classifierHessianTrace(), actual.classifierHessianTrace());
    assertClose("classifier kappa", expected.classifierRelativeFlatness(), actual.classifierRelativeFlatness());
    for (int n = 0; n < batch.samples(); n++) {
      assertEquals(expected.correct()[n], actual.correct()[n]);
    }
  }

  /**
   * Heads wide enough that Γ is handled in blocks of the upper triangle (eq. 15) and the batch in
   * several chunks, the last one a single sample, on both routes, with κ_norm.
   */
  @ParameterizedTest(name = "C={1} {0}")
  @MethodSource("wideHeads")
  void wideHeadIsComputedInBlocksAndChunks(CurvatureEngine.GramRoute route, int channels) {
    SyntheticHeads random = new SyntheticHeads(99);
    HeadSnapshot head = random.head(channels, 4, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 10,
        Activation.of(Activation.Kind.GELU), true, true, 1.0);
    ActivationBatch batch = random.batch(head, 17, 4, 4, true);
    assertEngineMatchesReference(head, batch, route);
  }

  static Stream<Arguments> wideHeads() {
    List<Arguments> cases = new ArrayList<>();
    for (CurvatureEngine.GramRoute route : new CurvatureEngine.GramRoute[] {
        CurvatureEngine.GramRoute.PATCH_GRAM, CurvatureEngine.GramRoute.FILTER_GRAM}) {
      cases.add(Arguments.of(route, 256));
      cases.add(Arguments.of(route, 512));
    }
    return cases.stream();
  }

  /** Per-sample values within 1e-5 of the reference, relative to each sample's own value (no floor). */
  static void assertClose(String what, double[] expected, double[] actual) {
    double[] own = new double[expected.length];
    for (int n = 0; n < own.length; n++) {
      own[n] = Math.abs(expected[n]);
    }
    assertClose(what, expected, actual, own);
  }

  /**
   * Per-sample values within 1e-5 of the reference, relative to {@code scale[n]}: the sample's
   * |first term| + |second term| of eq. (6) or (7) (docs/math.md §5), which is the value itself when
   * σ'' = 0. No absolute floor.
   */
  static void assertClose(String what, double[] expected, double[] actual, double[] scale) {
    for (int n = 0; n < expected.length; n++) {
      double e = expected[n];
      double err = Math.abs(e - actual[n]);
      double rel = err == 0.0 ? 0.0 : err / scale[n];
      int sample = n;
      assertTrue(rel <= 1e-5 || Double.isNaN(e) && Double.isNaN(actual[n]),
          () -> String.format("%s sample %d: reference %.17g vs engine %.17g (error %.3g of scale %.3g)", what,
              sample, e, actual[sample], rel, scale[sample]));
    }
  }
}
