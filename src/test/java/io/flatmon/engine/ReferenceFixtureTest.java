package io.flatmon.engine;

import static io.flatmon.engine.OracleFixtureTest.REFERENCE_TOLERANCE;
import static io.flatmon.engine.OracleFixtureTest.aggregate;
import static io.flatmon.engine.OracleFixtureTest.assertRelative;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.engine.OracleFixtureTest.Case;
import io.flatmon.proto.v1.OracleValues;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The float64 {@link ReferenceCurvature} against the oracle fixtures (PyTorch float64 autograd, or
 * 50-digit mpmath on confident cases) at 1e-10 relative, no absolute floor. Kept apart from the
 * engine's tests so that it runs without ND4J (mutation testing runs it once per mutant).
 */
class ReferenceFixtureTest {

  static Stream<Case> allCases() throws Exception {
    return OracleFixtureTest.allCases();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("allCases")
  void referenceMatchesOracle(Case c) {
    OracleValues expected = c.oracle().getExpected();
    ReferenceCurvature reference = new ReferenceCurvature();
    StepAggregate agg = aggregate(reference, c);
    String id = c.oracle().getCaseId();
    assertRelative(id + " Tr H", expected.getHessianTrace(), agg.hessianTrace().mean(), REFERENCE_TOLERANCE);
    assertRelative(id + " κ", expected.getRelativeFlatness(), agg.relativeFlatness().mean(), REFERENCE_TOLERANCE);
    assertRelative(id + " κ_norm", expected.getRelativeFlatnessNormalized(),
        agg.relativeFlatnessNormalized().mean(), REFERENCE_TOLERANCE);
    assertRelative(id + " Tr H_V", expected.getClassifierHessianTrace(), agg.classifierHessianTrace().mean(),
        REFERENCE_TOLERANCE);
    assertRelative(id + " κ_V", expected.getClassifierRelativeFlatness(),
        agg.classifierRelativeFlatness().mean(), REFERENCE_TOLERANCE);
    if (c.batch().hasLabels()) {
      assertRelative(id + " loss", expected.getLoss(), agg.loss().mean(), REFERENCE_TOLERANCE);
      // a mean of 0/1 by Welford's update: a few ulp from the exact fraction
      assertRelative(id + " accuracy", expected.getAccuracy(), agg.accuracy().mean(), 1e-15);
    } else {
      assertEquals(0, agg.labelledSamples());
    }
    assertRelative(id + " wd Tr", expected.getWeightDecayTrace(), c.head().weightDecayTrace(), REFERENCE_TOLERANCE);
    assertRelative(id + " wd κ", expected.getWeightDecayRelativeFlatness(), c.head().weightDecayRelativeFlatness(),
        REFERENCE_TOLERANCE);
    double lambda = reference.maxEigenvalue(c.head(), List.of(c.batch()));
    assertRelative(id + " λ_max", expected.getHessianMaxEigenvalue(), lambda, REFERENCE_TOLERANCE);
  }


  /**
   * The cancellation scale |first term| + |second term| (docs/math.md §5) bounds each sample's value
   * and equals it when σ'' = 0; the sum of the terms is the value.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("allCases")
  void cancellationScalesBoundTheValues(Case c) {
    ReferenceCurvature reference = new ReferenceCurvature();
    double[] rho = new StepAggregate().normalizerFor(c.head(), c.batch());
    BatchCurvature values = reference.compute(c.head(), c.batch(), rho);
    double[][] scales = reference.cancellationScales(c.head(), c.batch(), rho);
    double[][] v = {values.hessianTrace(), values.relativeFlatness(), values.relativeFlatnessNormalized()};
    boolean smooth = c.head().activation().hasCurvature();
    for (int q = 0; q < 3; q++) {
      for (int n = 0; n < c.batch().samples(); n++) {
        double value = Math.abs(v[q][n]);
        if (smooth) {
          assertTrue(scales[q][n] >= value * (1 - 1e-12), c + " scale below |value|");
        } else {
          assertRelative(c + " scale", value, scales[q][n], 1e-15);
        }
      }
    }
  }
}
