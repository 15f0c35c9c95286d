"""flatmon_client.estimators: Hutchinson converges to the exact trace; the autograd κ equals the closed form.

Run: cd clients/python && /usr/bin/python3 -m unittest tests.test_estimators
"""
import sys
import unittest
from pathlib import Path

_CLIENT = str(Path(__file__).resolve().parents[1])
if _CLIENT not in sys.path:                 # run from clients/python (tests.test_estimators) or from tests/
    sys.path.insert(0, _CLIENT)

import numpy as np
import torch
import torch.nn.functional as TF

from flatmon_client import estimators as est
from flatmon_client.reference import autograd_reference


def tiny_payload(seed=0, C=4, cin=3, K=5, N=6, with_z=True):
    """A ReLU head conv 3×3 pad 1 on 4×4 inputs, with BN-like scale and (optionally) a residual in Z."""
    g = np.random.default_rng(seed)
    W = g.normal(0, 0.5, (C, cin, 3, 3)).astype(np.float32)
    a = g.uniform(0.5, 1.5, C).astype(np.float32)
    F = g.normal(0, 1, (N, cin, 4, 4)).astype(np.float32)
    V = g.normal(0, 1, (K, C)).astype(np.float32)
    b = g.normal(0, 0.1, K).astype(np.float32)
    y = g.integers(0, K, N)
    Z = None
    if with_z:
        conv = TF.conv2d(torch.from_numpy(F), torch.from_numpy(W), padding=1) * torch.from_numpy(a)[None, :, None, None]
        Z = (conv + torch.from_numpy(g.normal(0, 0.5, conv.shape).astype(np.float32))).numpy()
    return dict(kernel=W, bias=None, scale=a, classifier_weight=V, classifier_bias=b, stride=(1, 1), padding=(1, 1),
                dilation=(1, 1), activation="RELU", negative_slope=0.0, weight_decay=None,
                train=dict(input=F, pre_activation=Z, labels=y))


def closed_form(p):
    """docs/math.md (1)-(3), (6), (7) for a ReLU head with Z sent, in float64, written out independently."""
    W = torch.from_numpy(p["kernel"]).double()
    C = W.shape[0]
    a = torch.from_numpy(p["scale"]).double()
    V = torch.from_numpy(p["classifier_weight"]).double()
    b = torch.from_numpy(p["classifier_bias"]).double()
    F = torch.from_numpy(p["train"]["input"]).double()
    Z = torch.from_numpy(p["train"]["pre_activation"]).double().reshape(F.shape[0], C, -1)
    X = TF.unfold(F, 3, padding=1)                                   # [N, d, P]
    P = X.shape[2]
    Wf = W.reshape(C, -1)
    Om = Wf @ Wf.T
    tr = kap = 0.0
    for n in range(F.shape[0]):
        h = torch.relu(Z[n]).mean(1)
        s = torch.softmax(V @ h + b, 0)
        A = V.T @ (torch.diag(s) - torch.outer(s, s)) @ V
        G = (a[:, None] * (Z[n] > 0).double() / P) @ X[n].T          # [C, d]
        Gam = G @ G.T
        tr += float((torch.diag(A) * torch.diag(Gam)).sum())
        kap += float((Om * A * Gam).sum())
    n = F.shape[0]
    return tr / n, kap / n


class EstimatorsTest(unittest.TestCase):

    def test_exact_autograd_kappa_matches_closed_form_and_reference(self):
        p = tiny_payload()
        loss_fn, w = est.head_loss(p, dtype=torch.float64)
        exact = est.exact_curvature(loss_fn, w)
        tr, kap = closed_form(p)
        self.assertAlmostEqual(exact["hessian_trace"] / tr, 1.0, delta=1e-10)
        self.assertAlmostEqual(exact["relative_flatness"] / kap, 1.0, delta=1e-10)
        ref = autograd_reference(p)
        self.assertAlmostEqual(ref["relative_flatness"] / kap, 1.0, delta=1e-10)
        loop = est.hvp_loop_curvature(loss_fn, w)
        self.assertAlmostEqual(loop["hessian_trace"] / tr, 1.0, delta=1e-10)
        self.assertAlmostEqual(loop["relative_flatness"] / kap, 1.0, delta=1e-10)

    def test_smooth_activation_without_z(self):
        p = tiny_payload(seed=3, with_z=False)
        p["activation"] = "GELU"
        loss_fn, w = est.head_loss(p, dtype=torch.float64)
        exact = est.exact_curvature(loss_fn, w)
        ref = autograd_reference(p)
        self.assertAlmostEqual(exact["hessian_trace"], ref["hessian_trace"], delta=1e-12 * abs(ref["hessian_trace"]))
        self.assertAlmostEqual(exact["relative_flatness"], ref["relative_flatness"],
                               delta=1e-12 * abs(ref["relative_flatness"]))

    def test_hutchinson_converges_to_exact_trace(self):
        p = tiny_payload(seed=1)
        loss64, w64 = est.head_loss(p, dtype=torch.float64)
        exact = est.exact_curvature(loss64, w64)["hessian_trace"]
        loss32, w32 = est.head_loss(p)                                   # float32, as in the benchmark
        gen = torch.Generator().manual_seed(7)
        estimate, vals = est.hutchinson_trace(loss32, w32, 4000, generator=gen)
        self.assertEqual(vals.shape, (4000,))
        self.assertAlmostEqual(estimate, float(vals.mean()), places=12)
        self.assertLess(est.relative_error(estimate, exact), 0.03)
        # one probe's value is an exact quadratic form: check it against the HVP
        v = est.rademacher(w32.shape, torch.float32, torch.Generator().manual_seed(1))
        hv = est.hessian_vector_product(loss64, w64, v.double())
        self.assertEqual(hv.shape, w64.shape)
        self.assertGreater(float((v.double() * hv).sum()), 0.0)          # ReLU head: H is PSD

    def test_hutchinson_is_reproducible_and_budgeted(self):
        p = tiny_payload(seed=2)
        loss_fn, w = est.head_loss(p)
        e1, v1 = est.hutchinson_trace(loss_fn, w, 20, generator=torch.Generator().manual_seed(5))
        e2, v2 = est.hutchinson_trace(loss_fn, w, 20, generator=torch.Generator().manual_seed(5))
        np.testing.assert_array_equal(v1, v2)
        e3, v3 = est.hutchinson_trace(loss_fn, w, 20, generator=torch.Generator().manual_seed(5), batch=8)
        self.assertEqual(v3.shape, (20,))
        np.testing.assert_allclose(v3, v1, rtol=1e-4)                     # same probe stream, batched backward
        estimate, used = est.hutchinson_trace_budget(loss_fn, w, 0.2, generator=torch.Generator().manual_seed(5))
        self.assertGreaterEqual(used, 1)
        self.assertTrue(np.isfinite(estimate))
        self.assertEqual(est.dense_hessian_bytes(4, 27), (4 * 27) ** 2 * 8)


if __name__ == "__main__":
    unittest.main()
