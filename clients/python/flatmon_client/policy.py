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
}


def make_policy(monitor="relative_flatness", mode="min", min_delta=0.0, patience=10, baseline=None,
                start_from_step=0, check_finite=True, divergence_threshold=None, stopping_threshold=None):
    """An EarlyStopPolicy. monitor: relative_flatness (κ, train split), relative_flatness_normalized,
    hessian_trace, eval_loss or generalization_gap; mode: min or max; patience in measurements."""
    if isinstance(monitor, str):
        key = monitor.lower()
        if key not in MONITORS:
            raise ValueError("unknown monitor %r; one of %s" % (monitor, ", ".join(sorted(MONITORS))))
        monitor = MONITORS[key]
    if isinstance(mode, str):
        mode = {"min": policy_pb2.MIN, "max": policy_pb2.MAX}[mode.lower()]
    p = policy_pb2.EarlyStopPolicy(monitor=monitor, mode=mode, min_delta=float(min_delta), patience=int(patience),
                                   start_from_step=int(start_from_step), check_finite=bool(check_finite))
    if baseline is not None:
        p.baseline = float(baseline)
    if divergence_threshold is not None:
        p.divergence_threshold = float(divergence_threshold)
    if stopping_threshold is not None:
        p.stopping_threshold = float(stopping_threshold)
    return p


def as_policy(policy):
    """Accepts None, an EarlyStopPolicy, or a dict of make_policy keywords."""
    if policy is None or isinstance(policy, policy_pb2.EarlyStopPolicy):
        return policy
    if isinstance(policy, dict):
        return make_policy(**policy)
    raise TypeError("policy must be a flatmon.v1.EarlyStopPolicy, a dict of make_policy() keywords, or None")


def simulate(policy, values):
    """Replays flatmon's StopDetector over [(step, value), ...] in order. Returns a dict with stop_step
    (None if it never stops), reason (SignalReason name or None), best_step, best_value and the list of
    (step, action, reason) decisions."""
    policy = as_policy(policy)
    is_min = policy.mode != policy_pb2.MAX
    delta = abs(policy.min_delta)
    better = (lambda a, b: a < b) if is_min else (lambda a, b: a > b)
    best, best_step, has_best, wait = float("nan"), -1, False, 0
    decisions = []

    def improvement(v):
        if not math.isfinite(v):
            return False
        if not has_best:
            return True
        return v < best - delta if is_min else v > best + delta

    for step, v in values:
        v = float(v)
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
            wait += 1
            if improvement(v):
                best, best_step, has_best = v, step, True
                if not policy.HasField("baseline") or better(v, policy.baseline):
                    wait = 0
                    decisions.append((step, "CONTINUE", "IMPROVED"))
                    continue
            if wait >= policy.patience:
                missed = policy.HasField("baseline") and not (has_best and better(best, policy.baseline))
                reason = "BASELINE_NOT_MET" if missed else "PATIENCE_EXHAUSTED"
            else:
                decisions.append((step, "WARN", "NO_IMPROVEMENT"))
                continue
        decisions.append((step, "STOP", reason))
        return dict(stop_step=step, reason=reason, best_step=best_step if has_best else None,
                    best_value=best if has_best else None, decisions=decisions)
    return dict(stop_step=None, reason=None, best_step=best_step if has_best else None,
                best_value=best if has_best else None, decisions=decisions)
