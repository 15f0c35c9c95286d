package io.flatmon.engine;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * The row forms r_iᵀ (Ω∘Γ) r_i of eq. (13) for a chunk of samples, from the upper triangle of blocks
 * only (eq. 15). Γ = L Rᵀ is symmetric (L = T, R = M̃ on the patch route; L = R = G on the filter
 * route) and so is Ω, so with the channels cut into b blocks of h = C/b,
 *
 * <pre>  rᵀ (Ω∘Γ) r = Σ_i r_iᵀ (Ω_ii∘Γ_ii) r_i + 2 Σ_{i&lt;j} r_iᵀ (Ω_ij∘Γ_ij) r_j,   Γ_ij = L_i R_jᵀ</pre>
 *
 * which forms, multiplies by Ω and reads (b+1)/(2b) of the C×C entries. The three passes over Γ are
 * bound by memory traffic: on one thread b = 4 made the CIFAR shape 1.2x faster, but with two engine
 * threads sharing the cache the extra calls and strided blocks cancelled the gain, so b is at most 2.
 * Exactly the same sums as the full matrix, grouped differently. Ω's blocks are flattened once per Ω.
 */
final class SymmetricForms {
  private final int blocks;
  private final int size;
  /** Ω_00, Ω_11, … flattened one after the other: [1, b·h·h]. */
  private final INDArray omegaDiagonal;
  /** Ω_ij for i &lt; j in row-major pair order, each flattened: [1, h·h]. */
  private final INDArray[] omegaOffDiagonal;

  SymmetricForms(INDArray omega) {
    int c = (int) omega.size(0);
    this.blocks = blocksFor(c);
    this.size = c / blocks;
    int h = size;
    this.omegaDiagonal = Nd4j.createUninitialized(omega.dataType(), 1, (long) blocks * h * h);
    this.omegaOffDiagonal = new INDArray[blocks * (blocks - 1) / 2];
    int pair = 0;
    for (int i = 0; i < blocks; i++) {
      omegaDiagonal.get(NDArrayIndex.point(0), NDArrayIndex.interval((long) i * h * h, (long) (i + 1) * h * h))
          .assign(block(omega, i, i).dup('c').reshape(1, (long) h * h));
      for (int j = i + 1; j < blocks; j++) {
        omegaOffDiagonal[pair++] = block(omega, i, j).dup('c').reshape('c', 1, (long) h * h);
      }
    }
  }

  /** 2 blocks when C/2 ≥ 128, else 1 (small heads gain nothing). */
  static int blocksFor(int c) {
    if (c % 2 == 0 && c / 2 >= 128) {
      return 2;
    }
    return 1;
  }

  int blocks() {
    return blocks;
  }

  private INDArray block(INDArray omega, int i, int j) {
    return omega.get(NDArrayIndex.interval((long) i * size, (long) (i + 1) * size),
        NDArrayIndex.interval((long) j * size, (long) (j + 1) * size));
  }

  /**
   * @param left L of m samples as [m·b, h, w] (sample-major, block-minor), contiguous
   * @param right R in the same layout (may be a view)
   * @param rows R̂ of eqs. (13) and (16) on the host, row-major [m, k, C] (k rows per sample)
   * @return the k row forms of each of the m samples, summed in double
   */
  double[][] forms(INDArray left, INDArray right, double[] rows, int m, int k, Workspace work, String tag) {
    int b = blocks;
    int h = size;
    int c = b * h;
    double[] blocked = work.doubles(tag + "Blocked", m * k * c);
    for (int n = 0; n < m; n++) {
      for (int i = 0; i < b; i++) {
        for (int kk = 0; kk < k; kk++) {
          System.arraycopy(rows, (n * k + kk) * c + i * h, blocked, ((n * b + i) * k + kk) * h, h);
        }
      }
    }
    INDArray r = work.device(tag + "R", (long) m * b, k, h);
    work.write(r, blocked);
    double[][] out = new double[m][k];

    INDArray diagonal = work.device(tag + "Diag", (long) m * b, h, h);
    Nd4j.matmul(left, right, diagonal, false, true, false);
    diagonal.reshape('c', m, (long) b * h * h).muliRowVector(omegaDiagonal);
    INDArray y = work.device(tag + "Y", (long) m * b, h, k);
    Nd4j.matmul(diagonal, r, y, false, true, false);
    accumulate(out, work.read(tag + "Y", y), blocked, m, k, 1.0, -1);

    int pair = 0;
    for (int i = 0; i < b; i++) {
      for (int j = i + 1; j < b; j++) {
        INDArray off = work.device(tag + "Off", m, h, h);
        Nd4j.matmul(everyBlock(left, i), everyBlock(right, j), off, false, true, false);
        off.reshape('c', m, (long) h * h).muliRowVector(omegaOffDiagonal[pair++]);
        INDArray yOff = work.device(tag + "YOff", m, h, k);
        Nd4j.matmul(off, everyBlock(r, j), yOff, false, true, false);
        accumulate(out, work.read(tag + "YOff", yOff), blocked, m, k, 2.0, i);
      }
    }
    return out;
  }

  /** Block i of every sample: entries i, i + b, i + 2b, … of a [m·b, …, …] array. */
  private INDArray everyBlock(INDArray a, int i) {
    // ND4J rejects a strided interval that selects a single entry (a chunk of one sample).
    return a.get(a.size(0) == blocks ? NDArrayIndex.interval(i, i + 1) : NDArrayIndex.interval(i, blocks, a.size(0)),
        NDArrayIndex.all(), NDArrayIndex.all());
  }

  /**
   * out[n][kk] += factor · Σ_c rows_i[n, kk, c]·y[…, c, kk]. With block = -1, y is [m·b, h, k] and
   * each block i meets its own rows; otherwise y is [m, h, k] and meets block {@code block}'s rows.
   */
  private void accumulate(double[][] out, double[] y, double[] blocked, int m, int k, double factor, int block) {
    int b = blocks;
    int h = size;
    for (int n = 0; n < m; n++) {
      for (int i = 0; i < b; i++) {
        if (block >= 0 && i != block) {
          continue;
        }
        int yBase = (block < 0 ? n * b + i : n) * h * k;
        int rBase = (n * b + i) * k * h;
        for (int kk = 0; kk < k; kk++) {
          double sum = 0.0;
          int rRow = rBase + kk * h;
          for (int ch = 0; ch < h; ch++) {
            sum += y[yBase + ch * k + kk] * blocked[rRow + ch];
          }
          out[n][kk] += factor * sum;
        }
      }
    }
  }
}
