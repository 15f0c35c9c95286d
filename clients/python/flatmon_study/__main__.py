"""python -m flatmon_study [--quick] [--out DIR] ...: train the family, measure it through flatmon, rank.

Phases (each resumable from the files it leaves in --out): train (training.jsonl, models/), feed
(flatmon.json, records/), eigen (eigen.json), baselines (baselines.json), analyse (models.csv,
results.json, table.md, generalisation.png)."""
import argparse
import json
import os
import statistics
import sys
import time
import uuid

from . import analysis, grid


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def _load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/study/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2-minute smoke version (8 models)")
    ap.add_argument("--clean", action="store_true",
                    help="the pre-registered clean-label study of docs/study-protocol.md (128 models)")
    ap.add_argument("--no-train", action="store_true",
                    help="train nothing: measure and analyse the models already in training.jsonl (a partial run)")
    ap.add_argument("--out", default=None, help="output directory (default target/study or target/study-quick)")
    ap.add_argument("--workers", type=int, default=2, help="training processes (at most 2)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default: the grid's)")
    ap.add_argument("--max-epochs", type=int, default=None, help="epoch cap (default: the grid's)")
    ap.add_argument("--train-size", type=int, default=500, help="training images (the rest of the 1797 are the test set)")
    ap.add_argument("--reps", type=int, default=None, help="bootstrap resamples (default 2000; 300 with --quick)")
    ap.add_argument("--eval", dest="with_eval", action="store_true", default=None,
                    help="also publish the test set as EVAL (a cross-check of the test loss; default with --quick)")
    ap.add_argument("--no-eval", dest="with_eval", action="store_false")
    ap.add_argument("--phases", default="train,feed,eigen,baselines,analyse")
    ap.add_argument("--redo", default="", help="phases to recompute even if their output exists (e.g. feed,eigen)")
    ap.add_argument("--publish", action="store_true",
                    help="copy models.csv and generalisation.png to docs/generalisation.{csv,png}")
    a = ap.parse_args(argv)
    if a.clean:
        spec = dict(grid.CLEAN_QUICK if a.quick else grid.CLEAN)
    else:
        spec = dict(grid.QUICK if a.quick else grid.FULL)
    if a.seeds:
        spec["seeds"] = tuple(range(a.seeds))
    if a.max_epochs:
        spec["max_epochs"] = a.max_epochs
    with_eval = a.quick if a.with_eval is None else a.with_eval
    reps = a.reps or (300 if a.quick else 2000)
    workers = max(1, min(2, a.workers))
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    name = ("study-clean" if a.clean else "study") + ("-quick" if a.quick else "")
    out = os.path.abspath(a.out or os.path.join(repo, "target", name))
    os.makedirs(out, exist_ok=True)
    phases = set(a.phases.split(","))
    redo = set(filter(None, a.redo.split(",")))
    cfgs = grid.configs(spec)
    varied = grid.varied(spec)
    meta = dict(grid={h: list(spec[h]) for h in grid.ALL_HPARAMS if h in spec}, seeds=list(spec["seeds"]),
                max_epochs=spec["max_epochs"], schedule=spec.get("schedule", "constant"),
                train_size=a.train_size, test_size=1797 - a.train_size, workers=workers, reps=reps, varied=varied)
    log("flatmon study: %d configurations x %d seeds = %d models; output %s" % (
        len(cfgs) // len(spec["seeds"]), len(spec["seeds"]), len(cfgs), out))
    log("grid: " + ", ".join("%s %s" % (h, list(spec[h])) for h in grid.ALL_HPARAMS if h in spec))
    if a.clean:
        meta["protocol"] = "docs/study-protocol.md"
    timing = _load(os.path.join(out, "timing.json")) or {}
    t_all = time.monotonic()

    # 1. train
    t0 = time.monotonic()
    from .train import train_all
    planned = len(cfgs)
    if a.no_train:
        done = set()
        tpath = os.path.join(out, "training.jsonl")
        if os.path.exists(tpath):
            with open(tpath) as f:
                done = {json.loads(line)["key"] for line in f if line.strip()}
        cfgs = [c for c in cfgs if c.key in done]
        log("--no-train: %d of the %d models of the grid are trained; measuring those only" % (len(cfgs), planned))
    rows = train_all(cfgs, spec["max_epochs"], a.train_size, out, workers=workers, log=log)
    meta.update(planned=planned, trained=len(rows), partial=len(rows) < planned)
    if time.monotonic() - t0 > 5:
        timing["train_s"] = time.monotonic() - t0
    reached = [r for r in rows if r["reached"]]
    log("training: %d trained, %d reached the criterion, %d excluded" % (len(rows), len(reached),
                                                                         len(rows) - len(reached)))

    # 2. feed through flatmon serve
    fpath = os.path.join(out, "flatmon.json")
    fl = _load(fpath) or {}
    if "feed" in phases and ("feed" in redo or any(r["key"] not in fl for r in reached)):
        from .pipeline import feed
        t0 = time.monotonic()
        tag = ("q" if a.quick else "f") + uuid.uuid4().hex[:6]
        fl = feed(reached, a.train_size, out, tag, with_eval=with_eval, log=log)
        analysis.save_json(fl, fpath)
        timing["feed_s"] = time.monotonic() - t0
        redo.add("eigen")

    # 3. λ_max offline on the teed records
    epath = os.path.join(out, "eigen.json")
    eg = _load(epath) or {}
    if "eigen" in phases and fl and ("eigen" in redo or any(v["run_id"] not in eg for v in fl.values())):
        from .pipeline import offline_eigen
        t0 = time.monotonic()
        eg = offline_eigen(out, log=log)
        analysis.save_json(eg, epath)
        timing["eigen_s"] = time.monotonic() - t0

    # 4. baselines at the median engine time
    bpath = os.path.join(out, "baselines.json")
    bl = _load(bpath) or {}
    budget = statistics.median(v["engine_seconds"] for v in fl.values()) if fl else float("nan")
    if "baselines" in phases and fl and ("baselines" in redo or any(r["key"] not in bl for r in reached)):
        from .measures import baselines
        t0 = time.monotonic()
        log("baselines: ‖W‖², ‖W‖²·‖V‖², Hutchinson Tr H with a fixed budget of %.4f s per model (the median "
            "flatmon engine time of a TRAIN measurement)" % budget)
        bl = baselines(reached, a.train_size, budget, log=log)
        analysis.save_json(bl, bpath)
        timing["baselines_s"] = time.monotonic() - t0

    # 5. analyse
    merged = []
    for r in rows:
        m = dict(r)
        f = fl.get(r["key"])
        if f:
            m.update(f)
            m.update(eg.get(f["run_id"], {}))
        m.update(bl.get(r["key"], {}))
        merged.append(m)
    analysis.write_csv(merged, os.path.join(out, "models.csv"))
    if "analyse" in phases:
        t0 = time.monotonic()
        rows_csv = analysis.read_csv(os.path.join(out, "models.csv"))
        res = analysis.analyse(rows_csv, varied, reps=reps, log=log)
        probes = [v["hutchinson_probes"] for v in bl.values()]
        eng = sorted(v["engine_seconds"] for v in fl.values())
        meta.update(budget_seconds=budget, hutchinson_probes_median=statistics.median(probes) if probes else None,
                    hutchinson_probes_min=min(probes) if probes else None,
                    engine_seconds_min=eng[0] if eng else None, engine_seconds_max=eng[-1] if eng else None)
        if fl:
            worst = max(abs(v["offline_kappa"] - fl[k]["kappa"]) / abs(fl[k]["kappa"])
                        for k in fl for v in [eg.get(fl[k]["run_id"])] if v) if eg else float("nan")
            meta["max_rel_diff_kappa_serve_vs_compute"] = worst
            meta["max_abs_diff_train_loss_flatmon_vs_torch"] = max(
                abs(fl[r["key"]]["flatmon_train_loss"] - r["train_loss"]) for r in reached if r["key"] in fl)
            if with_eval:
                meta["max_abs_diff_test_loss_flatmon_vs_torch"] = max(
                    abs(fl[r["key"]]["flatmon_test_loss"] - r["test_loss"]) for r in reached if r["key"] in fl)
        timing["analyse_s"] = time.monotonic() - t0
        timing["total_this_invocation_s"] = time.monotonic() - t_all
        res["meta"] = meta
        res["timing"] = timing
        analysis.save_json(res, os.path.join(out, "results.json"))
        analysis.save_json(timing, os.path.join(out, "timing.json"))
        md = analysis.markdown(res, varied, meta)
        with open(os.path.join(out, "table.md"), "w") as f:
            f.write(md)
        try:
            analysis.plot(rows_csv, res, os.path.join(out, "generalisation.png"))
        except ImportError as e:
            log("no plot (%s): scripts/install-deps study installs python3-matplotlib" % e)
        print(md)
        log("meta: " + json.dumps({k: v for k, v in meta.items() if k not in ("grid",)}, default=str))
        log("timing: " + ", ".join("%s %.0f s" % (k, v) for k, v in timing.items()))
    if a.publish:
        import shutil
        docs = os.path.join(repo, "docs")
        shutil.copyfile(os.path.join(out, "models.csv"), os.path.join(docs, "generalisation.csv"))
        if os.path.exists(os.path.join(out, "generalisation.png")):
            shutil.copyfile(os.path.join(out, "generalisation.png"), os.path.join(docs, "generalisation.png"))
        log("published docs/generalisation.csv and docs/generalisation.png")
    log("done: %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
