package io.flatmon.engine;

/** Computes per-sample curvature of a batch through a head (docs/math.md eqs. 6, 7, 10, 12). */
public interface CurvatureComputer {

  /**
   * @param inputChannelRms ρ [C_in] for κ_norm (eq. 12), or null to skip κ_norm
   * @throws IllegalArgumentException if the batch does not fit the head
   */
  BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms);
}
