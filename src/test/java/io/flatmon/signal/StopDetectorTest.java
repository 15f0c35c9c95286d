package io.flatmon.signal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.DetectorState;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.stream.TopologySettings;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Policy semantics on scripted sequences: value i is measured at step 10·(i+1). Each row gives the
 * expected step of the first STOP (−1: none), the best step reported with it (or at the end) and the reason.
 */
class StopDetectorTest {
  static final double NAN = Double.NaN;

  static EarlyStopPolicy.Builder policy(PolicyMode mode, int patience) {
    return EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.EVAL_LOSS).setMode(mode).setPatience(patience);
  }

  static Stream<Arguments> table() {
    return Stream.of(
        row("min: stops after patience without improvement",
            policy(PolicyMode.MIN, 2), new double[] {5, 4, 3, 3.5, 3.2, 1}, 50, 30, SignalReason.PATIENCE_EXHAUSTED),
        row("max mode", policy(PolicyMode.MAX, 2), new double[] {1, 2, 3, 2.9, 2.8}, 50, 30,
            SignalReason.PATIENCE_EXHAUSTED),
        row("improvement resets the wait", policy(PolicyMode.MIN, 2), new double[] {5, 6, 4, 6, 3, 7, 8}, 70, 50,
            SignalReason.PATIENCE_EXHAUSTED),
        row("patience 0 stops at the first non-improvement", policy(PolicyMode.MIN, 0), new double[] {3, 2, 2.5},
            30, 20, SignalReason.PATIENCE_EXHAUSTED),
        row("a change of exactly min_delta is not an improvement", policy(PolicyMode.MIN, 1).setMinDelta(0.5),
            new double[] {3.0, 2.5, 2.0}, 20, 10, SignalReason.PATIENCE_EXHAUSTED),
        row("a change beyond min_delta is", policy(PolicyMode.MIN, 1).setMinDelta(0.5),
            new double[] {3.0, 2.49, 1.98}, -1, 30, SignalReason.IMPROVED),
        row("min_delta sign is ignored", policy(PolicyMode.MIN, 1).setMinDelta(-0.5),
            new double[] {3.0, 2.5}, 20, 10, SignalReason.PATIENCE_EXHAUSTED),
        row("NaN with check_finite stops at once", policy(PolicyMode.MIN, 5).setCheckFinite(true),
            new double[] {3, 2, NAN, 1}, 30, 20, SignalReason.NON_FINITE),
        row("Inf with check_finite stops at once", policy(PolicyMode.MIN, 5).setCheckFinite(true),
            new double[] {3, Double.POSITIVE_INFINITY}, 20, 10, SignalReason.NON_FINITE),
        row("NaN without check_finite counts against patience", policy(PolicyMode.MIN, 2),
            new double[] {3, NAN, NAN, 1}, 30, 10, SignalReason.PATIENCE_EXHAUSTED),
        row("divergence threshold (min)", policy(PolicyMode.MIN, 9).setDivergenceThreshold(10),
            new double[] {3, 2, 11, 1}, 30, 20, SignalReason.DIVERGED),
        row("divergence threshold (max)", policy(PolicyMode.MAX, 9).setDivergenceThreshold(0.1),
            new double[] {0.5, 0.6, 0.05}, 30, 20, SignalReason.DIVERGED),
        row("stopping threshold reached", policy(PolicyMode.MIN, 9).setStoppingThreshold(1.0),
            new double[] {3, 2, 0.9, 5}, 30, 30, SignalReason.THRESHOLD_REACHED),
        row("equal to the stopping threshold is not past it", policy(PolicyMode.MIN, 9).setStoppingThreshold(1.0),
            new double[] {3, 1.0}, -1, 20, SignalReason.IMPROVED),
        row("baseline never beaten", policy(PolicyMode.MIN, 2).setBaseline(1.0),
            new double[] {3, 2, 1.5, 1.2}, 20, 20, SignalReason.BASELINE_NOT_MET),
        row("baseline beaten in time", policy(PolicyMode.MIN, 2).setBaseline(1.0),
            new double[] {3, 0.9, 0.8, 0.85, 0.82}, 50, 30, SignalReason.PATIENCE_EXHAUSTED),
        row("start_from_step ignores warm-up", policy(PolicyMode.MIN, 1).setStartFromStep(30),
            new double[] {1, 0.5, 3, 2, 2.5}, 50, 40, SignalReason.PATIENCE_EXHAUSTED),
        row("no stop while improving", policy(PolicyMode.MIN, 1), new double[] {5, 4, 3, 2, 1}, -1, 50,
            SignalReason.IMPROVED),
        row("raw values: a dip then a rise stops", policy(PolicyMode.MIN, 1), new double[] {4, 2, 3, 3}, 30, 20,
            SignalReason.PATIENCE_EXHAUSTED),
        row("smoothing 2 compares means of two: 4, 3, 2.5, 3", policy(PolicyMode.MIN, 1).setSmoothing(2),
            new double[] {4, 2, 3, 3}, 40, 30, SignalReason.PATIENCE_EXHAUSTED),
        row("min_delta_relative: 5 % below the best is not 10 %", policy(PolicyMode.MIN, 1).setMinDeltaRelative(0.1),
            new double[] {10, 9.5, 8}, 20, 10, SignalReason.PATIENCE_EXHAUSTED),
        row("min_delta_relative: 11 % below the best is", policy(PolicyMode.MIN, 1).setMinDeltaRelative(0.1),
            new double[] {10, 8.9}, -1, 20, SignalReason.IMPROVED),
        row("the larger of min_delta and min_delta_relative applies",
            policy(PolicyMode.MIN, 1).setMinDeltaRelative(0.01).setMinDelta(2), new double[] {10, 8.5}, 20, 10,
            SignalReason.PATIENCE_EXHAUSTED),
        row("warn_only never stops on patience", policy(PolicyMode.MIN, 1).setWarnOnly(true),
            new double[] {3, 4, 5, 6, 1}, -1, 50, SignalReason.IMPROVED),
        row("warn_only still stops on a non-finite value", policy(PolicyMode.MIN, 1).setWarnOnly(true)
            .setCheckFinite(true), new double[] {3, 4, NAN}, 30, 10, SignalReason.NON_FINITE),
        row("warn_only still stops past the divergence threshold", policy(PolicyMode.MIN, 1).setWarnOnly(true)
            .setDivergenceThreshold(10), new double[] {3, 4, 11}, 30, 10, SignalReason.DIVERGED));
  }

  static Arguments row(String name, EarlyStopPolicy.Builder p, double[] values, long stopStep, long bestStep,
      SignalReason reason) {
    return Arguments.of(name, p.build(), values, stopStep, bestStep, reason);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("table")
  void policySemantics(String name, EarlyStopPolicy policy, double[] values, long stopStep, long bestStep,
      SignalReason reason) {
    List<TrainerSignal> signals = run(policy, values);
    TrainerSignal firstStop = signals.stream().filter(s -> s.getAction() == SignalAction.STOP).findFirst()
        .orElse(null);
    TrainerSignal decisive = firstStop != null ? firstStop : signals.get(signals.size() - 1);
    assertEquals(stopStep, firstStop == null ? -1 : firstStop.getStep(), name + ": stop step");
    assertEquals(bestStep, decisive.getBestStep(), name + ": best step");
    assertEquals(reason, decisive.getReason(), name + ": reason");
    // after a STOP every later measurement repeats it
    boolean stopped = false;
    for (TrainerSignal s : signals) {
      stopped |= s.getAction() == SignalAction.STOP;
      if (stopped) {
        assertEquals(SignalAction.STOP, s.getAction(), name);
      }
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("table")
  void replayIsDeterministic(String name, EarlyStopPolicy policy, double[] values, long stopStep, long bestStep,
      SignalReason reason) {
    assertEquals(run(policy, values), run(policy, values), name);
  }

  @Test
  void warnOnlySaysPatienceIsExhaustedAndKeepsEvaluating() {
    List<TrainerSignal> s = run(policy(PolicyMode.MIN, 2).setWarnOnly(true).build(), new double[] {3, 4, 5, 6, 1});
    assertEquals(List.of(SignalReason.IMPROVED, SignalReason.NO_IMPROVEMENT, SignalReason.PATIENCE_EXHAUSTED,
        SignalReason.PATIENCE_EXHAUSTED, SignalReason.IMPROVED), s.stream().map(TrainerSignal::getReason).toList());
    assertEquals(SignalAction.WARN, s.get(2).getAction());
    assertEquals("no improvement for 2 measurements (warn_only: advice, not a stop)", s.get(2).getDetail());
  }

  @Test
  void smoothedSignalsCarryTheMeanTheyCompared() {
    List<TrainerSignal> s = run(policy(PolicyMode.MIN, 5).setSmoothing(3).build(), new double[] {1, 2, 6, 10});
    assertEquals(List.of(1.0, 1.5, 3.0, 6.0), s.stream().map(TrainerSignal::getValue).toList());
  }

  static StopDetector.TrainQuantities train(double loss, double trace, double kappa, double kappaNorm) {
    return new StopDetector.TrainQuantities(loss, trace, kappa, kappaNorm);
  }

  @Test
  void guardStopsOnEachNonFiniteTrainQuantity() {
    EarlyStopPolicy p = TopologySettings.DEFAULT_POLICY;
    String[] names = {"train loss", "Tr H", "relative flatness", "normalized relative flatness"};
    for (int i = 0; i < 4; i++) {
      double[] v = {2.3, 1, 5, 7};
      v[i] = i % 2 == 0 ? NAN : Double.POSITIVE_INFINITY;
      StopDetector.Decision d = StopDetector.guard(p, DetectorState.getDefaultInstance(), "r", 40,
          train(v[0], v[1], v[2], v[3]));
      assertNotNull(d.signal(), names[i]);
      assertEquals(SignalAction.STOP, d.signal().getAction());
      assertEquals(SignalReason.NON_FINITE, d.signal().getReason());
      assertEquals(names[i] + " is " + v[i], d.signal().getDetail());
      assertTrue(d.state().getStopped());
    }
  }

  @Test
  void guardStopsWhenTheLossPassesTheFactorTimesItsFirstValue() {
    EarlyStopPolicy p = TopologySettings.DEFAULT_POLICY;
    DetectorState s = DetectorState.getDefaultInstance();
    double[] losses = {2.3, 0.4, 9.0, 23.0, 23.5};
    List<TrainerSignal> out = new ArrayList<>();
    for (int i = 0; i < losses.length; i++) {
      StopDetector.Decision d = StopDetector.guard(p, s, "r", 10L * (i + 1), train(losses[i], 1, 5, 7));
      out.add(d.signal());
      s = d.state();
    }
    // 23.0 is exactly 10 x 2.3: not past it
    assertEquals(Arrays.asList(null, null, null, null, out.get(4)), out);
    assertEquals(SignalReason.DIVERGED, out.get(4).getReason());
    assertEquals(50, out.get(4).getStep());
    assertEquals("train loss 23.5 is past 10.0 x the first measured train loss 2.3", out.get(4).getDetail());
    assertNull(StopDetector.guard(p, s, "r", 60, train(NAN, 1, 1, 1)).signal(), "a stopped run is not stopped again");
  }

  @Test
  void guardWithoutCheckFiniteOrFactorNeverStops() {
    EarlyStopPolicy p = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.EVAL_LOSS).setPatience(3).build();
    DetectorState s = DetectorState.getDefaultInstance();
    for (double loss : new double[] {2.3, NAN, 1e9}) {
      StopDetector.Decision d = StopDetector.guard(p, s, "r", 10, train(loss, NAN, NAN, NAN));
      assertNull(d.signal());
      s = d.state();
    }
  }

  @Test
  void theDefaultPolicyNeverStopsRisingThenSettlingKappa() {
    // κ of a healthy digits run (docs/early-stopping.csv shape): rises 30x from initialisation, then wanders ±20 %.
    double[] kappa = new double[40];
    java.util.Random rnd = new java.util.Random(1);
    for (int i = 0; i < kappa.length; i++) {
      kappa[i] = 2 + 200 * (1 - Math.exp(-i / 6.0)) * (1 + 0.2 * rnd.nextGaussian());
    }
    List<TrainerSignal> s = run(TopologySettings.DEFAULT_POLICY, kappa);
    assertEquals(List.of(SignalReason.HEALTHY), s.stream().map(TrainerSignal::getReason).distinct().toList());
    assertEquals(List.of(SignalAction.CONTINUE), s.stream().map(TrainerSignal::getAction).distinct().toList());
    EarlyStopPolicy old = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.RELATIVE_FLATNESS)
        .setMode(PolicyMode.MIN).setPatience(10).setCheckFinite(true).build();
    assertEquals(110, run(old, kappa).stream().filter(x -> x.getAction() == SignalAction.STOP).findFirst()
        .orElseThrow().getStep(), "the former default (kappa, lower is better, patience 10) stops it");
  }

  static Stream<Arguments> invalid() {
    EarlyStopPolicy.Builder base = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.EVAL_LOSS)
        .setMode(PolicyMode.MIN).setPatience(3);
    return Stream.of(
        Arguments.of(base.clone().setMonitorValue(42), "unknown monitor (enum value 42)"),
        Arguments.of(base.clone().setModeValue(7), "unknown mode (enum value 7)"),
        Arguments.of(base.clone().setPatience(-1), "patience must be >= 0, got -1"),
        Arguments.of(base.clone().setSmoothing(-2), "smoothing must be >= 0, got -2"),
        Arguments.of(base.clone().setMinDeltaRelative(1.5), "min_delta_relative must be in [0, 1), got 1.5"),
        Arguments.of(base.clone().setLossDivergenceFactor(0.5), "loss_divergence_factor must be > 1, got 0.5"),
        Arguments.of(base.clone().setStoppingThreshold(5).setDivergenceThreshold(3),
            "stopping_threshold 5.0 must be below divergence_threshold 3.0 in mode min"),
        Arguments.of(base.clone().setMode(PolicyMode.MAX).setStoppingThreshold(0.5).setDivergenceThreshold(0.9),
            "stopping_threshold 0.5 must be above divergence_threshold 0.9 in mode max"),
        Arguments.of(base.clone().setBaseline(4).setDivergenceThreshold(3),
            "baseline 4.0 must be below divergence_threshold 3.0 in mode min"));
  }

  @ParameterizedTest(name = "{1}")
  @MethodSource("invalid")
  void invalidPoliciesAreNamed(EarlyStopPolicy.Builder p, String message) {
    assertEquals(List.of(message), StopDetector.problems(p.build()));
  }

  @Test
  void validPoliciesHaveNoProblems() {
    assertEquals(List.of(), StopDetector.problems(TopologySettings.DEFAULT_POLICY));
    assertEquals(List.of(), StopDetector.problems(policy(PolicyMode.MIN, 0).setStoppingThreshold(1)
        .setDivergenceThreshold(3).setBaseline(2).build()));
  }

  static List<TrainerSignal> run(EarlyStopPolicy policy, double[] values) {
    DetectorState state = DetectorState.getDefaultInstance();
    List<TrainerSignal> out = new ArrayList<>();
    for (int i = 0; i < values.length; i++) {
      StopDetector.Decision d = StopDetector.observe(policy, state, "r", 10L * (i + 1), values[i]);
      out.add(d.signal());
      state = d.state();
    }
    return out;
  }
}
