package io.flatmon.engine;

/**
 * Per-sample curvature of one batch through one head. Index n is the sample; the layer's value is
 * the mean over samples (docs/math.md eqs. 6–7), formed by {@link StepAggregate}. Quantities that
 * need a label (loss, correct) are NaN for unlabelled samples.
 */
public record BatchCurvature(
    double[] hessianTrace,
    double[] relativeFlatness,
    double[] relativeFlatnessNormalized,
    double[] loss,
    double[] correct,
    double[] classifierHessianTrace,
    double[] classifierRelativeFlatness,
    double[] inputChannelRms,
    boolean nonFiniteInput) {

  public int samples() {
    return hessianTrace.length;
  }

  /** Fresh arrays for {@code samples} samples, every entry NaN until written. */
  static BatchCurvature allocate(int samples, double[] inputChannelRms, boolean nonFiniteInput) {
    return new BatchCurvature(nans(samples), nans(samples), nans(samples), nans(samples), nans(samples),
        nans(samples), nans(samples), inputChannelRms, nonFiniteInput);
  }

  private static double[] nans(int n) {
    double[] a = new double[n];
    java.util.Arrays.fill(a, Double.NaN);
    return a;
  }
}
