package io.flatmon.engine;

import java.util.ArrayList;
import java.util.List;

/**
 * The plain-Java, float64 evaluation of docs/math.md eqs. (1)–(10), sample by sample, with the
 * anchored numerics of eq. (9). It is written for clarity, not speed, and is the oracle that the
 * ND4J {@link CurvatureEngine} is tested against (and is itself tested against PyTorch autograd).
 */
public final class ReferenceCurvature implements CurvatureComputer {

  @Override
  public BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
    batch.checkAgainst(head);
    BatchCurvature out = BatchCurvature.allocate(batch.samples(), inputChannelRms,
        batch.hasNonFiniteValues() || head.hasNonFiniteWeights());
    double[] omega = gram(head.kernel(), head.channels(), head.patchLength(), null);
    double[] rho = expandedSquares(head, inputChannelRms);
    double[] omegaNormalized = rho == null ? null
        : gram(head.kernel(), head.channels(), head.patchLength(), rho);
    for (int n = 0; n < batch.samples(); n++) {
      SampleTerms t = SampleTerms.of(head, batch, n);
      out.hessianTrace()[n] = t.trace();
      out.relativeFlatness()[n] = t.relativeFlatness(omega, null);
      if (rho != null) {
        out.relativeFlatnessNormalized()[n] = t.relativeFlatness(omegaNormalized, rho);
      }
      out.loss()[n] = t.softmax.loss;
      out.correct()[n] = t.softmax.correct;
      double h2 = 0.0;
      for (double v : t.pooled) {
        h2 += v * v;
      }
      out.classifierHessianTrace()[n] = t.softmax.classifierHessianTrace(h2);
      out.classifierRelativeFlatness()[n] = t.softmax.classifierRelativeFlatness(h2, head.classifierWeight());
    }
    return out;
  }

  /**
   * λ_max of the Hessian of the mean loss over every sample of the given batches, by Lanczos on the
   * closed-form Hessian-vector product (docs/math.md eq. 11). Memory O(N·C·d): for offline use.
   */
  public double maxEigenvalue(HeadSnapshot head, List<ActivationBatch> batches) {
    List<SampleTerms> samples = new ArrayList<>();
    for (ActivationBatch batch : batches) {
      batch.checkAgainst(head);
      for (int n = 0; n < batch.samples(); n++) {
        samples.add(SampleTerms.of(head, batch, n));
      }
    }
    int c = head.channels();
    int d = head.patchLength();
    double invN = 1.0 / samples.size();
    LinearOperator hessian = (v, out) -> {
      java.util.Arrays.fill(out, 0.0);
      for (SampleTerms t : samples) {
        t.addHessianVectorProduct(v, out, invN);
      }
    };
    return Lanczos.largestEigenvalue(hessian, c * d);
  }

  /** Ω = W_f diag(scale²) W_fᵀ (scale null: Ω = W_f W_fᵀ), row-major [C, C]. */
  static double[] gram(float[] w, int c, int d, double[] columnScaleSquared) {
    double[] g = new double[c * c];
    for (int i = 0; i < c; i++) {
      for (int j = 0; j <= i; j++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) {
          double f = columnScaleSquared == null ? 1.0 : columnScaleSquared[k];
          s += (double) w[i * d + k] * w[j * d + k] * f;
        }
        g[i * c + j] = s;
        g[j * c + i] = s;
      }
    }
    return g;
  }

  /** ρ_j² for each of the d patch coordinates (channel i covers kh·kw of them), or null. */
  static double[] expandedSquares(HeadSnapshot head, double[] inputChannelRms) {
    if (inputChannelRms == null) {
      return null;
    }
    int taps = head.geometry().kernelHeight() * head.geometry().kernelWidth();
    double[] out = new double[head.patchLength()];
    for (int j = 0; j < out.length; j++) {
      double r = inputChannelRms[j / taps];
      out[j] = r * r;
    }
    return out;
  }

  /** Everything eqs. (1)–(5) need for one sample. */
  private static final class SampleTerms {
    final int c;
    final int d;
    final int p;
    /** X, patches as rows [P, d]. */
    final double[] patches;
    /** G = diag(a) M X / P [C, d] (eq. 2). */
    final double[] g;
    /** a_c² σ''(z_c(p)) / P [C, P], or null when σ'' = 0. */
    final double[] curvature;
    final double[] pooled;
    final SoftmaxOutput softmax;
    final float[] classifierWeight;
    private double[] fullA;

    private SampleTerms(int c, int d, int p, double[] patches, double[] g, double[] curvature,
        double[] pooled, SoftmaxOutput softmax, float[] classifierWeight) {
      this.c = c;
      this.d = d;
      this.p = p;
      this.patches = patches;
      this.g = g;
      this.curvature = curvature;
      this.pooled = pooled;
      this.softmax = softmax;
      this.classifierWeight = classifierWeight;
    }

    static SampleTerms of(HeadSnapshot head, ActivationBatch batch, int n) {
      ConvGeometry geo = head.geometry();
      int c = head.channels();
      int d = head.patchLength();
      int outH = geo.outputHeight(batch.height());
      int outW = geo.outputWidth(batch.width());
      int p = outH * outW;
      double[] x = Patches.extract(batch.input(), n, batch.inputChannels(), batch.height(), batch.width(),
          geo, outH, outW);
      float[] w = head.kernel();
      Activation sigma = head.activation();
      double[] g = new double[c * d];
      double[] curvature = sigma.hasCurvature() ? new double[c * p] : null;
      double[] pooled = new double[c];
      for (int ch = 0; ch < c; ch++) {
        double ac = head.scale(ch);
        double beta = head.bias() == null ? 0.0 : head.bias()[ch];
        for (int q = 0; q < p; q++) {
          double z;
          if (batch.hasPreActivation()) {
            z = batch.preActivation()[(n * c + ch) * p + q];
          } else {
            double dot = beta;
            for (int j = 0; j < d; j++) {
              dot += (double) w[ch * d + j] * x[q * d + j];
            }
            z = ac * dot;
          }
          pooled[ch] += sigma.value(z) / p;
          double m = ac * sigma.firstDerivative(z) / p;
          for (int j = 0; j < d; j++) {
            g[ch * d + j] += m * x[q * d + j];
          }
          if (curvature != null) {
            curvature[ch * p + q] = ac * ac * sigma.secondDerivative(z) / p;
          }
        }
      }
      int k = head.classes();
      double[] logits = new double[k];
      float[] v = head.classifierWeight();
      for (int cls = 0; cls < k; cls++) {
        double o = head.classifierBias() == null ? 0.0 : head.classifierBias()[cls];
        for (int ch = 0; ch < c; ch++) {
          o += (double) v[cls * c + ch] * pooled[ch];
        }
        logits[cls] = o;
      }
      int label = batch.hasLabels() ? batch.labels()[n] : -1;
      return new SampleTerms(c, d, p, x, g, curvature, pooled, SoftmaxOutput.of(logits, v, c, label), v);
    }

    /** Σ_c A_cc Γ_cc + Σ_c δ_c q_c (eq. 6). */
    double trace() {
      double[] diagA = softmax.diagonalOfA(classifierWeight);
      double sum = 0.0;
      for (int ch = 0; ch < c; ch++) {
        double gg = 0.0;
        for (int j = 0; j < d; j++) {
          gg += g[ch * d + j] * g[ch * d + j];
        }
        sum += diagA[ch] * gg;
      }
      return sum + curvatureTerm(null, null);
    }

    /**
     * Σ_cc' Ω_cc' A_cc' Γ_cc' + Σ_c Ω_cc δ_c q_c (eq. 7); with ρ² given, Γ and q are those of the
     * normalised patches x/ρ and Ω that of W·ρ (κ_norm, eq. 12).
     */
    double relativeFlatness(double[] omega, double[] rhoSquared) {
      double[] fullA = fullA();
      double sum = 0.0;
      for (int i = 0; i < c; i++) {
        for (int e = 0; e < c; e++) {
          double gamma = 0.0;
          for (int j = 0; j < d; j++) {
            double f = rhoSquared == null ? 1.0 : 1.0 / rhoSquared[j];
            gamma += g[i * d + j] * g[e * d + j] * f;
          }
          sum += omega[i * c + e] * fullA[i * c + e] * gamma;
        }
      }
      return sum + curvatureTerm(omega, rhoSquared);
    }

    /** Σ_c [Ω_cc] δ_c q_c with q_c = Σ_p (a_c² σ''/P) ‖x_p/ρ‖² (eq. 4); zero when σ'' = 0. */
    private double curvatureTerm(double[] omega, double[] rhoSquared) {
      if (curvature == null) {
        return 0.0;
      }
      double[] norms = new double[p];
      for (int q = 0; q < p; q++) {
        double s = 0.0;
        for (int j = 0; j < d; j++) {
          double xv = patches[q * d + j];
          s += rhoSquared == null ? xv * xv : xv * xv / rhoSquared[j];
        }
        norms[q] = s;
      }
      double sum = 0.0;
      for (int ch = 0; ch < c; ch++) {
        double qc = 0.0;
        for (int q = 0; q < p; q++) {
          qc += curvature[ch * p + q] * norms[q];
        }
        double weight = omega == null ? 1.0 : omega[ch * c + ch];
        sum += weight * softmax.lossGradient[ch] * qc;
      }
      return sum;
    }

    /** A (eq. 9), formed once per sample on first use. */
    private double[] fullA() {
      if (fullA == null) {
        fullA = softmax.fullA(classifierWeight);
      }
      return fullA;
    }

    /**
     * out += scale · H_n v, with (H_n v)_c = g_c (A ρ)_c + δ_c Σ_p (a_c²σ''/P) x_p ⟨x_p, v_c⟩,
     * ρ_c = ⟨g_c, v_c⟩ (eq. 11).
     */
    void addHessianVectorProduct(double[] v, double[] out, double scale) {
      double[] fullA = fullA();
      double[] proj = new double[c];
      for (int ch = 0; ch < c; ch++) {
        double s = 0.0;
        for (int j = 0; j < d; j++) {
          s += g[ch * d + j] * v[ch * d + j];
        }
        proj[ch] = s;
      }
      for (int ch = 0; ch < c; ch++) {
        double ap = 0.0;
        for (int e = 0; e < c; e++) {
          ap += fullA[ch * c + e] * proj[e];
        }
        for (int j = 0; j < d; j++) {
          out[ch * d + j] += scale * ap * g[ch * d + j];
        }
      }
      if (curvature == null) {
        return;
      }
      for (int ch = 0; ch < c; ch++) {
        double dc = softmax.lossGradient[ch];
        for (int q = 0; q < p; q++) {
          double xv = 0.0;
          for (int j = 0; j < d; j++) {
            xv += patches[q * d + j] * v[ch * d + j];
          }
          double f = scale * dc * curvature[ch * p + q] * xv;
          for (int j = 0; j < d; j++) {
            out[ch * d + j] += f * patches[q * d + j];
          }
        }
      }
    }
  }
}
