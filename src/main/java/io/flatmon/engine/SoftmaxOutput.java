package io.flatmon.engine;

/**
 * The classifier side of one sample in double precision: softmax probabilities s, the anchored
 * first and second moments of the classifier rows under s, and the loss gradient δ = ∂ℓ/∂h.
 *
 * <p>Everything is anchored at the top class m (docs/math.md eq. 9): with ṽ_k = v_k − v_m the
 * k = m term vanishes exactly, so a confident sample (s_m → 1) produces small, accurate terms instead
 * of the difference of two nearly equal large ones.
 */
final class SoftmaxOutput {
  final int classes;
  final int channels;
  /** s, softmax of the logits computed with a max shift. */
  final double[] probabilities;
  /** 1 − s_k, with 1 − s_m summed from the other classes to keep its relative accuracy. */
  final double[] complements;
  /** m, the argmax of the logits (the anchor). */
  final int top;
  /** ũ = Σ_k s_k (v_k − v_m) (eq. 9). */
  final double[] anchoredMean;
  /** δ = Σ_k s_k (v_k − v_y) (eq. 9), or null without a label. */
  final double[] lossGradient;
  /** −log s_y, NaN without a label. */
  final double loss;
  /** 1 if argmax = y, 0 if not, NaN without a label. */
  final double correct;

  private SoftmaxOutput(int classes, int channels, double[] probabilities, double[] complements, int top,
      double[] anchoredMean, double[] lossGradient, double loss, double correct) {
    this.classes = classes;
    this.channels = channels;
    this.probabilities = probabilities;
    this.complements = complements;
    this.top = top;
    this.anchoredMean = anchoredMean;
    this.lossGradient = lossGradient;
    this.loss = loss;
    this.correct = correct;
  }

  /**
   * @param logits o = V h + b, length K
   * @param classifierWeight V, row-major [K, C]
   * @param label y in [0, K), or −1 if the sample has none
   */
  static SoftmaxOutput of(double[] logits, float[] classifierWeight, int channels, int label) {
    int classes = logits.length;
    int top = 0;
    for (int k = 1; k < classes; k++) {
      if (logits[k] > logits[top]) {
        top = k;
      }
    }
    double[] s = new double[classes];
    double others = 0.0;
    for (int k = 0; k < classes; k++) {
      s[k] = k == top ? 1.0 : Math.exp(logits[k] - logits[top]);
      if (k != top) {
        others += s[k];
      }
    }
    double norm = 1.0 + others;
    double[] complements = new double[classes];
    for (int k = 0; k < classes; k++) {
      s[k] /= norm;
      complements[k] = k == top ? others / norm : 1.0 - s[k];
    }
    if (Double.isNaN(logits[top])) {
      java.util.Arrays.fill(s, Double.NaN);
      java.util.Arrays.fill(complements, Double.NaN);
    }
    double[] mean = weightedOffsets(s, classifierWeight, channels, top);
    double[] gradient = null;
    double loss = Double.NaN;
    double correct = Double.NaN;
    if (label >= 0) {
      gradient = label == top ? mean.clone() : weightedOffsets(s, classifierWeight, channels, label);
      // log-sum-exp with the max shift: ℓ = log(Σ_k e^{o_k − o_m}) + o_m − o_y.
      loss = Math.log1p(others) + (logits[top] - logits[label]);
      correct = label == top ? 1.0 : 0.0;
    }
    return new SoftmaxOutput(classes, channels, s, complements, top, mean, gradient, loss, correct);
  }

  /** Σ_k s_k (v_k − v_anchor), skipping the k = anchor term that is exactly zero. */
  private static double[] weightedOffsets(double[] s, float[] v, int channels, int anchor) {
    double[] out = new double[channels];
    int anchorRow = anchor * channels;
    for (int k = 0; k < s.length; k++) {
      if (k == anchor) {
        continue;
      }
      double sk = s[k];
      int row = k * channels;
      for (int c = 0; c < channels; c++) {
        out[c] += sk * ((double) v[row + c] - v[anchorRow + c]);
      }
    }
    return out;
  }

  /** diag A_cc = Σ_k s_k ṽ_kc² − ũ_c² (eq. 9). */
  double[] diagonalOfA(float[] classifierWeight) {
    double[] diag = new double[channels];
    int anchorRow = top * channels;
    for (int k = 0; k < classes; k++) {
      if (k == top) {
        continue;
      }
      double sk = probabilities[k];
      int row = k * channels;
      for (int c = 0; c < channels; c++) {
        double t = (double) classifierWeight[row + c] - classifierWeight[anchorRow + c];
        diag[c] += sk * t * t;
      }
    }
    for (int c = 0; c < channels; c++) {
      diag[c] -= anchoredMean[c] * anchoredMean[c];
    }
    return diag;
  }

  /** Full A = Σ_k s_k ṽ_k ṽ_kᵀ − ũ ũᵀ, row-major [C, C] (eq. 9); O(KC²), for the reference. */
  double[] fullA(float[] classifierWeight) {
    int c2 = channels;
    double[] a = new double[c2 * c2];
    double[] t = new double[c2];
    int anchorRow = top * c2;
    for (int k = 0; k < classes; k++) {
      if (k == top) {
        continue;
      }
      double sk = probabilities[k];
      int row = k * c2;
      for (int c = 0; c < c2; c++) {
        t[c] = (double) classifierWeight[row + c] - classifierWeight[anchorRow + c];
      }
      for (int c = 0; c < c2; c++) {
        double f = sk * t[c];
        for (int e = 0; e < c2; e++) {
          a[c * c2 + e] += f * t[e];
        }
      }
    }
    for (int c = 0; c < c2; c++) {
      for (int e = 0; e < c2; e++) {
        a[c * c2 + e] -= anchoredMean[c] * anchoredMean[e];
      }
    }
    return a;
  }

  /** Tr H_V = ‖h‖² Σ_k s_k (1 − s_k) (docs/math.md eq. 10). */
  double classifierHessianTrace(double pooledNormSquared) {
    double sum = 0.0;
    for (int k = 0; k < classes; k++) {
      sum += probabilities[k] * complements[k];
    }
    return pooledNormSquared * sum;
  }

  /**
   * κ_V = ‖h‖² Σ_k s_k ‖v_k − ū‖² with ū = Vᵀs = v_m + ũ (eq. 10), so v_k − ū = ṽ_k − ũ stays
   * accurate for confident samples.
   */
  double classifierRelativeFlatness(double pooledNormSquared, float[] classifierWeight) {
    double sum = 0.0;
    int anchorRow = top * channels;
    for (int k = 0; k < classes; k++) {
      int row = k * channels;
      double norm = 0.0;
      for (int c = 0; c < channels; c++) {
        double t = (double) classifierWeight[row + c] - classifierWeight[anchorRow + c] - anchoredMean[c];
        norm += t * t;
      }
      sum += probabilities[k] * norm;
    }
    return pooledNormSquared * sum;
  }
}
