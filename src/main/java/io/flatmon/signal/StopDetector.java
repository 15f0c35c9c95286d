package io.flatmon.signal;

import io.flatmon.proto.v1.DetectorState;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.TrainerSignal;
import java.util.ArrayList;
import java.util.List;

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
 *   <li>{@code smoothing} n > 1: the value compared is the mean of the last n evaluated values (κ and
 *       Tr H fluctuate by 10-30 % between measurements; docs/early-stopping.md). {@code
 *       min_delta_relative} r: an improvement must also beat the best by r·|best|.
 *   <li>{@code warn_only}: patience running out sends WARN / PATIENCE_EXHAUSTED and evaluation goes on;
 *       the unambiguous stops (NON_FINITE, DIVERGED) still STOP.
 *   <li>After a STOP every later measurement repeats it. Every signal carries the best value and its
 *       step, so a trainer can restore the best weights.
 * </ul>
 *
 * <p>{@link #guard} applies the run-wide checks to every final train result whatever the monitor:
 * a non-finite loss, Tr H, κ or κ_norm (check_finite) and a train loss past
 * {@code loss_divergence_factor} times the run's first one.
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

  /**
   * What is wrong with a policy, one sentence each; empty when it is valid. A run whose policy has
   * problems gets the server default instead, and a WARN / INVALID_POLICY signal that lists them.
   */
  public static List<String> problems(EarlyStopPolicy p) {
    List<String> out = new ArrayList<>();
    if (p.getMonitor() == MonitoredQuantity.UNRECOGNIZED) {
      out.add("unknown monitor (enum value " + p.getMonitorValue() + ")");
    }
    if (p.getMode() == PolicyMode.UNRECOGNIZED) {
      out.add("unknown mode (enum value " + p.getModeValue() + ")");
    }
    if (p.getPatience() < 0) {
      out.add("patience must be >= 0, got " + p.getPatience());
    }
    if (p.getSmoothing() < 0) {
      out.add("smoothing must be >= 0, got " + p.getSmoothing());
    }
    if (!(p.getMinDeltaRelative() >= 0 && p.getMinDeltaRelative() < 1)) {
      out.add("min_delta_relative must be in [0, 1), got " + p.getMinDeltaRelative());
    }
    if (p.hasLossDivergenceFactor() && !(p.getLossDivergenceFactor() > 1)) {
      out.add("loss_divergence_factor must be > 1, got " + p.getLossDivergenceFactor());
    }
    boolean max = p.getMode() == PolicyMode.MAX;
    String mode = max ? "max" : "min";
    if (p.hasStoppingThreshold() && p.hasDivergenceThreshold()
        && !better(p.getStoppingThreshold(), p.getDivergenceThreshold(), !max)) {
      out.add("stopping_threshold " + p.getStoppingThreshold() + " must be " + (max ? "above" : "below")
          + " divergence_threshold " + p.getDivergenceThreshold() + " in mode " + mode);
    }
    if (p.hasBaseline() && p.hasDivergenceThreshold() && !better(p.getBaseline(), p.getDivergenceThreshold(), !max)) {
      out.add("baseline " + p.getBaseline() + " must be " + (max ? "above" : "below") + " divergence_threshold "
          + p.getDivergenceThreshold() + " in mode " + mode);
    }
    return out;
  }

  /** Whether the policy watches a quantity of the eval split. */
  public static boolean needsEval(EarlyStopPolicy p) {
    return p.getMonitor() == MonitoredQuantity.EVAL_LOSS || p.getMonitor() == MonitoredQuantity.GENERALIZATION_GAP;
  }

  /** A final train result's quantities that {@link #guard} checks. */
  public record TrainQuantities(double loss, double hessianTrace, double relativeFlatness,
      double relativeFlatnessNormalized) {
  }

  /**
   * The run-wide checks on one final train result: STOP / NON_FINITE when check_finite and a quantity
   * is NaN or ±Inf, STOP / DIVERGED when the loss exceeds loss_divergence_factor times the run's first
   * train loss. The decision's signal is null when neither applies (or the run is stopped already);
   * its state records the first train loss.
   */
  public static Decision guard(EarlyStopPolicy policy, DetectorState state, String runId, long step,
      TrainQuantities q) {
    if (state.getStopped()) {
      return new Decision(null, state);
    }
    DetectorState.Builder s = state.toBuilder();
    TrainerSignal.Builder signal = TrainerSignal.newBuilder().setRunId(runId).setStep(step)
        .setMonitor(policy.getMonitor());
    if (policy.getCheckFinite()) {
      String[] names = {"train loss", "Tr H", "relative flatness", "normalized relative flatness"};
      double[] values = {q.loss(), q.hessianTrace(), q.relativeFlatness(), q.relativeFlatnessNormalized()};
      for (int i = 0; i < names.length; i++) {
        if (!Double.isFinite(values[i])) {
          signal.setValue(values[i]);
          return stop(signal, s, SignalReason.NON_FINITE, names[i] + " is " + values[i]);
        }
      }
    }
    if (!s.getHasFirstTrainLoss() && Double.isFinite(q.loss())) {
      s.setFirstTrainLoss(q.loss()).setHasFirstTrainLoss(true);
      return new Decision(null, s.build());
    }
    if (policy.hasLossDivergenceFactor() && s.getHasFirstTrainLoss()
        && q.loss() > policy.getLossDivergenceFactor() * s.getFirstTrainLoss()) {
      signal.setValue(q.loss());
      return stop(signal, s, SignalReason.DIVERGED, "train loss " + q.loss() + " is past "
          + policy.getLossDivergenceFactor() + " x the first measured train loss " + s.getFirstTrainLoss());
    }
    return new Decision(null, s.build());
  }

  /** A WARN for a measurement that the policy cannot evaluate (no eval split, invalid policy). */
  public static TrainerSignal warning(EarlyStopPolicy policy, DetectorState state, String runId, long step,
      SignalReason reason, String detail) {
    return TrainerSignal.newBuilder().setRunId(runId).setStep(step).setMonitor(policy.getMonitor())
        .setValue(Double.NaN).setAction(state.getStopped() ? SignalAction.STOP : SignalAction.WARN)
        .setReason(state.getStopped() ? state.getStopReason() : reason).setDetail(detail)
        .setBestValue(state.getHasBest() ? state.getBestValue() : Double.NaN)
        .setBestStep(state.getHasBest() ? state.getBestStep() : -1).build();
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
    if (policy.getMonitor() == MonitoredQuantity.GUARD_ONLY) {
      return decide(signal, s, SignalAction.CONTINUE, SignalReason.HEALTHY,
          "train loss " + value + "; only a non-finite value or a diverging loss stops this run");
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
      record(s, step, value, min, policy.getMinDelta(), policy.getMinDeltaRelative());
      return stop(signal, s, SignalReason.THRESHOLD_REACHED,
          value + " is past the stopping threshold " + policy.getStoppingThreshold());
    }
    if (policy.hasDivergenceThreshold() && better(policy.getDivergenceThreshold(), value, min)) {
      return stop(signal, s, SignalReason.DIVERGED,
          value + " is past the divergence threshold " + policy.getDivergenceThreshold());
    }
    if (policy.getSmoothing() > 1) {
      List<Double> recent = new ArrayList<>(s.getRecentList());
      recent.add(value);
      recent = recent.subList(Math.max(0, recent.size() - policy.getSmoothing()), recent.size());
      s.clearRecent().addAllRecent(recent);
      value = s.getRecentList().stream().mapToDouble(Double::doubleValue).average().orElse(value);
      signal.setValue(value);
    }
    s.setWait(s.getWait() + 1);
    if (isImprovement(value, s, min, policy.getMinDelta(), policy.getMinDeltaRelative())) {
      s.setBestValue(value).setBestStep(step).setHasBest(true);
      if (!policy.hasBaseline() || better(value, policy.getBaseline(), min)) {
        s.setWait(0);
        return decide(signal, s, SignalAction.CONTINUE, SignalReason.IMPROVED, "new best " + value);
      }
    }
    if (s.getWait() >= policy.getPatience() && policy.getWarnOnly()) {
      return decide(signal, s, SignalAction.WARN, SignalReason.PATIENCE_EXHAUSTED,
          "no improvement for " + s.getWait() + " measurements (warn_only: advice, not a stop)");
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

  private static boolean isImprovement(double value, DetectorState.Builder s, boolean min, double minDelta,
      double minDeltaRelative) {
    if (!Double.isFinite(value)) {
      return false;
    }
    if (!s.getHasBest()) {
      return true;
    }
    double delta = Math.max(Math.abs(minDelta), minDeltaRelative * Math.abs(s.getBestValue()));
    return min ? value < s.getBestValue() - delta : value > s.getBestValue() + delta;
  }

  private static void record(DetectorState.Builder s, long step, double value, boolean min, double minDelta,
      double minDeltaRelative) {
    if (isImprovement(value, s, min, minDelta, minDeltaRelative)) {
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
