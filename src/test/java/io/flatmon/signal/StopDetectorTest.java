package io.flatmon.signal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.flatmon.proto.v1.DetectorState;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.TrainerSignal;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
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
            SignalReason.IMPROVED));
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
