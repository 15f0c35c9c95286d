package io.flatmon.engine;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * The row forms r̂_kᵀ (Ω∘Γ) r̂_k of eq. (13) for a chunk of samples, from the upper triangle of blocks
 * only (eq. 15). Γ = L Rᵀ is symmetric (L = T, R = M̃ on the patch route; L = R = G on the filter
 * route) and so is Ω, so with the channels cut into b blocks of h = C/b,
 *
 * <pre>  rᵀ (Ω∘Γ) r = Σ_i r_iᵀ (Ω_ii∘Γ_ii) r_i + 2 Σ_{i&lt;j} r_iᵀ (Ω_ij∘Γ_ij) r_j,   Γ_ij = L_i R_jᵀ</pre>
 *
 * which forms, multiplies by Ω and reads (b+1)/(2b) of the C×C entries. Every block pair (i ≤ j) of
 * every sample of the chunk goes through the same three batched calls — Γ_ij = L_i R_jᵀ, the product
 * with Ω_ij, Y = (Ω_ij∘Γ_ij) R̂_jᵀ — on factors gathered by pair ({@link #gather}), so more blocks
 * cost no more ND4J calls. Exactly the same sums as the full matrix, grouped differently. Ω's blocks
 * are flattened in pair order once per Ω.
 */
final class SymmetricForms {
  private final int blocks;
  private final int size;
  private final int pairs;
  /** Block row i and block column j of each pair, i ≤ j, in row-major order. */
  private final int[] first;
  private final int[] second;
  /** Ω_ij of every pair, each flattened, one after the other: [1, pairs·h·h]. */
  private final INDArray omegaByPair;

  SymmetricForms(INDArray omega) {
    int c = (int) omega.size(0);
    this.blocks = blocksFor(c);
    this.size = c / blocks;
    this.pairs = blocks * (blocks + 1) / 2;
    this.first = new int[pairs];
    this.second = new int[pairs];
    int h = size;
    this.omegaByPair = Nd4j.createUninitialized(omega.dataType(), 1, (long) pairs * h * h);
    int q = 0;
    for (int i = 0; i < blocks; i++) {
      for (int j = i; j < blocks; j++) {
        first[q] = i;
        second[q] = j;
        INDArray slot = omegaByPair.get(NDArrayIndex.point(0),
            NDArrayIndex.interval((long) q * h * h, (long) (q + 1) * h * h));
        INDArray block = block(omega, i, j);
        INDArray copy = block.dup('c');
        INDArray flat = copy.reshape(1, (long) h * h);
        slot.assign(flat);
        NativeOps.keep(slot, block, copy, flat);
        q++;
      }
    }
  }

  /**
   * 2 blocks when C/2 ≥ 128, else 1 (small heads gain nothing). More blocks form fewer entries
   * ((b+1)/(2b): 62.5 % at b = 4 against 75 %), but with two engine threads the smaller GEMMs
   * (128×16×128, 128×128×(K−1)) ran no faster on the CIFAR shape than b = 2's (JMH, same session:
   * 1658 and 1614 against 1777 and 2086 samples/s with κ_norm).
   */
  static int blocksFor(int c) {
    if (c % 2 == 0 && c / 2 >= 128) {
      return 2;
    }
    return 1;
  }

  int blocks() {
    return blocks;
  }

  /** Γ entries formed per sample, (b+1)/(2b)·C²: what a chunk's Γ array holds per sample. */
  long entriesPerSample() {
    return (long) pairs * size * size;
  }

  private INDArray block(INDArray omega, int i, int j) {
    return omega.get(NDArrayIndex.interval((long) i * size, (long) (i + 1) * size),
        NDArrayIndex.interval((long) j * size, (long) (j + 1) * size));
  }

  /** R̂ of a chunk (eqs. 13, 16): on the host [m, k, C], and block j of each pair on the device. */
  record Rows(double[] host, INDArray byPair, int samples, int rows) {
  }

  /** Uploads block j of every pair of R̂ once per chunk: every Ω (κ and κ_norm) uses the same rows. */
  Rows rows(double[] rows, int m, int k, Workspace work) {
    int h = size;
    int c = blocks * h;
    double[] byPair = work.doubles("rowsByPair", m * pairs * k * h);
    for (int n = 0; n < m; n++) {
      for (int q = 0; q < pairs; q++) {
        for (int kk = 0; kk < k; kk++) {
          System.arraycopy(rows, (n * k + kk) * c + second[q] * h, byPair, ((n * pairs + q) * k + kk) * h, h);
        }
      }
    }
    return new Rows(rows, work.upload("rowsByPair", byPair, (long) m * pairs, k, h), m, k);
  }

  /**
   * A factor of m samples, [m·b, h, w] (sample-major, block-minor), gathered by pair: [m·pairs, h, w]
   * whose entry (n, q) is block {@code first[q]} (the left factor L) or {@code second[q]} (R) of
   * sample n.
   */
  INDArray gather(INDArray factor, boolean left, int m, Workspace work, String name) {
    if (blocks == 1) {
      return factor;
    }
    long w = factor.size(2);
    int[] sources = new int[m * pairs];
    for (int n = 0; n < m; n++) {
      for (int q = 0; q < pairs; q++) {
        sources[n * pairs + q] = n * blocks + (left ? first[q] : second[q]);
      }
    }
    INDArray out = work.device(name, (long) m * pairs, size, w);
    INDArray source = factor.reshape('c', (long) m * blocks, size * w);
    INDArray target = out.reshape('c', (long) m * pairs, size * w);
    NativeOps.gatherRows(source, sources, target);
    return out;
  }

  /**
   * @param left L gathered by pair, [m·pairs, h, w]
   * @param right R gathered by pair, [m·pairs, h, w]
   * @return the k row forms of each of the m samples, summed in double
   */
  double[][] forms(INDArray left, INDArray right, Rows rows, Workspace work, String tag) {
    int m = rows.samples();
    int k = rows.rows();
    int h = size;
    INDArray gamma = work.device(tag + "Gamma", (long) m * pairs, h, h);
    Nd4j.matmul(left, right, gamma, false, true, false);
    INDArray flat = gamma.reshape('c', m, (long) pairs * h * h);
    NativeOps.multiplyRowsInPlace(flat, omegaByPair);
    INDArray y = work.device(tag + "Y", (long) m * pairs, h, k);
    Nd4j.matmul(gamma, rows.byPair(), y, false, true, false);
    return accumulate(work.read(tag + "Y", y), rows.host(), m, k);
  }

  /**
   * Σ over pairs of factor · Σ_c R̂_i[n, kk, c]·y[(n, q), c, kk], factor 1 on the diagonal (i = j) and 2
   * off it, in double: the last reduction before the per-sample sum, where every Ω's terms meet.
   */
  private double[][] accumulate(double[] y, double[] rows, int m, int k) {
    int h = size;
    int c = blocks * h;
    double[][] out = new double[m][k];
    for (int n = 0; n < m; n++) {
      for (int q = 0; q < pairs; q++) {
        double factor = first[q] == second[q] ? 1.0 : 2.0;
        int yBase = (n * pairs + q) * h * k;
        for (int kk = 0; kk < k; kk++) {
          int rRow = (n * k + kk) * c + first[q] * h;
          double sum = 0.0;
          for (int ch = 0; ch < h; ch++) {
            sum += y[yBase + ch * k + kk] * rows[rRow + ch];
          }
          out[n][kk] += factor * sum;
        }
      }
    }
    return out;
  }
}
