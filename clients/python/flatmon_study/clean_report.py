"""python -m flatmon_study.clean_report DIR: docs/study-clean.md from a (possibly partial) run of the
pre-registered clean-label study (DIR = target/study-clean: results.json, table.md, training.jsonl)."""
import json
import os
import sys


def main(argv=None):
    d = (argv or sys.argv[1:] or ["target/study-clean"])[0]
    with open(os.path.join(d, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(d, "table.md")) as f:
        table = f.read()
    with open(os.path.join(d, "training.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    meta = res["meta"]
    n, planned, ranked = meta["trained"], meta["planned"], res["n_models"]
    excl = n - sum(1 for r in rows if r["reached"])
    lrs = sorted({r["lr"] for r in rows})
    partial = meta.get("partial")
    L = []
    if partial:
        L += ["# Pre-registered clean-label study — PARTIAL RUN (%d of %d models trained, %d ranked)" % (n, planned, ranked),
              "",
              "**This run is incomplete. It covers %d of the %d models of the pre-registered grid, of which %d reached "
              "the stopping criterion; the hypotheses H1 and H2 are not decided, and no figure on this page is a "
              "result of the study.** The protocol — hypotheses, grid, primary tests, exclusion rule — is "
              "[study-protocol.md](study-protocol.md), committed before the run started." % (n, planned, ranked)]
    else:
        L += ["# Pre-registered clean-label study (%d models, %d ranked)" % (n, ranked), "",
              "Protocol: [study-protocol.md](study-protocol.md), committed before the run started."]
    L += ["", "## What happened", "",
          "- `scripts/study/run --clean` ran under `nice -n 19` on the 2-core machine while six other heavy jobs "
          "ran on it (1-minute load average 20–40); the protocol's budget is 75 minutes on an otherwise idle "
          "machine. %s`scripts/study/run --clean --no-train` measured the %d models that reached train CE ≤ 0.01 "
          "through `flatmon serve` and `flatmon compute --eigen` and ran the pre-registered analysis on them. "
          "Per-model values: [study-clean.csv](study-clean.csv). `scripts/study/run --clean` resumes the run "
          "(finished models are kept in `target/study-clean/training.jsonl`)."
          % ("It was stopped after %d models; " % n if partial else "", ranked),
          "- Training runs the slowest configurations first, so the partial set is not a random subset of the "
          "grid: the trained models have lr %s." % " and ".join("%g (%d models)" % (v, sum(1 for r in rows if r["lr"] == v))
                                                                for v in lrs),
          "- **Exclusions: %d of the %d trained models (%.0f %%) never reached train CE ≤ 0.01 within %d epochs.** "
          "By hyperparameter value (trained / excluded): %s." % (
              excl, n, 100.0 * excl / max(n, 1), meta["max_epochs"],
              "; ".join("%s %s: %d/%d" % (h, v, c["trained"], c["excluded"])
                        for h, vals in res["counts"]["by_hparam"].items() for v, c in vals.items())),
          "- Jiang's Ψ below divides by the groups present among the trained models%s." % (
              " (not the 32 of the full grid)" if partial else "")]
    pe = res.get("paired", {}).get("test_error", {})
    if pe.get("w_norm2") and pe.get("trace"):
        L += ["", "## The primary differences on the %d ranked models%s" % (ranked, " (not a result)" if partial else ""),
              "",
              "Δτ with test error, 97.5 %% CI: H1 (κ − ‖W‖²) %+.2f [%+.2f, %+.2f]; H2 (κ − Tr H) %+.2f [%+.2f, %+.2f]."
              % (pe["w_norm2"]["diff"], pe["w_norm2"]["lo975"], pe["w_norm2"]["hi975"], pe["trace"]["diff"],
                 pe["trace"]["lo975"], pe["trace"]["hi975"])]
    L += ["", "## Tables (scripts/study/run's table.md)", "", table]
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
