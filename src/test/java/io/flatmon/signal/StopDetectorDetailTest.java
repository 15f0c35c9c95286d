package io.flatmon.signal;

import static io.flatmon.signal.StopDetectorTest.policy;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.DetectorState;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.TrainerSignal;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The exact content of each signal (docs/early-stopping.md): action, reason, detail, value, best value and
 * step, the detector state it leaves, and policy defaults and validation at their boundaries.
 */
class StopDetectorDetailTest {
  static final DetectorState FRESH = DetectorState.getDefaultInstance();

  static StopDetector.Decision observe(EarlyStopPolicy p, DetectorState s, long step, double v) {
    return StopDetector.observe(p, s, "run-7", step, v);
  }

  static List<TrainerSignal> run(EarlyStopPolicy policy, double[] values) {
    DetectorState state = FRESH;
    List<TrainerSignal> out = new java.util.ArrayList<>();
    for (int i = 0; i < values.length; i++) {
      StopDetector.Decision d = observe(policy, state, 10L * (i + 1), values[i]);
      out.add(d.signal());
      state = d.state();
    }
    return out;
  }

  static void assertSignal(TrainerSignal s, SignalAction action, SignalReason reason, String detail, double value,
      double best, long bestStep) {
    assertEquals(action, s.getAction(), s.toString());
    assertEquals(reason, s.getReason(), s.toString());
    assertEquals(detail, s.getDetail());
    assertEquals(value, s.getValue(), 0, "value");
    assertEquals(best, s.getBestValue(), 0, "best value");
    assertEquals(bestStep, s.getBestStep(), "best step");
    assertEquals("run-7", s.getRunId());
  }

  @Test
  void everySignalSaysWhatHappened() {
    EarlyStopPolicy p = policy(PolicyMode.MIN, 2).build();
    StopDetector.Decision d = observe(p, FRESH, 10, 3.0);
    assertSignal(d.signal(), SignalAction.CONTINUE, SignalReason.IMPROVED, "new best 3.0", 3.0, 3.0, 10);
    assertEquals(MonitoredQuantity.EVAL_LOSS, d.signal().getMonitor());
    assertEquals(10, d.signal().getStep());
    assertEquals(1, d.state().getEvaluated());
    assertEquals(0, d.state().getWait());
    d = observe(p, d.state(), 20, 3.5);
    assertSignal(d.signal(), SignalAction.WARN, SignalReason.NO_IMPROVEMENT, "no improvement for 1 of 2 measurements",
        3.5, 3.0, 10);
    assertEquals(2, d.state().getEvaluated());
    assertEquals(1, d.state().getWait());
    d = observe(p, d.state(), 30, 3.0);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.PATIENCE_EXHAUSTED, "no improvement for 2 measurements",
        3.0, 3.0, 10);
    assertTrue(d.state().getStopped());
    assertEquals(SignalReason.PATIENCE_EXHAUSTED, d.state().getStopReason());
    d = observe(p, d.state(), 40, 0.1);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.PATIENCE_EXHAUSTED, "stopped earlier", 0.1, 3.0, 10);
    assertEquals(3, d.state().getEvaluated(), "a stopped run evaluates nothing more");
  }

  @Test
  void withoutABestTheSignalSaysSo() {
    EarlyStopPolicy p = policy(PolicyMode.MIN, 1).build();
    StopDetector.Decision d = observe(p, FRESH, 10, Double.NaN);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.PATIENCE_EXHAUSTED, "no improvement for 1 measurements",
        Double.NaN, Double.NaN, -1);
    assertFalse(d.state().getHasBest());
  }

  @Test
  void warmUpAndGuardOnlyAreNotEvaluated() {
    EarlyStopPolicy warm = policy(PolicyMode.MIN, 0).setStartFromStep(30).build();
    StopDetector.Decision d = observe(warm, FRESH, 29, 1.0);
    assertSignal(d.signal(), SignalAction.CONTINUE, SignalReason.WARMING_UP,
        "measurements before step 30 are not evaluated", 1.0, Double.NaN, -1);
    assertEquals(0, d.state().getEvaluated());
    d = observe(warm, d.state(), 30, 1.0);
    assertEquals(SignalReason.IMPROVED, d.signal().getReason(), "step == start_from_step is evaluated");
    assertEquals(1, d.state().getEvaluated());

    EarlyStopPolicy guard = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.GUARD_ONLY).setPatience(0)
        .build();
    d = observe(guard, FRESH, 10, 2.5);
    assertSignal(d.signal(), SignalAction.CONTINUE, SignalReason.HEALTHY,
        "train loss 2.5; only a non-finite value or a diverging loss stops this run", 2.5, Double.NaN, -1);
    assertEquals(FRESH, d.state());
  }

  @Test
  void thresholdsNameTheValueAndTheThreshold() {
    EarlyStopPolicy p = policy(PolicyMode.MIN, 5).setStoppingThreshold(1).setDivergenceThreshold(10)
        .setCheckFinite(true).build();
    StopDetector.Decision d = observe(p, FRESH, 10, 0.5);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.THRESHOLD_REACHED,
        "0.5 is past the stopping threshold 1.0", 0.5, 0.5, 10);
    d = observe(p, FRESH, 10, 10.5);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.DIVERGED, "10.5 is past the divergence threshold 10.0",
        10.5, Double.NaN, -1);
    d = observe(p, FRESH, 10, 10.0);
    assertEquals(SignalReason.IMPROVED, d.signal().getReason(), "equal to the divergence threshold is not past it");
    d = observe(p, FRESH, 10, Double.NEGATIVE_INFINITY);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.NON_FINITE, "EVAL_LOSS is -Infinity",
        Double.NEGATIVE_INFINITY, Double.NaN, -1);
    assertEquals(1, d.state().getEvaluated());
  }

  @Test
  void reachingTheStoppingThresholdWithoutImprovingKeepsTheBest() {
    // best 0.5 at step 10; 0.9 at step 20 is past the threshold 1 but not better than 0.5
    EarlyStopPolicy p = policy(PolicyMode.MIN, 5).setStoppingThreshold(1).setMinDelta(0.1).build();
    DetectorState s = FRESH.toBuilder().setHasBest(true).setBestValue(0.5).setBestStep(10).build();
    StopDetector.Decision d = observe(p, s, 20, 0.9);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.THRESHOLD_REACHED,
        "0.9 is past the stopping threshold 1.0", 0.9, 0.5, 10);
    // 0.45 is better than 0.5 but not by more than min_delta 0.1
    d = observe(p, s, 20, 0.45);
    assertEquals(10, d.signal().getBestStep());
    d = observe(p, s, 20, 0.35);
    assertEquals(20, d.signal().getBestStep());
    assertEquals(0.35, d.signal().getBestValue(), 0);
    // max mode: above the threshold
    EarlyStopPolicy max = policy(PolicyMode.MAX, 5).setStoppingThreshold(0.9).build();
    d = observe(max, FRESH, 10, 0.95);
    assertSignal(d.signal(), SignalAction.STOP, SignalReason.THRESHOLD_REACHED,
        "0.95 is past the stopping threshold 0.9", 0.95, 0.95, 10);
    assertEquals(SignalReason.IMPROVED, observe(max, FRESH, 10, 0.9).signal().getReason());
  }

  @Test
  void baselineNotMetNamesTheBaseline() {
    EarlyStopPolicy p = policy(PolicyMode.MAX, 1).setBaseline(0.8).build();
    List<TrainerSignal> s = run(p, new double[] {0.5, 0.6});
    // 0.5 is a best but not past the baseline: the wait is not reset
    assertSignal(s.get(0), SignalAction.STOP, SignalReason.BASELINE_NOT_MET,
        "the baseline 0.8 was not beaten within 1 measurements", 0.5, 0.5, 10);
    // beaten exactly at the baseline is not beaten
    s = run(policy(PolicyMode.MAX, 2).setBaseline(0.8).build(), new double[] {0.8, 0.7});
    assertEquals(SignalReason.BASELINE_NOT_MET, s.get(1).getReason());
    // beaten once, then patience runs out: PATIENCE_EXHAUSTED
    s = run(policy(PolicyMode.MAX, 1).setBaseline(0.8).build(), new double[] {0.9, 0.85});
    assertEquals(List.of(SignalReason.IMPROVED, SignalReason.PATIENCE_EXHAUSTED),
        s.stream().map(TrainerSignal::getReason).toList());
    assertEquals("no improvement for 1 measurements", s.get(1).getDetail());
  }

  @Test
  void smoothingKeepsExactlyTheLastNValues() {
    EarlyStopPolicy p = policy(PolicyMode.MIN, 9).setSmoothing(2).build();
    DetectorState s = FRESH;
    double[] v = {4, 2, 6, 8};
    double[] means = {4, 3, 4, 7};
    for (int i = 0; i < v.length; i++) {
      StopDetector.Decision d = observe(p, s, 10L * (i + 1), v[i]);
      assertEquals(means[i], d.signal().getValue(), 0);
      assertEquals(Math.min(i + 1, 2), d.state().getRecentCount());
      s = d.state();
    }
    assertEquals(List.of(6.0, 8.0), s.getRecentList());
    // smoothing 1 is no smoothing: nothing is stored
    StopDetector.Decision d = observe(policy(PolicyMode.MIN, 9).setSmoothing(1).build(), FRESH, 10, 4);
    assertEquals(0, d.state().getRecentCount());
  }

  @Test
  void relativeMinDeltaIsAFractionOfTheBestsMagnitude() {
    // best −10: an improvement (max mode) must beat it by more than 0.1·|−10| = 1
    EarlyStopPolicy p = policy(PolicyMode.MAX, 5).setMinDeltaRelative(0.1).build();
    DetectorState s = FRESH.toBuilder().setHasBest(true).setBestValue(-10).setBestStep(10).build();
    assertEquals(SignalReason.NO_IMPROVEMENT, observe(p, s, 20, -9.0).signal().getReason());
    assertEquals(SignalReason.IMPROVED, observe(p, s, 20, -8.99).signal().getReason());
    // max mode with min_delta: exactly best + delta is not an improvement
    EarlyStopPolicy abs = policy(PolicyMode.MAX, 5).setMinDelta(0.5).build();
    DetectorState b = FRESH.toBuilder().setHasBest(true).setBestValue(2).setBestStep(10).build();
    assertEquals(SignalReason.NO_IMPROVEMENT, observe(abs, b, 20, 2.5).signal().getReason());
    assertEquals(SignalReason.IMPROVED, observe(abs, b, 20, 2.51).signal().getReason());
  }

  @Test
  void unsetFieldsComeFromTheDefaults() {
    EarlyStopPolicy defaults = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.GUARD_ONLY)
        .setCheckFinite(true).setLossDivergenceFactor(10).build();
    EarlyStopPolicy none = StopDetector.effective(EarlyStopPolicy.getDefaultInstance(), defaults);
    assertEquals(defaults.toBuilder().setMode(PolicyMode.MIN).build(), none);
    EarlyStopPolicy asked = StopDetector.effective(EarlyStopPolicy.newBuilder()
        .setMonitor(MonitoredQuantity.HESSIAN_TRACE).setPatience(4).build(), defaults);
    assertEquals(MonitoredQuantity.HESSIAN_TRACE, asked.getMonitor());
    assertEquals(PolicyMode.MIN, asked.getMode());
    assertEquals(4, asked.getPatience());
    assertTrue(asked.getCheckFinite(), "the guard of the defaults stays");
    assertEquals(10, asked.getLossDivergenceFactor(), 0);
    EarlyStopPolicy maxDefaults = defaults.toBuilder().setMode(PolicyMode.MAX).build();
    assertEquals(PolicyMode.MIN, StopDetector.effective(EarlyStopPolicy.newBuilder()
        .setMonitor(MonitoredQuantity.HESSIAN_TRACE).build(), maxDefaults).getMode(),
        "a requested policy without a mode is min, not the default's mode");
    assertEquals(PolicyMode.MAX, StopDetector.effective(EarlyStopPolicy.newBuilder()
        .setMonitor(MonitoredQuantity.EVAL_LOSS).setMode(PolicyMode.MAX).build(), defaults).getMode());
    assertEquals(PolicyMode.MAX, StopDetector.effective(EarlyStopPolicy.getDefaultInstance(), maxDefaults).getMode());
    // a policy without a monitor is not a request: its other fields are ignored
    assertEquals(0, StopDetector.effective(EarlyStopPolicy.newBuilder().setPatience(7).build(), defaults)
        .getPatience());
  }

  @Test
  void onlyEvalQuantitiesNeedTheEvalSplit() {
    for (MonitoredQuantity m : MonitoredQuantity.values()) {
      if (m == MonitoredQuantity.UNRECOGNIZED) {
        continue;
      }
      boolean eval = m == MonitoredQuantity.EVAL_LOSS || m == MonitoredQuantity.GENERALIZATION_GAP;
      assertEquals(eval, StopDetector.needsEval(EarlyStopPolicy.newBuilder().setMonitor(m).build()), m.name());
    }
  }

  @Test
  void warningsCarryTheStateButStoppedRunsStayStopped() {
    EarlyStopPolicy p = policy(PolicyMode.MIN, 3).build();
    TrainerSignal w = StopDetector.warning(p, FRESH, "run-7", 40, SignalReason.EVAL_DATA_MISSING, "no eval split");
    assertEquals(SignalAction.WARN, w.getAction());
    assertEquals(SignalReason.EVAL_DATA_MISSING, w.getReason());
    assertEquals("no eval split", w.getDetail());
    assertTrue(Double.isNaN(w.getValue()));
    assertTrue(Double.isNaN(w.getBestValue()));
    assertEquals(-1, w.getBestStep());
    assertEquals(40, w.getStep());
    assertEquals("run-7", w.getRunId());
    assertEquals(MonitoredQuantity.EVAL_LOSS, w.getMonitor());
    DetectorState stopped = FRESH.toBuilder().setStopped(true).setStopReason(SignalReason.DIVERGED).setHasBest(true)
        .setBestValue(1.5).setBestStep(20).build();
    w = StopDetector.warning(p, stopped, "run-7", 40, SignalReason.EVAL_DATA_MISSING, "no eval split");
    assertEquals(SignalAction.STOP, w.getAction());
    assertEquals(SignalReason.DIVERGED, w.getReason());
    assertEquals(1.5, w.getBestValue(), 0);
    assertEquals(20, w.getBestStep());
  }

  @Test
  void guardRecordsTheFirstFiniteLossAndComparesWithIt() {
    EarlyStopPolicy p = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.GUARD_ONLY)
        .setLossDivergenceFactor(2).build();
    StopDetector.Decision d = StopDetector.guard(p, FRESH, "run-7", 10, StopDetectorTest.train(Double.NaN, 1, 1, 1));
    assertNull(d.signal());
    assertFalse(d.state().getHasFirstTrainLoss(), "a NaN first loss is not recorded without check_finite");
    d = StopDetector.guard(p, d.state(), "run-7", 20, StopDetectorTest.train(3, 1, 1, 1));
    assertNull(d.signal());
    assertTrue(d.state().getHasFirstTrainLoss());
    assertEquals(3, d.state().getFirstTrainLoss(), 0);
    // the first loss is compared with later ones, never with itself, and is not replaced
    d = StopDetector.guard(p, d.state(), "run-7", 30, StopDetectorTest.train(1, 1, 1, 1));
    assertNull(d.signal());
    assertEquals(3, d.state().getFirstTrainLoss(), 0);
    assertNull(StopDetector.guard(p, d.state(), "run-7", 40, StopDetectorTest.train(6, 1, 1, 1)).signal(),
        "exactly 2 x the first is not past it");
    d = StopDetector.guard(p, d.state(), "run-7", 40, StopDetectorTest.train(6.5, 1, 1, 1));
    TrainerSignal s = d.signal();
    assertEquals(SignalAction.STOP, s.getAction());
    assertEquals(SignalReason.DIVERGED, s.getReason());
    assertEquals(6.5, s.getValue(), 0);
    assertEquals(40, s.getStep());
    assertEquals(MonitoredQuantity.GUARD_ONLY, s.getMonitor());
    assertEquals("run-7", s.getRunId());
    assertEquals(-1, s.getBestStep());
    assertTrue(d.state().getStopped());
    assertEquals(SignalReason.DIVERGED, d.state().getStopReason());
    // check_finite: the value of the offending quantity travels with the signal
    EarlyStopPolicy finite = p.toBuilder().setCheckFinite(true).build();
    TrainerSignal nan = StopDetector.guard(finite, FRESH, "run-7", 10,
        StopDetectorTest.train(1, Double.NEGATIVE_INFINITY, 1, 1)).signal();
    assertEquals(Double.NEGATIVE_INFINITY, nan.getValue(), 0);
    assertEquals("Tr H is -Infinity", nan.getDetail());
  }

  @Test
  void policyValidationBoundaries() {
    EarlyStopPolicy.Builder base = policy(PolicyMode.MIN, 0);
    assertEquals(List.of(), StopDetector.problems(base.clone().setMinDeltaRelative(0).setSmoothing(0).build()));
    assertEquals(List.of(), StopDetector.problems(base.clone().setMinDeltaRelative(0.999).build()));
    assertEquals(List.of("min_delta_relative must be in [0, 1), got 1.0"),
        StopDetector.problems(base.clone().setMinDeltaRelative(1).build()));
    assertEquals(List.of("min_delta_relative must be in [0, 1), got -0.1"),
        StopDetector.problems(base.clone().setMinDeltaRelative(-0.1).build()));
    assertEquals(List.of("min_delta_relative must be in [0, 1), got NaN"),
        StopDetector.problems(base.clone().setMinDeltaRelative(Double.NaN).build()));
    assertEquals(List.of("loss_divergence_factor must be > 1, got 1.0"),
        StopDetector.problems(base.clone().setLossDivergenceFactor(1).build()));
    assertEquals(List.of(), StopDetector.problems(base.clone().setLossDivergenceFactor(1.01).build()));
    assertEquals(List.of("stopping_threshold 3.0 must be below divergence_threshold 3.0 in mode min"),
        StopDetector.problems(base.clone().setStoppingThreshold(3).setDivergenceThreshold(3).build()));
    assertEquals(List.of("baseline 3.0 must be below divergence_threshold 3.0 in mode min"),
        StopDetector.problems(base.clone().setBaseline(3).setDivergenceThreshold(3).build()));
    assertEquals(List.of("baseline 0.5 must be above divergence_threshold 0.9 in mode max"),
        StopDetector.problems(base.clone().setMode(PolicyMode.MAX).setBaseline(0.5).setDivergenceThreshold(0.9)
            .build()));
    assertEquals(List.of(), StopDetector.problems(base.clone().setMode(PolicyMode.MAX).setBaseline(0.95)
        .setStoppingThreshold(0.99).setDivergenceThreshold(0.9).build()));
    // thresholds alone are not compared with anything
    assertEquals(List.of(), StopDetector.problems(base.clone().setStoppingThreshold(5).setBaseline(9).build()));
    // several problems are all listed, in order
    assertEquals(List.of("patience must be >= 0, got -2", "smoothing must be >= 0, got -1"),
        StopDetector.problems(base.clone().setPatience(-2).setSmoothing(-1).build()));
  }
}
