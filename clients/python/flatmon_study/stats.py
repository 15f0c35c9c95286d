"""Rank statistics for the study, numpy only: Kendall's τ-b (with ties), percentile bootstrap CIs over
models, Jiang et al.'s granulated τ (ψ per hyperparameter, Ψ their mean) and paired bootstraps of τ
differences."""
import numpy as np


def _signs(v):
    v = np.asarray(v, dtype=float)
    return np.sign(v[..., :, None] - v[..., None, :])


def kendall_tau_b(x, y):
    """Kendall's τ-b of two equal-length vectors: (concordant − discordant) / sqrt((n0 − n1)(n0 − n2)),
    ties counted as in scipy.stats.kendalltau (τ-b). NaN when either vector is constant (or n < 2)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-d and of equal length")
    if len(x) < 2:
        return float("nan")
    sx, sy = _signs(x), _signs(y)
    num = float((sx * sy).sum())
    den = np.sqrt(float(np.abs(sx).sum()) * float(np.abs(sy).sum()))
    return num / den if den > 0 else float("nan")


def kendall_tau_b_resampled(x, y, idx):
    """τ-b of (x[i], y[i]) for each row i of the index matrix `idx` (reps × n): vectorised bootstrap.
    A model drawn twice forms a pair tied in both vectors, which τ-b leaves out of both counts."""
    x = np.asarray(x, dtype=float)[idx]
    y = np.asarray(y, dtype=float)[idx]
    out = np.empty(len(idx))
    for start in range(0, len(idx), 64):                  # chunks bound the reps × n × n temporaries
        sx, sy = _signs(x[start:start + 64]), _signs(y[start:start + 64])
        num = (sx * sy).sum(axis=(1, 2))
        den = np.sqrt(np.abs(sx).sum(axis=(1, 2)) * np.abs(sy).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + 64] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return out


def bootstrap_indices(n, reps, seed=0):
    """reps × n indices drawn with replacement (models resampled), from a fixed seed."""
    return np.random.default_rng(seed).integers(0, n, size=(reps, n))


def percentile_ci(samples, level=0.95):
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if not len(s):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def tau_with_ci(x, y, idx, level=0.95):
    """(τ-b, lo, hi) with the percentile bootstrap CI over the resamples `idx`."""
    t = kendall_tau_b(x, y)
    lo, hi = percentile_ci(kendall_tau_b_resampled(x, y, idx), level)
    return t, lo, hi


def paired_difference(x_a, x_b, y, idx, level=0.95):
    """Paired bootstrap of τ(a, y) − τ(b, y) on the same resamples: (difference, lo, hi, fraction of
    resamples with a positive difference)."""
    d = kendall_tau_b(x_a, y) - kendall_tau_b(x_b, y)
    reps = kendall_tau_b_resampled(x_a, y, idx) - kendall_tau_b_resampled(x_b, y, idx)
    reps = reps[np.isfinite(reps)]
    lo, hi = percentile_ci(reps, level)
    return d, lo, hi, float((reps > 0).mean()) if len(reps) else float("nan")


def granulated_tau(measure, target, hparams, names):
    """Jiang et al. (2020), eq. (4): for each hyperparameter h in `names`, ψ_h is the mean over the groups
    of models that agree on every other column of `hparams` (a sequence of dicts; include the seed there
    to pair models of the same seed) of τ-b(measure, target) within the group; Ψ = mean over h of ψ_h.
    Groups of fewer than two models or with an undefined τ (constant measure or target) are skipped and
    counted. Returns ({h: (ψ_h, groups used, groups skipped)}, Ψ)."""
    measure = np.asarray(measure, dtype=float)
    target = np.asarray(target, dtype=float)
    cols = sorted(hparams[0].keys())
    per = {}
    for h in names:
        groups = {}
        for i, hp in enumerate(hparams):
            key = tuple(hp[c] for c in cols if c != h)
            groups.setdefault(key, []).append(i)
        taus, skipped = [], 0
        for members in groups.values():
            if len({hparams[i][h] for i in members}) < 2:
                skipped += 1
                continue
            t = kendall_tau_b(measure[members], target[members])
            if np.isfinite(t):
                taus.append(t)
            else:
                skipped += 1
        per[h] = (float(np.mean(taus)) if taus else float("nan"), len(taus), skipped)
    vals = [v[0] for v in per.values() if np.isfinite(v[0])]
    return per, (float(np.mean(vals)) if vals else float("nan"))


def granulated_tau_jiang(measure, target, hparams, names, grid_groups):
    """Jiang et al. (2020), eq. (4) as defined there: for hyperparameter h the groups are the configurations
    of the *other* hyperparameters (the seed is not a coordinate: the seeds of a configuration are pooled
    in its group), ψ_h = (1/m_h) Σ_groups τ-b(measure, target) within the group, and m_h = grid_groups[h],
    the number of such groups in the whole grid — a group that exclusions emptied, or left with fewer than
    two values of h or an undefined τ, contributes 0 and still counts. `hparams`: dicts without the seed.
    Returns ({h: (ψ_h, groups with a τ, m_h)}, Ψ = mean over h of ψ_h)."""
    measure = np.asarray(measure, dtype=float)
    target = np.asarray(target, dtype=float)
    cols = sorted(c for c in hparams[0].keys() if c != "seed")
    per = {}
    for h in names:
        groups = {}
        for i, hp in enumerate(hparams):
            groups.setdefault(tuple(hp[c] for c in cols if c != h), []).append(i)
        total, used = 0.0, 0
        for members in groups.values():
            if len({hparams[i][h] for i in members}) < 2:
                continue
            t = kendall_tau_b(measure[members], target[members])
            if np.isfinite(t):
                total += t
                used += 1
        m = int(grid_groups[h])
        per[h] = (total / m if m else float("nan"), used, m)
    vals = [v[0] for v in per.values() if np.isfinite(v[0])]
    return per, (float(np.mean(vals)) if vals else float("nan"))
