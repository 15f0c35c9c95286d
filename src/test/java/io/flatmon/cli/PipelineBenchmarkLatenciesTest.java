package io.flatmon.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import org.junit.jupiter.api.Test;

/** The total's latencies are those of every window since the warm-up, not only the last window's. */
class PipelineBenchmarkLatenciesTest {

  @Test
  void totalCoversEveryWindowAfterTheWarmUp() {
    PipelineBenchmark.Latencies latencies = new PipelineBenchmark.Latencies();
    latencies.add(9.0);
    assertArrayEquals(new double[] {9.0}, latencies.drainWindow(), "warm-up window");
    latencies.add(8.0);
    latencies.startMeasuring();
    latencies.add(0.1);
    latencies.add(2.5);
    assertArrayEquals(new double[] {8.0, 0.1, 2.5}, latencies.drainWindow(), "first measured window");
    latencies.add(0.2);
    assertArrayEquals(new double[] {0.2}, latencies.drainWindow(), "second measured window");
    latencies.add(0.3);
    assertArrayEquals(new double[] {0.1, 2.5, 0.2, 0.3}, latencies.measured(), "the whole measuring period");
  }
}
