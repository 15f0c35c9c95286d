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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    omp = args.flatmon_omp or args.threads
    t_start = time.perf_counter()

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
    total = time.perf_counter() - t_start

    md = [table1(r1), "", table2(r2, args), "",
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
               trace_vs_hutchinson=r1, kappa_vs_autograd=r2,
               engine_vs_physical_limit="see README performance table (flatmon bench engine)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=float)
        f.write("\n")
    log("wrote %s (%.0f s in all)" % (args.json, total))


if __name__ == "__main__":
    main()
