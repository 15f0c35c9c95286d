package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** flatmon_run_info: one series per run held, bounded label values, gone when the run is released. */
class RunInfoTest {
  private final FlatmonMetrics metrics = new FlatmonMetrics();

  @AfterEach
  void close() {
    metrics.close();
  }

  private List<String> infoLines() {
    return Arrays.stream(metrics.scrape(null).split("\n")).filter(l -> l.startsWith("flatmon_run_info{")).toList();
  }

  @Test
  void oneSeriesPerHeldRun() {
    for (int i = 0; i < 72; i++) {
      metrics.onRunSeen("run-" + i, "display " + i, "pytorch");
    }
    assertEquals(72, infoLines().size(), String.join("\n", infoLines()));
    metrics.onRunSeen("run-3", "renamed", "pytorch");
    assertEquals(72, infoLines().size());
    assertTrue(infoLines().stream().anyMatch(l -> l.contains("run=\"run-3\"") && l.contains("display_name=\"renamed\"")));
    metrics.onRunReleased("run-5");
    assertEquals(71, infoLines().size());
    assertTrue(infoLines().stream().noneMatch(l -> l.contains("run=\"run-5\"")));
  }

  @Test
  void hugeLabelValuesAreCut() {
    String huge = "d".repeat(5 << 20);
    metrics.onRunSeen("big", huge, "f".repeat(100_000));
    String exposition = metrics.scrape(null);
    assertTrue(exposition.length() < 200_000, "exposition of " + exposition.length() + " chars");
    String line = infoLines().get(0);
    assertTrue(line.length() < 2 * FlatmonMetrics.MAX_LABEL_CHARS + 200, line.length() + " chars");
    assertTrue(line.contains("display_name=\"" + "d".repeat(FlatmonMetrics.MAX_LABEL_CHARS - 1) + "…\""), line);
  }
}
