"""The invariance demonstration: function-preserving reparameterisations of trained study models, measured
through flatmon's engine.

For every model (conv → ReLU → … → monitored conv → ReLU → GAP → Linear, flatmon_study.models.study_cnn)
four reparameterisations leave the network's function unchanged because ReLU is positively homogeneous
(σ(λz) = λσ(z) for λ > 0):

- filter-wise: monitored conv filter c (weight and bias) × λ_c, classifier column c ÷ λ_c;
- layer-wise: the same with one λ for all filters;
- input-channel: the previous conv's output channel j (weight and bias) × μ_j, the monitored conv's input
  channel j ÷ μ_j;
- all three at once.

λ and μ are drawn log-uniformly from [0.25, 4], independently per model. Each original and reparameterised
model is measured like the study measures it — a FlatmonMonitor TRAIN measurement of the full training set
(with the labels the model was trained on), its records written to a telemetry file instead of Kafka — and
`bin/flatmon compute --eigen --json` computes κ, κ_norm, Tr H and λ_max from that file. ‖W‖² and
‖W‖²·‖V‖² are computed here from the same float32 weights that were sent.

Reported: per measure and reparameterisation the relative change |m' − m| / |m| (median and max over the
models) and Kendall τ-b with the generalisation gap (test CE − train CE, unchanged by construction; the
logits' largest relative change is reported as the check) before and after.
"""
import json
import math
import os
import subprocess
import time

import numpy as np
import torch

from flatmon_client import FlatmonMonitor
from flatmon_client.tensors import delimited, tensor

from . import stats
from .models import load_split, monitored, noisy_labels, study_cnn
from .pipeline import REPO

REPARAMS = ("filter-wise", "layer-wise", "input-channel", "all three")
MEASURES = (("kappa", "κ"), ("kappa_norm", "κ_norm"), ("trace", "Tr H"), ("lambda_max", "λ_max"),
            ("w_norm2", "‖W‖²"), ("wv_norm2", "‖W‖²·‖V‖²"))
LAMBDA_RANGE = (0.25, 4.0)

# A small family trained by this demonstration when no study output is given: 2^4 configurations of
# flatmon_study.grid's hyperparameters, one seed, a short epoch cap (the demonstration needs models whose
# gaps differ, not models at the study's stopping criterion).
FAMILY = dict(width=(16,), depth=(1, 2), weight_decay=(0.0, 3e-4), batch_size=(32,), lr=(0.03, 0.1),
              label_noise=(0.0, 0.1), seeds=(0,), max_epochs=60)
QUICK_FAMILY = dict(width=(8,), depth=(1,), weight_decay=(0.0,), batch_size=(64,), lr=(0.1,),
                    label_noise=(0.0, 0.1), seeds=(0, 1), max_epochs=8)


class FileMonitor(FlatmonMonitor):
    """A FlatmonMonitor whose records go, length-delimited (the format of `flatmon compute`), to a file
    instead of Kafka: the same snapshot, hooks and activation batches the trainer-side client publishes."""

    def __init__(self, *args, out=None, input_channel_rms=None, **kwargs):
        self.out = out
        self.input_channel_rms = input_channel_rms
        kwargs.setdefault("producer_overrides", {"log_level": 0})
        super().__init__(*args, bootstrap_servers="127.0.0.1:1", listen=False, connect_timeout=None, **kwargs)

    def _snapshot(self, step):
        s = super()._snapshot(step)
        if self.input_channel_rms is not None:
            s.input_channel_rms.CopyFrom(tensor(np.asarray(self.input_channel_rms, np.float32)))
        return s

    def _send(self, record):
        self.out.write(delimited(record))
        return record.ByteSize()


def log_uniform(rng, n, lo_hi=LAMBDA_RANGE):
    lo, hi = lo_hi
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def reparameterise(model, kind, rng):
    """A copy of `model` (study_cnn) reparameterised by `kind`, and the factors drawn: dict(lam, mu)."""
    import copy
    m = copy.deepcopy(model)
    conv, cls = monitored(m)
    C = conv.out_channels
    prev = [mod for mod in m if isinstance(mod, torch.nn.Conv2d)][-2]
    lam = np.ones(C)
    mu = np.ones(conv.in_channels)
    if kind in ("filter-wise", "all three"):
        lam = lam * log_uniform(rng, C)
    if kind in ("layer-wise", "all three"):
        lam = lam * log_uniform(rng, 1)[0]
    if kind in ("input-channel", "all three"):
        mu = log_uniform(rng, conv.in_channels)
    with torch.no_grad():
        la = torch.tensor(lam, dtype=torch.float64)
        mt = torch.tensor(mu, dtype=torch.float64)
        # all products in float64, rounded to float32 once
        conv.weight.copy_((conv.weight.double() * la[:, None, None, None] / mt[None, :, None, None]).float())
        conv.bias.copy_((conv.bias.double() * la).float())
        cls.weight.copy_((cls.weight.double() / la[None, :]).float())
        prev.weight.copy_((prev.weight.double() * mt[:, None, None, None]).float())
        prev.bias.copy_((prev.bias.double() * mt).float())
    return m, dict(lam=lam, mu=mu)


def norms(model):
    conv, cls = monitored(model)
    w2 = float((conv.weight.detach().double() ** 2).sum())
    v2 = float((cls.weight.detach().double() ** 2).sum())
    return dict(w_norm2=w2, wv_norm2=w2 * v2)


def _load(row):
    model = study_cnn(row["width"], row["depth"])
    model.load_state_dict(torch.load(row["model_path"]))
    model.eval()
    return model


def input_channel_rms(model, x):
    """RMS of each input channel of the monitored conv over all of x (samples and positions)."""
    conv, _ = monitored(model)
    store = {}
    h = conv.register_forward_pre_hook(lambda m, inp: store.__setitem__("F", inp[0].detach().double()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return store["F"].pow(2).mean(dim=(0, 2, 3)).sqrt().numpy()


def measure_all(rows, train_size, out_dir, seed=0, rho="all", log=print):
    """Writes the telemetry of every (model, variant) to out_dir/invariance.pb, runs `flatmon compute
    --eigen --json` on it; returns a list of dicts (key, variant, gap, test_error, measures, factors).
    rho="all": the snapshot carries κ_norm's input-channel RMS over the whole training set
    (LayerSnapshot.input_channel_rms); rho="first-batch": none is sent and flatmon takes it from the first
    activation batch (128 samples), FlatmonMonitor's default (docs/math.md §3, streaming rule)."""
    torch.set_num_threads(1)
    xtr, ytr_clean, _, _ = load_split(train_size)
    rng = np.random.default_rng(seed)
    path = os.path.join(out_dir, "invariance.pb")
    items = []
    t0 = time.monotonic()
    with open(path, "wb") as f:
        for row in rows:
            model = _load(row)
            ytr, _ = noisy_labels(ytr_clean, row["label_noise"], row["seed"])
            with torch.no_grad():
                ref = model(xtr).double()
            for kind in ("original",) + REPARAMS:
                if kind == "original":
                    m, fac = model, dict(lam=np.ones(1), mu=np.ones(1))
                else:
                    m, fac = reparameterise(model, kind, rng)
                with torch.no_grad():
                    out = m(xtr).double()
                logit_change = float((out - ref).abs().max() / ref.abs().max())
                conv, cls = monitored(m)
                rid = "inv-%s-%s" % (kind.replace(" ", "-"), row["key"])
                full = input_channel_rms(m, xtr)
                # channels that are zero on every training image (dead units of the previous layer): ρ = 0
                # leaves them out of κ_norm (docs/math.md §3); counted to show that the invariance holds there
                zero = int((full == 0).sum())
                rms = full if rho == "all" else None
                mon = FileMonitor(m, conv, cls, rid, out=f, samples_per_measurement=len(ytr), split_batches=128,
                                  input_channel_rms=rms)
                mon.measure(1, train_batch=(xtr, ytr))
                items.append(dict(key=row["key"], variant=kind, run_id=rid, gap=row["gap"],
                                  test_error=row["test_error"], label_noise=row["label_noise"],
                                  logit_change=logit_change, lam_min=float(fac["lam"].min()),
                                  lam_max=float(fac["lam"].max()), mu_min=float(fac["mu"].min()),
                                  mu_max=float(fac["mu"].max()),
                                  zero_rms_channels=zero, **norms(m)))
    log("invariance: %d measurements of %d models written to %s (%.0f s)" % (len(items), len(rows), path,
                                                                           time.monotonic() - t0))
    t1 = time.monotonic()
    proc = subprocess.run([str(REPO / "bin" / "flatmon"), "compute", "--eigen", "--json", path], cwd=str(REPO),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("flatmon compute failed:\n" + proc.stderr[-3000:])
    res = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            res[r["run_id"]] = r
    log("invariance: flatmon compute --eigen on %d measurements took %.0f s" % (len(res), time.monotonic() - t1))
    missing = [it["run_id"] for it in items if it["run_id"] not in res]
    if missing:
        raise RuntimeError("flatmon compute measured %d of %d; rejected: %s\n%s" % (
            len(res), len(items), missing[:5], proc.stderr[-3000:]))
    for it in items:
        r = res[it["run_id"]]
        it.update(kappa=float(r["relative_flatness"]["mean"]), kappa_norm=float(r["relative_flatness_normalized"]["mean"]),
                  trace=float(r["hessian_trace"]["mean"]), lambda_max=float(r["hessian_max_eigenvalue"]),
                  flatmon_loss=float(r["loss"]["mean"]), samples=int(r["samples"]))
    return items


def summarise(items):
    """{variant: {measure: dict(median_rel_change, max_rel_change, min_factor, max_factor, tau_before,
    tau_after)}} plus the largest logit change per variant."""
    orig = {it["key"]: it for it in items if it["variant"] == "original"}
    keys = sorted(orig)
    gap = np.array([orig[k]["gap"] for k in keys])
    out = {}
    for kind in REPARAMS:
        rep = {it["key"]: it for it in items if it["variant"] == kind}
        row = dict(logit_change_max=max(rep[k]["logit_change"] for k in keys))
        for m, _ in MEASURES:
            a = np.array([orig[k][m] for k in keys])
            b = np.array([rep[k][m] for k in keys])
            fac = b / a
            rel = np.abs(b - a) / np.abs(a)
            # models with an input channel of the monitored conv that is zero on every training image (a
            # dead ReLU unit), reported apart because only they can show the ρ = 0 rule at work
            live = np.array([not rep[k].get("zero_rms_channels") for k in keys])
            row[m] = dict(median_rel_change=float(np.median(rel)), max_rel_change=float(rel.max()),
                          max_rel_change_dead=float(rel[~live].max()) if (~live).any() else float("nan"),
                          models_with_zero_channel=int((~live).sum()),
                          min_factor=float(fac.min()), max_factor=float(fac.max()),
                          tau_before=stats.kendall_tau_b(a, gap), tau_after=stats.kendall_tau_b(b, gap))
        out[kind] = row
    return out


def _g(x):
    if x != x:
        return "—"
    return "%.1e" % x if (x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3)) else ("0" if x == 0 else "%.3g" % x)


def markdown(summary, n_models, meta):
    lab = dict(MEASURES)
    lines = ["%d models; λ, μ log-uniform in [%g, %g], drawn per model. Relative change = |m' − m| / |m| "
             "(median / max over the models); factor = m'/m (min – max); τ = Kendall τ-b with the "
             "generalisation gap (test CE − train CE) over the %d models, before → after."
             % (n_models, LAMBDA_RANGE[0], LAMBDA_RANGE[1], n_models), ""]
    for kind in REPARAMS:
        s = summary[kind]
        nz = s["kappa"]["models_with_zero_channel"]
        lines += ["**%s** (largest change of any logit: %.1e relative to the largest logit)" % (kind, s["logit_change_max"]),
                  "", "| measure | rel. change median / max | max over the %d model(s) with a dead input channel "
                  "| factor min – max | τ with gap before → after |" % nz,
                  "|---|---:|---:|---:|---:|"]
        for m, _ in MEASURES:
            r = s[m]
            lines.append("| %s | %s / %s | %s | %s – %s | %+.3f → %+.3f |" % (
                lab[m], _g(r["median_rel_change"]), _g(r["max_rel_change"]), _g(r["max_rel_change_dead"]),
                _g(r["min_factor"]), _g(r["max_factor"]), r["tau_before"], r["tau_after"]))
        lines.append("")
    lines.append("Setting: %s" % json.dumps(meta, default=str))
    return "\n".join(lines)


def plot(items, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lab = dict(MEASURES)
    orig = {it["key"]: it for it in items if it["variant"] == "original"}
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.2))
    ax = axes[0]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    floor = 1e-9
    for j, kind in enumerate(REPARAMS):
        rep = [it for it in items if it["variant"] == kind]
        for i, (m, _) in enumerate(MEASURES):
            rel = [max(abs(it[m] - orig[it["key"]][m]) / abs(orig[it["key"]][m]), floor) for it in rep]
            x = i + (j - 1.5) * 0.18 + np.random.default_rng(i * 10 + j).uniform(-0.05, 0.05, len(rel))
            ax.scatter(x, rel, s=12, color=colours[j], alpha=0.8, label=kind if i == 0 else None)
    ax.axhline(1e-5, color="k", lw=0.7, ls="--")
    ax.text(len(MEASURES) - 0.5, 1.3e-5, "1e-5", ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(MEASURES)))
    ax.set_xticklabels([lab[m] for m, _ in MEASURES])
    ax.set_ylabel("relative change |m' − m| / |m|  (floor %g)" % floor)
    ax.set_title("change under function-preserving reparameterisations")
    ax.legend(fontsize=8)
    ax = axes[1]
    y = np.arange(len(MEASURES))
    before = [summary[REPARAMS[0]][m]["tau_before"] for m, _ in MEASURES]
    ax.barh(y - 0.36, before, height=0.16, color="k", label="original")
    for j, kind in enumerate(REPARAMS):
        ax.barh(y - 0.18 + j * 0.16, [summary[kind][m]["tau_after"] for m, _ in MEASURES], height=0.16,
                color=colours[j], label=kind)
    ax.set_yticks(y)
    ax.set_yticklabels([lab[m] for m, _ in MEASURES])
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("Kendall τ-b with the generalisation gap")
    ax.set_title("τ before and after reparameterisation (%d models)" % len(orig))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    import argparse
    from . import grid
    from .train import train_all
    ap = argparse.ArgumentParser(prog="scripts/study/invariance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 tiny models, a few epochs")
    ap.add_argument("--models", default=None,
                    help="a study output directory (training.jsonl + models/) to take the models from; default: "
                         "train the demonstration's own small family")
    ap.add_argument("--only-reached", action="store_true", help="with --models: only models that reached the criterion")
    ap.add_argument("--out", default=None, help="output directory (default target/invariance[-quick])")
    ap.add_argument("--train-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="seed of the λ, μ draws")
    ap.add_argument("--rho", choices=("all", "first-batch"), default="all",
                    help="κ_norm's input-channel RMS: sent, over all training samples (default), or left to "
                         "flatmon (first activation batch)")
    ap.add_argument("--from-json", action="store_true",
                    help="re-summarise, tabulate and plot the measurements already in --out/invariance.json")
    ap.add_argument("--publish", action="store_true", help="copy the table and plot to docs/invariance.{md-table,png}")
    a = ap.parse_args(argv)
    out = os.path.abspath(a.out or os.path.join(str(REPO), "target", "invariance-quick" if a.quick else "invariance"))
    os.makedirs(out, exist_ok=True)

    def log(msg):
        print(time.strftime("%H:%M:%S ") + msg, flush=True)

    if a.from_json:
        with open(os.path.join(out, "invariance.json")) as f:
            saved = json.load(f)
        items, meta = saved["items"], saved["meta"]
        rows = sorted({it["key"] for it in items})
    elif a.models:
        with open(os.path.join(a.models, "training.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if a.only_reached:
            rows = [r for r in rows if r["reached"]]
        family = "models of %s" % a.models
    else:
        spec = QUICK_FAMILY if a.quick else FAMILY
        rows = train_all(grid.configs(spec), spec["max_epochs"], a.train_size, out, workers=1, log=log)
        family = "own family: " + json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()})
    if not a.from_json:
        rows = [r for r in rows if math.isfinite(r["gap"])]
        items = measure_all(rows, a.train_size, out, seed=a.seed, rho=a.rho, log=log)
        meta = dict(models=len(rows), family=family, train_size=a.train_size, seed=a.seed, rho=a.rho,
                    flatmon="bin/flatmon compute --eigen --json on FlatmonMonitor records (TRAIN, full training set)")
    summary = summarise(items)
    with open(os.path.join(out, "invariance.json"), "w") as f:
        json.dump(dict(meta=meta, summary=summary, items=items), f, indent=1, default=float)
    md = markdown(summary, len(rows), meta)
    with open(os.path.join(out, "invariance-table.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    try:
        plot(items, summary, os.path.join(out, "invariance.png"))
    except ImportError as e:
        log("no plot (%s): scripts/install-deps study installs python3-matplotlib" % e)
    if a.publish:
        import shutil
        shutil.copyfile(os.path.join(out, "invariance.png"), os.path.join(str(REPO), "docs", "invariance.png"))
        shutil.copyfile(os.path.join(out, "invariance.json"), os.path.join(str(REPO), "docs", "invariance.json"))
        log("published docs/invariance.png and docs/invariance.json")
    log("done: %s" % out)
    return summary


if __name__ == "__main__":
    main()
