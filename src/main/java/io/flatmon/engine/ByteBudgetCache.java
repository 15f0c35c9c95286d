package io.flatmon.engine;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A least-recently-used cache bounded by the bytes its values hold rather than by their count, so a
 * few large heads and thousands of small ones are both cached sensibly. Not thread-safe.
 */
public final class ByteBudgetCache<K, V> {
  private record Entry<V>(V value, long bytes) {
  }

  private final long budget;
  private final LinkedHashMap<K, Entry<V>> entries = new LinkedHashMap<>(16, 0.75f, true);
  private long used;

  public ByteBudgetCache(long budgetBytes) {
    this.budget = budgetBytes;
  }

  public V get(K key) {
    Entry<V> e = entries.get(key);
    return e == null ? null : e.value;
  }

  /** Adds a value; the least recently used ones go until the budget holds (the newest always stays). */
  public void put(K key, V value, long bytes) {
    Entry<V> old = entries.put(key, new Entry<>(value, bytes));
    used += bytes - (old == null ? 0 : old.bytes);
    Iterator<Map.Entry<K, Entry<V>>> it = entries.entrySet().iterator();
    while (used > budget && entries.size() > 1 && it.hasNext()) {
      Map.Entry<K, Entry<V>> eldest = it.next();
      if (eldest.getKey().equals(key)) {
        continue;
      }
      used -= eldest.getValue().bytes;
      it.remove();
    }
  }

  public void remove(K key) {
    Entry<V> e = entries.remove(key);
    if (e != null) {
      used -= e.bytes;
    }
  }

  public void clear() {
    entries.clear();
    used = 0;
  }

  public int size() {
    return entries.size();
  }
}
