package io.flatmon.engine;

import java.util.Locale;

/**
 * What measuring one batch through a head costs on {@link CurvatureEngine}'s route, from declared
 * shapes alone — before a tensor is decoded or an array allocated: the conv output geometry, the
 * engine's device arrays (input, im2col patches, Z, σ and σ', the patch Grams, a chunk's Γ blocks and
 * their products), its host arrays (the double copies it reads back, R̂ rows, softmax terms), the
 * largest single array, and the floating-point work per sample (docs/math.md §6: the conv forward
 * 2Cd·P, the Gram 2P²d or eq. 14's 2(HW)²C_in, Γ by eq. 3 on the chosen route, eq. 13's forms
 * 2·(b+1)/(2b)·C²·(K − 1), doubled for κ_norm).
 *
 * <p>All arithmetic saturates at {@link Long#MAX_VALUE} instead of overflowing: a saturated figure
 * is above every limit, which is all a caller needs to know about it. The figures follow {@code
 * CurvatureEngine.compute} term by term (a change there must change this too; {@code BatchCostTest}
 * checks them against what the engine allocates).
 *
 * @param outputHeight H'
 * @param outputWidth W'
 * @param positions P = H'·W'
 * @param patchGram Γ by M̃ K_p M̃ᵀ (else G Gᵀ), as the engine chooses
 * @param deviceBytes ND4J arrays the batch allocates (native memory)
 * @param hostBytes Java arrays the engine allocates for the batch (heap), decoded tensors excluded
 * @param largestArrayElements the largest single array, device or host, in elements
 * @param workPerSample floating-point operations (and im2col element copies) per sample
 */
public record BatchCost(long outputHeight, long outputWidth, long positions, boolean patchGram,
    long deviceBytes, long hostBytes, long largestArrayElements, long workPerSample) {

  /** Elements an int-indexed array (Java array, the engine's int index arithmetic) can hold. */
  public static final long MAX_ARRAY_ELEMENTS = Integer.MAX_VALUE - 8;

  /**
   * Z-sized temporaries the smooth activations allocate beyond σ and σ' ({@code ActivationKernels}:
   * GELU_TANH makes nine; GELU, SiLU six).
   */
  private static final long SMOOTH_TEMPORARIES = 10;

  /** Device and host memory, together. */
  public long workingBytes() {
    return add(deviceBytes, hostBytes);
  }

  /** Flops for the whole batch. */
  public long work(long samples) {
    return mul(workPerSample, samples);
  }

  /**
   * The cost of a batch of {@code samples} × C_in × H × W through the head on the AUTO route in the
   * given precision.
   *
   * @param preActivation whether the trainer sends Z (the conv forward is skipped)
   * @param normalized whether κ_norm is computed (it doubles the Gram and Γ work): true is the bound
   * @param elementBytes 4 (float32, the fast path) or 8
   */
  public static BatchCost of(int channels, int inputChannels, ConvGeometry geo, int classes, Activation activation,
      long samples, long height, long width, boolean preActivation, boolean normalized, int elementBytes) {
    return of(CurvatureEngine.GramRoute.AUTO, channels, inputChannels, geo, classes, activation, samples, height,
        width, preActivation, normalized, elementBytes);
  }

  /** The same for a head. */
  public static BatchCost of(HeadSnapshot head, long samples, long height, long width, boolean preActivation,
      boolean normalized, int elementBytes) {
    return of(head.channels(), head.inputChannels(), head.geometry(), head.classes(), head.activation(), samples,
        height, width, preActivation, normalized, elementBytes);
  }

  /**
   * The cheapest batch any trainer could send this head: one sample of 1×1 pixels, with or without
   * Z, whichever costs less. A head whose cheapest batch is over a limit can never be measured.
   */
  public static BatchCost cheapest(int channels, int inputChannels, ConvGeometry geo, int classes,
      Activation activation, int elementBytes) {
    BatchCost withZ = of(channels, inputChannels, geo, classes, activation, 1, 1, 1, true, false, elementBytes);
    BatchCost withoutZ = of(channels, inputChannels, geo, classes, activation, 1, 1, 1, false, false, elementBytes);
    return withZ.workingBytes() <= withoutZ.workingBytes() ? withZ : withoutZ;
  }

  static BatchCost of(CurvatureEngine.GramRoute route, int channels, int inputChannels, ConvGeometry geo,
      int classes, Activation activation, long samples, long height, long width, boolean preActivation,
      boolean normalized, int elementBytes) {
    long b = samples;
    long c = channels;
    long cin = inputChannels;
    long d = mul(cin, geo.kernelHeight(), geo.kernelWidth());
    long k = classes;
    long outH = geo.outputHeightExact(height);
    long outW = geo.outputWidthExact(width);
    long p = mul(outH, outW);
    long hw = mul(height, width);
    boolean smooth = activation.hasCurvature();
    int copies = normalized ? 2 : 1;

    boolean patchGram = CurvatureEngine.usesPatchGram(route, c, d, p);
    boolean needsGram = patchGram || smooth;
    boolean spatial = needsGram && SpatialGram.isCheaper(geo, height, width);
    boolean needsPatches = !preActivation || !patchGram || (needsGram && !spatial);
    int blocks = SymmetricForms.blocksFor(channels);
    long size = c / blocks;
    long pairs = (long) blocks * (blocks + 1) / 2;
    long entries = mul(pairs, size, size);
    long chunk = Math.max(1, Math.min(b, CurvatureEngine.CHUNK_ELEMENTS
        / Math.max(1, patchGram ? entries : Math.max(entries, mul(c, d)))));
    long gammaWidth = patchGram ? p : d;

    Tally device = new Tally();
    Tally host = new Tally();
    long bcp = mul(b, c, p);
    long bdp = mul(b, d, p);
    long bpp = mul(b, p, p);
    device.add(mul(b, cin, hw));                                  // input
    if (needsPatches) {
      device.add(bdp);                                            // cols (im2col)
    }
    if (!preActivation) {
      device.add(bdp).add(bcp).add(bcp);                          // X by channel, zc, Z
    } else {
      device.add(bcp);                                            // Z uploaded
    }
    device.add(bcp).add(bcp);                                     // σ, σ'
    if (smooth) {
      device.add(mul(SMOOTH_TEMPORARIES, bcp));
    }
    device.add(mul(b, c));                                        // mean over positions
    host.addHost(mul(b, c), elementBytes);                        // pooled
    host.addHost(bcp, elementBytes);                              // M̃ on the host
    if (normalized && needsPatches) {
      device.add(bdp);                                            // patches / ρ
    }
    if (needsGram) {
      for (int i = 0; i < copies; i++) {
        device.add(bpp);                                          // K_p (and K_p')
        if (spatial) {
          long bss = mul(b, hw, hw);
          device.add(bss).add(bpp);                               // S (eq. 14), K_p uploaded
          host.addHost(bss, elementBytes).bytes(mul(8, bpp)).addHost(bpp, elementBytes); // S read, K_p built
        }
      }
      if (!spatial) {
        host.addHost(bpp, elementBytes);                          // diag K_p read back
      }
      if (normalized && spatial) {
        device.add(mul(b, cin, hw));                              // F / ρ uploaded
        host.bytes(mul(4, b, cin, hw));
      }
      host.bytes(mul(8 * copies, b, p));                            // ‖x_p‖²
    }
    if (smooth) {
      host.addHost(bcp, elementBytes).bytes(mul(8 * copies, b, c)); // σ'' read, q
    }
    // One chunk of samples: T or G (and T', G'), the pair-gathered factors, Γ blocks, Y, R̂ rows.
    long m = chunk;
    long factor = mul(m, c, gammaWidth);
    device.add(mul(copies, factor));
    host.addHost(mul(copies, factor), elementBytes);
    if (blocks > 1) {
      device.add(mul(2, m, pairs, size, gammaWidth));
    }
    long gamma = mul(m, entries);
    long y = mul(m, pairs, size, k - 1);
    device.add(gamma).add(y).add(y);                             // Γ blocks, Y, R̂ by pair
    host.addHost(y, elementBytes).addHost(mul(m, k - 1, c), 4).addHost(y, elementBytes);
    host.bytes(mul(8, b, add(mul(4, k), mul(4, c), 10)));           // softmax terms, per-sample outputs

    long largest = Math.max(device.largest, host.largest);
    long work = 0;
    if (needsPatches) {
      work = add(work, mul(d, p));                                // im2col copies
      if (normalized) {
        work = add(work, mul(d, p));
      }
    }
    if (!preActivation) {
      work = add(work, mul(2, c, d, p));                          // Z = W_f X
    }
    work = add(work, mul(smooth ? 40 : 4, c, p));                // σ, σ', σ'', q
    if (needsGram) {
      long gram = spatial ? add(mul(2, hw, hw, cin), mul(p, p, geo.kernelHeight(), geo.kernelWidth()))
          : mul(2, p, p, d);
      work = add(work, mul(copies, gram));
    }
    long gammaWork = patchGram ? add(mul(2, c, p, p), mul(2, entries, p), mul(c, p))
        : add(mul(2, c, p, d), mul(2, entries, d), mul(c, d));
    long forms = add(entries, mul(2, entries, k - 1), mul(pairs, size, k - 1));
    work = add(work, mul(copies, add(gammaWork, forms)), mul(6, k, c));
    return new BatchCost(outH, outW, p, patchGram, mul(device.elements, elementBytes), host.elements, largest, work);
  }

  /** One line for a rejection detail: the figures a limit was compared with. */
  public String describe(long samples) {
    return String.format(Locale.ROOT, "H'×W' = %d×%d (P = %d), %s route; working memory %s (device %s, host %s), "
            + "largest array %d elements; work %.3g flop per sample (%.3g per batch)",
        outputHeight, outputWidth, positions, patchGram ? "patch-Gram" : "filter", bytes(workingBytes()),
        bytes(deviceBytes), bytes(hostBytes), largestArrayElements, (double) workPerSample,
        (double) work(samples));
  }

  /** Bytes as "N B (x.y MiB)", or "over 8 EiB" when saturated. */
  public static String bytes(long n) {
    if (n == Long.MAX_VALUE) {
      return "over 8 EiB";
    }
    return String.format(Locale.ROOT, "%d B (%.1f MiB)", n, n / 1048576.0);
  }

  /** Element counts and bytes, summed with saturation; the largest single array is remembered. */
  private static final class Tally {
    /** n bytes of host arrays whose length is already accounted for by a read of the same size. */
    Tally bytes(long n) {
      elements = BatchCost.add(elements, n);
      return this;
    }

    long elements;
    long largest;

    /** A device array of n elements (converted to bytes at the end), or n bytes of host arrays. */
    Tally add(long n) {
      elements = BatchCost.add(elements, n);
      largest = Math.max(largest, n);
      return this;
    }

    /** A host array of n doubles read back through a staging array of the device precision. */
    Tally addHost(long n, int elementBytes) {
      elements = BatchCost.add(elements, mul(n, 8 + (elementBytes == 4 ? 4 : 0)));
      largest = Math.max(largest, n);
      return this;
    }
  }

  /** Saturating product of non-negative factors. */
  static long mul(long... factors) {
    long r = 1;
    for (long f : factors) {
      if (f < 0) {
        throw new IllegalArgumentException("negative size " + f);
      }
      if (f == 0) {
        return 0;
      }
    }
    for (long f : factors) {
      if (r > Long.MAX_VALUE / f) {
        return Long.MAX_VALUE;
      }
      r *= f;
    }
    return r;
  }

  /** Saturating sum of non-negative terms. */
  static long add(long... terms) {
    long r = 0;
    for (long t : terms) {
      r = r > Long.MAX_VALUE - t ? Long.MAX_VALUE : r + t;
    }
    return r;
  }
}
