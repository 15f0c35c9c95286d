package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.OracleCase;
import io.flatmon.proto.v1.OracleValues;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.TelemetryReader;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The oracle fixtures of scripts/oracle/generate.py as a telemetry stream ({@code cases.pb}) and its
 * expected values ({@code expected.pb}: PyTorch float64 autograd, or 50-digit mpmath on confident
 * cases), for tests that push the fixtures through the topology and compare what comes out with the
 * oracle, not with another run of flatmon.
 */
public final class OracleFixtures {
  public static final Path CASES = Path.of("src/test/resources/oracle/cases.pb");
  public static final Path EXPECTED = Path.of("src/test/resources/oracle/expected.pb");
  /** The float32 engine's documented agreement (docs/math.md §5): 1e-5, 1e-4 on confident cases. */
  public static final double TOLERANCE = 1e-5;
  public static final double TOLERANCE_CONFIDENT = 1e-4;

  private OracleFixtures() {
  }

  public static List<TelemetryRecord> records() throws IOException {
    List<TelemetryRecord> out = new ArrayList<>();
    try (InputStream in = Files.newInputStream(CASES)) {
      TelemetryReader reader = new TelemetryReader(in, 64 << 20);
      TelemetryReader.Item item;
      while ((item = reader.next()) != null) {
        assertTrue(item.isValid(), "fixture record unreadable");
        out.add(item.record());
      }
    }
    return out;
  }

  /** Expected values by case id (= run id), in fixture order. */
  public static Map<String, OracleCase> expected() throws IOException {
    Map<String, OracleCase> byId = new LinkedHashMap<>();
    try (InputStream in = Files.newInputStream(EXPECTED)) {
      OracleCase c;
      while ((c = OracleCase.parseDelimitedFrom(in)) != null) {
        byId.put(c.getCaseId(), c);
      }
    }
    return byId;
  }

  /**
   * One final result per case, each equal to the oracle: Tr H, κ, κ_norm, Tr H_V, κ_V and loss within
   * the engine's tolerance, accuracy to rounding, the analytic weight-decay terms to 1e-12 — all
   * relative with no absolute floor (zero by construction must be exactly zero).
   */
  public static void assertFinalsMatch(Map<String, OracleCase> expected, List<FlatnessResult> finals) {
    Map<String, FlatnessResult> byRun = new LinkedHashMap<>();
    for (FlatnessResult r : finals) {
      assertTrue(r.getFinal());
      assertTrue(byRun.put(r.getRunId(), r) == null, () -> "two finals for " + r.getRunId());
    }
    assertEquals(new TreeSet<>(expected.keySet()), new TreeSet<>(byRun.keySet()), "one final per fixture case");
    for (OracleCase c : expected.values()) {
      FlatnessResult r = byRun.get(c.getCaseId());
      OracleValues e = c.getExpected();
      String id = c.getCaseId();
      double tol = c.getConfident() ? TOLERANCE_CONFIDENT : TOLERANCE;
      assertFalse(r.getNonFinite(), id);
      assertEquals(1, r.getBatches(), id);
      close(id + " Tr H", e.getHessianTrace(), r.getHessianTrace().getMean(), tol);
      close(id + " κ", e.getRelativeFlatness(), r.getRelativeFlatness().getMean(), tol);
      close(id + " κ_norm", e.getRelativeFlatnessNormalized(), r.getRelativeFlatnessNormalized().getMean(), tol);
      close(id + " Tr H_V", e.getClassifierHessianTrace(), r.getClassifierHessianTrace().getMean(), tol);
      close(id + " κ_V", e.getClassifierRelativeFlatness(), r.getClassifierRelativeFlatness().getMean(), tol);
      if (r.getLabelledSamples() > 0) {
        close(id + " loss", e.getLoss(), r.getLoss().getMean(), tol);
        close(id + " accuracy", e.getAccuracy(), r.getAccuracy().getMean(), 1e-15);
      } else {
        assertTrue(Double.isNaN(e.getLoss()), id + ": the fixture has labels but the result none");
      }
      close(id + " weight decay Tr H", e.getWeightDecayTrace(), r.getWeightDecayTrace(), 1e-12);
      close(id + " weight decay κ", e.getWeightDecayRelativeFlatness(), r.getWeightDecayRelativeFlatness(), 1e-12);
    }
  }

  static void close(String what, double expected, double actual, double tolerance) {
    if (expected == 0.0) {
      assertEquals(0.0, actual, 0.0, what + ": zero by construction");
      return;
    }
    double err = Math.abs(expected - actual);
    assertTrue(err <= tolerance * Math.abs(expected), () -> String.format(
        "%s: oracle %.17g, stream %.17g (relative %.3g, tolerance %.0e)", what, expected, actual,
        err / Math.abs(expected), tolerance));
  }
}
