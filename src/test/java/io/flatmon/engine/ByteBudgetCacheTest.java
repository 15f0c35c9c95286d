package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The budget counts bytes, not entries. */
class ByteBudgetCacheTest {

  @Test
  void keepsTheSumOfSizesWithinTheBudget() {
    ByteBudgetCache<String, String> cache = new ByteBudgetCache<>(100);
    for (int i = 0; i < 10; i++) {
      cache.put("small" + i, "v" + i, 5);
    }
    assertEquals(10, cache.size(), "ten entries of 5 bytes fit in 100");
    cache.put("big", "B", 90);
    assertTrue(cache.size() <= 3, "90 + n·5 ≤ 100 leaves at most 2 small entries beside the big one, got "
        + cache.size());
    for (int i = 0; i < 30; i++) {
      cache.put("k" + i, "v", 40);
    }
    assertTrue(cache.size() <= 2, "at most two 40-byte entries in 100 bytes, got " + cache.size());
    cache.put("x", "y", 1);
    cache.remove("x");
    assertNull(cache.get("x"));
    cache.clear();
    assertEquals(0, cache.size());
  }
}
