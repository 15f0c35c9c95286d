package io.flatmon.engine;

import java.util.Locale;
import org.apache.commons.math3.special.Erf;

/**
 * The activation σ after the monitored conv, with σ' and σ'' in double precision (docs/math.md
 * eq. 2 uses σ', eqs. 4–5 use σ''). Definitions and kink conventions follow PyTorch.
 */
public final class Activation {

  /** The supported functions. */
  public enum Kind {
    IDENTITY, RELU, LEAKY_RELU, GELU, GELU_TANH, SILU, TANH
  }

  private static final double SQRT_HALF = Math.sqrt(0.5);
  private static final double INV_SQRT_2PI = 1.0 / Math.sqrt(2.0 * Math.PI);
  private static final double GELU_TANH_C = Math.sqrt(2.0 / Math.PI);
  private static final double GELU_TANH_A = 0.044715;

  private final Kind kind;
  private final double negativeSlope;

  private Activation(Kind kind, double negativeSlope) {
    this.kind = kind;
    this.negativeSlope = negativeSlope;
  }

  public static Activation of(Kind kind) {
    if (kind == Kind.LEAKY_RELU) {
      return leakyRelu(0.01);
    }
    return new Activation(kind, 0.0);
  }

  public static Activation leakyRelu(double negativeSlope) {
    if (!Double.isFinite(negativeSlope)) {
      throw new IllegalArgumentException("leaky_relu negative_slope must be finite, got " + negativeSlope);
    }
    return new Activation(Kind.LEAKY_RELU, negativeSlope);
  }

  public Kind kind() {
    return kind;
  }

  public double negativeSlope() {
    return negativeSlope;
  }

  /**
   * Whether σ'' is non-zero somewhere: then the δ-terms of eqs. (5)–(7) contribute, the Hessian
   * depends on the labels and Tr H can be negative.
   */
  public boolean hasCurvature() {
    return switch (kind) {
      case IDENTITY, RELU, LEAKY_RELU -> false;
      case GELU, GELU_TANH, SILU, TANH -> true;
    };
  }

  public double value(double z) {
    return switch (kind) {
      case IDENTITY -> z;
      case RELU -> z > 0 ? z : 0.0;
      case LEAKY_RELU -> z > 0 ? z : negativeSlope * z;
      case GELU -> z * normalCdf(z);
      case GELU_TANH -> 0.5 * z * (1.0 + Math.tanh(GELU_TANH_C * (z + GELU_TANH_A * z * z * z)));
      case SILU -> z * sigmoid(z);
      case TANH -> Math.tanh(z);
    };
  }

  public double firstDerivative(double z) {
    switch (kind) {
      case IDENTITY:
        return 1.0;
      case RELU:
        return z > 0 ? 1.0 : 0.0;
      case LEAKY_RELU:
        return z > 0 ? 1.0 : negativeSlope;
      case GELU:
        return normalCdf(z) + z * normalPdf(z);
      case GELU_TANH: {
        double u = GELU_TANH_C * (z + GELU_TANH_A * z * z * z);
        double du = GELU_TANH_C * (1.0 + 3.0 * GELU_TANH_A * z * z);
        double t = Math.tanh(u);
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du;
      }
      case SILU: {
        double s = sigmoid(z);
        return s * (1.0 + z * (1.0 - s));
      }
      case TANH: {
        double t = Math.tanh(z);
        return 1.0 - t * t;
      }
      default:
        throw new AssertionError(kind);
    }
  }

  public double secondDerivative(double z) {
    switch (kind) {
      case IDENTITY:
      case RELU:
      case LEAKY_RELU:
        return 0.0;
      case GELU:
        return normalPdf(z) * (2.0 - z * z);
      case GELU_TANH: {
        // σ = z(1+t)/2 with t = tanh(u(z)): σ'' = (1−t²)(u' − z t u'² + z u''/2).
        double u = GELU_TANH_C * (z + GELU_TANH_A * z * z * z);
        double du = GELU_TANH_C * (1.0 + 3.0 * GELU_TANH_A * z * z);
        double ddu = GELU_TANH_C * 6.0 * GELU_TANH_A * z;
        double t = Math.tanh(u);
        return (1.0 - t * t) * (du - z * t * du * du + 0.5 * z * ddu);
      }
      case SILU: {
        double s = sigmoid(z);
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s));
      }
      case TANH: {
        double t = Math.tanh(z);
        return -2.0 * t * (1.0 - t * t);
      }
      default:
        throw new AssertionError(kind);
    }
  }

  private static double sigmoid(double z) {
    if (z >= 0) {
      return 1.0 / (1.0 + Math.exp(-z));
    }
    double e = Math.exp(z);
    return e / (1.0 + e);
  }

  /** Φ(z) through erfc, accurate in both tails. */
  private static double normalCdf(double z) {
    return 0.5 * Erf.erfc(-z * SQRT_HALF);
  }

  private static double normalPdf(double z) {
    return INV_SQRT_2PI * Math.exp(-0.5 * z * z);
  }

  @Override
  public String toString() {
    String name = kind.name().toLowerCase(Locale.ROOT);
    return kind == Kind.LEAKY_RELU ? name + "(" + negativeSlope + ")" : name;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Activation other
        && other.kind == kind
        && Double.compare(other.negativeSlope, negativeSlope) == 0;
  }

  @Override
  public int hashCode() {
    return kind.hashCode() * 31 + Double.hashCode(negativeSlope);
  }
}
