package io.flatmon.fuzz;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.stream.it.TelemetryFixtures;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * The long fuzz mode, outside the default run: {@code -Dflatmon.fuzz.seconds=180}. For that long,
 * random and adversarial records ({@link FuzzRecords}) alternate with valid runs whose batches keep
 * a two-engine {@link io.flatmon.engine.EnginePool} busy (chunks shared between the engines), in a
 * child JVM where another thread calls System.gc() without pause — the engine's native arrays must
 * stay reachable through every native call. Reports records tried per second; any crash, hang or
 * internal error fails it.
 *
 * <pre>nice mvn -B -o test -Dtest=TelemetryFuzzSoakTest -Dflatmon.fuzz.seconds=180</pre>
 */
@EnabledIfSystemProperty(named = "flatmon.fuzz.seconds", matches = "\\d+")
class TelemetryFuzzSoakTest {

  @Test
  void fuzzAndValidBatchesUnderForcedGarbageCollection() throws Exception {
    long seconds = Long.parseLong(System.getProperty("flatmon.fuzz.seconds"));
    Iterator<FuzzRecords.HeadSpec> heads = FuzzRecords.heads().sampleStream().iterator();
    Iterator<FuzzRecords.BatchSpec> batches = FuzzRecords.batches().sampleStream().iterator();
    TreeMap<String, Long> outcomes = new TreeMap<>();
    long records = 0;
    long fuzzed = 0;
    long validBatches = 0;
    long t0 = System.nanoTime();
    long deadline = t0 + seconds * 1_000_000_000L;
    try (FuzzChild child = new FuzzChild(2, true)) {
      int run = 0;
      while (System.nanoTime() < deadline) {
        // A valid run with a wide head (C = 256: several chunks per batch, shared by both engines).
        List<TelemetryRecord> valid = TelemetryFixtures.run("soak-valid-" + run, run, List.of(
            new TelemetryFixtures.LayerSpec("wide", 256, 32, 10, 3, 1, 6, ActivationKind.GELU, true, null)),
            1, 3, 1, 16);
        for (TelemetryRecord r : valid) {
          String outcome = TelemetryFuzzTest.checkWith(child, r, "valid record of run " + run);
          outcomes.merge("valid " + outcome, 1L, Long::sum);
          records++;
          if (r.hasActivationBatch()) {
            assertTrue(outcome.equals("MEASURED"), "a valid batch was not measured: " + outcome);
            validBatches++;
          }
        }
        for (int i = 0; i < 20; i++) {
          FuzzRecords.HeadSpec h = heads.next();
          FuzzRecords.BatchSpec b = batches.next();
          String id = "soak-fuzz-" + run + "-" + i;
          outcomes.merge("fuzz " + TelemetryFuzzTest.checkWith(child, FuzzRecords.snapshot(id, h), "snapshot " + h),
              1L, Long::sum);
          outcomes.merge("fuzz " + TelemetryFuzzTest.checkWith(child, FuzzRecords.batch(id, h, b),
              "batch " + b + " on " + h), 1L, Long::sum);
          records += 2;
          fuzzed += 2;
        }
        run++;
      }
      double elapsed = (System.nanoTime() - t0) / 1e9;
      System.out.printf(Locale.ROOT, "fuzz soak: %d records in %.1f s (%.1f records/s; %d fuzzed, %d valid batches"
          + " measured on 2 engines under a System.gc() loop), child alive: %s, crashes: 0%n  outcomes: %s%n",
          records, elapsed, records / elapsed, fuzzed, validBatches, child.isAlive(), outcomes);
      assertTrue(child.isAlive());
    }
  }
}
