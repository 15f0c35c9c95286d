package io.flatmon.engine;

import java.util.Arrays;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.convolution.Convolution;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * The fast path: docs/math.md eqs. (1)–(12) in float32 with ND4J, for a whole batch at once.
 *
 * <ul>
 *   <li>Work whose weight is shared across samples is one GEMM over the batch: the conv forward
 *       Zᵀ = [X_1; …; X_B] W_fᵀ (skipped when the trainer sends Z), and Ω = W_f W_fᵀ once per snapshot.
 *   <li>Per-sample C×C work is batched matrix multiplication over chunks of samples: Γ_n by the
 *       patch-Gram route M̃ K_p M̃ᵀ when P(C+d) &lt; Cd, else G Gᵀ (eq. 3), and
 *       κ_n = Σ_k r̂_kᵀ Q r̂_k with Q = Ω∘Γ_n and the K − 1 rows r̂_k of A = R̂ᵀR̂ (eqs. 13, 16).
 *   <li>The softmax side (s, ũ, δ, diag A, loss, classifier terms) is O(KC) per sample and is done
 *       in double by {@link SoftmaxOutput}, anchored at the top class (eq. 9).
 * </ul>
 *
 * <p>Only the ND4J API is used, so the same code runs on the CPU and CUDA backends. An instance
 * keeps its working arrays between calls of the same shape and is not thread-safe: use one per thread.
 */
public final class CurvatureEngine implements CurvatureComputer {

  /** How Γ = G Gᵀ is formed (docs/math.md eq. 3). */
  public enum GramRoute {
    /** The cheaper of the two for the shape: patch-Gram when P(C+d) &lt; Cd. */
    AUTO,
    /** Γ = M̃ K_p M̃ᵀ with K_p = X Xᵀ (P×P). */
    PATCH_GRAM,
    /** Γ = G Gᵀ with G = M̃ X (C×d). */
    FILTER_GRAM
  }

  /**
   * Per-sample C×C arrays are processed in chunks of at most this many elements (4 MiB in float32):
   * Γ is written, multiplied by Ω and read by the Y GEMM in turn, and a chunk that stays in cache
   * between those passes made the CIFAR shape 1.3x faster than 64 MiB chunks streamed through memory.
   */
  static final long CHUNK_ELEMENTS = 1L << 20;


  private final GramRoute route;
  private final DataType dtype;
  /** Working arrays on the device and the host, kept between calls: the batch's, and its chunks'. */
  private final Workspace work;
  private final Workspace chunkWork;
  /** Runs a batch's chunks in turn, on this thread. */
  private final ChunkRunner sequential;

  /**
   * Runs chunk tasks {@code task(index, workspace)} for index = 0 … count − 1 and returns when all
   * are done. Each call of a task gets a workspace no other running task uses.
   */
  interface ChunkRunner {
    void run(int count, ChunkTask task);
  }

  /** One chunk of a batch, computed with the given workspace. */
  interface ChunkTask {
    void run(int index, Workspace chunkWork);
  }
  /** Prepared snapshots (W, Ω), possibly shared with the other engines of an {@link EnginePool}. */
  private final PreparedHeads prepared;

  public CurvatureEngine() {
    this(GramRoute.AUTO);
  }

  public CurvatureEngine(GramRoute route) {
    this(route, DataType.FLOAT);
  }

  /**
   * @param dtype FLOAT (the fast path) or DOUBLE (half the GEMM rate, for checking conditioning)
   */
  public CurvatureEngine(GramRoute route, DataType dtype) {
    this(route, dtype, new PreparedHeads());
  }

  /**
   * @param prepared where prepared snapshots are kept: engines that share it form Ω once per
   *     snapshot between them (an {@link EnginePool}'s workers measure any run's batches)
   */
  CurvatureEngine(GramRoute route, DataType dtype, PreparedHeads prepared) {
    if (dtype != DataType.FLOAT && dtype != DataType.DOUBLE) {
      throw new IllegalArgumentException("the engine computes in FLOAT or DOUBLE, not " + dtype);
    }
    this.route = route;
    this.dtype = dtype;
    this.prepared = prepared;
    this.work = new Workspace(dtype);
    this.chunkWork = new Workspace(dtype);
    this.sequential = (count, task) -> {
      for (int i = 0; i < count; i++) {
        task.run(i, chunkWork);
      }
    };
    EngineInfo.current();
  }

  /** Ω' of one ρ (eq. 12): its diagonal and the flattened blocks of eq. (13)'s forms. */
  record Normalized(double[] rms, double[] omegaDiagonal, SymmetricForms forms) {
  }

  /** Chooses the Γ route for a shape (docs/math.md §6). */
  static boolean usesPatchGram(GramRoute route, long c, long d, long p) {
    return switch (route) {
      case PATCH_GRAM -> true;
      case FILTER_GRAM -> false;
      case AUTO -> BatchCost.mul(p, c + d) < BatchCost.mul(c, d);
    };
  }

  @Override
  public BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
    return compute(head, batch, inputChannelRms, sequential);
  }

  /**
   * The same, with the batch's chunks run by {@code runner} (an {@link EnginePool} spreads them over
   * its workers). Everything up to the chunks — uploads, σ, the Grams, M̃ — runs here, once.
   */
  BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms, ChunkRunner runner) {
    requireCapacity(head, batch, inputChannelRms != null);
    batch.checkAgainst(head);
    try (NativeOps.Scope scope = NativeOps.scope()) {
      return computeWithin(head, batch, inputChannelRms, runner, scope);
    } catch (OutOfMemoryError e) {
      // The heap or JavaCPP's off-heap cap (Pointer's "Cannot allocate") refused one of the batch's
      // arrays: they are unreachable once this returns, so the engine goes on with the next batch.
      throw new EngineCapacityException("out of memory measuring a batch of " + batch.samples() + " × "
          + batch.inputChannels() + " × " + batch.height() + " × " + batch.width() + ": " + e.getMessage(), e);
    }
  }

  /**
   * Refuses a batch whose arrays ({@link BatchCost}) could not be allocated in this JVM: over JavaCPP's
   * off-heap cap ({@code org.bytedeco.javacpp.maxbytes}), over the heap, or over int indexing. Callers
   * check their own, tighter limits from declared shapes before decoding ({@link WorkLimits}); this is
   * the engine's own guard, so that no caller can make it request memory that is not there — libnd4j
   * writes to what its malloc returns without checking, and a NULL there kills the JVM.
   */
  private void requireCapacity(HeadSnapshot head, ActivationBatch batch, boolean normalized) {
    BatchCost cost = BatchCost.of(route, head.channels(), head.inputChannels(), head.geometry(), head.classes(),
        head.activation(), batch.samples(), batch.height(), batch.width(), batch.hasPreActivation(), normalized,
        dtype == DataType.FLOAT ? 4 : 8);
    String problem = null;
    if (cost.largestArrayElements() > BatchCost.MAX_ARRAY_ELEMENTS) {
      problem = "an array of " + cost.largestArrayElements() + " elements is beyond int indexing";
    } else if (org.bytedeco.javacpp.Pointer.maxBytes() > 0
        && cost.deviceBytes() > org.bytedeco.javacpp.Pointer.maxBytes()) {
      problem = "its native arrays (" + BatchCost.bytes(cost.deviceBytes()) + ") exceed the off-heap cap of "
          + BatchCost.bytes(org.bytedeco.javacpp.Pointer.maxBytes());
    } else if (cost.hostBytes() > Runtime.getRuntime().maxMemory()) {
      problem = "its host arrays (" + BatchCost.bytes(cost.hostBytes()) + ") exceed the heap of "
          + BatchCost.bytes(Runtime.getRuntime().maxMemory());
    }
    if (problem != null) {
      throw new EngineCapacityException("the engine cannot hold this batch: " + problem + "; "
          + cost.describe(batch.samples()));
    }
  }

  /** The computation, every ND4J temporary held by {@code scope} until all chunks have run. */
  private BatchCurvature computeWithin(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms,
      ChunkRunner runner, NativeOps.Scope scope) {
    ConvGeometry geo = head.geometry();
    int b = batch.samples();
    int c = head.channels();
    int cin = head.inputChannels();
    int d = head.patchLength();
    int k = head.classes();
    int outH = geo.outputHeight(batch.height());
    int outW = geo.outputWidth(batch.width());
    int p = outH * outW;
    BatchCurvature out = BatchCurvature.allocate(b, inputChannelRms,
        batch.hasNonFiniteValues() || head.hasNonFiniteWeights());
    PreparedHead weights = prepare(head);
    Normalized normalized = null;
    if (inputChannelRms != null) {
      normalized = weights.normalized(inputChannelRms);
    }

    boolean patchGram = usesPatchGram(route, c, d, p);
    boolean needsGram = patchGram || head.activation().hasCurvature();
    boolean spatialGram = needsGram && SpatialGram.isCheaper(geo, batch.height(), batch.width());
    // X is needed for the conv forward (no Z), the filter route (G = M̃X), or a patch Gram that eq. (14)
    // does not make cheaper; late layers with Z sent need none of them and skip im2col entirely.
    boolean needsPatches = !batch.hasPreActivation() || !patchGram || (needsGram && !spatialGram);
    INDArray input = upload("input", batch.input(), b, cin, batch.height(), batch.width());
    INDArray patches = null;
    if (needsPatches) {
      // Patches in im2col's natural layout [B, C_in, kh, kw, H', W'] = [B, d, P]: column p of sample n
      // is x_p (eq. 1). Writing through a permuted view (rows layout) was 3-5x slower.
      INDArray cols = buffer("cols", b, cin, geo.kernelHeight(), geo.kernelWidth(), outH, outW);
      Convolution.im2col(input, geo.kernelHeight(), geo.kernelWidth(), geo.strideHeight(), geo.strideWidth(),
          geo.padHeight(), geo.padWidth(), geo.dilationHeight(), geo.dilationWidth(), false, cols);
      patches = scope.hold(cols.reshape('c', b, d, p));
    }

    INDArray z;
    if (batch.hasPreActivation()) {
      z = upload("z", batch.preActivation(), b, c, p);
    } else {
      // Conv forward as one GEMM with the shared kernel: Z = W_f [X_1 … X_B], then a·(· + β).
      INDArray patchesByChannel = scope.hold(patches.permute(1, 0, 2));
      INDArray x = scope.hold(scope.hold(patchesByChannel.dup('c')).reshape('c', d, (long) b * p));
      INDArray zc = buffer("zc", c, (long) b * p);
      Nd4j.gemm(weights.kernel, x, zc, false, false, 1.0, 0.0);
      INDArray biasColumn = weights.bias == null ? null : scope.hold(weights.bias.reshape(c, 1));
      if (biasColumn != null) {
        NativeOps.add(zc, biasColumn, zc);
      }
      INDArray scaleColumn = weights.scale == null ? null : scope.hold(weights.scale.reshape(c, 1));
      if (scaleColumn != null) {
        NativeOps.multiply(zc, scaleColumn, zc);
      }
      INDArray zcBySample = scope.hold(scope.hold(zc.reshape('c', c, b, p)).permute(1, 0, 2));
      z = scope.hold(zcBySample.dup('c'));
    }
    ActivationKernels.Derivatives sigma = scope.hold(ActivationKernels.evaluate(head.activation(), z,
        buffer("sigma", b, c, p), buffer("sigmaFirst", b, c, p)));
    double[][] pooled = rows(work.read("pooled", sigma.value().mean(2)), b, c);
    // M̃ = diag(a) σ'(Z) / P (eq. 2), kept as [B, C, P].
    // (A scalar multiply when there is no scale: ND4J's [B, C, P] ∘ [1, C, 1] broadcast is several times
    // slower than a flat pass.)
    INDArray mt = head.scale() == null ? sigma.first().muli(1.0 / p) : sigma.first().muli(weights.scaleOver(p));
    // M̃ on the host once for the whole batch, for diag Γ: host copies of per-chunk views would allocate.
    double[] mtHost = work.read("mt", mt);

    INDArray gram = null;
    INDArray gramNorm = null;
    INDArray inverseRms = normalized == null || patches == null ? null
        : scope.hold(scope.hold(inverseExpandedRms(head, inputChannelRms)).reshape(1, d, 1));
    INDArray scaledPatches = inverseRms == null ? null : scope.hold(patches.mul(inverseRms));
    double[][] patchNorms = null;
    double[][] patchNormsNormalized = null;
    if (needsGram) {
      gram = buffer("gram", b, p, p);
      patchNorms = patchGram(spatialGram, geo, batch, input, patches, gram, "spatial");
      if (normalized != null) {
        gramNorm = buffer("gramNorm", b, p, p);
        INDArray scaledInput = spatialGram
            ? upload("inputNorm", scaledByChannel(batch.input(), inputChannelRms, b, cin,
                work.floats("inputNorm", batch.input().length)), b, cin,
                batch.height(), batch.width())
            : null;
        patchNormsNormalized = patchGram(spatialGram, geo, batch, scaledInput, scaledPatches, gramNorm,
            "spatialNorm");
      }
    }
    double[][] q = null;
    double[][] qNorm = null;
    if (sigma.second() != null) {
      // q_c = (a_c²/P) Σ_p σ''(z_c(p)) ‖x_p‖² (eq. 4), as a batched [C,P]·[P,1] product.
      INDArray s2 = sigma.second().muli(weights.squaredScaleOver(p));
      q = curvatureWeights(s2, patchNorms, b, c, p);
      if (patchNormsNormalized != null) {
        qNorm = curvatureWeights(s2, patchNormsNormalized, b, c, p);
      }
    }

    // Γ's upper blocks [m·pairs, h, h] (and G [m, C, d] on the filter route) scale with the chunk.
    SymmetricForms forms = weights.forms;
    int chunk = (int) Math.max(1, Math.min(b,
        CHUNK_ELEMENTS / (patchGram ? forms.entriesPerSample() : Math.max(forms.entriesPerSample(), (long) c * d))));
    Shared shared = new Shared(head, batch, weights, normalized, p, patchGram, mt,
        mt.reshape('c', (long) b * forms.blocks(), c / forms.blocks(), p), mtHost, patches, scaledPatches, gram,
        gramNorm, pooled, q, qNorm, new SoftmaxOutput[b], out);
    runner.run((b + chunk - 1) / chunk, (index, chunkWork) ->
        computeChunk(shared, index * chunk, Math.min(b, (index + 1) * chunk), chunkWork));
    return out;
  }

  /** What every chunk of a batch reads: the batch's arrays, computed once (read-only from here on). */
  private record Shared(HeadSnapshot head, ActivationBatch batch, PreparedHead weights, Normalized normalized,
      int p, boolean patchGram, INDArray mt, INDArray mtBlocks, double[] mtHost, INDArray patches, INDArray scaledPatches,
      INDArray gram, INDArray gramNorm, double[][] pooled, double[][] q, double[][] qNorm, SoftmaxOutput[] softmax,
      BatchCurvature out) {
  }

  /**
   * Samples [n0, n1) of a batch: their rows of R̂, Γ (and Γ' for κ_norm) in blocks, eqs. (13), (15),
   * (16), and every per-sample value, written into the batch's outputs at those samples. Chunks are
   * independent: they may run in any order, on any engine thread, each with its own workspace.
   */
  private void computeChunk(Shared s, int n0, int n1, Workspace w) {
    HeadSnapshot head = s.head();
    int c = head.channels();
    int k = head.classes();
    int m = n1 - n0;
    int blocks = s.weights().forms.blocks();
    SymmetricForms forms = s.weights().forms;
    float[] v = head.classifierWeight();
    float[] vb = head.classifierBias();
    ActivationBatch batch = s.batch();
    SoftmaxOutput[] softmax = s.softmax();
    // R̂ has K − 1 rows r̂_k, k ≠ m, with A = R̂ᵀR̂ (eq. 16), so eq. (13) is a sum of forms ≥ 0.
    int rows = k - 1;
    double[] stacked = w.doubles("rows", m * rows * c);
    for (int n = n0; n < n1; n++) {
      softmax[n] = SoftmaxOutput.of(logits(s.pooled()[n], v, vb, c), v, c,
          batch.hasLabels() ? batch.labels()[n] : -1);
      stackFactorRows(softmax[n], v, stacked, (n - n0) * rows * c);
    }
    INDArray mtChunk = s.mt().get(NDArrayIndex.interval(n0, n1), NDArrayIndex.all(), NDArrayIndex.all());
    INDArray mtChunkBlocks = s.mtBlocks().get(NDArrayIndex.interval((long) n0 * blocks, (long) n1 * blocks),
        NDArrayIndex.all(), NDArrayIndex.all());

    // Eqs. (13), (15): R̂ and, on the patch route, R = M̃ by block pair are shared by κ and κ_norm.
    boolean patchGram = s.patchGram();
    SymmetricForms.Rows rowsByPair = forms.rows(stacked, m, rows, w);
    INDArray rightByPair = patchGram ? forms.gather(mtChunkBlocks, false, m, w, "right") : null;
    int p = s.p();
    GammaFactor gamma = gammaFactor(patchGram, mtChunk, s.mtHost(), chunk(s.patches(), n0, n1), s.gram(), n0, n1,
        c, p, "t", w);
    double[][] gammaDiag = gamma.diagonal();
    double[][] kappaRows = forms.forms(forms.gather(gamma.left(blocks), true, m, w, "left"),
        patchGram ? rightByPair : forms.gather(gamma.left(blocks), false, m, w, "right"), rowsByPair, w, "kappa");
    double[][] kappaNormRows = null;
    Normalized normalized = s.normalized();
    if (normalized != null) {
      GammaFactor gammaNorm = gammaFactor(patchGram, mtChunk, s.mtHost(), chunk(s.scaledPatches(), n0, n1),
          s.gramNorm(), n0, n1, c, p, "tNorm", w);
      kappaNormRows = normalized.forms().forms(forms.gather(gammaNorm.left(blocks), true, m, w, "left"),
          patchGram ? rightByPair : forms.gather(gammaNorm.left(blocks), false, m, w, "right"), rowsByPair, w,
          "kappa");
    }

    BatchCurvature out = s.out();
    for (int n = n0; n < n1; n++) {
      int i = n - n0;
      SoftmaxOutput so = softmax[n];
      double[] diagA = so.diagonalOfA(v);
      double trace = 0.0;
      for (int ch = 0; ch < c; ch++) {
        trace += diagA[ch] * gammaDiag[i][ch];
      }
      out.hessianTrace()[n] = trace + curvatureTerm(so, s.q(), n, null, c);
      out.relativeFlatness()[n] = sum(kappaRows[i]) + curvatureTerm(so, s.q(), n, s.weights().omegaDiagonal, c);
      if (kappaNormRows != null) {
        out.relativeFlatnessNormalized()[n] = sum(kappaNormRows[i])
            + curvatureTerm(so, s.qNorm(), n, normalized.omegaDiagonal(), c);
      }
      out.loss()[n] = so.loss;
      out.correct()[n] = so.correct;
      double h2 = 0.0;
      for (double hv : s.pooled()[n]) {
        h2 += hv * hv;
      }
      out.classifierHessianTrace()[n] = so.classifierHessianTrace(h2);
      out.classifierRelativeFlatness()[n] = so.classifierRelativeFlatness(h2, v);
    }
  }

  /** The left factor of Γ = L Rᵀ for a chunk ([m, C, w]: T or G) and diag Γ per sample. */
  private record GammaFactor(INDArray left, double[][] diagonal) {
    /** L as [m·blocks, C/blocks, w], the layout of {@link SymmetricForms#forms}. */
    INDArray left(int blocks) {
      long[] shape = left.shape();
      return left.reshape('c', shape[0] * blocks, shape[1] / blocks, shape[2]);
    }
  }

  /**
   * Γ's left factor for samples [n0, n1) and diag Γ, by the patch-Gram route (T = M̃ K_p, Γ = T M̃ᵀ,
   * diag Γ = Σ_p T∘M̃) or the filter route (G = M̃ X, Γ = G Gᵀ). mtHost is M̃ of the whole batch on the
   * host (a host copy of the chunk's view would allocate every call).
   */
  private static GammaFactor gammaFactor(boolean patchGram, INDArray mtChunk, double[] mtHost, INDArray patchChunk,
      INDArray gram, int n0, int n1, int c, int p, String scratch, Workspace w) {
    int m = n1 - n0;
    if (patchGram) {
      INDArray gramChunk = gram.get(NDArrayIndex.interval(n0, n1), NDArrayIndex.all(), NDArrayIndex.all());
      INDArray t = w.device(scratch, m, c, p);
      Nd4j.matmul(mtChunk, gramChunk, t, false, false, false);
      return new GammaFactor(t, rowDots(w.read(scratch, t), mtHost, n0 * c * p, m, c, p));
    }
    int d = (int) patchChunk.size(1);
    INDArray g = w.device(scratch, m, c, d);
    Nd4j.matmul(mtChunk, patchChunk, g, false, true, false);
    double[] gh = w.read(scratch, g);
    return new GammaFactor(g, rowDots(gh, gh, 0, m, c, d));
  }

  /**
   * Σ_j x[n, i, j]·y[yOffset + (n, i, j)] for every (n, i) of [samples, rows, cols] row-major arrays,
   * accumulated in double on the host: these are the last reductions before the per-sample sums of
   * eqs. (6) and (13), where terms of both signs meet. O(size of x).
   */
  private static double[][] rowDots(double[] x, double[] y, int yOffset, int samples, int rows, int cols) {
    double[][] out = new double[samples][rows];
    for (int s = 0; s < samples; s++) {
      for (int i = 0; i < rows; i++) {
        int base = (s * rows + i) * cols;
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
          sum += x[base + j] * y[yOffset + base + j];
        }
        out[s][i] = sum;
      }
    }
    return out;
  }


  /** Σ_k r̂_kᵀ Q r̂_k = Σ_cc' Ω A Γ (eqs. 13, 16): every form is ≥ 0 (Q and A are PSD). */
  private static double sum(double[] forms) {
    double s = 0.0;
    for (double f : forms) {
      s += f;
    }
    return s;
  }

  /** Samples [n0, n1) of a [B, …, …] array, or null for null. */
  private static INDArray chunk(INDArray batched, int n0, int n1) {
    return batched == null ? null
        : batched.get(NDArrayIndex.interval(n0, n1), NDArrayIndex.all(), NDArrayIndex.all());
  }

  /**
   * Writes K_p [B, P, P] into gram and returns ‖x_p‖² = diag K_p per sample: by eq. (14) from the
   * input's spatial Gram when that is cheaper, else as X Xᵀ from the patches.
   */
  private double[][] patchGram(boolean spatial, ConvGeometry geo, ActivationBatch batch, INDArray input,
      INDArray patches, INDArray gram, String scratch) {
    int b = (int) gram.size(0);
    int p = (int) gram.size(1);
    if (!spatial) {
      Nd4j.matmul(patches, patches, gram, true, false, false);
      return diagonalRows(gram, b, p);
    }
    int hw = batch.height() * batch.width();
    INDArray flat = input.reshape('c', b, input.size(1), hw);
    INDArray s = buffer(scratch, b, hw, hw);
    Nd4j.matmul(flat, flat, s, true, false, false);
    double[] kp = new SpatialGram(geo, batch.height(), batch.width()).patchGrams(work.read(scratch, s), b);
    gram.assign(upload(scratch + "Gram", kp, b, p, p));
    double[][] norms = new double[b][p];
    for (int n = 0; n < b; n++) {
      for (int i = 0; i < p; i++) {
        norms[n][i] = kp[(n * p + i) * p + i];
      }
    }
    return norms;
  }

  /**
   * F_i / ρ_i into out: the input with every channel divided by its RMS (eq. 12), [B, C_in, H, W]
   * row-major; a channel with ρ_i = 0 becomes zero (the pseudo-inverse of D_ρ).
   */
  private static float[] scaledByChannel(float[] input, double[] rms, int b, int cin, float[] out) {
    int plane = input.length / (b * cin);
    for (int n = 0; n < b; n++) {
      for (int i = 0; i < cin; i++) {
        double inv = inverseRms(rms[i]);
        int base = (n * cin + i) * plane;
        for (int j = 0; j < plane; j++) {
          out[base + j] = (float) (input[base + j] * inv);
        }
      }
    }
    return out;
  }

  /** Σ_c [Ω_cc] δ_c q_c, the σ'' term of eqs. (6)–(7); 0 for piecewise-linear σ. */
  private static double curvatureTerm(SoftmaxOutput so, double[][] q, int n, double[] omegaDiag, int c) {
    if (q == null) {
      return 0.0;
    }
    double s = 0.0;
    for (int ch = 0; ch < c; ch++) {
      s += (omegaDiag == null ? 1.0 : omegaDiag[ch]) * so.lossGradient[ch] * q[n][ch];
    }
    return s;
  }

  /**
   * The K − 1 rows of R̂ at offset, for the classes k ≠ m in class order (eq. 16):
   * r̂_k = √s_k (ṽ_k − α ũ) with ṽ_k = v_k − v_m and α = 1 / (1 + √s_m), so that
   * Σ_k r̂_k r̂_kᵀ = Σ_k s_k ṽ_k ṽ_kᵀ − ũ ũᵀ = A exactly, as a sum of positive terms.
   */
  private static void stackFactorRows(SoftmaxOutput so, float[] v, double[] out, int offset) {
    int c = so.channels;
    int anchor = so.top * c;
    double alpha = 1.0 / (1.0 + Math.sqrt(so.probabilities[so.top]));
    double[] u = so.anchoredMean;
    int row = offset;
    for (int kk = 0; kk < so.classes; kk++) {
      if (kk == so.top) {
        continue;
      }
      double w = Math.sqrt(so.probabilities[kk]);
      int src = kk * c;
      for (int ch = 0; ch < c; ch++) {
        out[row + ch] = w * (((double) v[src + ch] - v[anchor + ch]) - alpha * u[ch]);
      }
      row += c;
    }
  }

  private static double[] logits(double[] pooled, float[] v, float[] bias, int c) {
    int k = v.length / c;
    double[] o = new double[k];
    for (int kk = 0; kk < k; kk++) {
      double s = bias == null ? 0.0 : bias[kk];
      for (int ch = 0; ch < c; ch++) {
        s += (double) v[kk * c + ch] * pooled[ch];
      }
      o[kk] = s;
    }
    return o;
  }

  /**
   * q [B, C] = Σ_p (σ''·a²/P)[B, C, P] ‖x_p‖²[B, P] (eq. 4), summed in double: σ'' changes sign for
   * smooth activations, so this sum cancels and float32 accumulation would cost digits. O(BCP).
   */
  private double[][] curvatureWeights(INDArray weightedSecond, double[][] norms, int b, int c, int p) {
    double[] s = work.read("sigmaSecond", weightedSecond);
    double[][] q = new double[b][c];
    for (int n = 0; n < b; n++) {
      for (int ch = 0; ch < c; ch++) {
        int row = (n * c + ch) * p;
        double sum = 0.0;
        for (int i = 0; i < p; i++) {
          sum += s[row + i] * norms[n][i];
        }
        q[n][ch] = sum;
      }
    }
    return q;
  }

  /** The diagonals of a [B, P, P] array as double[B][P], through a strided view. */
  private double[][] diagonalRows(INDArray batched, int b, int p) {
    double[] all = work.read("gramDiagonal", batched);
    double[][] out = new double[b][p];
    for (int n = 0; n < b; n++) {
      for (int i = 0; i < p; i++) {
        out[n][i] = all[(n * p + i) * p + i];
      }
    }
    return out;
  }

  private static double[] diagonal(INDArray square) {
    int c = (int) square.size(0);
    double[] out = new double[c];
    for (int i = 0; i < c; i++) {
      out[i] = square.getDouble(i, i);
    }
    return out;
  }

  /**
   * 1/ρ, or 0 for a channel left out of κ_norm (ρ = 0; the pseudo-inverse of eq. 12). Every ρ > 0 is
   * at least float32's smallest normal ({@link HeadSnapshot#MIN_INPUT_CHANNEL_RMS}), so 1/ρ fits a float.
   */
  private static double inverseRms(double rho) {
    return rho > 0 ? 1.0 / rho : 0.0;
  }

  /** 1/ρ_j over the d patch coordinates (0 where ρ_j = 0, eq. 12), shaped [1, 1, d] for broadcasting. */
  private INDArray inverseExpandedRms(HeadSnapshot head, double[] rms) {
    int taps = head.geometry().kernelHeight() * head.geometry().kernelWidth();
    double[] inv = new double[head.patchLength()];
    for (int j = 0; j < inv.length; j++) {
      inv[j] = inverseRms(rms[j / taps]);
    }
    INDArray asDouble = Nd4j.create(inv, new long[] {1, 1, inv.length}, 'c');
    INDArray cast = asDouble.castTo(dtype);
    NativeOps.keep(asDouble);
    return cast;
  }

  /** A float array (wire precision) on the device in the given precision. */
  private static INDArray array(float[] data, DataType dtype, long... shape) {
    INDArray a = Nd4j.create(data, shape, 'c');
    if (dtype == DataType.FLOAT) {
      return a;
    }
    INDArray cast = a.castTo(dtype);
    NativeOps.keep(a);
    return cast;
  }

  /** The snapshot's weights and Ω, formed once per snapshot and kept for the most recent ones. */
  private PreparedHead prepare(HeadSnapshot head) {
    return prepared.get(head, h -> new PreparedHead(h, dtype));
  }

  /** Device bytes this engine's workspaces keep (for tests of {@link BatchCost}). */
  long workspaceBytes() {
    return work.deviceBytes() + chunkWork.deviceBytes();
  }

  /** The workspace this engine's thread uses for chunks (of its own batches or of others'). */
  Workspace chunkWorkspace() {
    return chunkWork;
  }

  /** A working array of exactly this shape, reused across calls (contents undefined). */
  private INDArray buffer(String name, long... shape) {
    return work.device(name, shape);
  }

  /** Host data into a reused device array (Nd4j.create of a float[] allocates fresh memory every call). */
  private INDArray upload(String name, float[] data, long... shape) {
    return work.upload(name, data, shape);
  }

  private INDArray upload(String name, double[] data, long... shape) {
    return work.upload(name, data, shape);
  }

  /** A flat row-major [rows, cols] array as rows. */
  private static double[][] rows(double[] flat, int rows, int cols) {
    double[][] out = new double[rows][cols];
    for (int i = 0; i < rows; i++) {
      System.arraycopy(flat, i * cols, out[i], 0, cols);
    }
    return out;
  }

  /**
   * A snapshot's weights on the device, with Ω = W_f W_fᵀ formed once (docs/math.md §6). Read by
   * several engine threads at once when shared: the lazily formed parts are made under its lock.
   */
  static final class PreparedHead {
    private static final int NORMALIZED_PER_HEAD = 2;

    final INDArray kernel;
    final INDArray bias;
    final INDArray scale;
    final INDArray omega;
    final double[] omegaDiagonal;
    final SymmetricForms forms;
    private final HeadSnapshot head;
    private final DataType dtype;
    /** Ω' per ρ (eq. 12), most recent last: a measurement's train and eval splits fix their own ρ. */
    private final java.util.ArrayDeque<Normalized> normalized = new java.util.ArrayDeque<>(NORMALIZED_PER_HEAD);
    private int scaledForP = -1;
    private INDArray scaleOverP;
    private INDArray squaredScaleOverP;

    PreparedHead(HeadSnapshot head, DataType dtype) {
      this.head = head;
      this.dtype = dtype;
      int c = head.channels();
      this.kernel = array(head.kernel(), dtype, c, head.patchLength());
      this.bias = head.bias() == null ? null : array(head.bias(), dtype, 1, c);
      this.scale = head.scale() == null ? null : array(head.scale(), dtype, 1, c);
      this.omega = Nd4j.createUninitialized(dtype, c, c);
      Nd4j.gemm(kernel, kernel, omega, false, true, 1.0, 0.0);
      this.omegaDiagonal = diagonal(omega);
      this.forms = new SymmetricForms(omega);
    }

    /** Device bytes held: W, Ω and Ω's flattened blocks, and up to two Ω' with theirs. */
    long bytes() {
      long c = head.channels();
      return (dtype == DataType.FLOAT ? 4L : 8L) * (c * head.patchLength() + (3 + 2 * NORMALIZED_PER_HEAD) * c * c);
    }

    /**
     * Ω' = W_f diag(ρ_j²) W_fᵀ, the Ω of the normalised kernel W·ρ (eq. 12), with its diagonal and
     * eq. (13)'s forms; formed once per ρ and kept for the last {@value #NORMALIZED_PER_HEAD} ρ.
     */
    synchronized Normalized normalized(double[] rms) {
      for (Normalized n : normalized) {
        if (Arrays.equals(rms, n.rms)) {
          return n;
        }
      }
      int taps = head.geometry().kernelHeight() * head.geometry().kernelWidth();
      double[] r = new double[head.patchLength()];
      for (int j = 0; j < r.length; j++) {
        r[j] = rms[j / taps];
      }
      INDArray rowDouble = Nd4j.create(r, new long[] {1, r.length}, 'c');
      INDArray row = rowDouble.castTo(dtype);
      INDArray scaled = Nd4j.createUninitialized(dtype, kernel.shape());
      NativeOps.multiply(kernel, row, scaled);
      NativeOps.keep(rowDouble, row);
      INDArray omegaPrime = Nd4j.createUninitialized(dtype, head.channels(), head.channels());
      Nd4j.gemm(scaled, scaled, omegaPrime, false, true, 1.0, 0.0);
      Normalized n = new Normalized(rms.clone(), diagonal(omegaPrime), new SymmetricForms(omegaPrime));
      if (normalized.size() == NORMALIZED_PER_HEAD) {
        normalized.removeFirst();
      }
      normalized.addLast(n);
      return n;
    }

    /** a/P shaped [1, C, 1]. */
    synchronized INDArray scaleOver(int p) {
      prepareScales(p);
      return scaleOverP;
    }

    /** a²/P shaped [1, C, 1]. */
    synchronized INDArray squaredScaleOver(int p) {
      prepareScales(p);
      return squaredScaleOverP;
    }

    private synchronized void prepareScales(int p) {
      if (p == scaledForP) {
        return;
      }
      int c = head.channels();
      double[] s = new double[c];
      double[] s2 = new double[c];
      for (int ch = 0; ch < c; ch++) {
        double a = head.scale(ch);
        s[ch] = a / p;
        s2[ch] = a * a / p;
      }
      INDArray sDouble = Nd4j.create(s, new long[] {1, c, 1}, 'c');
      INDArray s2Double = Nd4j.create(s2, new long[] {1, c, 1}, 'c');
      scaleOverP = sDouble.castTo(dtype);
      squaredScaleOverP = s2Double.castTo(dtype);
      NativeOps.keep(sDouble, s2Double);
      scaledForP = p;
    }
  }
}
