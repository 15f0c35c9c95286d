package io.flatmon.engine;

import java.util.ArrayList;
import java.util.List;

/**
 * The plain-Java, float64 evaluation of docs/math.md eqs. (1)–(10), sample by sample. It is written
 * for clarity, not speed, and is the oracle that the ND4J {@link CurvatureEngine} is tested against
 * (and is itself tested against PyTorch autograd and a 50-digit mpmath closed form).
 *
 * <p>To be an oracle and not a copy, its softmax side ({@link ClassifierTerms}: s, A, δ, ℓ, Tr H_V, κ_V)
 * shares no code with the engine's {@code SoftmaxOutput} and uses a different stable evaluation: the
 * pairwise form of eq. (1), {@code A = Σ_{j<k} s_j s_k (v_j − v_k)(v_j − v_k)ᵀ}, in place of the
 * anchored form of eq. (9). From the engine it uses only data holders ({@link HeadSnapshot},
 * {@link ActivationBatch}, {@link ConvGeometry}, {@link BatchCurvature}), the σ table of
 * {@link Activation} (checked against mpmath derivatives by the fixture generator, and through every
 * activation kind of the fixtures), {@link Patches} (plain-Java im2col that the engine does not use)
 * and {@link Lanczos} for λ_max.
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
      out.classifierHessianTrace()[n] = h2 * t.softmax.probabilityVariance();
      out.classifierRelativeFlatness()[n] = h2 * t.softmax.rowSpread();
    }
    return out;
  }

  /**
   * Per sample, |first term| + |second term| of Tr H (eq. 6), κ (eq. 7) and κ_norm (eq. 12), rows in
   * that order (κ_norm null without ρ). Where the two terms nearly cancel (smooth σ), an error of the
   * float32 engine is judged against this scale and not against the result (docs/math.md §5); for
   * σ'' = 0 it is the value itself.
   */
  public double[][] cancellationScales(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
    batch.checkAgainst(head);
    double[] omega = gram(head.kernel(), head.channels(), head.patchLength(), null);
    double[] rho = expandedSquares(head, inputChannelRms);
    double[] omegaNormalized = rho == null ? null
        : gram(head.kernel(), head.channels(), head.patchLength(), rho);
    double[][] out = {new double[batch.samples()], new double[batch.samples()],
        rho == null ? null : new double[batch.samples()]};
    for (int n = 0; n < batch.samples(); n++) {
      SampleTerms t = SampleTerms.of(head, batch, n);
      out[0][n] = Math.abs(t.traceFirstTerm()) + Math.abs(t.curvatureTerm(null, null));
      out[1][n] = Math.abs(t.relativeFlatnessFirstTerm(omega, null)) + Math.abs(t.curvatureTerm(omega, null));
      if (rho != null) {
        out[2][n] = Math.abs(t.relativeFlatnessFirstTerm(omegaNormalized, rho))
            + Math.abs(t.curvatureTerm(omegaNormalized, rho));
      }
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
  /** 1/ρ², or 0 for a channel left out of κ_norm (ρ = 0; the pseudo-inverse of eq. 12). */
  private static double inverseOrZero(double rhoSquared) {
    return rhoSquared > 0 ? 1.0 / rhoSquared : 0.0;
  }

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
    final ClassifierTerms softmax;
    final float[] classifierWeight;
    private double[] fullA;

    private SampleTerms(int c, int d, int p, double[] patches, double[] g, double[] curvature,
        double[] pooled, ClassifierTerms softmax, float[] classifierWeight) {
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
      return new SampleTerms(c, d, p, x, g, curvature, pooled, ClassifierTerms.of(logits, v, c, label), v);
    }

    /** Σ_c A_cc Γ_cc + Σ_c δ_c q_c (eq. 6). */
    double trace() {
      return traceFirstTerm() + curvatureTerm(null, null);
    }

    /** Σ_c A_cc Γ_cc, the first term of eq. (6). */
    double traceFirstTerm() {
      double[] diagA = softmax.diagonalOfA();
      double sum = 0.0;
      for (int ch = 0; ch < c; ch++) {
        double gg = 0.0;
        for (int j = 0; j < d; j++) {
          gg += g[ch * d + j] * g[ch * d + j];
        }
        sum += diagA[ch] * gg;
      }
      return sum;
    }

    /**
     * Σ_cc' Ω_cc' A_cc' Γ_cc' + Σ_c Ω_cc δ_c q_c (eq. 7); with ρ² given, Γ and q are those of the
     * normalised patches x/ρ and Ω that of W·ρ (κ_norm, eq. 12).
     */
    double relativeFlatness(double[] omega, double[] rhoSquared) {
      return relativeFlatnessFirstTerm(omega, rhoSquared) + curvatureTerm(omega, rhoSquared);
    }

    /** Σ_cc' Ω_cc' A_cc' Γ_cc', the first term of eq. (7). */
    double relativeFlatnessFirstTerm(double[] omega, double[] rhoSquared) {
      double[] fullA = fullA();
      double sum = 0.0;
      for (int i = 0; i < c; i++) {
        for (int e = 0; e < c; e++) {
          double gamma = 0.0;
          for (int j = 0; j < d; j++) {
            double f = rhoSquared == null ? 1.0 : inverseOrZero(rhoSquared[j]);
            gamma += g[i * d + j] * g[e * d + j] * f;
          }
          sum += omega[i * c + e] * fullA[i * c + e] * gamma;
        }
      }
      return sum;
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
          s += rhoSquared == null ? xv * xv : xv * xv * inverseOrZero(rhoSquared[j]);
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
        fullA = softmax.fullA();
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

  /**
   * The softmax side of one sample (docs/math.md eqs. 1 and 10), evaluated independently of the
   * engine. Probabilities come from log-sum-exp with the max shift; every complement 1 − s_k is the
   * sum of the other probabilities (never a subtraction from 1); and A, Tr H_V and κ_V use the
   * pairwise form of diag s − s sᵀ, which follows from Σ_k s_k = 1:
   *
   * <pre>
   *   Vᵀ(diag s − s sᵀ)V = Σ_{j<k} s_j s_k (v_j − v_k)(v_j − v_k)ᵀ
   * </pre>
   *
   * Every term is positive semidefinite, so nothing cancels however confident the sample is: where
   * s_m → 1 the result is carried by the terms s_m s_k (v_m − v_k)(v_m − v_k)ᵀ, each as accurate as s_k.
   */
  static final class ClassifierTerms {
    final int classes;
    final int channels;
    /** V as doubles, row-major [K, C]. */
    final double[] rows;
    /** s = exp(o − logsumexp(o)). */
    final double[] probabilities;
    /** 1 − s_k = Σ_{j≠k} s_j. */
    final double[] complements;
    /** δ = Vᵀ(s − e_y) (eq. 1), or null without a label. */
    final double[] lossGradient;
    /** ℓ = logsumexp(o) − o_y, NaN without a label. */
    final double loss;
    /** 1 if the first largest logit is the label's, 0 if not, NaN without a label. */
    final double correct;

    private ClassifierTerms(int classes, int channels, double[] rows, double[] probabilities,
        double[] complements, double[] lossGradient, double loss, double correct) {
      this.classes = classes;
      this.channels = channels;
      this.rows = rows;
      this.probabilities = probabilities;
      this.complements = complements;
      this.lossGradient = lossGradient;
      this.loss = loss;
      this.correct = correct;
    }

    static ClassifierTerms of(double[] logits, float[] classifierWeight, int channels, int label) {
      int k = logits.length;
      double[] rows = new double[k * channels];
      for (int i = 0; i < rows.length; i++) {
        rows[i] = classifierWeight[i];
      }
      int largest = 0;
      for (int i = 1; i < k; i++) {
        if (logits[i] > logits[largest]) {
          largest = i;
        }
      }
      // logsumexp(o) = o_max + log(1 + Σ_{i≠max} e^{o_i − o_max}); the sum is < K − 1, log1p keeps
      // its digits when it is tiny (a confident sample).
      double tail = 0.0;
      for (int i = 0; i < k; i++) {
        if (i != largest) {
          tail += Math.exp(logits[i] - logits[largest]);
        }
      }
      double logSumExp = logits[largest] + Math.log1p(tail);
      double[] s = new double[k];
      for (int i = 0; i < k; i++) {
        s[i] = Math.exp(logits[i] - logSumExp);
      }
      double[] complements = new double[k];
      for (int i = 0; i < k; i++) {
        double others = 0.0;
        for (int j = 0; j < k; j++) {
          if (j != i) {
            others += s[j];
          }
        }
        complements[i] = others;
      }
      double[] gradient = null;
      double loss = Double.NaN;
      double correct = Double.NaN;
      if (label >= 0) {
        // δ = Σ_k s_k v_k − v_y = Σ_{k≠y} s_k v_k − (1 − s_y) v_y: both parts are small when s_y → 1.
        gradient = new double[channels];
        for (int i = 0; i < k; i++) {
          double weight = i == label ? -complements[i] : s[i];
          for (int c = 0; c < channels; c++) {
            gradient[c] += weight * rows[i * channels + c];
          }
        }
        // ℓ = log1p(Σ_{i≠max} e^{o_i − o_max}) + o_max − o_y: no cancellation when y is the top class.
        loss = Math.log1p(tail) + (logits[largest] - logits[label]);
        correct = largest == label ? 1.0 : 0.0;
      }
      return new ClassifierTerms(k, channels, rows, s, complements, gradient, loss, correct);
    }

    /** diag A_cc = Σ_{j<k} s_j s_k (v_jc − v_kc)². */
    double[] diagonalOfA() {
      double[] diag = new double[channels];
      for (int j = 0; j < classes; j++) {
        for (int i = j + 1; i < classes; i++) {
          double w = probabilities[j] * probabilities[i];
          for (int c = 0; c < channels; c++) {
            double t = rows[j * channels + c] - rows[i * channels + c];
            diag[c] += w * t * t;
          }
        }
      }
      return diag;
    }

    /** A = Σ_{j<k} s_j s_k (v_j − v_k)(v_j − v_k)ᵀ, row-major [C, C]. */
    double[] fullA() {
      double[] a = new double[channels * channels];
      double[] t = new double[channels];
      for (int j = 0; j < classes; j++) {
        for (int i = j + 1; i < classes; i++) {
          double w = probabilities[j] * probabilities[i];
          for (int c = 0; c < channels; c++) {
            t[c] = rows[j * channels + c] - rows[i * channels + c];
          }
          for (int c = 0; c < channels; c++) {
            double f = w * t[c];
            for (int e = 0; e < channels; e++) {
              a[c * channels + e] += f * t[e];
            }
          }
        }
      }
      return a;
    }

    /** Σ_k s_k (1 − s_k), so that Tr H_V = ‖h‖² · this (eq. 10). */
    double probabilityVariance() {
      double sum = 0.0;
      for (int i = 0; i < classes; i++) {
        sum += probabilities[i] * complements[i];
      }
      return sum;
    }

    /**
     * Σ_k s_k ‖v_k − Vᵀs‖² = Tr A = Σ_{j<k} s_j s_k ‖v_j − v_k‖², so that κ_V = ‖h‖² · this (eq. 10).
     */
    double rowSpread() {
      double sum = 0.0;
      for (int j = 0; j < classes; j++) {
        for (int i = j + 1; i < classes; i++) {
          double norm = 0.0;
          for (int c = 0; c < channels; c++) {
            double t = rows[j * channels + c] - rows[i * channels + c];
            norm += t * t;
          }
          sum += probabilities[j] * probabilities[i] * norm;
        }
      }
      return sum;
    }
  }
}
