package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * σ, σ' and σ'' of docs/math.md §2 against values computed with mpmath at 40 digits (σ from its
 * definition, the derivatives by mpmath.diff), and the kink conventions of §1. Relative error, no floor.
 */
class ActivationTest {

  /** kind, z, σ(z), σ'(z), σ''(z) from mpmath. */
  static Stream<Arguments> smooth() {
    Object[][] rows = {
      {"GELU", -30.0, -1.472014178144456e-196, -4.416031690708495e-195, -1.3233342291209357e-193},
      {"GELU", -3.25, -0.0018753313877699928, -0.006017381143833479, -0.017373723990629263},
      {"GELU", -0.75, -0.16997051428265114, 0.0007742782607648957, 0.43288505872253136},
      {"GELU", 0.375, 0.24231366250227143, 0.7856154268738872, 0.6914180651641015},
      {"GELU", 2.5, 2.4844758366855597, 1.037611085908145, -0.07449527709766629},
      {"GELU", 9.0, 9.0, 1.0, -8.121021121618442e-17},
      {"GELU_TANH", -3.25, -0.0015686271447474687, -0.005564345644144168, -0.01739691247678155},
      {"GELU_TANH", -0.75, -0.1700394448343797, 0.0010617438625857023, 0.4323074902714741},
      {"GELU_TANH", 0.375, 0.2423077668915116, 0.7855556920479994, 0.6909894023384786},
      {"GELU_TANH", 2.5, 2.484915733910001, 1.037951576212666, -0.07624539207361296},
      {"SILU", -30.0, -2.8072868906517896e-12, -2.713710660963134e-12, -2.620134431274233e-12},
      {"SILU", -3.25, -0.12131238386842075, -0.07945728283818695, -0.03619860940371422},
      {"SILU", -0.75, -0.24061597561845527, 0.1574000555032465, 0.37722677521501974},
      {"SILU", 0.375, 0.22224997498277616, 0.6831964379239269, 0.46604761794778576},
      {"SILU", 2.5, 2.310354549946891, 1.0994011113415267, -0.008462156523368855},
      {"SILU", 9.0, 8.998889448816124, 1.0009870195718975, -0.0008633814101880479},
      {"TANH", -3.25, -0.996997635486526, 0.0059957148342761986, 0.011955427025649716},
      {"TANH", -0.75, -0.6351489523872873, 0.5965858082813315, 0.7578417022780214},
      {"TANH", 0.375, 0.35835739835078595, 0.8715799750472562, -0.6246742646251553},
      {"TANH", 2.5, 0.9866142981514303, 0.02659222668316062, -0.0524725421305805},
      {"TANH", 9.0, 0.999999969540041, 6.091991712323229e-08, -1.2183983053522824e-07},
    };
    return Stream.of(rows).map(Arguments::of);
  }

  @ParameterizedTest(name = "{0} at {1}")
  @MethodSource("smooth")
  void smoothActivationsMatchMpmath(String kind, double z, double value, double first, double second) {
    Activation a = Activation.of(Activation.Kind.valueOf(kind));
    assertTrue(a.hasCurvature());
    // tanh's 1 − t² loses relative digits where t → ±1 (z = 9): 1e-8 there, 1e-12 elsewhere
    double tol = Math.abs(z) >= 9 ? 1e-8 : 1e-12;
    assertRelative(kind + " σ", value, a.value(z), tol);
    assertRelative(kind + " σ'", first, a.firstDerivative(z), tol);
    assertRelative(kind + " σ''", second, a.secondDerivative(z), Math.abs(z) >= 9 ? 1e-6 : tol);
  }

  @Test
  void piecewiseLinearKindsAndTheirKinks() {
    Activation identity = Activation.of(Activation.Kind.IDENTITY);
    Activation relu = Activation.of(Activation.Kind.RELU);
    Activation leaky = Activation.leakyRelu(0.2);
    for (Activation a : new Activation[] {identity, relu, leaky}) {
      assertFalse(a.hasCurvature(), a.toString());
      for (double z : new double[] {-2.5, -1e-300, 0.0, 1e-300, 3.5}) {
        assertEquals(0.0, a.secondDerivative(z), 0.0, a + " σ''");
      }
    }
    assertEquals(-2.5, identity.value(-2.5), 0.0);
    assertEquals(1.0, identity.firstDerivative(-2.5), 0.0);
    assertEquals(0.0, relu.value(-2.5), 0.0);
    assertEquals(3.5, relu.value(3.5), 0.0);
    assertEquals(0.0, relu.firstDerivative(0.0), 0.0, "relu'(0) = 0, as autograd");
    assertEquals(1.0, relu.firstDerivative(1e-300), 0.0);
    assertEquals(0.0, relu.firstDerivative(-1e-300), 0.0);
    assertEquals(-0.5, leaky.value(-2.5), 1e-16);
    assertEquals(3.5, leaky.value(3.5), 0.0);
    assertEquals(0.2, leaky.firstDerivative(0.0), 0.0, "leaky'(0) = negative_slope, as autograd");
    assertEquals(1.0, leaky.firstDerivative(1e-300), 0.0);
    assertEquals(0.2, leaky.negativeSlope(), 0.0);
  }

  @Test
  void leakyReluDefaultsToPyTorchsSlopeAndRejectsNonFiniteSlopes() {
    assertEquals(0.01, Activation.of(Activation.Kind.LEAKY_RELU).negativeSlope(), 0.0);
    assertEquals(Activation.Kind.LEAKY_RELU, Activation.leakyRelu(0.3).kind());
    assertThrows(IllegalArgumentException.class, () -> Activation.leakyRelu(Double.NaN));
    assertThrows(IllegalArgumentException.class, () -> Activation.leakyRelu(Double.POSITIVE_INFINITY));
    assertEquals(Activation.leakyRelu(0.3), Activation.leakyRelu(0.3));
    assertEquals(Activation.leakyRelu(0.3).hashCode(), Activation.leakyRelu(0.3).hashCode());
    assertNotEquals(Activation.leakyRelu(0.3), Activation.leakyRelu(0.2));
    assertNotEquals(Activation.of(Activation.Kind.GELU), Activation.of(Activation.Kind.SILU));
  }

  /** The two-branch logistic keeps SiLU's left tail (no 1 − e^z cancellation, no overflow). */
  @Test
  void siluLeftTailKeepsItsDigits() {
    Activation silu = Activation.of(Activation.Kind.SILU);
    // z·sig(z) with sig(z) = e^z/(1 + e^z): at z = −800, e^z underflows to 0 and σ must be −0, not NaN
    assertEquals(0.0, silu.value(-800), 0.0);
    assertEquals(0.0, silu.firstDerivative(-800), 0.0);
    assertTrue(Double.isFinite(silu.value(800)));
  }

  static void assertRelative(String what, double expected, double actual, double tolerance) {
    OracleFixtureTest.assertRelative(what, expected, actual, tolerance);
  }
}
