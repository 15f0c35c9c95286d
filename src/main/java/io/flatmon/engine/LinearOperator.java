package io.flatmon.engine;

/** A symmetric linear map given only by its action, such as a Hessian-vector product. */
@FunctionalInterface
public interface LinearOperator {

  /** Writes A·v into out (both of the operator's dimension; out is overwritten). */
  void apply(double[] v, double[] out);
}
