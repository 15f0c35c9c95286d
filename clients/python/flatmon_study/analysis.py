"""The study's analysis: Kendall τ-b of every measure with the generalisation gap and the test error
(bootstrap CIs over models), Jiang et al.'s granulated τ, paired bootstraps of τ(κ) − τ(baseline), the
per-model CSV, the Markdown table and the plot."""
import csv
import json
import math
import os

import numpy as np

from . import stats
from .grid import ALL_HPARAMS, HPARAMS

# (column, label, what it is)
MEASURES = [
    ("kappa", "κ", "flatmon relative flatness of the last conv (data term)"),
    ("kappa_norm", "κ_norm", "flatmon κ with input channels at unit RMS"),
    ("trace", "Tr H", "flatmon Hessian trace w.r.t. the last conv kernel"),
    ("lambda_max", "λ_max", "largest eigenvalue, `flatmon compute --eigen`"),
    ("kappa_v", "κ_V", "flatmon classifier-layer κ (Petzka's original)"),
    ("w_norm2", "‖W‖²", "squared Frobenius norm of the last conv kernel"),
    ("wv_norm2", "‖W‖²·‖V‖²", "product with the classifier's squared norm"),
    ("hutchinson", "Hutchinson Tr H", "Tr H by Hutchinson at flatmon's median engine time"),
    ("train_loss", "train CE", "final training cross-entropy (all ≤ 0.01)"),
]
BASELINES = ["kappa_v", "w_norm2", "wv_norm2", "trace", "lambda_max", "hutchinson", "train_loss"]
TARGETS = [("gap", "generalisation gap (test CE − train CE)"), ("test_error", "test error")]

CSV_COLUMNS = (["key"] + list(HPARAMS) + ["augment", "schedule", "seed", "reached", "epochs", "train_seconds", "train_loss", "train_error",
                                          "train_clean_error", "test_loss", "test_error", "gap", "flipped"]
               + ["kappa", "kappa_se", "kappa_norm", "trace", "lambda_max", "kappa_v", "trace_v", "w_norm2",
                  "v_norm2", "wv_norm2", "hutchinson", "hutchinson_probes", "engine_seconds",
                  "flatmon_train_loss", "flatmon_test_loss", "offline_kappa", "wd_kappa"])


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            out = []
            for c in CSV_COLUMNS:
                v = r.get(c, "")
                if isinstance(v, float):
                    v = "" if math.isnan(v) else "%.7g" % v
                elif isinstance(v, bool):
                    v = int(v)
                out.append(v)
            w.writerow(out)


def read_csv(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if k in ("key", "schedule"):
                    row[k] = v
                elif v == "":
                    row[k] = float("nan")
                else:
                    x = float(v)
                    row[k] = int(x) if k in ("width", "depth", "batch_size", "seed", "epochs", "reached",
                                             "flipped", "hutchinson_probes", "augment") else x
            row["reached"] = bool(row["reached"])
            if not np.isfinite(row.get("augment", float("nan"))):
                row["augment"] = 0                # files written before augmentation was a hyperparameter
            rows.append(row)
    return rows


def counts(rows, varied):
    """Trained / reached / excluded, overall, per value of each varied hyperparameter and per config."""
    def c(sel):
        n = len(sel)
        k = sum(1 for r in sel if r["reached"])
        return dict(trained=n, reached=k, excluded=n - k)
    out = dict(all=c(rows), by_hparam={}, excluded_configs={})
    for h in varied:
        out["by_hparam"][h] = {str(v): c([r for r in rows if r[h] == v]) for v in sorted({r[h] for r in rows})}
    for r in rows:
        if not r["reached"]:
            cfg = r["key"].rsplit("-s", 1)[0]
            out["excluded_configs"].setdefault(cfg, []).append(r["seed"])
    return out


def analyse(rows, varied, reps=2000, seed=0, log=print):
    """Everything the report needs, as a JSON-able dict."""
    ok = [r for r in rows if r["reached"]]
    measures = [m for m in MEASURES if all(np.isfinite(r.get(m[0], float("nan"))) for r in ok)]
    missing = [m[0] for m in MEASURES if m not in measures]
    n = len(ok)
    res = dict(n_models=n, reps=reps, counts=counts(rows, varied), measures_missing=missing, tau={}, granulated={},
               paired={})
    if n < 3:
        log("analysis: only %d models reached the criterion; nothing to rank" % n)
        return res
    idx = stats.bootstrap_indices(n, reps, seed)
    hp = [{h: r.get(h, 0) for h in list(ALL_HPARAMS) + ["seed"]} for r in ok]
    hp_pooled = [{h: v for h, v in d.items() if h != "seed"} for d in hp]
    # m_h of Jiang's Ψ: the configurations of the other hyperparameters in the grid (all trained models)
    grid_groups = {h: len({tuple(r.get(c, 0) for c in ALL_HPARAMS if c != h) for r in rows}) for h in varied}
    res["granulated_jiang"] = {}
    for tcol, _ in TARGETS:
        y = np.array([r[tcol] for r in ok])
        boot = {}
        res["tau"][tcol], res["granulated"][tcol], res["paired"][tcol] = {}, {}, {}
        for col, label, _ in measures:
            x = np.array([r[col] for r in ok])
            t = stats.kendall_tau_b(x, y)
            boot[col] = stats.kendall_tau_b_resampled(x, y, idx)
            lo, hi = stats.percentile_ci(boot[col])
            res["tau"][tcol][col] = dict(tau=t, lo=lo, hi=hi)
            per, psi = stats.granulated_tau(x, y, hp, varied)
            res["granulated"][tcol][col] = dict(psi=psi, per={h: dict(psi=v[0], groups=v[1], skipped=v[2])
                                                               for h, v in per.items()})
            per, psi = stats.granulated_tau_jiang(x, y, hp_pooled, varied, grid_groups)
            res["granulated_jiang"].setdefault(tcol, {})[col] = dict(
                psi=psi, per={h: dict(psi=v[0], groups=v[1], m=v[2]) for h, v in per.items()})
        for b in BASELINES:
            if b in boot and "kappa" in boot:
                d = boot["kappa"] - boot[b]
                d = d[np.isfinite(d)]
                lo, hi = stats.percentile_ci(d)
                lo2, hi2 = stats.percentile_ci(d, 0.975)      # Bonferroni for two primary tests
                res["paired"][tcol][b] = dict(diff=res["tau"][tcol]["kappa"]["tau"] - res["tau"][tcol][b]["tau"],
                                              lo=lo, hi=hi, lo975=lo2, hi975=hi2, frac_positive=float((d > 0).mean()))
        log("analysis: %s done" % tcol)
    # Within one label-noise level: does the measure rank models that fit equally noisy labels?
    res["tau_by_noise"] = {}
    for nz in sorted({r["label_noise"] for r in ok}):
        sub = [r for r in ok if r["label_noise"] == nz]
        if len(sub) < 3:
            continue
        sidx = stats.bootstrap_indices(len(sub), reps, seed + 1)
        res["tau_by_noise"][str(nz)] = dict(n=len(sub), tau={
            tcol: {col: dict(zip(("tau", "lo", "hi"), stats.tau_with_ci(
                [r[col] for r in sub], [r[tcol] for r in sub], sidx))) for col, _, _ in measures}
            for tcol, _ in TARGETS})
    return res


def _f(x, p=2):
    return "–" if x is None or not np.isfinite(x) else ("%+.*f" % (p, x))


def markdown(res, varied, meta):
    L = []
    lab = {m[0]: m[1] for m in MEASURES}
    c = res["counts"]
    L.append("Models: %d trained, %d reached train CE ≤ 0.01, %d excluded (never reached it within %s epochs)."
             % (c["all"]["trained"], c["all"]["reached"], c["all"]["excluded"], meta.get("max_epochs", "?")))
    L.append("")
    L.append("| hyperparameter | value | trained | reached | excluded |")
    L.append("|---|---|---|---|---|")
    for h, vals in c["by_hparam"].items():
        for v, cc in vals.items():
            L.append("| %s | %s | %d | %d | %d |" % (h, v, cc["trained"], cc["reached"], cc["excluded"]))
    if c["excluded_configs"]:
        L.append("")
        L.append("Excluded (configuration: seeds): " + "; ".join("%s: %s" % (k, ",".join(map(str, v)))
                                                               for k, v in sorted(c["excluded_configs"].items())))
    if meta.get("partial"):
        L.append("")
        L.append("**PARTIAL RUN: %d of the %d models of the grid were trained when this analysis was made; every "
                 "figure below covers only those, and the pre-registered hypotheses are not decided.**"
                 % (meta["trained"], meta["planned"]))
    if not res["tau"]:
        return "\n".join(L) + "\n"
    if meta.get("protocol") and "test_error" in res["paired"]:
        L.append("")
        L.append("Primary tests (%s): paired bootstrap of τ(κ, test error) − τ(baseline, test error), %d resamples; "
                 "decision by the Bonferroni 97.5 %% interval." % (meta["protocol"], res["reps"]))
        L.append("")
        L.append("| hypothesis | Δτ | 95 % CI | 97.5 % CI | P(Δ > 0) | decision |")
        L.append("|---|---|---|---|---|---|")
        for hyp, b in (("H1: κ ahead of ‖W‖²", "w_norm2"), ("H2: κ ahead of Tr H", "trace")):
            e = res["paired"]["test_error"].get(b)
            if not e:
                continue
            if meta.get("partial"):
                dec = "not decided (partial run)"
            elif e["lo975"] > 0:
                dec = "supported"
            elif e["hi975"] < 0:
                dec = "contradicted"
            else:
                dec = "inconclusive"
            L.append("| %s | %s | [%s, %s] | [%s, %s] | %.3f | %s |" % (
                hyp, _f(e["diff"]), _f(e["lo"]), _f(e["hi"]), _f(e["lo975"]), _f(e["hi975"]), e["frac_positive"],
                dec))
    L.append("")
    L.append("Kendall τ-b over the %d models that reached the criterion, with 95 %% bootstrap CIs (%d resamples "
             "of models), and Jiang et al.'s granulated τ Ψ (mean over the varied hyperparameters of ψ_h):"
             % (res["n_models"], res["reps"]))
    L.append("")
    L.append("| measure | τ with gap | 95 % CI | Ψ (gap) | τ with test error | 95 % CI | Ψ (test error) |")
    L.append("|---|---|---|---|---|---|---|")
    for col in res["tau"]["gap"]:
        g, e = res["tau"]["gap"][col], res["tau"]["test_error"][col]
        L.append("| %s | %s | [%s, %s] | %s | %s | [%s, %s] | %s |" % (
            lab[col], _f(g["tau"]), _f(g["lo"]), _f(g["hi"]), _f(res["granulated"]["gap"][col]["psi"]),
            _f(e["tau"]), _f(e["lo"]), _f(e["hi"]), _f(res["granulated"]["test_error"][col]["psi"])))
    for tcol, tname in TARGETS:
        L.append("")
        L.append("Granulated τ with the %s, ψ per hyperparameter (groups: models equal in every other "
                 "hyperparameter and the seed):" % tname)
        L.append("")
        L.append("| measure | " + " | ".join(varied) + " | Ψ |")
        L.append("|---|" + "---|" * (len(varied) + 1))
        for col, g in res["granulated"][tcol].items():
            L.append("| %s | %s | %s |" % (lab[col], " | ".join(_f(g["per"][h]["psi"]) for h in varied),
                                          _f(g["psi"])))
        groups = next(iter(res["granulated"][tcol].values()))["per"]
        L.append("")
        L.append("Groups per hyperparameter (used/skipped): " + ", ".join(
            "%s %d/%d" % (h, groups[h]["groups"], groups[h]["skipped"]) for h in varied))
    if res.get("tau_by_noise"):
        L.append("")
        L.append("Kendall τ-b within one label-noise level (95 % bootstrap CIs):")
        L.append("")
        levels = list(res["tau_by_noise"])
        L.append("| measure | " + " | ".join("gap, noise %s (n=%d) | test error, noise %s" % (
            v, res["tau_by_noise"][v]["n"], v) for v in levels) + " |")
        L.append("|---|" + "---|" * (2 * len(levels)))
        for col in res["tau"]["gap"]:
            cells = []
            for v in levels:
                for tcol in ("gap", "test_error"):
                    t = res["tau_by_noise"][v]["tau"][tcol][col]
                    cells.append("%s [%s, %s]" % (_f(t["tau"]), _f(t["lo"]), _f(t["hi"])))
            L.append("| %s | %s |" % (lab[col], " | ".join(cells)))
    if res.get("granulated_jiang"):
        for tcol, tname in TARGETS:
            L.append("")
            L.append("Granulated τ with the %s by Jiang et al.'s definition: groups over the other "
                     "hyperparameters with the seeds pooled, ψ_h = Σ τ / m_h where m_h counts every group of the "
                     "grid (an emptied group contributes 0):" % tname)
            L.append("")
            L.append("| measure | " + " | ".join(varied) + " | Ψ |")
            L.append("|---|" + "---|" * (len(varied) + 1))
            for col, g in res["granulated_jiang"][tcol].items():
                L.append("| %s | %s | %s |" % (lab[col], " | ".join(_f(g["per"][h]["psi"]) for h in varied),
                                              _f(g["psi"])))
            groups = next(iter(res["granulated_jiang"][tcol].values()))["per"]
            L.append("")
            L.append("Groups with a τ / m_h: " + ", ".join(
                "%s %d/%d" % (h, groups[h]["groups"], groups[h]["m"]) for h in varied))
    L.append("")
    L.append("Paired bootstrap of τ(κ) − τ(baseline) (same resamples), 95 % CI and the fraction of resamples "
             "where κ's τ is larger:")
    L.append("")
    L.append("| baseline | Δτ (gap) | 95 % CI | P(Δ > 0) | Δτ (test error) | 95 % CI | P(Δ > 0) |")
    L.append("|---|---|---|---|---|---|---|")
    for b in res["paired"]["gap"]:
        g, e = res["paired"]["gap"][b], res["paired"]["test_error"][b]
        L.append("| %s | %s | [%s, %s] | %.3f | %s | [%s, %s] | %.3f |" % (
            lab[b], _f(g["diff"]), _f(g["lo"]), _f(g["hi"]), g["frac_positive"], _f(e["diff"]), _f(e["lo"]),
            _f(e["hi"]), e["frac_positive"]))
    return "\n".join(L) + "\n"


def plot(rows, res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r["reached"]]
    lab = {m[0]: m[1] for m in MEASURES}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw=dict(width_ratios=[1.1, 1.3, 1.0]))
    ax = axes[0]
    noises = sorted({r["label_noise"] for r in ok})
    colours = ["tab:blue", "tab:red", "tab:green", "tab:orange"]
    for i, nz in enumerate(noises):
        for wd, marker in ((0.0, "o"), (None, "^")):
            sel = [r for r in ok if r["label_noise"] == nz and ((r["weight_decay"] == 0) == (wd == 0.0))]
            if sel:
                ax.scatter([r["kappa"] for r in sel], [r["gap"] for r in sel], s=18, c=colours[i % 4], marker=marker,
                           alpha=0.75, label="noise %g, %s" % (nz, "wd 0" if wd == 0.0 else "wd > 0"))
    ax.set_xscale("log")
    ax.set_xlabel("κ (flatmon, train set)")
    ax.set_ylabel("generalisation gap: test CE − train CE")
    t = res["tau"].get("gap", {}).get("kappa")
    ax.set_title("κ vs gap (%d models%s)" % (len(ok), ", τ = %.2f" % t["tau"] if t else ""))
    ax.legend(fontsize=8)
    for ax, key, title in ((axes[1], "tau", "Kendall τ-b (95 % bootstrap CI)"),
                           (axes[2], "granulated", "granulated τ Ψ")):
        if not res.get(key):
            continue
        cols = list(res[key]["gap"].keys())
        ypos = np.arange(len(cols))
        for j, (tcol, tname) in enumerate((("gap", "with gap"), ("test_error", "with test error"))):
            if key == "tau":
                v = np.array([res[key][tcol][c]["tau"] for c in cols])
                lo = np.array([res[key][tcol][c]["lo"] for c in cols])
                hi = np.array([res[key][tcol][c]["hi"] for c in cols])
                ax.barh(ypos + (j - 0.5) * 0.38, v, height=0.38, xerr=[v - lo, hi - v], capsize=2, label=tname,
                        color=["tab:purple", "tab:gray"][j])
            else:
                v = np.array([res[key][tcol][c]["psi"] for c in cols])
                ax.barh(ypos + (j - 0.5) * 0.38, v, height=0.38, label=tname, color=["tab:purple", "tab:gray"][j])
        ax.set_yticks(ypos)
        ax.set_yticklabels([lab[c] for c in cols])
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_json(obj, path):
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (float, np.floating)):
            return None if not np.isfinite(o) else float(o)
        if isinstance(o, np.integer):
            return int(o)
        return o
    with open(path, "w") as f:
        json.dump(clean(obj), f, indent=1)
