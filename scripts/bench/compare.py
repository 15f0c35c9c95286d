"""flatmon's closed form against the autograd alternatives, measured in one run (see docs/comparisons.md).

1. exact Tr H (flatmon) vs Hutchinson's estimator (PyTorch double backward, Rademacher probes) on a
   ResNet-18/CIFAR-like last conv: time and error at m = 10, 100, 1000 probes;
2. flatmon κ vs the exact autograd κ (dense Hessian, all blocks, float64) and vs a C·d HVP loop, over C;
3. (engine throughput vs the physical limit: see `flatmon bench engine` and the README table).

flatmon runs once, as `OMP_NUM_THREADS=2 bin/flatmon compute --json --time-engine N FILE` on a telemetry
file in its wire format; its engine time is the median of N timed passes (JVM start-up excluded). PyTorch
runs float32 (Hutchinson) or float64 (exact) with torch.set_num_threads(THREADS).

Prints Markdown tables and writes docs/comparisons.json. Run it through scripts/bench/compare.
"""
import argparse
import datetime
import json
import math
import multiprocessing as mp
import os
import queue
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from flatmon_client import _proto  # noqa: E402
from flatmon_client import estimators as est  # noqa: E402
from flatmon_client.reference import autograd_reference  # noqa: E402
from flatmon_client.tensors import delimited, tensor  # noqa: E402

tensor_pb2, _policy_pb2, telemetry_pb2, _results_pb2 = _proto.load()


# ---------------------------------------------------------------------------------------------------------
# heads and the wire format
# ---------------------------------------------------------------------------------------------------------
def make_head(C, N, K=10, cin=None, hw=4, seed=0):
    """A ResNet-style last conv: 3×3, pad 1, on hw×hw post-ReLU features; folded-BN scale a; the
    pre-activation Z = a·conv(F, W) + shortcut (post-ReLU features of the block input), sent as flatmon
    receives it from a ResNet (docs/math.md §1); ReLU, global average pooling, Linear K. Seeded."""
    cin = C if cin is None else cin
    g = np.random.default_rng(seed)
    W = (g.standard_normal((C, cin, 3, 3)) * math.sqrt(2.0 / (cin * 9))).astype(np.float32)
    F = np.maximum(g.standard_normal((N, cin, hw, hw)), 0).astype(np.float32)
    a = g.uniform(0.5, 1.5, C).astype(np.float32)
    shortcut = np.maximum(g.standard_normal((N, C, hw, hw)), 0).astype(np.float32)
    with torch.no_grad():
        conv = TF.conv2d(torch.from_numpy(F), torch.from_numpy(W), padding=1)
        Z = (conv * torch.from_numpy(a)[None, :, None, None] + torch.from_numpy(shortcut)).numpy().astype(np.float32)
    V = (g.standard_normal((K, C)) * 2.0 / math.sqrt(C)).astype(np.float32)
    b = (g.standard_normal(K) * 0.1).astype(np.float32)
    y = g.integers(0, K, N)
    return dict(kernel=W, bias=None, scale=a, classifier_weight=V, classifier_bias=b, stride=(1, 1),
                padding=(1, 1), dilation=(1, 1), activation="RELU", negative_slope=0.0, weight_decay=None,
                train=dict(input=F, pre_activation=Z, labels=y))


def records(run_id, p):
    """LayerSnapshot, ActivationBatch and MeasurementDone of one head (as FlatmonMonitor sends them)."""
    ls = telemetry_pb2.LayerSnapshot(run_id=run_id, layer="head", step=1)
    ls.kernel.CopyFrom(tensor(p["kernel"]))
    ls.scale.CopyFrom(tensor(p["scale"]))
    ls.stride.extend(p["stride"])
    ls.padding.extend(p["padding"])
    ls.dilation.extend(p["dilation"])
    ls.groups = 1
    ls.activation.kind = telemetry_pb2.ActivationKind.Value(p["activation"])
    ls.classifier_weight.CopyFrom(tensor(p["classifier_weight"]))
    ls.classifier_bias.CopyFrom(tensor(p["classifier_bias"]))
    ab = telemetry_pb2.ActivationBatch(run_id=run_id, layer="head", step=1, split=telemetry_pb2.TRAIN, batch_index=0)
    ab.input.CopyFrom(tensor(p["train"]["input"]))
    ab.pre_activation.CopyFrom(tensor(p["train"]["pre_activation"]))
    ab.labels.extend(int(v) for v in p["train"]["labels"])
    md = telemetry_pb2.MeasurementDone(run_id=run_id, step=1, layer="head")
    return [telemetry_pb2.TelemetryRecord(layer_snapshot=ls), telemetry_pb2.TelemetryRecord(activation_batch=ab),
            telemetry_pb2.TelemetryRecord(measurement_done=md)]


def write_delimited(path, recs):
    with open(path, "wb") as f:
        for r in recs:
            f.write(delimited(r))


def run_flatmon(path, runs, threads):
    """`bin/flatmon compute --json --time-engine runs path` → {run_id: result dict}, wall seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [str(REPO / "bin" / "flatmon"), "compute", "--json", "--time-engine", str(runs), str(path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit("compare: %s failed (exit %d):\n%s" % (" ".join(cmd), proc.returncode, proc.stderr[-4000:]))
    out = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["run_id"]] = r
    return out, wall


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def fmt_s(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if x >= 3600:
        return "%.1f h" % (x / 3600)
    if x >= 100:
        return "%.0f s" % x
    if x >= 1:
        return "%.2f s" % x
    if x >= 1e-3:
        return "%.2f ms" % (x * 1e3)
    return "%.0f µs" % (x * 1e6)


def fmt_ratio(x):
    if x is None or math.isnan(x):
        return "—"
    if x >= 1e4:
        return "%.1e×" % x
    return "%.0f×" % x if x >= 10 else "%.1f×" % x


def ratio(a, b):
    """a / b, NaN when b is 0 or NaN (a CPU time below the clock tick)."""
    return a / b if b and not math.isnan(b) else math.nan


def fmt_gb(b):
    return "%.1f GB" % (b / 1e9) if b >= 1e8 else "%.0f MB" % (b / 1e6)


LOADS = []


def log(msg):
    """A progress line on stderr; the 1-minute load average at that moment is kept for the JSON."""
    load = os.getloadavg()[0]
    LOADS.append((msg, round(load, 2)))
    print("compare: %s [load %.1f]" % (msg, load), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# 1. Tr H: flatmon vs Hutchinson
# ---------------------------------------------------------------------------------------------------------
def part1(p, flat, args):
    exact = flat["hessian_trace"]["mean"]
    t_flat = flat["engine_seconds"]
    cpu_flat = flat.get("engine_cpu_seconds", math.nan)
    loss_fn, w = est.head_loss(p, dtype=torch.float32)
    C, cin = p["kernel"].shape[:2]
    rows, per_probe_time = [], None
    all_vals = []
    for m in args.probes:
        # estimate first: linear in m from the previous row's per-probe time; every row has a wall-time budget
        # (seeds stop when the next one would not fit; a first seed that does not fit is extrapolated)
        if per_probe_time is not None:
            log("Hutchinson m=%d: predicted %.0f s for %d seeds (cap %.0f s)"
                % (m, per_probe_time * m * args.seeds, args.seeds, args.hutchinson_cap))
        times, cpus, errs, ests, done = [], [], [], [], []
        budget = args.hutchinson_cap
        for s in range(args.seeds):
            gen = torch.Generator().manual_seed(1000 * m + s)
            t0, c0 = time.perf_counter(), time.process_time()
            e, vals = est.hutchinson_trace(loss_fn, w, m, generator=gen, batch=args.batch,
                                           max_seconds=budget)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            all_vals.append(vals)
            if len(vals) < m:
                # time cap hit before the first seed finished: extrapolate its time linearly in the probes
                done.append(len(vals))
                times.append(dt * m / len(vals))
                cpus.append(dc * m / len(vals))
                break
            times.append(dt)
            cpus.append(dc)
            errs.append(est.relative_error(e, exact))
            ests.append(e)
            done.append(m)
            budget -= dt
            if budget < 1.1 * max(times):                # start another seed only if it should fit
                break
        t_med, c_med = float(np.median(times)), float(np.median(cpus))
        per_probe_time = t_med / m
        rows.append(dict(m=m, seconds=t_med, cpu_seconds=c_med, seconds_extrapolated=any(d < m for d in done),
                         probes_done=done, seeds_measured=len(errs),
                         mean_abs_rel_err=float(np.mean(errs)) if errs else None,
                         estimates=ests, ratio_to_flatmon=t_med / t_flat, cpu_ratio_to_flatmon=ratio(c_med, cpu_flat)))
        log("Hutchinson m=%d: %s, mean |rel err| %s over %d seed(s)" % (
            m, fmt_s(t_med), "%.2f %%" % (100 * rows[-1]["mean_abs_rel_err"]) if errs else "—", len(errs)))
    # the 1/√m law, fitted to the measured errors: err(m) ≈ c/√m
    meas = [(r["m"], r["mean_abs_rel_err"]) for r in rows if r["mean_abs_rel_err"] is not None]
    c = float(np.mean([e * math.sqrt(m) for m, e in meas]))
    vals = np.concatenate(all_vals)
    c_probe = math.sqrt(2 / math.pi) * float(np.std(vals, ddof=1)) / abs(exact)   # E|N(0,σ²/m)| = √(2/π)σ/√m
    pooled = dict(probes=int(vals.size), relative_std=float(np.std(vals, ddof=1)) / abs(exact),
                  mean=float(vals.mean()), mean_rel_err=est.relative_error(float(vals.mean()), exact))
    reached = [r for r in rows if r["mean_abs_rel_err"] is not None and r["mean_abs_rel_err"] <= 0.01]
    m1 = int(math.ceil((c / 0.01) ** 2))
    # time per probe for the extrapolation: the fastest measured row (m ≥ 100 where there is one, so that the
    # gradient graph is amortised) — the choice most favourable to Hutchinson when other jobs slow a later row
    big = [r for r in rows if r["m"] >= 100] or rows
    slope = min(r["seconds"] / r["m"] for r in big)
    cslope = min(r["cpu_seconds"] / r["m"] for r in big)
    m1p = int(math.ceil((c_probe / 0.01) ** 2))
    one_percent = dict(target=0.01, fitted_c=c, per_probe_c=c_probe, m_extrapolated=m1,
                       seconds_extrapolated=slope * m1, ratio_extrapolated=slope * m1 / t_flat,
                       cpu_ratio_extrapolated=ratio(cslope * m1, cpu_flat),
                       m_from_variance=m1p, seconds_from_variance=slope * m1p, ratio_from_variance=slope * m1p / t_flat,
                       cpu_ratio_from_variance=ratio(cslope * m1p, cpu_flat),
                       seconds_per_probe=slope, cpu_seconds_per_probe=cslope)
    if reached:
        r = reached[0]
        one_percent.update(measured_m=r["m"], measured_seconds=r["seconds"], measured_ratio=r["ratio_to_flatmon"],
                           measured_cpu_ratio=r["cpu_ratio_to_flatmon"])
    return dict(shape=dict(C=int(C), C_in=int(cin), kernel="3x3", padding=1, input="4×4", P=16, d=int(cin) * 9,
                           K=int(p["classifier_weight"].shape[0]), N=int(p["train"]["input"].shape[0]),
                           activation="ReLU, Z sent (scale + shortcut)"),
                flatmon=dict(hessian_trace=exact, engine_seconds=t_flat, engine_runs=flat["engine_runs"],
                             engine_cpu_seconds=cpu_flat,
                             engine_seconds_same_snapshot=flat["engine_seconds_same_snapshot"],
                             relative_flatness=flat["relative_flatness"]["mean"]),
                hutchinson=rows, one_percent=one_percent, pooled_probes=pooled, seeds=args.seeds, batch=args.batch,
                threads=args.threads, dtype="float32")


def table1(r):
    f = r["flatmon"]
    sh = r["shape"]
    lines = ["### 1. Tr H: flatmon (exact) vs Hutchinson (PyTorch double backward, float32)", "",
             "Head: C = C_in = %d, 3×3, pad 1, %s input (P = %d, d = %d), ReLU, GAP, Linear K = %d; batch N = %d."
             % (sh["C"], sh["input"], sh["P"], sh["d"], sh["K"], sh["N"]),
             "flatmon Tr H = %.6g. flatmon time = engine median of %d runs with a fresh snapshot: %s wall, %s process "
             "CPU (Ω = W_f W_fᵀ and the κ_norm Gram included; %s wall once the snapshot is prepared), for Tr H, κ, κ_norm, "
             "Tr H_V, κ_V and the loss together. Hutchinson time = median over seeds, gradient graph included; it "
             "yields Tr H only. CPU = process CPU seconds (all threads), less sensitive than wall time to other jobs "
             "on the machine." % (f["hessian_trace"], f["engine_runs"], fmt_s(f["engine_seconds"]),
                                  fmt_s(f["engine_cpu_seconds"]), fmt_s(f["engine_seconds_same_snapshot"])), "",
             "| method | probes m | wall time | × flatmon (wall) | × flatmon (CPU) | mean \\|rel err\\| vs exact | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|",
             "| flatmon closed form | — | %s | 1× | 1× | 0 (exact; see §2 cross-check) | — |" % fmt_s(f["engine_seconds"])]
    o = r["one_percent"]
    for h in r["hutchinson"]:
        t = fmt_s(h["seconds"]) + (" (EXTRAPOLATED from %d probes)" % h["probes_done"][0] if h["seconds_extrapolated"]
                                   else "")
        err = "%.2f %%" % (100 * h["mean_abs_rel_err"]) if h["mean_abs_rel_err"] is not None else \
            "%.2f %% (EXTRAPOLATED, 1/√m)" % (100 * o["fitted_c"] / math.sqrt(h["m"]))
        lines.append("| Hutchinson | %d | %s | %s | %s | %s | %d |" % (
            h["m"], t, fmt_ratio(h["ratio_to_flatmon"]), fmt_ratio(h["cpu_ratio_to_flatmon"]), err, h["seeds_measured"]))
    if "measured_m" in o:
        lines.append("| **Hutchinson to 1 %%** (measured) | %d | %s | **%s** | %s | ≤ 1 %% | |"
                     % (o["measured_m"], fmt_s(o["measured_seconds"]), fmt_ratio(o["measured_ratio"]),
                        fmt_ratio(o["measured_cpu_ratio"])))
    lines.append("| **Hutchinson to 1 %%** (EXTRAPOLATED: m from the 1/√m fit to the measured errors, time linear in m) "
                 "| ≈ %d | ≈ %s | **≈ %s** | ≈ %s | 1 %% | |"
                 % (o["m_extrapolated"], fmt_s(o["seconds_extrapolated"]), fmt_ratio(o["ratio_extrapolated"]),
                    fmt_ratio(o["cpu_ratio_extrapolated"])))
    lines.append("| Hutchinson to 1 %% (EXTRAPOLATED: m from the variance of all %d probe values, time linear in m) "
                 "| ≈ %d | ≈ %s | ≈ %s | ≈ %s | 1 %% | |"
                 % (r["pooled_probes"]["probes"], o["m_from_variance"], fmt_s(o["seconds_from_variance"]),
                    fmt_ratio(o["ratio_from_variance"]), fmt_ratio(o["cpu_ratio_from_variance"])))
    lines += ["", "1/√m law: mean |rel err| ≈ c/√m with c = %.3f fitted to the measured mean errors, c = %.3f from the "
              "spread of all %d per-probe values vᵀHv (c = √(2/π)·std/Tr H). Time per probe used for extrapolation: %s "
              "wall, %s CPU (the fastest measured row with m ≥ 100: the figure most favourable to Hutchinson)."
              % (o["fitted_c"], o["per_probe_c"], r["pooled_probes"]["probes"], fmt_s(o["seconds_per_probe"]),
                 fmt_s(o["cpu_seconds_per_probe"]))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# 2. κ: flatmon vs exact autograd (dense Hessian) and the HVP loop
# ---------------------------------------------------------------------------------------------------------
def _dense_child(p, threads, q):
    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    ref = autograd_reference(p)
    q.put((ref, time.perf_counter() - t0, time.process_time() - c0))


def dense_autograd(p, threads, cap):
    """flatmon_client.reference.autograd_reference(p) in a child process, stopped after `cap` seconds of its own
    work (plus start-up slack). Returns (result, wall, cpu) or None when it was stopped."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_dense_child, args=(p, threads, q), daemon=True)
    proc.start()
    try:
        return q.get(timeout=cap + 20.0)          # 20 s: the child's interpreter and torch start-up
    except queue.Empty:
        return None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def part2(heads, flat, args):
    rows = []
    over_cap = None
    mem_limit = args.dense_mem_gb * 1e9
    for C, p in heads:
        d = int(np.prod(p["kernel"].shape[1:]))
        f = flat["kappa-c%d" % C]
        row = dict(C=C, d=d, Cd=C * d, flatmon_seconds=f["engine_seconds"],
                   flatmon_cpu_seconds=f.get("engine_cpu_seconds", math.nan),
                   flatmon_seconds_same_snapshot=f["engine_seconds_same_snapshot"],
                   flatmon_trace=f["hessian_trace"]["mean"], flatmon_kappa=f["relative_flatness"]["mean"])
        # dense autograd Hessian (flatmon_client.reference, float64): memory first, then a hard time cap
        mem = 2 * est.dense_hessian_bytes(C, d)            # the Cd rows and their stacked copy
        row["dense_bytes"] = mem
        if mem > mem_limit:
            row["dense_status"] = "infeasible: needs ≥ %s for the (Cd)² float64 Hessian" % fmt_gb(mem)
        elif over_cap is not None:
            row["dense_status"] = "skipped: C = %d already exceeded the %s cap" % (over_cap, fmt_s(args.cap))
        else:
            res = dense_autograd(p, args.threads, args.cap)
            if res is None or res[1] > args.cap:
                over_cap = C
                row["dense_status"] = "> %s (cap; stopped)" % fmt_s(args.cap)
            else:
                ref, dt, dc = res
                row.update(dense_status="measured", dense_seconds=dt, dense_cpu_seconds=dc,
                           ref_trace=ref["hessian_trace"], ref_kappa=ref["relative_flatness"],
                           rel_diff_trace=est.relative_error(row["flatmon_trace"], ref["hessian_trace"]),
                           rel_diff_kappa=est.relative_error(row["flatmon_kappa"], ref["relative_flatness"]),
                           dense_ratio=dt / row["flatmon_seconds"], dense_cpu_ratio=ratio(dc, row["flatmon_cpu_seconds"]))
        log("κ C=%d: dense autograd %s%s" % (C, row["dense_status"],
                                             " (%s)" % fmt_s(row["dense_seconds"]) if "dense_seconds" in row else ""))
        # the matrix-free exact alternative: C·d HVPs (float64), run fully while it fits the HVP cap
        loss_fn, w = est.head_loss(p, dtype=torch.float64)
        c0 = time.process_time()
        res = est.hvp_loop_curvature(loss_fn, w, max_seconds=args.hvp_cap)
        dc = time.process_time() - c0
        scale = 1.0 if res["complete"] else C * d / res["hvps"]
        row.update(hvp_hvps=C * d, hvp_done=res["hvps"], hvp_complete=res["complete"],
                   hvp_seconds=res["seconds"] * scale, hvp_cpu_seconds=dc * scale)
        row["hvp_ratio"] = row["hvp_seconds"] / row["flatmon_seconds"]
        row["hvp_cpu_ratio"] = ratio(row["hvp_cpu_seconds"], row["flatmon_cpu_seconds"])
        if res["complete"]:
            row["hvp_rel_diff_kappa"] = est.relative_error(row["flatmon_kappa"], res["relative_flatness"])
        log("κ C=%d: HVP loop %s%s" % (C, fmt_s(row["hvp_seconds"]), "" if res["complete"] else " (extrapolated)"))
        rows.append(row)
    return rows


def table2(rows, args):
    lines = ["### 2. κ (all Hessian blocks): flatmon vs exact autograd, float64",
             "", "Heads: C = C_in, 3×3, pad 1, 4×4 input, ReLU with Z sent, GAP, Linear K = 10, batch N = %d. "
             "flatmon = engine median, fresh snapshot. Dense = `torch.autograd.functional.hessian` via "
             "`flatmon_client.reference.autograd_reference` (child process, cap %s), then κ = Σ ⟨w_c, w_c'⟩ Tr H_cc'. "
             "HVP loop = `estimators.hvp_loop_curvature` (C·d HVPs, memory O(Cd)), run for up to %s and otherwise "
             "EXTRAPOLATED linearly in the HVP count. Ratios: wall / process CPU."
             % (args.n2, fmt_s(args.cap), fmt_s(args.hvp_cap)),
             "",
             "| C | d | Cd | flatmon | dense autograd | × flatmon (wall / CPU) | rel diff Tr H | rel diff κ "
             "| HVP loop (C·d HVPs) | × flatmon (wall / CPU) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["dense_status"] == "measured":
            dense = fmt_s(r["dense_seconds"])
            ratio = "%s / %s" % (fmt_ratio(r["dense_ratio"]), fmt_ratio(r["dense_cpu_ratio"]))
            dt, dk = "%.1e" % r["rel_diff_trace"], "%.1e" % r["rel_diff_kappa"]
        else:
            dense, ratio, dt, dk = r["dense_status"], "—", "—", "—"
        hvp = fmt_s(r["hvp_seconds"]) + ("" if r["hvp_complete"] else " (EXTRAPOLATED from %d HVPs)" % r["hvp_done"])
        lines.append("| %d | %d | %d | %s | %s | %s | %s | %s | %s | %s / %s |" % (
            r["C"], r["d"], r["Cd"], fmt_s(r["flatmon_seconds"]), dense, ratio, dt, dk, hvp, fmt_ratio(r["hvp_ratio"]),
            fmt_ratio(r["hvp_cpu_ratio"])))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# 4. the strongest baselines: exact curvature by per-sample logit Jacobians, Hutch++, Hutchinson to 1 %
# ---------------------------------------------------------------------------------------------------------
def trained_head(C, N, epochs, seed=0, log=print):
    """A ResNet-style head trained here: digits (8×8) → conv 3×3 (1→C) → BN → ReLU → BasicBlock (conv1, BN,
    ReLU, conv2, BN, + identity shortcut, ReLU) → GAP → Linear 10, SGD on 1000 images; the monitored conv
    is the block's conv2 (8×8 output: P = 64, d = 9C). Returns the payload of N training images as
    FlatmonMonitor would send it: kernel W, folded-BN scale a, the pre-activation Z (BN shift and shortcut
    in it), classifier, input F, labels."""
    import torch.nn as nn
    from sklearn.datasets import load_digits
    torch.manual_seed(seed)
    d = load_digits()
    x = torch.from_numpy((d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8))
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm[:1000]], y[perm[:1000]]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
            self.conv1, self.bn1 = nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
            self.conv2, self.bn2 = nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
            self.fc = nn.Linear(C, 10)

        def forward(self, inp, keep=None):
            h = self.stem(inp)
            f = TF.relu(self.bn1(self.conv1(h)))
            z = self.bn2(self.conv2(f)) + h
            if keep is not None:
                keep.update(F=f, Z=z)
            return self.fc(TF.relu(z).mean(dim=(2, 3)))

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    t0 = time.perf_counter()
    for ep in range(epochs):
        net.train()
        for i in torch.randperm(1000).split(64):
            opt.zero_grad()
            TF.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    net.eval()
    keep = {}
    with torch.no_grad():
        logits = net(x[:N], keep)
        acc = float((net(x).argmax(1) == y).float().mean())
    log("trained ResNet-style head C=%d: %d epochs in %.0f s, train accuracy %.3f, CE on the N=%d sent %.4f"
        % (C, epochs, time.perf_counter() - t0, acc, N, float(TF.cross_entropy(logits, y[:N]))))
    bn = net.bn2
    a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy().astype(np.float32)
    return dict(kernel=net.conv2.weight.detach().numpy().copy(), bias=None, scale=a,
                classifier_weight=net.fc.weight.detach().numpy().copy(), classifier_bias=net.fc.bias.detach().numpy().copy(),
                stride=(1, 1), padding=(1, 1), dilation=(1, 1), activation="RELU", negative_slope=0.0, weight_decay=None,
                train=dict(input=keep["F"].numpy().copy(), pre_activation=keep["Z"].numpy().copy(),
                           labels=y[:N].numpy().copy()), train_accuracy=acc, epochs=epochs)


def jacobian_curvature(p, chunk=4):
    """Exact Tr H and κ of a ReLU head from per-sample logit Jacobians J_n = ∂o_n/∂W [K, C, d]: for a
    piecewise-linear σ the Hessian of the cross-entropy w.r.t. W is the generalised Gauss–Newton
    H = mean_n J_nᵀ (diag s_n − s_n s_nᵀ) J_n (σ'' = 0 almost everywhere), so
    Tr H = mean_n Σ_kl M_kl ⟨J_k, J_l⟩ and κ = Σ_cc' Ω_cc' Tr H_cc' = mean_n Σ_kl M_kl ⟨Ω J_k, J_l⟩.
    J by functorch's vmap(jacrev) over `chunk` samples at a time (torch 1.13: functorch; torch ≥ 2:
    torch.func), the forward written like estimators.head_loss (unfold GEMM, Z's additive term fixed).
    Jacobians in float32, the contractions in float64. Returns (trace, kappa)."""
    try:
        from torch.func import jacrev, vmap
    except ImportError:
        from functorch import jacrev, vmap
    if p["activation"] != "RELU" or (p.get("negative_slope") or 0) != 0:
        raise ValueError("the GGN form is exact for piecewise-linear σ only")
    W0 = torch.from_numpy(np.asarray(p["kernel"], np.float32))
    C = W0.shape[0]
    d = int(np.prod(W0.shape[1:]))
    F = torch.from_numpy(np.asarray(p["train"]["input"], np.float32))
    N = F.shape[0]
    X = TF.unfold(F, W0.shape[2:], padding=tuple(p["padding"]), stride=tuple(p["stride"]))     # [N, d, P]
    a = torch.from_numpy(np.asarray(p["scale"], np.float32)) if p.get("scale") is not None else torch.ones(C)
    V = torch.from_numpy(np.asarray(p["classifier_weight"], np.float32))
    b = torch.from_numpy(np.asarray(p["classifier_bias"], np.float32))
    with torch.no_grad():
        zlin = a[None, :, None] * (W0.reshape(C, d) @ X)                                     # [N, C, P]
        Z = p["train"].get("pre_activation")
        r = (torch.from_numpy(np.asarray(Z, np.float32)).reshape(N, C, -1) - zlin) if Z is not None \
            else torch.zeros_like(zlin)

    def logits(w, x, rr):                       # one sample: x [d, P], rr [C, P]
        z = a[:, None] * (w.reshape(C, d) @ x) + rr
        return V @ TF.relu(z).mean(dim=1) + b

    jac = vmap(jacrev(logits), in_dims=(None, 0, 0))
    Wf = W0.reshape(C, d).double()
    omega = Wf @ Wf.T
    tr = ka = 0.0
    for i in range(0, N, chunk):
        with torch.no_grad():
            o = torch.stack([logits(W0, X[n], r[n]) for n in range(i, min(N, i + chunk))]).double()
        J = jac(W0, X[i:i + chunk], r[i:i + chunk]).reshape(-1, V.shape[0], C, d)        # [n, K, C, d]
        s = torch.softmax(o, dim=1)
        M = torch.diag_embed(s) - s[:, :, None] * s[:, None, :]                               # [n, K, K]
        Jd = J.double()
        G = torch.einsum("nkcj,nlcj->nkl", Jd, Jd)
        OJ = torch.einsum("ce,nkej->nkcj", omega, Jd)
        GO = torch.einsum("nkcj,nlcj->nkl", OJ, Jd)
        tr += float((M * G).sum())
        ka += float((M * GO).sum())
    return tr / N, ka / N


def hutchpp_trace(hvp, shape, m, generator, chunk=16):
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021) with m Hessian-vector products: k = m/3 Rademacher
    sketch vectors S, Q = orth(H S), Tr(QᵀHQ) exactly on the range and Hutchinson with k probes on the
    complement: Tr H ≈ Tr(QᵀHQ) + (1/k) Σ gᵢᵀ(I−QQᵀ)H(I−QQᵀ)gᵢ."""
    k = max(1, m // 3)
    n = int(np.prod(shape))

    def H(vs):                                   # [k, n] -> [k, n], in chunks of batched backwards
        out = []
        for i in range(0, vs.shape[0], chunk):
            v = vs[i:i + chunk].reshape((-1,) + tuple(shape))
            out.append((hvp(v, batched=True) if v.shape[0] > 1 else hvp(v[0])[None]).reshape(v.shape[0], n))
        return torch.cat(out)

    S = est.rademacher((k, n), generator=generator)
    Q, _ = torch.linalg.qr(H(S).T.double())                 # [n, k]
    Qf = Q.T.float()
    t_range = float((Qf.double() * H(Qf).double()).sum())
    G = est.rademacher((k, n), generator=generator).double()
    Gp = (G - (G @ Q) @ Q.T).float()
    t_rest = float((Gp.double() * H(Gp).double()).sum()) / k
    return t_range + t_rest


def to_one_percent(name, run_m, exact, ms, seeds, cap, log=print):
    """Runs `run_m(m, seed) -> (estimate, seconds, cpu_seconds)` over `seeds` seeds for each m in `ms`
    until the mean |rel err| over the seeds is ≤ 1 % or the row would exceed `cap` wall seconds. Returns
    the rows (measured) and the first m at 1 % (None when not reached)."""
    rows, spent = [], 0.0
    for m in ms:
        if rows:
            predicted = rows[-1]["seconds"] * m / rows[-1]["m"] * seeds
            if spent + predicted > cap:
                log("%s: m=%d would take ≈ %.0f s more (cap %.0f s): stop" % (name, m, predicted, cap))
                break
        errs, ts, cs = [], [], []
        for sd in range(seeds):
            e, t, c = run_m(m, sd)
            errs.append(est.relative_error(e, exact))
            ts.append(t)
            cs.append(c)
        spent += sum(ts)
        rows.append(dict(m=m, seconds=float(np.median(ts)), cpu_seconds=float(np.median(cs)),
                         mean_abs_rel_err=float(np.mean(errs)), max_abs_rel_err=float(np.max(errs)), seeds=seeds))
        log("%s m=%d: %s, mean |rel err| %.2f %% over %d seeds" % (name, m, fmt_s(rows[-1]["seconds"]),
                                                                   100 * rows[-1]["mean_abs_rel_err"], seeds))
        if rows[-1]["mean_abs_rel_err"] <= 0.01:
            return rows, rows[-1]
    return rows, None


def part4(heads, flat, args):
    """For each (name, payload): flatmon's time; exact Tr H and κ by per-sample Jacobians; Hutchinson and
    Hutch++ run until 1 % mean relative error (measured), or until their time cap."""
    out = {}
    for name, p in heads:
        f = flat[name]
        exact_tr, exact_k = f["hessian_trace"]["mean"], f["relative_flatness"]["mean"]
        t_flat, c_flat = f["engine_seconds"], f.get("engine_cpu_seconds", math.nan)
        C, cin = p["kernel"].shape[:2]
        N = p["train"]["input"].shape[0]
        row = dict(C=int(C), C_in=int(cin), d=int(cin) * 9, N=int(N), K=int(p["classifier_weight"].shape[0]),
                   P=int(np.prod(p["train"]["input"].shape[2:])), flatmon_trace=exact_tr, flatmon_kappa=exact_k,
                   flatmon_seconds=t_flat, flatmon_cpu_seconds=c_flat,
                   train_accuracy=p.get("train_accuracy"), epochs=p.get("epochs"))
        t0, c0 = time.perf_counter(), time.process_time()
        jt, jk = jacobian_curvature(p, chunk=args.jac_chunk)
        row.update(jacobian_seconds=time.perf_counter() - t0, jacobian_cpu_seconds=time.process_time() - c0,
                   jacobian_trace=jt, jacobian_kappa=jk, jacobian_rel_diff_trace=est.relative_error(jt, exact_tr),
                   jacobian_rel_diff_kappa=est.relative_error(jk, exact_k))
        row["jacobian_ratio"] = row["jacobian_seconds"] / t_flat
        row["jacobian_cpu_ratio"] = ratio(row["jacobian_cpu_seconds"], c_flat)
        log("%s: per-sample Jacobians %s (Tr H rel diff %.1e, κ %.1e)" % (
            name, fmt_s(row["jacobian_seconds"]), row["jacobian_rel_diff_trace"], row["jacobian_rel_diff_kappa"]))
        loss_fn, w = est.head_loss(p, dtype=torch.float32)
        shape = tuple(w.shape)

        def hutch(m, sd):
            gen = torch.Generator().manual_seed(7000 + 101 * m + sd)
            t1, c1 = time.perf_counter(), time.process_time()
            e, _ = est.hutchinson_trace(loss_fn, w, m, generator=gen, batch=args.strong_batch)
            return e, time.perf_counter() - t1, time.process_time() - c1

        def hpp(m, sd):
            gen = torch.Generator().manual_seed(9000 + 101 * m + sd)
            t1, c1 = time.perf_counter(), time.process_time()
            hvp = est._Hvp(loss_fn, w)
            e = hutchpp_trace(hvp, shape, m, gen, chunk=args.strong_batch)
            return e, time.perf_counter() - t1, time.process_time() - c1

        for key, fn, ms in (("hutchpp", hpp, [3 * 2 ** k for k in range(2, 12)]),
                            ("hutchinson", hutch, [10 * 2 ** k for k in range(0, 14)])):
            rows, hit = to_one_percent("%s %s" % (name, key), fn, exact_tr, ms, args.strong_seeds, args.strong_cap)
            for r in rows:
                r.update(ratio=r["seconds"] / t_flat, cpu_ratio=ratio(r["cpu_seconds"], c_flat))
            row[key] = dict(rows=rows, one_percent=hit)
            if hit is None and rows:
                # not reached within the cap: m by the 1/√m law from the last row, time linear in m — EXTRAPOLATED
                last = rows[-1]
                m1 = int(math.ceil(last["m"] * (last["mean_abs_rel_err"] / 0.01) ** 2))
                row[key]["extrapolated"] = dict(m=m1, seconds=last["seconds"] * m1 / last["m"],
                                                ratio=last["seconds"] * m1 / last["m"] / t_flat,
                                                cpu_ratio=ratio(last["cpu_seconds"] * m1 / last["m"], c_flat),
                                                law="1/√m from the last measured row (Hutch++ converges faster "
                                                    "than this once its sketch spans the spectrum)" if key == "hutchpp"
                                                else "1/√m from the last measured row")
        out[name] = row
    return out


def table4(res, args):
    lines = ["### 4. The strongest baselines: exact by per-sample Jacobians, Hutch++ and Hutchinson to 1 %", "",
             "Same head and samples for every method; flatmon = engine median (fresh snapshot) from `flatmon compute "
             "--time-engine`; torch %d thread(s); ratios are wall / process CPU against flatmon. Per-sample Jacobians: "
             "functorch `vmap(jacrev)` of the logits w.r.t. W, then the generalised Gauss–Newton contraction — exact "
             "for ReLU (σ'' = 0 a.e.; smooth σ would need the second-order term, not implemented, so this row is "
             "ReLU-only). Hutchinson (Rademacher) and Hutch++ (Meyer et al. 2021; m HVPs = m/3 sketch + m/3 range "
             "+ m/3 residual probes) by double-backward HVPs in float32, batched %d probes per backward; each m "
             "over %d seeds, m doubled until the mean |rel err| vs flatmon's exact Tr H is ≤ 1 %% (measured) or "
             "the next row would pass the %s cap per method and head (then the 1 %% row is EXTRAPOLATED)."
             % (args.threads, args.strong_batch, args.strong_seeds, fmt_s(args.strong_cap)), "",
             "| head | method | HVPs / passes | wall | × flatmon (wall / CPU) | error vs flatmon | measured? |",
             "|---|---|---:|---:|---:|---:|---|"]
    for name, r in res.items():
        h = "%s (C = %d, d = %d, N = %d, P = %d)" % (name, r["C"], r["d"], r["N"], r["P"])
        lines.append("| %s | flatmon (Tr H, κ, κ_norm, κ_V together) | — | %s | 1× | 0 | measured |"
                     % (h, fmt_s(r["flatmon_seconds"])))
        lines.append("| %s | exact Tr H and κ, per-sample Jacobians (GGN) | %d·%d backward | %s | %s / %s | "
                     "Tr H %.1e, κ %.1e | measured |" % (
                         h, r["N"], r["K"], fmt_s(r["jacobian_seconds"]), fmt_ratio(r["jacobian_ratio"]),
                         fmt_ratio(r["jacobian_cpu_ratio"]), r["jacobian_rel_diff_trace"], r["jacobian_rel_diff_kappa"]))
        for key, label in (("hutchpp", "Hutch++"), ("hutchinson", "Hutchinson")):
            x = r[key]
            for row in x["rows"]:
                lines.append("| %s | %s | %d | %s | %s / %s | %.2f %% | measured |" % (
                    h, label, row["m"], fmt_s(row["seconds"]), fmt_ratio(row["ratio"]), fmt_ratio(row["cpu_ratio"]),
                    100 * row["mean_abs_rel_err"]))
            if x["one_percent"]:
                o = x["one_percent"]
                lines.append("| %s | **%s to 1 %%** | %d | %s | **%s / %s** | %.2f %% | **measured** |" % (
                    h, label, o["m"], fmt_s(o["seconds"]), fmt_ratio(o["ratio"]), fmt_ratio(o["cpu_ratio"]),
                    100 * o["mean_abs_rel_err"]))
            elif "extrapolated" in x:
                e = x["extrapolated"]
                lines.append("| %s | **%s to 1 %%** | ≈ %d | ≈ %s | **≈ %s / %s** | 1 %% | **EXTRAPOLATED** (%s) |" % (
                    h, label, e["m"], fmt_s(e["seconds"]), fmt_ratio(e["ratio"]), fmt_ratio(e["cpu_ratio"]), e["law"]))
    return "\n".join(lines)


def strongest(args, omp):
    """Part 4 alone: the random ResNet-18-like head and a trained ResNet-style head, one flatmon run."""
    heads = []
    if args.strong_random_c:
        heads.append(("random C=%d" % args.strong_random_c, make_head(args.strong_random_c, args.n1, seed=1)))
    if args.strong_trained_c:
        heads.append(("trained C=%d" % args.strong_trained_c,
                      trained_head(args.strong_trained_c, args.strong_trained_n, args.strong_epochs, log=log)))
    with tempfile.TemporaryDirectory(prefix="flatmon-compare-") as tmp:
        path = Path(tmp) / "strongest.pb"
        recs = []
        for name, p in heads:
            recs += records(name, p)
        write_delimited(path, recs)
        log("flatmon compute --time-engine %d on %d heads (OMP_NUM_THREADS=%d)" % (args.flatmon_runs, len(heads), omp))
        flat, _ = run_flatmon(path, args.flatmon_runs, omp)
    return part4(heads, flat, args)


# ---------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads and flatmon's OMP_NUM_THREADS (default 2)")
    ap.add_argument("--flatmon-omp", type=int, default=None,
                    help="flatmon's OMP_NUM_THREADS (default: --threads)")
    ap.add_argument("--seeds", type=int, default=5, help="independent probe seeds per m (default 5)")
    ap.add_argument("--probes", type=int, nargs="+", default=[10, 100, 1000], help="Hutchinson m values")
    ap.add_argument("--batch", type=int, default=1, help="probes per batched backward (default 1: textbook loop)")
    ap.add_argument("--n1", type=int, default=32, help="samples of the C=512 head (default 32)")
    ap.add_argument("--c1", type=int, default=512, help="channels of the part-1 head (default 512)")
    ap.add_argument("--hutchinson-cap", type=float, default=240.0,
                    help="wall seconds allowed to each Hutchinson row (all its seeds; default 240)")
    ap.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256, 512],
                    help="C values of the κ scaling curve")
    ap.add_argument("--n2", type=int, default=8, help="samples of the κ heads (default 8)")
    ap.add_argument("--cap", type=float, default=60.0, help="time cap of one dense autograd point (default 60 s)")
    ap.add_argument("--hvp-cap", type=float, default=10.0, help="seconds of HVP loop per point before extrapolating")
    ap.add_argument("--dense-mem-gb", type=float, default=4.0, help="memory cap of the dense Hessian (default 4 GB)")
    ap.add_argument("--flatmon-runs", type=int, default=5, help="timed engine runs (median; default 5)")
    ap.add_argument("--json", default=str(REPO / "docs" / "comparisons.json"), help="where to write the JSON")
    ap.add_argument("--only", choices=("all", "strongest"), default="all",
                    help="'strongest': run part 4 only and merge it into the existing JSON")
    ap.add_argument("--strong-random-c", type=int, default=512, help="part 4: channels of the random head (0: skip)")
    ap.add_argument("--strong-trained-c", type=int, default=64, help="part 4: channels of the trained head (0: skip)")
    ap.add_argument("--strong-trained-n", type=int, default=256, help="part 4: samples of the trained head")
    ap.add_argument("--strong-epochs", type=int, default=8, help="part 4: training epochs of the trained head")
    ap.add_argument("--strong-seeds", type=int, default=3, help="part 4: probe seeds per m")
    ap.add_argument("--strong-batch", type=int, default=8, help="part 4: probes per batched backward")
    ap.add_argument("--strong-cap", type=float, default=300.0,
                    help="part 4: wall seconds per method and head before the 1 %% row is extrapolated")
    ap.add_argument("--jac-chunk", type=int, default=4, help="part 4: samples per vmap(jacrev) call")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    omp = args.flatmon_omp or args.threads
    t_start = time.perf_counter()
    if args.only == "strongest":
        r4 = strongest(args, omp)
        print(table4(r4, args))
        prev = {}
        if os.path.exists(args.json):
            with open(args.json) as f:
                prev = json.load(f)
        prev["strongest_baselines"] = dict(
            generated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            command="scripts/bench/compare " + " ".join(sys.argv[1:]), heads=r4,
            machine=dict(cpus=os.cpu_count(), torch=torch.__version__, torch_threads=args.threads,
                         flatmon_omp_threads=omp, loadavg_at_end=os.getloadavg()),
            total_seconds=time.perf_counter() - t_start, load_average_1min_at_each_step=LOADS)
        with open(args.json, "w") as f:
            json.dump(prev, f, indent=1, default=float)
            f.write("\n")
        log("merged part 4 into %s" % args.json)
        return

    head1 = make_head(args.c1, args.n1, seed=1)
    heads2 = [(C, make_head(C, args.n2, seed=100 + C)) for C in args.channels]
    with tempfile.TemporaryDirectory(prefix="flatmon-compare-") as tmp:
        path = Path(tmp) / "compare.pb"
        recs = records("hutchinson-c%d" % args.c1, head1)
        for C, p in heads2:
            recs += records("kappa-c%d" % C, p)
        write_delimited(path, recs)
        log("flatmon compute --time-engine %d on %d heads (OMP_NUM_THREADS=%d)" % (args.flatmon_runs, 1 + len(heads2),
                                                                                   omp))
        flat, flat_wall = run_flatmon(path, args.flatmon_runs, omp)
    log("flatmon: %.1f s wall including JVM start-up" % flat_wall)

    r1 = part1(head1, flat["hutchinson-c%d" % args.c1], args)
    r2 = part2(heads2, flat, args)
    r4 = strongest(args, omp)
    total = time.perf_counter() - t_start

    md = [table1(r1), "", table2(r2, args), "", table4(r4, args), "",
          "### 3. Engine throughput vs the physical limit", "",
          "See the README performance table (`flatmon bench engine`).", "",
          "Machine: %s, %d CPU(s) visible, torch %s with %d thread(s), flatmon OMP_NUM_THREADS=%d; whole run %.0f s."
          % (platform.processor() or platform.machine(), os.cpu_count(), torch.__version__, args.threads, omp,
             total)]
    print("\n".join(md))
    out = dict(generated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               command="scripts/bench/compare " + " ".join(sys.argv[1:]),
               machine=dict(cpus=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                            torch=torch.__version__, torch_threads=args.threads, flatmon_omp_threads=omp,
                            loadavg_at_end=os.getloadavg()),
               flatmon_wall_seconds_with_jvm=flat_wall, total_seconds=total,
               load_average_1min_at_each_step=LOADS,
               trace_vs_hutchinson=r1, kappa_vs_autograd=r2, strongest_baselines=dict(heads=r4),
               engine_vs_physical_limit="see README performance table (flatmon bench engine)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=float)
        f.write("\n")
    log("wrote %s (%.0f s in all)" % (args.json, total))


if __name__ == "__main__":
    main()
