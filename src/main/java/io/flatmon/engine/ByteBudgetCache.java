package io.flatmon.engine;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;

/**
 * A cache bounded by the bytes its values hold rather than by their count, so a few large heads and
 * thousands of small ones are both cached sensibly: Caffeine with a weigher on the size each entry was
 * put with. Eviction runs on the calling thread (no background executor), so a put that overflows
 * the budget has released the evicted entries when it returns. Thread-safe.
 */
public final class ByteBudgetCache<K, V> {
  private record Weighed<V>(V value, int bytes) {
  }

  private final Cache<K, Weighed<V>> cache;

  public ByteBudgetCache(long budgetBytes) {
    this.cache = Caffeine.newBuilder()
        .maximumWeight(budgetBytes)
        .<K, Weighed<V>>weigher((k, w) -> w.bytes())
        .executor(Runnable::run)
        .build();
  }

  public V get(K key) {
    Weighed<V> w = cache.getIfPresent(key);
    return w == null ? null : w.value();
  }

  /** Adds a value of the given size; others go when the budget is exceeded. */
  public void put(K key, V value, long bytes) {
    cache.put(key, new Weighed<>(value, (int) Math.min(bytes, Integer.MAX_VALUE)));
  }

  public void remove(K key) {
    cache.invalidate(key);
  }

  public void clear() {
    cache.invalidateAll();
  }

  /** The number of entries (after pending evictions). */
  public int size() {
    cache.cleanUp();
    return (int) cache.estimatedSize();
  }
}
