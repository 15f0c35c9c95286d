"""Early-stop policies: building the protobuf, and replaying flatmon's detector offline.

:func:`make_policy` builds a ``flatmon.v1.EarlyStopPolicy`` from keywords (enum values as strings,
case-insensitive). :func:`simulate` applies the semantics of flatmon's StopDetector (Keras/Lightning
EarlyStopping) to a sequence of (step, value) pairs — e.g. to ask where a κ-based policy would have
stopped a run that was stopped on eval loss.
"""
import math

from . import _proto

_, policy_pb2, _, _ = _proto.load()

MONITORS = {
    "relative_flatness": policy_pb2.RELATIVE_FLATNESS, "kappa": policy_pb2.RELATIVE_FLATNESS,
    "relative_flatness_normalized": policy_pb2.RELATIVE_FLATNESS_NORMALIZED,
    "kappa_norm": policy_pb2.RELATIVE_FLATNESS_NORMALIZED,
    "hessian_trace": policy_pb2.HESSIAN_TRACE, "trace": policy_pb2.HESSIAN_TRACE,
    "eval_loss": policy_pb2.EVAL_LOSS, "generalization_gap": policy_pb2.GENERALIZATION_GAP,
    "guard_only": policy_pb2.GUARD_ONLY,
}


EVAL_MONITORS = (policy_pb2.EVAL_LOSS, policy_pb2.GENERALIZATION_GAP)


def make_policy(monitor="relative_flatness", mode="min", min_delta=0.0, patience=10, baseline=None,
                start_from_step=0, check_finite=True, divergence_threshold=None, stopping_threshold=None,
                smoothing=0, min_delta_relative=0.0, warn_only=False, loss_divergence_factor=None):
    """An EarlyStopPolicy. monitor: relative_flatness (κ, train split), relative_flatness_normalized,
    hessian_trace, eval_loss or generalization_gap; mode: min or max; patience in measurements;
    smoothing: compare the mean of the last n values; min_delta_relative: an improvement must beat the
    best by this fraction of it; warn_only: WARN instead of STOP when patience runs out;
    loss_divergence_factor: STOP when the train loss exceeds this factor times its first value.
    Raises ValueError for an invalid policy (see :func:`validate`)."""
    if isinstance(monitor, str):
        key = monitor.lower()
        if key not in MONITORS:
            raise ValueError("unknown monitor %r; one of %s" % (monitor, ", ".join(sorted(MONITORS))))
        monitor = MONITORS[key]
    if isinstance(mode, str):
        if mode.lower() not in ("min", "max"):
            raise ValueError("unknown mode %r; one of max, min" % mode)
        mode = {"min": policy_pb2.MIN, "max": policy_pb2.MAX}[mode.lower()]
    p = policy_pb2.EarlyStopPolicy(monitor=monitor, mode=mode, min_delta=float(min_delta), patience=int(patience),
                                   start_from_step=int(start_from_step), check_finite=bool(check_finite),
                                   smoothing=int(smoothing), min_delta_relative=float(min_delta_relative),
                                   warn_only=bool(warn_only))
    if baseline is not None:
        p.baseline = float(baseline)
    if divergence_threshold is not None:
        p.divergence_threshold = float(divergence_threshold)
    if stopping_threshold is not None:
        p.stopping_threshold = float(stopping_threshold)
    if loss_divergence_factor is not None:
        p.loss_divergence_factor = float(loss_divergence_factor)
    validate(p)
    return p


def problems(policy):
    """What is wrong with a policy, one sentence each, worded as flatmon's server words them
    (StopDetector.problems); empty when valid."""
    out = []
    names = policy_pb2.MonitoredQuantity.values()
    if policy.monitor not in names:
        out.append("unknown monitor (enum value %d)" % policy.monitor)
    if policy.mode not in policy_pb2.PolicyMode.values():
        out.append("unknown mode (enum value %d)" % policy.mode)
    if policy.patience < 0:
        out.append("patience must be >= 0, got %d" % policy.patience)
    if policy.smoothing < 0:
        out.append("smoothing must be >= 0, got %d" % policy.smoothing)
    if not (0 <= policy.min_delta_relative < 1):
        out.append("min_delta_relative must be in [0, 1), got %s" % _jfmt(policy.min_delta_relative))
    if policy.HasField("loss_divergence_factor") and not policy.loss_divergence_factor > 1:
        out.append("loss_divergence_factor must be > 1, got %s" % _jfmt(policy.loss_divergence_factor))
    is_max = policy.mode == policy_pb2.MAX
    mode = "max" if is_max else "min"
    side = "above" if is_max else "below"
    beyond = (lambda a, b: a > b) if is_max else (lambda a, b: a < b)
    if policy.HasField("stopping_threshold") and policy.HasField("divergence_threshold") and not beyond(
            policy.stopping_threshold, policy.divergence_threshold):
        out.append("stopping_threshold %s must be %s divergence_threshold %s in mode %s" % (
            _jfmt(policy.stopping_threshold), side, _jfmt(policy.divergence_threshold), mode))
    if policy.HasField("baseline") and policy.HasField("divergence_threshold") and not beyond(
            policy.baseline, policy.divergence_threshold):
        out.append("baseline %s must be %s divergence_threshold %s in mode %s" % (
            _jfmt(policy.baseline), side, _jfmt(policy.divergence_threshold), mode))
    return out


def _jfmt(x):
    """A double as Java's Double.toString writes the usual values (3.0, -1.5, 0.25)."""
    return repr(float(x))


def validate(policy):
    """Raises ValueError("invalid early-stop policy: ...") listing every problem of the policy."""
    found = problems(policy)
    if found:
        raise ValueError("invalid early-stop policy: " + "; ".join(found))
    return policy


def needs_eval(policy):
    """Whether the policy watches a quantity of the eval split (measure() must get an eval_batch)."""
    return policy is not None and policy.monitor in EVAL_MONITORS


def as_policy(policy):
    """Accepts None, an EarlyStopPolicy, or a dict of make_policy keywords."""
    if policy is None or isinstance(policy, policy_pb2.EarlyStopPolicy):
        return policy
    if isinstance(policy, dict):
        return make_policy(**policy)
    raise TypeError("policy must be a flatmon.v1.EarlyStopPolicy, a dict of make_policy() keywords, or None")


def simulate(policy, values):
    """Replays flatmon's StopDetector over [(step, value), ...] in order. Returns a dict with stop_step
    (None if it never stops), reason (SignalReason name or None), best_step, best_value, warn_steps (the
    steps where warn_only advised stopping) and the list of (step, action, reason) decisions. The
    run-wide guard (StopDetector.guard: non-finite train quantities, loss divergence) is not replayed."""
    policy = as_policy(policy)
    is_min = policy.mode != policy_pb2.MAX
    better = (lambda a, b: a < b) if is_min else (lambda a, b: a > b)
    best, best_step, has_best, wait = float("nan"), -1, False, 0
    recent = []
    decisions, warn_steps = [], []

    def improvement(v):
        if not math.isfinite(v):
            return False
        if not has_best:
            return True
        delta = max(abs(policy.min_delta), policy.min_delta_relative * abs(best))
        return v < best - delta if is_min else v > best + delta

    for step, v in values:
        v = float(v)
        if policy.monitor == policy_pb2.GUARD_ONLY and not (policy.check_finite and not math.isfinite(v)):
            decisions.append((step, "CONTINUE", "HEALTHY"))
            continue
        if step < policy.start_from_step:
            decisions.append((step, "CONTINUE", "WARMING_UP"))
            continue
        reason = None
        if policy.check_finite and not math.isfinite(v):
            reason = "NON_FINITE"
        elif policy.HasField("stopping_threshold") and better(v, policy.stopping_threshold):
            if improvement(v):
                best, best_step, has_best = v, step, True
            reason = "THRESHOLD_REACHED"
        elif policy.HasField("divergence_threshold") and better(policy.divergence_threshold, v):
            reason = "DIVERGED"
        else:
            if policy.smoothing > 1:
                recent = (recent + [v])[-policy.smoothing:]
                v = sum(recent) / len(recent)
            wait += 1
            if improvement(v):
                best, best_step, has_best = v, step, True
                if not policy.HasField("baseline") or better(v, policy.baseline):
                    wait = 0
                    decisions.append((step, "CONTINUE", "IMPROVED"))
                    continue
            if wait >= policy.patience and policy.warn_only:
                decisions.append((step, "WARN", "PATIENCE_EXHAUSTED"))
                warn_steps.append(step)
                continue
            if wait >= policy.patience:
                missed = policy.HasField("baseline") and not (has_best and better(best, policy.baseline))
                reason = "BASELINE_NOT_MET" if missed else "PATIENCE_EXHAUSTED"
            else:
                decisions.append((step, "WARN", "NO_IMPROVEMENT"))
                continue
        decisions.append((step, "STOP", reason))
        return dict(stop_step=step, reason=reason, best_step=best_step if has_best else None,
                    best_value=best if has_best else None, decisions=decisions, warn_steps=warn_steps)
    return dict(stop_step=None, reason=None, best_step=best_step if has_best else None,
                best_value=best if has_best else None, decisions=decisions, warn_steps=warn_steps)
