"""Evidence for flatmon's early-stopping policies: a family of healthy and overfitting digits runs.

    bin/flatmon serve --data-dir /tmp/es --broker-port 0 --http-port 0      # prints its Kafka address
    PYTHONPATH=clients/python /usr/bin/python3 -m flatmon_study.stopping run --bootstrap HOST:PORT \\
        --out docs/early-stopping.csv
    PYTHONPATH=clients/python /usr/bin/python3 -m flatmon_study.stopping table docs/early-stopping.csv

`run` trains every run of FAMILY to the end (it ignores STOP, so every policy can be replayed on the
whole run) with the server's default policy, and writes one row per measurement: flatmon's final
results (κ, κ_norm, Tr H of the train split, eval loss), the trainer's test error on held-out digits
that neither training nor eval uses, and the signal flatmon sent. `table` replays each policy on the
recorded values (flatmon_client.simulate, the server's detector semantics) and reports, per policy:
STOPs sent to healthy runs, steps saved, and the test error at the restored best step vs at the end.
"""
import argparse
import csv
import math
import sys
import time
import uuid

import numpy as np

# (name, kind, train_size, label_noise, weight_decay, dropout, seed). The first three are the demo's runs.
FAMILY = [
    ("demo-overfit", "overfit", 150, 0.4, 0.0, 0.0, 0),
    ("demo-weight-decay", "healthy", 1000, 0.0, 5e-4, 0.0, 0),
    ("demo-dropout", "healthy", 1000, 0.0, 1e-4, 0.3, 0),
    ("healthy-plain-s1", "healthy", 1000, 0.0, 0.0, 0.0, 1),
    ("healthy-wd-s2", "healthy", 1000, 0.0, 5e-4, 0.0, 2),
    ("overfit-noise40-s1", "overfit", 150, 0.4, 0.0, 0.0, 1),
    ("overfit-noise20-s2", "overfit", 300, 0.2, 0.0, 0.0, 2),
    ("overfit-small-s3", "overfit", 100, 0.3, 0.0, 0.0, 3),
    ("healthy-dropout-s4", "healthy", 1000, 0.0, 0.0, 0.3, 4),
    ("healthy-wd-s5", "healthy", 800, 0.0, 1e-3, 0.0, 5),
    ("overfit-noise40-s4", "overfit", 150, 0.4, 0.0, 0.0, 4),
    ("overfit-noise30-s5", "overfit", 200, 0.3, 0.0, 0.0, 5),
]
# Held out: runs of the same kinds with other seeds and sizes, for checking the settings chosen on FAMILY.
VALIDATION = [
    ("val-healthy-wd-s6", "healthy", 1000, 0.0, 5e-4, 0.0, 6),
    ("val-healthy-dropout-s7", "healthy", 900, 0.0, 1e-4, 0.3, 7),
    ("val-healthy-plain-s8", "healthy", 1000, 0.0, 0.0, 0.0, 8),
    ("val-healthy-wd-s9", "healthy", 700, 0.0, 1e-3, 0.0, 9),
    ("val-overfit-noise40-s6", "overfit", 150, 0.4, 0.0, 0.0, 6),
    ("val-overfit-noise30-s7", "overfit", 250, 0.3, 0.0, 0.0, 7),
    ("val-overfit-noise20-s8", "overfit", 200, 0.2, 0.0, 0.0, 8),
    ("val-overfit-small-s9", "overfit", 120, 0.3, 0.0, 0.0, 9),
]
FIELDS = ["run", "kind", "step", "train_loss", "eval_loss", "test_error", "kappa", "kappa_norm", "trace",
          "flatmon_eval_loss", "signal"]


def _test_set(seed, eval_size):
    """Digits no run trains or evaluates on: order[1000:len-eval_size] of load_digits' permutation."""
    import torch
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    order = np.random.RandomState(seed).permutation(len(d.target))
    idx = order[1000:len(order) - eval_size]
    return torch.from_numpy(x[idx]), torch.from_numpy(d.target[idx].astype(np.int64))


def run(args):
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import torch
    import torch.nn.functional as TF
    import digits
    from flatmon_client import FlatmonMonitor, results_pb2
    from flatmon_client.results import ResultsReader
    torch.set_num_threads(1)
    tag = uuid.uuid4().hex[:6]
    reader = ResultsReader(args.bootstrap, run_filter=lambda r: r.startswith("es-" + tag))
    reader.start()
    rows = []
    try:
        for name, kind, train_size, noise, wd, dropout, seed in (VALIDATION if args.family == "validation"
                                                                 else FAMILY):
            t0 = time.monotonic()
            torch.manual_seed(seed)
            xtr, ytr, xev, yev = digits.load_digits(train_size, args.eval_size, label_noise=noise, seed=seed)
            xte, yte = _test_set(seed, args.eval_size)
            model = digits.plain_cnn(24, 24, dropout=dropout)
            conv, cls = digits.monitored(model)
            opt = torch.optim.Adam(model.parameters(), 3e-3, weight_decay=wd)
            rid = "es-%s-%s" % (tag, name)
            gen = torch.Generator().manual_seed(seed)
            local = {}
            with FlatmonMonitor(model, conv, cls, rid, args.bootstrap, every_n_steps=args.every,
                                samples_per_measurement=256, weight_decay=wd / 2 if wd else None,
                                signal_mode="async") as mon:
                step = 0
                while step < args.steps:
                    perm = torch.randperm(len(ytr), generator=gen)
                    for i in range(0, len(ytr), 128):
                        idx = perm[i:i + 128]
                        model.train()
                        opt.zero_grad()
                        TF.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                        opt.step()
                        step += 1
                        m = mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev))
                        if m is not None:
                            model.eval()
                            with torch.no_grad():
                                err = float((model(xte).argmax(1) != yte).double().mean())
                            local[step] = (m.loss["train"], m.loss["eval"], err)
                        if step >= args.steps:
                            break
                mon.wait_for_signal(step, timeout=60)
            sig = {}
            for s in mon.signals:
                sig.setdefault(s.step, "%s/%s" % (results_pb2.SignalAction.Name(s.action),
                                                  results_pb2.SignalReason.Name(s.reason)))
            for st in sorted(local):
                tr = reader.wait_final(rid, st, "TRAIN", timeout=60)
                ev = reader.wait_final(rid, st, "EVAL", timeout=60)
                rows.append(dict(run=name, kind=kind, step=st, train_loss=local[st][0], eval_loss=local[st][1],
                                 test_error=local[st][2],
                                 kappa=tr.relative_flatness.mean if tr else math.nan,
                                 kappa_norm=tr.relative_flatness_normalized.mean if tr else math.nan,
                                 trace=tr.hessian_trace.mean if tr else math.nan,
                                 flatmon_eval_loss=ev.loss.mean if ev else math.nan, signal=sig.get(st, "")))
            print("%-22s %d measurements in %.0f s" % (name, len(local), time.monotonic() - t0), file=sys.stderr)
    finally:
        reader.close()
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("%.6g" % v if isinstance(v, float) else v) for k, v in r.items()})


def load(path):
    runs = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            runs.setdefault(r["run"], []).append(r)
    return runs


def policies():
    """(label, make_policy keywords or None for the server default's recorded signals)."""
    from flatmon_client import make_policy  # noqa: F401 (the keywords are make_policy's)
    # recommended for opt-in curvature policies: evaluate from half the planned training on (κ and Tr H
    # rise until then), mean of 5 measurements, 5 % relative improvement, patience 10 measurements
    cur = dict(start_from_step=300, smoothing=5, min_delta_relative=0.05, patience=10)
    return [
        ("server default (recorded)", None),
        ("old default: kappa min, patience 10", dict(monitor="relative_flatness", patience=10)),
        ("eval_loss, patience 5", dict(monitor="eval_loss", patience=5)),
        ("kappa, recommended", dict(monitor="relative_flatness", **cur)),
        ("kappa_norm, recommended", dict(monitor="relative_flatness_normalized", **cur)),
        ("Tr H, recommended", dict(monitor="hessian_trace", **cur)),
    ]


def column(monitor):
    return {"relative_flatness": "kappa", "relative_flatness_normalized": "kappa_norm", "hessian_trace": "trace",
            "eval_loss": "flatmon_eval_loss"}[monitor]


def table(args):
    from flatmon_client import simulate
    runs = load(args.csv)
    out = ["| policy | STOPs to healthy runs | STOPs to overfitting runs | WARN advice (patience out) to healthy runs "
           "| steps saved (mean of stopped) | test error, restored best − trained to end (mean over runs, pp) "
           "| runs worse by > 1 pp |",
           "|---|---|---|---|---|---|---|"]
    detail = []
    for label, kw in policies():
        stops = {"healthy": 0, "overfit": 0}
        n = {"healthy": 0, "overfit": 0}
        saved, diffs, worse, advised = [], [], 0, 0
        for name, rows in runs.items():
            kind = rows[0]["kind"]
            n[kind] += 1
            last = rows[-1]
            end_err = float(last["test_error"])
            by_step = {int(r["step"]): r for r in rows}
            if kw is None:
                stop = next((r for r in rows if r["signal"].startswith("STOP")), None)
                stop_step, best_step = (int(stop["step"]), int(stop["step"])) if stop else (None, None)
                advised += kind == "healthy" and any(r["signal"] == "WARN/PATIENCE_EXHAUSTED" for r in rows)
            else:
                s = simulate(kw, [(int(r["step"]), float(r[column(kw["monitor"])])) for r in rows])
                stop_step, best_step = s["stop_step"], s["best_step"]
                advised += kind == "healthy" and bool(s["warn_steps"])
            if stop_step is None:
                diffs.append(0.0)
                detail.append("%s | %s | no STOP" % (label, name))
                continue
            stops[kind] += 1
            saved.append(int(last["step"]) - stop_step)
            err = float(by_step[best_step]["test_error"]) if best_step in by_step else end_err
            diffs.append(100 * (err - end_err))
            worse += (err - end_err) > 0.01
            detail.append("%s | %s | STOP %d, best %s, test error %.3f vs %.3f at the end" % (
                label, name, stop_step, best_step, err, end_err))
        out.append("| %s | %d of %d | %d of %d | %d | %s | %+.2f | %d |" % (
            label, stops["healthy"], n["healthy"], stops["overfit"], n["overfit"], advised,
            "%.0f" % (sum(saved) / len(saved)) if saved else "-", sum(diffs) / len(diffs), worse))
    print("\n".join(out))
    if args.detail:
        print("\n".join(detail))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=600)
    r.add_argument("--every", type=int, default=20)
    r.add_argument("--eval-size", type=int, default=400)
    r.add_argument("--family", choices=["main", "validation"], default="main")
    t = sub.add_parser("table")
    t.add_argument("csv")
    t.add_argument("--detail", action="store_true")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    main()
