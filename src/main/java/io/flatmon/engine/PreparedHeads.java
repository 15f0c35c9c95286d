package io.flatmon.engine;

import java.util.function.Function;

/**
 * Prepared snapshots — W on the device and Ω = W_f W_fᵀ with its flattened blocks, formed once per
 * snapshot (docs/math.md §6) — in a least-recently-used cache bounded by device bytes. Thread-safe,
 * so the engines of an {@link EnginePool}, which measure any run's batches, share one Ω per
 * snapshot instead of forming it once per engine (2C²d flops, 2.4 GFLOP for ResNet-18's last conv).
 * Keys are snapshot identities: a new snapshot is a new {@link HeadSnapshot} object.
 */
final class PreparedHeads {
  /**
   * 512 MiB: 38 ResNet-18-sized heads (W 9.4 MB, Ω and its blocks 2 MB, two Ω' with theirs 4 MB), or
   * thousands of small ones.
   */
  static final long DEFAULT_BUDGET_BYTES = 512L << 20;

  private final ByteBudgetCache<HeadSnapshot, CurvatureEngine.PreparedHead> cache;

  PreparedHeads() {
    this(DEFAULT_BUDGET_BYTES);
  }

  PreparedHeads(long budgetBytes) {
    this.cache = new ByteBudgetCache<>(budgetBytes);
  }

  /**
   * The head's prepared form, made by {@code prepare} on a miss. Preparing runs outside the cache's
   * locks: two engines missing the same head at once both prepare it and the second result is kept,
   * which costs one extra Ω but never blocks the other engines behind a 2 GFLOP product.
   */
  CurvatureEngine.PreparedHead get(HeadSnapshot head,
      Function<HeadSnapshot, CurvatureEngine.PreparedHead> prepare) {
    CurvatureEngine.PreparedHead p = cache.get(head);
    if (p == null) {
      p = prepare.apply(head);
      cache.put(head, p, p.bytes());
    }
    return p;
  }

  int size() {
    return cache.size();
  }
}
