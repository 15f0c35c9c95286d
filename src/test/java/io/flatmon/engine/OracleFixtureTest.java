package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.OracleCase;
import io.flatmon.proto.v1.OracleValues;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordDecoder;
import io.flatmon.schema.TelemetryReader;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Exactness against an outside oracle: the fixtures of scripts/oracle/generate.py (PyTorch autograd
 * in float64, or a 50-digit mpmath closed form for confident samples). The float64 reference must
 * agree to 1e-10, the float32 engine with the fixtures and with the reference to 1e-5 (1e-4 on
 * confident cases, docs/math.md §5: the error bound grows with the logit magnitude).
 *
 * <p>Every comparison is relative with no absolute floor: the most confident fixtures have Tr H of
 * order 1e-17, and any floor above that would let 0 pass for them. A value that is zero by
 * construction (no weight decay) must come out exactly zero.
 */
class OracleFixtureTest {
  static final double REFERENCE_TOLERANCE = 1e-10;
  static final double ENGINE_TOLERANCE = 1e-5;
  static final double ENGINE_TOLERANCE_CONFIDENT = 1e-4;

  /** One fixture case decoded into engine types. */
  record Case(OracleCase oracle, HeadSnapshot head, ActivationBatch batch) {
    @Override
    public String toString() {
      return oracle.getCaseId() + " (" + oracle.getDescription() + ")";
    }
  }

  static List<Case> cases;

  @BeforeAll
  static void load() throws Exception {
    cases = loadCases();
  }

  static List<Case> loadCases() throws Exception {
    RecordDecoder decoder = new RecordDecoder();
    Map<String, HeadSnapshot> heads = new HashMap<>();
    Map<String, ActivationBatch> batches = new HashMap<>();
    try (InputStream in = resource("oracle/cases.pb")) {
      TelemetryReader reader = new TelemetryReader(in, 64 << 20);
      TelemetryReader.Item item;
      while ((item = reader.next()) != null) {
        assertTrue(item.isValid(), () -> "fixture record unreadable");
        TelemetryRecord r = item.record();
        if (r.hasLayerSnapshot()) {
          heads.put(r.getLayerSnapshot().getRunId(), decoder.snapshot(r.getLayerSnapshot()));
        } else if (r.hasActivationBatch()) {
          String run = r.getActivationBatch().getRunId();
          batches.put(run, decoder.batch(r.getActivationBatch(), heads.get(run)));
        }
      }
    }
    List<Case> out = new ArrayList<>();
    try (InputStream in = resource("oracle/expected.pb")) {
      OracleCase c;
      while ((c = OracleCase.parseDelimitedFrom(in)) != null) {
        out.add(new Case(c, heads.get(c.getCaseId()), batches.get(c.getCaseId())));
      }
    }
    return out;
  }

  static Stream<Case> allCases() throws Exception {
    if (cases == null) {
      cases = loadCases();
    }
    return cases.stream();
  }

  private static InputStream resource(String name) throws IOException {
    InputStream in = OracleFixtureTest.class.getClassLoader().getResourceAsStream(name);
    if (in == null) {
      throw new IOException("missing test resource " + name + " (run scripts/oracle/generate.py)");
    }
    return in;
  }

  @Test
  void fixturesCoverWhatTheIssueAsks() {
    assertTrue(cases.size() >= 60, "at least 60 oracle cases, got " + cases.size());
    long confident = cases.stream().filter(c -> c.oracle.getConfident()).count();
    assertTrue(confident >= 10, "confident cases: " + confident);
    for (Activation.Kind kind : Activation.Kind.values()) {
      assertTrue(cases.stream().anyMatch(c -> c.head.activation().kind() == kind), "no case with " + kind);
    }
    assertTrue(cases.stream().anyMatch(c -> c.head.classes() == 2));
    assertTrue(cases.stream().anyMatch(c -> c.head.classes() == 100));
    assertTrue(cases.stream().anyMatch(c -> c.batch.hasPreActivation() && c.head.scale() != null));
    assertTrue(cases.stream().anyMatch(c -> c.head.geometry().outputHeight(c.batch.height())
        * c.head.geometry().outputWidth(c.batch.width()) == 1), "a P = 1 case");
    assertTrue(cases.stream().anyMatch(c -> c.oracle.getMaxLogitGap() >= 35), "logit gaps up to 40");
  }

  /** The float32 engine against the fixtures directly, not only through the reference. */
  @ParameterizedTest(name = "{0}")
  @MethodSource("allCases")
  void engineMatchesOracle(Case c) {
    OracleValues expected = c.oracle.getExpected();
    StepAggregate fast = aggregate(new CurvatureEngine(), c);
    double tol = engineTolerance(c);
    String id = c.oracle.getCaseId();
    assertRelative(id + " Tr H", expected.getHessianTrace(), fast.hessianTrace().mean(), tol);
    assertRelative(id + " κ", expected.getRelativeFlatness(), fast.relativeFlatness().mean(), tol);
    assertRelative(id + " κ_norm", expected.getRelativeFlatnessNormalized(),
        fast.relativeFlatnessNormalized().mean(), tol);
    assertRelative(id + " Tr H_V", expected.getClassifierHessianTrace(), fast.classifierHessianTrace().mean(), tol);
    assertRelative(id + " κ_V", expected.getClassifierRelativeFlatness(),
        fast.classifierRelativeFlatness().mean(), tol);
    if (c.batch.hasLabels()) {
      assertRelative(id + " loss", expected.getLoss(), fast.loss().mean(), tol);
      assertRelative(id + " accuracy", expected.getAccuracy(), fast.accuracy().mean(), 1e-15);
    }
  }

  static double engineTolerance(Case c) {
    return c.oracle.getConfident() ? ENGINE_TOLERANCE_CONFIDENT : ENGINE_TOLERANCE;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("allCases")
  void engineMatchesReference(Case c) {
    StepAggregate ref = aggregate(new ReferenceCurvature(), c);
    StepAggregate fast = aggregate(new CurvatureEngine(), c);
    double tol = engineTolerance(c);
    String id = c.oracle.getCaseId();
    assertRelative(id + " Tr H", ref.hessianTrace().mean(), fast.hessianTrace().mean(), tol);
    assertRelative(id + " κ", ref.relativeFlatness().mean(), fast.relativeFlatness().mean(), tol);
    assertRelative(id + " κ_norm", ref.relativeFlatnessNormalized().mean(),
        fast.relativeFlatnessNormalized().mean(), tol);
    assertRelative(id + " Tr H_V", ref.classifierHessianTrace().mean(), fast.classifierHessianTrace().mean(), tol);
    assertRelative(id + " κ_V", ref.classifierRelativeFlatness().mean(), fast.classifierRelativeFlatness().mean(),
        tol);
    if (c.batch.hasLabels()) {
      assertRelative(id + " loss", ref.loss().mean(), fast.loss().mean(), tol);
    }
  }

  /**
   * Prints the worst relative errors (no floor) over all cases and quantities — Tr H, κ, κ_norm,
   * Tr H_V, κ_V and loss — of the reference and of the float32 engine against the oracle, and of the
   * engine against the reference; and the case where float32 autograd loses most against the 50-digit
   * value, next to the float32 engine on the same inputs (the engine must stay within 1e-4).
   */
  @Test
  void reportWorstErrors() {
    Worst refVsOracle = new Worst();
    Worst[] engineVsOracle = {new Worst(), new Worst()};
    Worst[] engineVsRef = {new Worst(), new Worst()};
    Case demo = null;
    double demoError = 0;
    for (Case c : cases) {
      StepAggregate ref = aggregate(new ReferenceCurvature(), c);
      StepAggregate fast = aggregate(new CurvatureEngine(), c);
      OracleValues e = c.oracle.getExpected();
      int kind = c.oracle.getConfident() ? 1 : 0;
      String[] names = {"Tr H", "κ", "κ_norm", "Tr H_V", "κ_V", "loss"};
      double[][] triples = {
          {e.getHessianTrace(), ref.hessianTrace().mean(), fast.hessianTrace().mean()},
          {e.getRelativeFlatness(), ref.relativeFlatness().mean(), fast.relativeFlatness().mean()},
          {e.getRelativeFlatnessNormalized(), ref.relativeFlatnessNormalized().mean(),
              fast.relativeFlatnessNormalized().mean()},
          {e.getClassifierHessianTrace(), ref.classifierHessianTrace().mean(), fast.classifierHessianTrace().mean()},
          {e.getClassifierRelativeFlatness(), ref.classifierRelativeFlatness().mean(),
              fast.classifierRelativeFlatness().mean()},
          {e.getLoss(), ref.loss().mean(), fast.loss().mean()}};
      for (int q = 0; q < triples.length; q++) {
        double[] v = triples[q];
        if (Double.isNaN(v[0])) {
          continue;
        }
        String where = c.oracle.getCaseId() + " " + names[q];
        refVsOracle.see(relative(v[0], v[1]), where);
        engineVsOracle[kind].see(relative(v[0], v[2]), where);
        engineVsRef[kind].see(relative(v[1], v[2]), where);
      }
      if (c.oracle.getConfident()) {
        double f32 = relative(e.getHessianTrace(), c.oracle.getAutogradFloat32().getHessianTrace());
        if (f32 > demoError) {
          demoError = f32;
          demo = c;
        }
      }
    }
    System.out.printf("oracle: %d cases; worst relative error over Tr H, κ, κ_norm, Tr H_V, κ_V, loss:%n"
        + "  reference vs oracle %s%n  float32 engine vs oracle: ordinary %s, confident %s%n"
        + "  float32 engine vs reference: ordinary %s, confident %s%n", cases.size(), refVsOracle,
        engineVsOracle[0], engineVsOracle[1], engineVsRef[0], engineVsRef[1]);
    StepAggregate fast = aggregate(new CurvatureEngine(), demo);
    double exact = demo.oracle.getExpected().getHessianTrace();
    double autograd32 = demo.oracle.getAutogradFloat32().getHessianTrace();
    System.out.printf("float32 demo %s (max logit gap %.1f): Tr H exact %.10e | float32 autograd %.10e (rel %.2e)"
        + " | float32 engine %.10e (rel %.2e)%n", demo.oracle.getCaseId(), demo.oracle.getMaxLogitGap(), exact,
        autograd32, demoError, fast.hessianTrace().mean(), relative(exact, fast.hessianTrace().mean()));
    assertTrue(relative(exact, fast.hessianTrace().mean()) < 1e-4);
  }

  /** The largest relative error seen, and where. */
  private static final class Worst {
    double error;
    String where = "";

    void see(double e, String at) {
      if (e > error) {
        error = e;
        where = at;
      }
    }

    @Override
    public String toString() {
      return String.format("%.2e (%s)", error, where);
    }
  }

  /** |actual − expected| / |expected|; 0 when both are exactly 0, infinite when only expected is. */
  static double relative(double expected, double actual) {
    double err = Math.abs(expected - actual);
    return err == 0.0 ? 0.0 : err / Math.abs(expected);
  }

  static StepAggregate aggregate(CurvatureComputer computer, Case c) {
    StepAggregate agg = new StepAggregate();
    agg.add(computer.compute(c.head, c.batch, agg.normalizerFor(c.head, c.batch)));
    return agg;
  }

  /**
   * Relative error within tolerance, with no absolute floor. An expected value of exactly 0 (zero by
   * construction, e.g. no weight decay) must be matched exactly; NaN (no labelled sample) by NaN.
   */
  static void assertRelative(String what, double expected, double actual, double tolerance) {
    if (Double.isNaN(expected)) {
      assertTrue(Double.isNaN(actual), () -> what + ": expected NaN, got " + actual);
      return;
    }
    if (expected == 0.0) {
      assertEquals(0.0, actual, 0.0, what + ": zero by construction");
      return;
    }
    double err = Math.abs(expected - actual);
    assertTrue(err <= tolerance * Math.abs(expected),
        () -> String.format("%s: expected %.17g, got %.17g (relative error %.3g, tolerance %.0e)",
            what, expected, actual, err / Math.abs(expected), tolerance));
  }
}
