package io.flatmon.signal;

import io.flatmon.proto.v1.DetectorState;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.TrainerSignal;

/**
 * Early stopping with the semantics of Keras' and PyTorch Lightning's EarlyStopping, one value per
 * measurement. A pure function of (policy, state, step, value), so replaying the same measurements
 * gives the same signals — the state lives in a changelogged store.
 *
 * <ul>
 *   <li>Before {@code start_from_step}: CONTINUE / WARMING_UP, nothing is recorded.
 *   <li>{@code check_finite} and a NaN/Inf value: STOP / NON_FINITE. Without it a NaN is never an
 *       improvement (it counts against patience).
 *   <li>Worse than {@code divergence_threshold}: STOP / DIVERGED. Better than {@code stopping_threshold}:
 *       STOP / THRESHOLD_REACHED.
 *   <li>Improvement means beating the best by more than {@code min_delta} (strictly: a change of
 *       exactly min_delta is not one). It resets the wait only if the value also beats
 *       {@code baseline}. Otherwise the wait grows; WARN while it is below {@code patience}, STOP when
 *       it reaches it (BASELINE_NOT_MET if the baseline was never beaten, else PATIENCE_EXHAUSTED).
 *   <li>After a STOP every later measurement repeats it. Every signal carries the best value and its
 *       step, so a trainer can restore the best weights.
 * </ul>
 */
public final class StopDetector {
  private StopDetector() {
  }

  /** A policy with every unset field filled from the defaults. */
  public static EarlyStopPolicy effective(EarlyStopPolicy requested, EarlyStopPolicy defaults) {
    EarlyStopPolicy.Builder b = defaults.toBuilder();
    if (requested.getMonitor() != MonitoredQuantity.MONITOR_UNSPECIFIED) {
      b.mergeFrom(requested);
      if (requested.getMode() == PolicyMode.MODE_UNSPECIFIED) {
        b.setMode(PolicyMode.MIN);
      }
    }
    if (b.getMode() == PolicyMode.MODE_UNSPECIFIED) {
      b.setMode(PolicyMode.MIN);
    }
    return b.build();
  }

  /** The outcome of one observation: the signal to send and the detector's next state. */
  public record Decision(TrainerSignal signal, DetectorState state) {
  }

  public static Decision observe(EarlyStopPolicy policy, DetectorState state, String runId, long step, double value) {
    DetectorState.Builder s = state.toBuilder();
    TrainerSignal.Builder signal = TrainerSignal.newBuilder().setRunId(runId).setStep(step)
        .setMonitor(policy.getMonitor()).setValue(value);
    if (state.getStopped()) {
      return decide(signal, s, SignalAction.STOP, state.getStopReason(), "stopped earlier");
    }
    if (step < policy.getStartFromStep()) {
      return decide(signal, s, SignalAction.CONTINUE, SignalReason.WARMING_UP,
          "measurements before step " + policy.getStartFromStep() + " are not evaluated");
    }
    s.setEvaluated(s.getEvaluated() + 1);
    if (policy.getCheckFinite() && !Double.isFinite(value)) {
      return stop(signal, s, SignalReason.NON_FINITE, policy.getMonitor() + " is " + value);
    }
    boolean min = policy.getMode() != PolicyMode.MAX;
    if (policy.hasStoppingThreshold() && better(value, policy.getStoppingThreshold(), min)) {
      record(s, step, value, min, policy.getMinDelta());
      return stop(signal, s, SignalReason.THRESHOLD_REACHED,
          value + " is past the stopping threshold " + policy.getStoppingThreshold());
    }
    if (policy.hasDivergenceThreshold() && better(policy.getDivergenceThreshold(), value, min)) {
      return stop(signal, s, SignalReason.DIVERGED,
          value + " is past the divergence threshold " + policy.getDivergenceThreshold());
    }
    s.setWait(s.getWait() + 1);
    if (isImprovement(value, s, min, policy.getMinDelta())) {
      s.setBestValue(value).setBestStep(step).setHasBest(true);
      if (!policy.hasBaseline() || better(value, policy.getBaseline(), min)) {
        s.setWait(0);
        return decide(signal, s, SignalAction.CONTINUE, SignalReason.IMPROVED, "new best " + value);
      }
    }
    if (s.getWait() >= policy.getPatience()) {
      boolean baselineMissed = policy.hasBaseline()
          && !(s.getHasBest() && better(s.getBestValue(), policy.getBaseline(), min));
      return stop(signal, s, baselineMissed ? SignalReason.BASELINE_NOT_MET : SignalReason.PATIENCE_EXHAUSTED,
          baselineMissed ? "the baseline " + policy.getBaseline() + " was not beaten within " + policy.getPatience()
              + " measurements" : "no improvement for " + s.getWait() + " measurements");
    }
    return decide(signal, s, SignalAction.WARN, SignalReason.NO_IMPROVEMENT,
        "no improvement for " + s.getWait() + " of " + policy.getPatience() + " measurements");
  }

  private static boolean isImprovement(double value, DetectorState.Builder s, boolean min, double minDelta) {
    if (!Double.isFinite(value)) {
      return false;
    }
    if (!s.getHasBest()) {
      return true;
    }
    double delta = Math.abs(minDelta);
    return min ? value < s.getBestValue() - delta : value > s.getBestValue() + delta;
  }

  private static void record(DetectorState.Builder s, long step, double value, boolean min, double minDelta) {
    if (isImprovement(value, s, min, minDelta)) {
      s.setBestValue(value).setBestStep(step).setHasBest(true);
    }
  }

  /** Strictly better in the policy's direction. */
  private static boolean better(double a, double b, boolean min) {
    return min ? a < b : a > b;
  }

  private static Decision stop(TrainerSignal.Builder signal, DetectorState.Builder s, SignalReason reason,
      String detail) {
    s.setStopped(true).setStopReason(reason);
    return decide(signal, s, SignalAction.STOP, reason, detail);
  }

  private static Decision decide(TrainerSignal.Builder signal, DetectorState.Builder s, SignalAction action,
      SignalReason reason, String detail) {
    signal.setAction(action).setReason(reason).setDetail(detail)
        .setBestValue(s.getHasBest() ? s.getBestValue() : Double.NaN)
        .setBestStep(s.getHasBest() ? s.getBestStep() : -1);
    return new Decision(signal.build(), s.build());
  }
}
