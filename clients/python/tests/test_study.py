"""Smoke tests of the generalisation study's statistics (flatmon_study.stats, flatmon_study.analysis) on
synthetic data with known answers: no training, no broker.

    cd clients/python && /usr/bin/python3 -m unittest tests.test_study
"""
import itertools
import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from flatmon_study import analysis, grid, stats  # noqa: E402


class KendallTau(unittest.TestCase):
    def test_extremes(self):
        x = np.arange(10.0)
        self.assertEqual(stats.kendall_tau_b(x, 2 * x + 1), 1.0)
        self.assertEqual(stats.kendall_tau_b(x, -x), -1.0)
        self.assertTrue(math.isnan(stats.kendall_tau_b(x, np.ones(10))))   # constant: undefined

    def test_known_values(self):
        # 10 pairs, 7 concordant, 3 discordant: (7 − 3) / 10
        self.assertAlmostEqual(stats.kendall_tau_b([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]), 0.4, places=12)
        # ties in both: n0 = 15, n1 = 2 (x ties), n2 = 2 (y ties), C − D = 7 -> 7 / sqrt(13 · 13)
        self.assertAlmostEqual(stats.kendall_tau_b([1, 1, 2, 3, 3, 4], [1, 2, 2, 3, 1, 5]), 7 / 13, places=12)

    def test_matches_scipy(self):
        # scipy is a test dependency (scripts/install-deps test installs python3-scipy): a missing scipy
        # fails this cross-check instead of skipping it silently
        try:
            from scipy.stats import kendalltau
        except ImportError as e:
            self.fail("scipy is required for the Kendall tau-b cross-check (scripts/install-deps test): %s" % e)
        rng = np.random.default_rng(3)
        for _ in range(20):
            x = rng.integers(0, 6, 40).astype(float)        # many ties
            y = x + rng.integers(0, 4, 40)
            self.assertAlmostEqual(stats.kendall_tau_b(x, y), kendalltau(x, y).statistic, places=12)

    def test_resampled_equals_direct(self):
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=30), rng.normal(size=30)
        idx = stats.bootstrap_indices(30, 130, seed=1)
        got = stats.kendall_tau_b_resampled(x, y, idx)
        want = [stats.kendall_tau_b(x[i], y[i]) for i in idx]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        ident = np.arange(30)[None, :]
        self.assertAlmostEqual(stats.kendall_tau_b_resampled(x, y, ident)[0], stats.kendall_tau_b(x, y), places=12)


class Bootstrap(unittest.TestCase):
    def test_monotone_ci_is_degenerate(self):
        x = np.arange(25.0)
        idx = stats.bootstrap_indices(25, 500, seed=0)
        t, lo, hi = stats.tau_with_ci(x, np.exp(x / 5), idx)
        self.assertEqual((t, lo, hi), (1.0, 1.0, 1.0))

    def test_ci_covers_and_shrinks(self):
        rng = np.random.default_rng(5)
        x = rng.normal(size=200)
        y = x + rng.normal(size=200)                     # population τ = (2/π) asin(1/√2) = 0.5
        t, lo, hi = stats.tau_with_ci(x, y, stats.bootstrap_indices(200, 1000, seed=2))
        self.assertLess(lo, t)
        self.assertLess(t, hi)
        self.assertLess(lo, 0.5)
        self.assertGreater(hi, 0.5)
        self.assertLess(hi - lo, 0.25)

    def test_paired_difference(self):
        rng = np.random.default_rng(1)
        y = rng.normal(size=40)
        idx = stats.bootstrap_indices(40, 300, seed=0)
        d, lo, hi, frac = stats.paired_difference(y, -y, y, idx)      # τ = 1 vs τ = −1
        self.assertEqual((d, lo, hi, frac), (2.0, 2.0, 2.0, 1.0))
        d, lo, hi, frac = stats.paired_difference(y, 3 * y, y, idx)   # identical ranks: no difference
        self.assertEqual((d, lo, hi, frac), (0.0, 0.0, 0.0, 0.0))


class Granulated(unittest.TestCase):
    def factorial(self):
        hp = [dict(a=a, b=b, c=c, seed=s) for a, b, c, s in itertools.product((0, 1), (0, 1), (10, 20), (0, 1, 2))]
        return hp

    def test_known_psi(self):
        hp = self.factorial()
        # target rises with a and b; the measure rises with a, falls with b, ignores c (constant in c groups)
        target = np.array([h["a"] + 2 * h["b"] + 0.1 * h["seed"] for h in hp])
        measure = np.array([h["a"] - h["b"] for h in hp], dtype=float)
        per, psi = stats.granulated_tau(measure, target, hp, ["a", "b", "c"])
        self.assertEqual(per["a"], (1.0, 12, 0))       # 2 × 2 × 3 groups, each a pair: τ = +1
        self.assertEqual(per["b"], (-1.0, 12, 0))
        self.assertTrue(math.isnan(per["c"][0]))       # measure constant within every c group
        self.assertEqual(per["c"][1:], (0, 12))
        self.assertEqual(psi, 0.0)                     # mean of +1 and −1; c is undefined, left out

    def test_missing_models_shrink_groups(self):
        hp = self.factorial()
        target = np.array([h["a"] for h in hp], dtype=float)
        keep = [i for i, h in enumerate(hp) if not (h["a"] == 1 and h["b"] == 0 and h["c"] == 10 and h["seed"] == 0)]
        per, _ = stats.granulated_tau(target[keep], target[keep], [hp[i] for i in keep], ["a"])
        self.assertEqual(per["a"], (1.0, 11, 1))       # the group that lost a model is skipped and counted


class Analysis(unittest.TestCase):
    def rows(self):
        spec = dict(grid.QUICK, width=(16,), depth=(1,), weight_decay=(0.0, 3e-4), batch_size=(32,), lr=(0.1,),
                    label_noise=(0.0, 0.1), seeds=(0, 1, 2))
        rng = np.random.default_rng(0)
        rows = []
        for cfg in grid.configs(spec):
            gap = 0.1 + 2 * cfg.label_noise + 100 * cfg.weight_decay + 0.01 * rng.normal()
            r = dict(key=cfg.key, **cfg.hparams(), reached=not (cfg.label_noise and cfg.seed == 2 and
                                                                   cfg.weight_decay), epochs=10,
                     train_loss=0.005, test_loss=gap + 0.005, gap=gap, test_error=gap / 3, flipped=0)
            for col, _, _ in analysis.MEASURES:
                r.setdefault(col, gap * (1 + 0.5 * rng.random()) if col != "train_loss" else 0.005)
            r["w_norm2"] = -gap                         # a measure ranked exactly backwards
            rows.append(r)
        return spec, rows

    def test_end_to_end_on_synthetic_rows(self):
        spec, rows = self.rows()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.csv")
            analysis.write_csv(rows, path)
            back = analysis.read_csv(path)
        self.assertEqual(len(back), 12)
        res = analysis.analyse(back, grid.varied(spec), reps=200, log=lambda *_: None)
        c = res["counts"]
        self.assertEqual(c["all"], dict(trained=12, reached=11, excluded=1))
        self.assertEqual(c["by_hparam"]["label_noise"]["0.1"], dict(trained=6, reached=5, excluded=1))
        self.assertEqual(list(c["excluded_configs"].values()), [[2]])
        self.assertEqual(res["tau"]["gap"]["w_norm2"]["tau"], -1.0)
        self.assertEqual(res["granulated"]["gap"]["w_norm2"]["psi"], -1.0)
        self.assertEqual(res["granulated"]["gap"]["w_norm2"]["per"]["label_noise"]["skipped"], 1)
        p = res["paired"]["gap"]["w_norm2"]
        self.assertGreater(p["diff"], 1.0)
        self.assertEqual(p["frac_positive"], 1.0)
        md = analysis.markdown(res, grid.varied(spec), dict(max_epochs=10))
        self.assertIn("| κ |", md)
        self.assertIn("12 trained, 11 reached", md)


if __name__ == "__main__":
    unittest.main()


class Invariance(unittest.TestCase):
    """flatmon_study.invariance: the rescalings preserve the function; through `bin/flatmon compute`, κ and
    κ_norm do not move while ‖W‖², Tr H and λ_max do (the --quick smoke run of scripts/study/invariance)."""

    def test_reparameterisations_preserve_the_function(self):
        import torch
        from flatmon_study import invariance
        from flatmon_study.models import study_cnn
        torch.manual_seed(0)
        model = study_cnn(6, 2).eval()
        x = torch.rand(20, 1, 8, 8)
        with torch.no_grad():
            ref = model(x).double()
        rng = np.random.default_rng(0)
        for kind in invariance.REPARAMS:
            m, fac = invariance.reparameterise(model, kind, rng)
            with torch.no_grad():
                out = m(x).double()
            self.assertLess(float((out - ref).abs().max() / ref.abs().max()), 1e-5, kind)
            moved = max(np.abs(np.log(fac["lam"])).max(), np.abs(np.log(fac["mu"])).max())
            self.assertGreater(moved, 0.1, kind)                # something was actually rescaled
            if kind != "all three":                           # one draw each: within [0.25, 4]
                for f in (fac["lam"], fac["mu"]):
                    self.assertTrue(((f >= 0.25) & (f <= 4)).all(), kind)

    def test_quick_run_through_flatmon(self):
        from flatmon_study import invariance
        with tempfile.TemporaryDirectory() as tmp:
            s = invariance.main(["--quick", "--out", tmp])
            self.assertTrue(os.path.exists(os.path.join(tmp, "invariance.pb")))
        for kind in invariance.REPARAMS:
            self.assertLess(s[kind]["kappa_norm"]["max_rel_change"], 1e-5, kind)
            self.assertLess(s[kind]["logit_change_max"], 1e-5, kind)
        for kind in ("filter-wise", "layer-wise"):
            self.assertLess(s[kind]["kappa"]["max_rel_change"], 1e-5, kind)
            self.assertEqual(s[kind]["kappa"]["tau_before"], s[kind]["kappa"]["tau_after"])
            for m in ("w_norm2", "trace", "lambda_max"):
                self.assertGreater(s[kind][m]["max_rel_change"], 0.05, (kind, m))
        self.assertLess(s["layer-wise"]["wv_norm2"]["max_rel_change"], 1e-5)     # ‖W‖²·‖V‖²: layer-wise only
        self.assertGreater(s["filter-wise"]["wv_norm2"]["max_rel_change"], 0.05)
        self.assertGreater(s["input-channel"]["kappa"]["max_rel_change"], 0.05)  # κ is not input-channel invariant


class CleanStudyQuick(unittest.TestCase):
    """scripts/study/run --clean --quick: the pre-registered study's whole chain on 8 models (training with
    the cosine schedule and shift augmentation, flatmon serve, flatmon compute --eigen, the analysis), and
    that it resumes: a second invocation trains nothing."""

    def test_quick_chain_and_resume(self):
        import json
        from flatmon_study import __main__ as study
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(study.main(["--clean", "--quick", "--out", tmp]), 0)
            with open(os.path.join(tmp, "training.jsonl")) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            self.assertEqual(len(rows), 8)
            self.assertEqual({r["augment"] for r in rows}, {0, 1})
            self.assertTrue(all(r["schedule"] == "cosine" for r in rows))
            with open(os.path.join(tmp, "results.json")) as f:
                res = json.load(f)
            self.assertEqual(res["meta"]["planned"], 8)
            self.assertFalse(res["meta"]["partial"])
            self.assertEqual(res["counts"]["all"]["trained"], 8)
            # resumable: nothing is retrained, and --no-train analyses what exists
            self.assertEqual(study.main(["--clean", "--quick", "--out", tmp, "--no-train", "--phases", "analyse"]), 0)
            with open(os.path.join(tmp, "training.jsonl")) as f:
                self.assertEqual(sum(1 for line in f if line.strip()), 8)


class JiangGranulated(unittest.TestCase):
    def test_seeds_pooled_and_m_counts_emptied_groups(self):
        # two hyperparameters a, b ∈ {0, 1}, two seeds; measure = target = a + small seed term -> within
        # each b-group (4 models, seeds pooled) τ over a is 1 with ties broken by the seed consistently
        hp, m = [], []
        for a, b, s in itertools.product((0, 1), (0, 1), (0, 1)):
            hp.append(dict(a=a, b=b))
            m.append(a + 0.1 * s)
        m = np.array(m)
        per, psi = stats.granulated_tau_jiang(m, m, hp, ["a"], {"a": 2})
        self.assertEqual(per["a"], (1.0, 2, 2))
        # drop both a=1 models of group b=1: that group can no longer be ranked, contributes 0, still counts
        keep = [i for i, h in enumerate(hp) if not (h["a"] == 1 and h["b"] == 1)]
        per, psi = stats.granulated_tau_jiang(m[keep], m[keep], [hp[i] for i in keep], ["a"], {"a": 2})
        self.assertEqual(per["a"], (0.5, 1, 2))
        self.assertEqual(psi, 0.5)
