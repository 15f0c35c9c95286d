package io.flatmon.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.util.JsonFormat;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.OracleCase;
import io.flatmon.proto.v1.OracleValues;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** `flatmon compute` end to end on the oracle fixtures and on corrupted input. */
class ComputeCommandTest {
  static final Path CASES = Path.of("src/test/resources/oracle/cases.pb");

  record Run(int exit, String out, String err) {
  }

  static Run run(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine cli = FlatmonCommand.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    int exit = cli.execute(args);
    return new Run(exit, out.toString(), err.toString());
  }

  static Map<String, OracleCase> expected() throws Exception {
    Map<String, OracleCase> byId = new HashMap<>();
    try (InputStream in = Files.newInputStream(Path.of("src/test/resources/oracle/expected.pb"))) {
      OracleCase c;
      while ((c = OracleCase.parseDelimitedFrom(in)) != null) {
        byId.put(c.getCaseId(), c);
      }
    }
    return byId;
  }

  @Test
  void printsTheOracleValuesForEveryFixtureCase() throws Exception {
    Run reference = run("compute", "--json", "--eigen", "--engine", "reference", CASES.toString());
    assertEquals(0, reference.exit, reference.err);
    Run fast = run("compute", "--json", CASES.toString());
    assertEquals(0, fast.exit, fast.err);
    Map<String, OracleCase> expected = expected();
    Map<String, FlatnessResult> fastById = parse(fast.out);
    Map<String, FlatnessResult> refById = parse(reference.out);
    assertEquals(expected.keySet(), refById.keySet());
    for (OracleCase c : expected.values()) {
      FlatnessResult r = refById.get(c.getCaseId());
      OracleValues e = c.getExpected();
      close(c, "Tr H", e.getHessianTrace(), r.getHessianTrace().getMean(), 1e-10);
      close(c, "κ", e.getRelativeFlatness(), r.getRelativeFlatness().getMean(), 1e-10);
      close(c, "κ_norm", e.getRelativeFlatnessNormalized(), r.getRelativeFlatnessNormalized().getMean(), 1e-10);
      close(c, "λ_max", e.getHessianMaxEigenvalue(), r.getHessianMaxEigenvalue(), 1e-10);
      close(c, "wd κ", e.getWeightDecayRelativeFlatness(), r.getWeightDecayRelativeFlatness(), 1e-10);
      FlatnessResult f = fastById.get(c.getCaseId());
      double tol = c.getConfident() ? 1e-4 : 1e-5;
      close(c, "Tr H (nd4j)", e.getHessianTrace(), f.getHessianTrace().getMean(), tol);
      close(c, "κ (nd4j)", e.getRelativeFlatness(), f.getRelativeFlatness().getMean(), tol);
      close(c, "κ_norm (nd4j)", e.getRelativeFlatnessNormalized(), f.getRelativeFlatnessNormalized().getMean(), tol);
      close(c, "Tr H_V", e.getClassifierHessianTrace(), r.getClassifierHessianTrace().getMean(), 1e-10);
      close(c, "κ_V", e.getClassifierRelativeFlatness(), r.getClassifierRelativeFlatness().getMean(), 1e-10);
      close(c, "wd Tr", e.getWeightDecayTrace(), r.getWeightDecayTrace(), 1e-10);
      if (r.getLabelledSamples() > 0) {
        close(c, "loss", e.getLoss(), r.getLoss().getMean(), 1e-10);
        close(c, "accuracy", e.getAccuracy(), f.getAccuracy().getMean(), 1e-15);
      }
      assertTrue(r.getFinal());
    }
  }

  @Test
  void reportsBadRecordsAndStillComputesTheRest(@TempDir Path dir) throws Exception {
    byte[] good = Files.readAllBytes(CASES);
    // garbage record in the middle: a valid length prefix around bytes that are no TelemetryRecord,
    // then the whole valid stream again, then a truncated record at the end
    byte[] junk = {7, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0x01};
    Path file = dir.resolve("mixed.pb");
    try (var out = Files.newOutputStream(file)) {
      out.write(junk);
      out.write(good);
      out.write(new byte[] {(byte) 0x90, 0x03, 1, 2, 3});
    }
    Run r = run("compute", file.toString());
    assertEquals(0, r.exit, r.err);
    assertTrue(r.err.contains("record 0: UNDECODABLE"), r.err);
    assertTrue(r.err.contains("is truncated"), r.err);
    assertFalse(r.err.contains("Exception"), r.err);
    assertFalse(r.err.contains("\tat "), r.err);
    assertTrue(r.out.lines().count() > 90, "a table row per case");
  }

  @Test
  void exitsNonZeroWhenNothingIsValid(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("garbage.pb");
    Files.write(file, "this is not telemetry at all, just text".getBytes());
    Run r = run("compute", file.toString(), dir.resolve("missing.pb").toString());
    assertEquals(1, r.exit);
    assertTrue(r.err.contains("missing.pb: no such file"), r.err);
    assertTrue(r.err.contains("nothing could be measured"), r.err);
    assertFalse(r.err.contains("\tat "), r.err);
  }

  @Test
  void timeEngineAddsMedianSecondsAndChangesNoResult() throws Exception {
    Run plain = run("compute", "--json", CASES.toString());
    assertEquals(0, plain.exit, plain.err);
    Run timed = run("compute", "--json", "--time-engine", "2", "--time-engine-window", "0.01",
        CASES.toString());
    assertEquals(0, timed.exit, timed.err);
    Map<String, FlatnessResult> expected = parse(plain.out);
    JsonFormat.Parser lenient = JsonFormat.parser().ignoringUnknownFields();
    int lines = 0;
    for (String line : timed.out.split("\n")) {
      if (line.isBlank()) {
        continue;
      }
      lines++;
      JsonObject o = JsonParser.parseString(line).getAsJsonObject();
      assertEquals(2, o.get("engine_runs").getAsInt(), line);
      double seconds = o.get("engine_seconds").getAsDouble();
      assertTrue(seconds > 0 && seconds < 60, line);
      double same = o.get("engine_seconds_same_snapshot").getAsDouble();
      assertTrue(same > 0 && same < 60, line);
      if (EngineTimer.processCpuNanos() >= 0) {
        assertTrue(o.get("engine_cpu_seconds").getAsDouble() >= 0, line);
        assertTrue(o.get("engine_cpu_runs").getAsInt() >= 2, line);
      }
      FlatnessResult.Builder b = FlatnessResult.newBuilder();
      lenient.merge(line, b);
      FlatnessResult r = b.build();
      assertEquals(expected.get(r.getRunId()).toBuilder().clearComputedTimeMicros().build(),
          r.toBuilder().clearComputedTimeMicros().build(), "the timed runs must not touch the reported result");
    }
    assertEquals(expected.size(), lines);

    Run table = run("compute", CASES.toString());
    Run timedTable = run("compute", "--time-engine", "1", "--time-engine-window", "0", CASES.toString());
    assertEquals(0, timedTable.exit, timedTable.err);
    assertEquals(table.out, timedTable.out);
    assertEquals(expected.size(), timedTable.err.lines().filter(l -> l.startsWith("engine: ")).count(),
        timedTable.err);
    assertTrue(timedTable.err.contains("over 1 runs"), timedTable.err);

    assertEquals(2, run("compute", "--time-engine", "-1", CASES.toString()).exit);
  }

  @Test
  void engineTimerTakesTheMedian() {
    assertEquals(2.0, EngineTimer.median(new double[] {3, 1, 2}), 0);
    assertEquals(2.5, EngineTimer.median(new double[] {4, 1, 2, 3}), 0);
  }

  @Test
  void helpTeaches() {
    Run r = run("compute", "--help");
    assertEquals(0, r.exit);
    assertTrue(r.out.contains("length-delimited"));
    assertTrue(r.out.contains("--eigen"));
    assertTrue(r.out.contains("--time-engine"));
  }

  private static Map<String, FlatnessResult> parse(String jsonLines) throws Exception {
    Map<String, FlatnessResult> byRun = new HashMap<>();
    for (String line : jsonLines.split("\n")) {
      if (line.isBlank()) {
        continue;
      }
      FlatnessResult.Builder b = FlatnessResult.newBuilder();
      JsonFormat.parser().merge(line, b);
      byRun.put(b.getRunId(), b.build());
    }
    return byRun;
  }

  /** Relative error, no absolute floor (confident fixtures have Tr H near 1e-17); exact zero stays zero. */
  private static void close(OracleCase c, String what, double expected, double actual, double tol) {
    if (expected == 0.0) {
      assertEquals(0.0, actual, 0.0, c.getCaseId() + " " + what + ": zero by construction");
      return;
    }
    double err = Math.abs(expected - actual);
    assertTrue(err <= tol * Math.abs(expected),
        () -> String.format("%s %s: expected %.17g got %.17g (relative %.3g, tolerance %.0e)", c.getCaseId(), what,
            expected, actual, err / Math.abs(expected), tol));
  }
}
