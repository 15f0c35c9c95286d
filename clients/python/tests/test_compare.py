"""The strongest baselines of scripts/bench/compare.py (part 4) against float64 autograd with every Hessian
block (flatmon_client.reference): exact Tr H and κ from per-sample logit Jacobians, Hutch++ exact once its
sketch spans the whole space, and the to-1 % driver.

    /usr/bin/python3 -m unittest discover -s clients/python/tests -p test_compare.py
"""
import importlib.util
import unittest
from pathlib import Path

import numpy as np
import torch

import support  # noqa: F401  (sets sys.path)
from flatmon_client import estimators as est
from flatmon_client.reference import autograd_reference

REPO = Path(__file__).resolve().parents[3]


def load_compare():
    spec = importlib.util.spec_from_file_location("flatmon_compare", REPO / "scripts" / "bench" / "compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class StrongestBaselines(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cmp = load_compare()
        torch.set_num_threads(1)

    def test_jacobian_curvature_matches_dense_autograd(self):
        for C, N, seed in ((4, 5, 3), (6, 3, 8)):
            p = self.cmp.make_head(C, N, seed=seed)
            ref = autograd_reference(p)
            tr, ka = self.cmp.jacobian_curvature(p, chunk=2)
            self.assertLess(abs(tr - ref["hessian_trace"]) / abs(ref["hessian_trace"]), 1e-5, (C, tr))
            self.assertLess(abs(ka - ref["relative_flatness"]) / abs(ref["relative_flatness"]), 1e-5, (C, ka))

    def test_jacobian_curvature_refuses_smooth_activations(self):
        p = dict(self.cmp.make_head(4, 2, seed=1), activation="GELU")
        with self.assertRaises(ValueError):
            self.cmp.jacobian_curvature(p)

    def test_hutchpp_is_exact_when_the_sketch_spans_the_space(self):
        p = self.cmp.make_head(4, 4, seed=5)
        ref = autograd_reference(p)["hessian_trace"]
        loss_fn, w = est.head_loss(p, dtype=torch.float64)
        n = w.numel()
        got = self.cmp.hutchpp_trace(est._Hvp(loss_fn, w), tuple(w.shape), 3 * n, torch.Generator().manual_seed(0))
        self.assertLess(abs(got - ref) / ref, 1e-8)
        # and with a tenth of the space it is an estimate, not the exact value
        few = self.cmp.hutchpp_trace(est._Hvp(loss_fn, w), tuple(w.shape), 3 * (n // 10), torch.Generator().manual_seed(0))
        self.assertGreater(abs(few - ref) / ref, 1e-6)

    def test_to_one_percent_stops_at_the_first_m_within_one_percent(self):
        def run(m, seed):                      # an estimator whose error is 10 %/√(m/10)
            return 100.0 * (1 + 0.1 / np.sqrt(m / 10)), 0.001 * m, 0.001 * m
        rows, hit = self.cmp.to_one_percent("fake", run, 100.0, [10, 100, 1000, 10000], 2, cap=1e9, log=lambda *a: None)
        self.assertEqual(hit["m"], 1000)
        self.assertEqual([r["m"] for r in rows], [10, 100, 1000])
        rows, hit = self.cmp.to_one_percent("fake", run, 100.0, [10, 100, 1000, 10000], 2, cap=1.0, log=lambda *a: None)
        self.assertIsNone(hit)                 # the m = 1000 row (2 s) would pass the 1 s cap


if __name__ == "__main__":
    unittest.main()
