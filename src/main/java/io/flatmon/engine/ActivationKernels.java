package io.flatmon.engine;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.scalar.Step;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.MulOp;
import org.nd4j.linalg.api.ops.impl.transforms.strict.Erfc;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * σ(Z), σ'(Z) and σ''(Z) elementwise on an ND4J array, with the same definitions as
 * {@link Activation} (which evaluates them in double for the reference). ND4J ops only, so they
 * run on whichever backend is loaded.
 */
final class ActivationKernels {
  private static final double SQRT_HALF = Math.sqrt(0.5);
  private static final double INV_SQRT_2PI = 1.0 / Math.sqrt(2.0 * Math.PI);
  private static final double GELU_TANH_C = Math.sqrt(2.0 / Math.PI);
  private static final double GELU_TANH_A = 0.044715;

  /** σ, σ' and (null when σ'' = 0) σ'' of a pre-activation array, each the shape of Z. */
  record Derivatives(INDArray value, INDArray first, INDArray second) {
  }

  private ActivationKernels() {
  }

  /**
   * As {@link #evaluate(Activation, INDArray)}, but the piecewise-linear kinds (the common case) write σ
   * and σ' into the given arrays of Z's shape instead of allocating: fresh native memory costs a page
   * fault per 4 KiB on first touch, and two to three Z-sized arrays per batch were a tenth of the
   * engine's time. σ = z·σ' for these kinds, exactly (σ'(0) = slope gives 0 either way).
   */
  static Derivatives evaluate(Activation activation, INDArray z, INDArray valueOut, INDArray firstOut) {
    switch (activation.kind()) {
      case IDENTITY:
        firstOut.assign(1.0);
        return new Derivatives(z, firstOut, null);
      case RELU:
        Nd4j.exec(new Step(z, firstOut, 0.0));
        Nd4j.exec(new MulOp(z, firstOut, valueOut));
        return new Derivatives(valueOut, firstOut, null);
      case LEAKY_RELU: {
        double slope = activation.negativeSlope();
        Nd4j.exec(new Step(z, firstOut, 0.0));
        firstOut.muli(1.0 - slope).addi(slope);
        Nd4j.exec(new MulOp(z, firstOut, valueOut));
        return new Derivatives(valueOut, firstOut, null);
      }
      default:
        return evaluate(activation, z);
    }
  }

  static Derivatives evaluate(Activation activation, INDArray z) {
    switch (activation.kind()) {
      case IDENTITY:
        return new Derivatives(z, Nd4j.onesLike(z), null);
      case RELU: {
        INDArray positive = z.gt(0.0);
        INDArray first = positive.castTo(z.dataType());
        NativeOps.keep(positive);
        return new Derivatives(Transforms.relu(z, true), first, null);
      }
      case LEAKY_RELU: {
        double slope = activation.negativeSlope();
        INDArray mask = z.gt(0.0);
        INDArray positive = mask.castTo(z.dataType());
        INDArray slopes = positive.mul(1.0 - slope).addi(slope);
        INDArray value = z.mul(slopes);
        NativeOps.keep(mask, slopes);
        return new Derivatives(value, positive.muli(1.0 - slope).addi(slope), null);
      }
      case GELU: {
        INDArray cdf = Nd4j.createUninitialized(z.dataType(), z.shape());
        INDArray scaled = z.mul(-SQRT_HALF);
        Nd4j.exec(new Erfc(scaled, cdf));
        NativeOps.keep(scaled);
        cdf.muli(0.5);
        INDArray z2 = z.mul(z);
        INDArray pdf = Transforms.exp(z2.mul(-0.5), false).muli(INV_SQRT_2PI);
        INDArray value = z.mul(cdf);
        INDArray first = z.mul(pdf).addi(cdf);
        INDArray second = z2.rsubi(2.0).muli(pdf);
        return new Derivatives(value, first, second);
      }
      case GELU_TANH: {
        INDArray z2 = z.mul(z);
        INDArray t = Transforms.tanh(z2.mul(GELU_TANH_A).addi(1.0).muli(z).muli(GELU_TANH_C), false);
        INDArray du = z2.mul(3.0 * GELU_TANH_A).addi(1.0).muli(GELU_TANH_C);
        INDArray sech2 = t.mul(t).rsubi(1.0);
        INDArray value = t.add(1.0).muli(z).muli(0.5);
        INDArray halfOnePlusT = t.add(1.0).muli(0.5);
        INDArray first = z.mul(sech2).muli(du).muli(0.5).addi(halfOnePlusT);
        // σ'' = (1−t²)(u' − z t u'² + z u''/2) with u'' = 6ac z, so z u''/2 = 3ac z².
        INDArray zUpp = z2.mul(3.0 * GELU_TANH_A * GELU_TANH_C);
        INDArray second = z.mul(t).muli(du).muli(du).rsubi(du).addi(zUpp).muli(sech2);
        NativeOps.keep(halfOnePlusT, zUpp, z2, du);
        return new Derivatives(value, first, second);
      }
      case SILU: {
        INDArray s = Transforms.sigmoid(z, true);
        INDArray oneMinus = s.rsub(1.0);
        INDArray value = z.mul(s);
        INDArray first = z.mul(oneMinus).addi(1.0).muli(s);
        INDArray second = s.mul(2.0).rsubi(1.0).muli(z).addi(2.0).muli(oneMinus).muli(s);
        return new Derivatives(value, first, second);
      }
      case TANH: {
        INDArray t = Transforms.tanh(z, true);
        INDArray first = t.mul(t).rsubi(1.0);
        INDArray second = t.mul(first).muli(-2.0);
        return new Derivatives(t, first, second);
      }
      default:
        throw new AssertionError(activation.kind());
    }
  }
}
