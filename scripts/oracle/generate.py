#!/usr/bin/python3
"""Exactness oracle for flatmon: writes src/test/resources/oracle/{cases.pb,expected.pb}.

Run with Debian's python (torch, mpmath, protobuf):

    /usr/bin/python3 scripts/oracle/generate.py [--out DIR] [--check]

cases.pb    length-delimited flatmon.v1.TelemetryRecord stream; per case (run_id = case_id):
            layer_snapshot (layer "head", step 1), activation_batch (TRAIN, batch 0), measurement_done.
expected.pb length-delimited flatmon.v1.OracleCase, one per case, same order.

Every input is drawn as float32 (numpy RandomState, fixed seeds); all references are computed from
those exact float32 values:
  * autograd-float64: torch.autograd.functional.hessian in float64 (inputs upcast),
  * autograd-float32: the same in float32 (demonstrates cancellation on confident samples),
  * a float64 closed form (MATH.md eqs. 1-7, anchored softmax, full Hessian),
  * an mpmath closed form at mp.dps = 50 (textbook forms, eqs. 1-7; lambda_max by a Rayleigh-Ritz
    refinement in mp precision of the float64 top eigenvectors, with an mp residual bound, and for
    small confident heads also mpmath.eigsy of the full 50-digit Hessian, eq. 5).
expected = autograd-float64, except for confident cases (some logit gap > 10): mpmath-50.
The script asserts closed form == autograd float64 (<= 1e-10 relative, no floor) on every non-confident case.

--check (CI) regenerates into a temp dir and exits 1 ("drift") if a generation assertion fails, if cases.pb
is not byte-identical, or if expected.pb differs in case order/ids/descriptions/confident/expected_source or
in any expected value or max_logit_gap by more than CHECK_REL relative (no absolute floor: exact zeros and
NaNs must stay exactly so).
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF
import mpmath
from mpmath import mp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python"))
from flatmon_client.tensors import read_delimited, tensor, varint  # noqa: E402  (the wire encodings)
PROTO_DIR = REPO / "proto"
DEFAULT_OUT = REPO / "src" / "test" / "resources" / "oracle"
PROTOC = "/usr/bin/protoc"

MP_DPS = 50
CONFIDENT_GAP = 10.0
AGREE_REL = 1e-10      # closed form vs autograd float64, non-confident cases (relative, no floor)
CHECK_REL = 1e-12      # --check: expected values may differ from a fresh run by this much (relative)
PUBLISH_TIME = 1767225600000000  # 2026-01-01T00:00:00Z, fixed for determinism

SMOOTH = ("GELU", "GELU_TANH", "SILU", "TANH")
VALUE_FIELDS = ("hessian_trace", "relative_flatness", "relative_flatness_normalized",
                "hessian_max_eigenvalue", "loss", "accuracy", "classifier_hessian_trace",
                "classifier_relative_flatness", "weight_decay_trace",
                "weight_decay_relative_flatness")
# the curvature values compared between the references (loss/accuracy/wd compared separately)
CURV_FIELDS = ("hessian_trace", "relative_flatness", "relative_flatness_normalized",
               "hessian_max_eigenvalue", "classifier_hessian_trace",
               "classifier_relative_flatness")


# ----------------------------------------------------------------------------------------------
# protobuf modules, generated at run time
# ----------------------------------------------------------------------------------------------
def load_protos(tmp):
    files = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "flatmon" / "v1").glob("*.proto"))
    subprocess.run([PROTOC, "-I", str(PROTO_DIR), "--python_out", tmp] + files, check=True,
                   cwd=str(PROTO_DIR))
    sys.path.insert(0, tmp)
    from flatmon.v1 import tensor_pb2, telemetry_pb2, oracle_pb2  # noqa: E402
    return tensor_pb2, telemetry_pb2, oracle_pb2


# ----------------------------------------------------------------------------------------------
# case specifications
# ----------------------------------------------------------------------------------------------
# geometry: C_in, H, W, kh, kw, stride, padding, dilation, C (output channels)
GEOMS = [
    dict(Cin=3, H=6, W=6, kh=3, kw=3, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=8),   # P=16 d=27
    dict(Cin=2, H=7, W=5, kh=3, kw=3, stride=(2, 2), pad=(1, 1), dil=(1, 1), C=6),   # P=12 d=18
    dict(Cin=4, H=5, W=5, kh=1, kw=1, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=10),  # P=25 d=4
    dict(Cin=3, H=8, W=6, kh=2, kw=3, stride=(1, 1), pad=(2, 2), dil=(2, 2), C=5),   # P=60 d=18
    dict(Cin=4, H=3, W=3, kh=3, kw=3, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=8),   # P=1  d=36
    dict(Cin=3, H=9, W=9, kh=3, kw=3, stride=(2, 2), pad=(1, 1), dil=(2, 2), C=7),   # P=16 d=27
    dict(Cin=5, H=6, W=7, kh=1, kw=1, stride=(2, 2), pad=(2, 2), dil=(1, 1), C=12),  # P=30 d=5
    dict(Cin=6, H=9, W=8, kh=3, kw=3, stride=(1, 1), pad=(1, 1), dil=(1, 1), C=5),   # P=72 d=54
    dict(Cin=2, H=2, W=3, kh=2, kw=3, stride=(2, 2), pad=(0, 0), dil=(1, 1), C=9),   # P=1  d=12
    dict(Cin=3, H=7, W=9, kh=3, kw=2, stride=(2, 1), pad=(1, 0), dil=(1, 2), C=6),   # P=28 d=18
    dict(Cin=2, H=5, W=8, kh=2, kw=2, stride=(1, 2), pad=(0, 1), dil=(2, 1), C=9),   # P=15 d=8
]
ACTS = [("IDENTITY", 0.0), ("RELU", 0.0), ("LEAKY_RELU", 0.01), ("LEAKY_RELU", 0.2),
        ("GELU", 0.0), ("GELU_TANH", 0.0), ("SILU", 0.0), ("TANH", 0.0)]
KS = [2, 3, 10, 37, 100, 5, 17, 64]
BS = [4, 6, 3, 5, 2, 1, 6, 4, 3]
WDS = [1e-4, 5e-4, 1e-3, 0.01, 0.0]


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pick_k(k, C):
    while k * C > 900:
        k = {100: 64, 64: 37, 37: 17}.get(k, k // 2)
    return k


def base_specs():
    """8 activation variants x 9 rounds: geometry, toggles spread by simple modular patterns."""
    specs = []
    for rnd in range(9):
        for ai, (act, slope) in enumerate(ACTS):
            i = rnd * len(ACTS) + ai
            g = dict(GEOMS[(9 * rnd + ai) % len(GEOMS)])
            mode = ("scale_residual", "preact", "scale", "plain", "plain")[(3 * rnd + ai) % 5]
            smooth = act in SMOOTH
            specs.append(dict(
                geom=g, act=act, slope=slope, B=BS[(rnd + 2 * ai) % len(BS)],
                K=pick_k(KS[(7 * rnd + 3 * ai) % len(KS)], g["C"]),
                bias=(rnd + ai) % 2 == 0, cls_bias=(5 * rnd + ai) % 3 != 0, mode=mode,
                labels=smooth or (rnd + ai) % 3 != 2,
                wd=WDS[(rnd + ai) % 5] if (rnd + 2 * ai) % 4 == 1 else None,
                confident=None, seed=1000 + i))
    return specs


def confident_specs():
    """Confident heads: a logit gap > 10 (up to ~40) on some samples, via class bias or V scaling.
    Heads are kept small (C*d <= 72) so that the 50-digit closed form stays cheap."""
    small = [
        dict(Cin=2, H=5, W=5, kh=3, kw=3, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=4),   # d=18 Cd=72
        dict(Cin=3, H=6, W=5, kh=2, kw=3, stride=(2, 1), pad=(1, 1), dil=(1, 1), C=5),   # d=18 Cd=90
        dict(Cin=4, H=4, W=4, kh=1, kw=1, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=6),   # d=4  Cd=24
        dict(Cin=2, H=7, W=7, kh=3, kw=3, stride=(2, 2), pad=(1, 1), dil=(2, 2), C=3),   # d=18 Cd=54
        dict(Cin=3, H=3, W=3, kh=3, kw=3, stride=(1, 1), pad=(0, 0), dil=(1, 1), C=2),   # P=1 d=27
        dict(Cin=1, H=6, W=8, kh=2, kw=2, stride=(1, 2), pad=(2, 0), dil=(1, 1), C=8),   # d=4 Cd=32
    ]
    # (act, slope, labels mode, mechanism, target gap, geom index, K, B, mode)
    table = [
        ("RELU", 0.0, "correct", "bias_min", 16.0, 0, 10, 4, "plain"),     # float32 demonstration
        ("RELU", 0.0, "correct", "bias", 40.0, 2, 3, 5, "plain"),
        ("RELU", 0.0, "wrong", "scale", 25.0, 1, 37, 3, "scale_residual"),
        ("RELU", 0.0, "none", "bias", 30.0, 3, 2, 6, "preact"),
        ("IDENTITY", 0.0, "mixed", "scale", 20.0, 4, 10, 4, "plain"),
        ("IDENTITY", 0.0, "correct", "bias_min", 14.0, 5, 100, 3, "scale"),
        ("LEAKY_RELU", 0.01, "mixed", "bias", 35.0, 0, 5, 5, "scale_residual"),
        ("LEAKY_RELU", 0.2, "correct", "scale", 12.0, 2, 17, 6, "plain"),
        ("LEAKY_RELU", 0.2, "none", "bias_min", 20.0, 1, 3, 2, "preact"),
        ("GELU", 0.0, "correct", "bias_min", 18.0, 3, 10, 4, "plain"),
        ("GELU", 0.0, "wrong", "bias", 38.0, 0, 37, 3, "scale_residual"),
        ("GELU", 0.0, "mixed", "scale", 15.0, 5, 2, 6, "scale"),
        ("GELU_TANH", 0.0, "mixed", "bias", 25.0, 1, 3, 4, "preact"),
        ("GELU_TANH", 0.0, "correct", "scale", 40.0, 4, 64, 2, "plain"),
        ("SILU", 0.0, "wrong", "bias_min", 13.0, 2, 10, 5, "plain"),
        ("SILU", 0.0, "correct", "bias", 30.0, 3, 100, 3, "scale_residual"),
        ("TANH", 0.0, "mixed", "scale", 22.0, 0, 5, 4, "scale"),
        ("TANH", 0.0, "correct", "bias", 36.0, 5, 2, 6, "preact"),
        ("SILU", 0.0, "mixed", "bias", 11.0, 1, 37, 1, "plain"),
        ("GELU", 0.0, "correct", "bias_min", 12.0, 2, 17, 6, "plain"),    # all samples confident
        # Classifier-term fixtures: every sample's top logit leads by >= the target (bias_min), so the
        # mean Tr H_V ~ ||h||^2 2 e^-gap is carried by the confident samples. 1 - s_m formed by
        # subtraction is 0 in float64 beyond gap ~37 and has ~eps e^gap relative error below it, which
        # these cases see; the anchored complement (eq. 9) does not.
        ("RELU", 0.0, "correct", "bias_min", 40.0, 2, 3, 4, "plain"),
        ("IDENTITY", 0.0, "correct", "bias_min", 36.0, 0, 10, 3, "plain"),
        ("GELU", 0.0, "mixed", "bias_min", 40.0, 4, 5, 2, "scale"),
        ("LEAKY_RELU", 0.2, "correct", "bias_min", 30.0, 5, 4, 3, "preact"),
    ]
    specs = []
    for i, (act, slope, lab, mech, gap, gi, K, B, mode) in enumerate(table):
        g = dict(small[gi])
        specs.append(dict(
            geom=g, act=act, slope=slope, B=B, K=pick_k(K, g["C"]),
            bias=i % 2 == 1, cls_bias=mech.startswith("bias"), mode=mode,
            labels=lab != "none", wd=(1e-3 if i % 4 == 2 else None),
            confident=dict(labels=lab, mech=mech, gap=gap), seed=5000 + i))
    return specs


def dead_channel_specs():
    """Input channel 1 zero on every sample (a dead unit of the layer before): rho_1 = 0, and eq. (12)'s
    pseudo-inverse leaves the channel out of kappa_norm. A kinked, a smooth and a BN + residual head."""
    specs = []
    for i, (act, slope, gi, mode, K, B) in enumerate([("RELU", 0.0, 0, "plain", 10, 4),
                                                      ("GELU", 0.0, 1, "preact", 5, 3),
                                                      ("TANH", 0.0, 3, "scale_residual", 17, 5)]):
        g = dict(GEOMS[gi])
        specs.append(dict(
            geom=g, act=act, slope=slope, B=B, K=pick_k(K, g["C"]), bias=i != 1, cls_bias=True, mode=mode,
            labels=True, wd=None, confident=None, seed=7000 + i, dead_channel=1))
    return specs


# ----------------------------------------------------------------------------------------------
# numerics helpers
# ----------------------------------------------------------------------------------------------
def f32(x):
    return np.asarray(x, dtype=np.float32)


def im2col(Fn, g):
    """Fn: [C_in, H, W] float64 -> X [P, d] in torch.nn.functional.unfold order (C_in, kh, kw)."""
    Cin, H, W = Fn.shape
    (sh, sw), (ph, pw), (dh, dw) = g["stride"], g["pad"], g["dil"]
    kh, kw = g["kh"], g["kw"]
    Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    Fp = np.zeros((Cin, H + 2 * ph, W + 2 * pw))
    Fp[:, ph:ph + H, pw:pw + W] = Fn
    X = np.zeros((Ho * Wo, Cin * kh * kw))
    for oh in range(Ho):
        for ow in range(Wo):
            patch = Fp[:, oh * sh:oh * sh + dh * (kh - 1) + 1:dh, ow * sw:ow * sw + dw * (kw - 1) + 1:dw]
            X[oh * Wo + ow] = patch.reshape(-1)
    return X


def torch_act(kind, slope):
    if kind == "IDENTITY":
        return lambda z: z
    if kind == "RELU":
        return torch.relu
    if kind == "LEAKY_RELU":
        return lambda z: TF.leaky_relu(z, slope)
    if kind == "GELU":
        return TF.gelu
    if kind == "GELU_TANH":
        return lambda z: TF.gelu(z, approximate="tanh")
    if kind == "SILU":
        return TF.silu
    if kind == "TANH":
        return torch.tanh
    raise ValueError(kind)


GELU_K = 0.044715


def f64_act_derivs(kind, slope, z):
    """sigma, sigma', sigma'' in float64 (torch tensors, no autograd)."""
    one = torch.ones_like(z)
    zero = torch.zeros_like(z)
    if kind == "IDENTITY":
        return z, one, zero
    if kind == "RELU":
        pos = z > 0
        return torch.where(pos, z, zero), pos.to(z.dtype), zero
    if kind == "LEAKY_RELU":
        pos = z > 0
        return torch.where(pos, z, slope * z), torch.where(pos, one, one * slope), zero
    if kind == "GELU":
        Phi = 0.5 * torch.erfc(-z / math.sqrt(2.0))
        phi = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return z * Phi, Phi + z * phi, phi * (2.0 - z * z)
    if kind == "GELU_TANH":
        c = math.sqrt(2.0 / math.pi)
        u = c * (z + GELU_K * z ** 3)
        t = torch.tanh(u)
        up = c * (1.0 + 3.0 * GELU_K * z * z)
        upp = c * 6.0 * GELU_K * z
        sech2 = 1.0 - t * t
        return 0.5 * z * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * z * sech2 * up, \
            sech2 * (up + 0.5 * z * (upp - 2.0 * t * up * up))
    if kind == "SILU":
        s = torch.sigmoid(z)
        return z * s, s * (1.0 + z * (1.0 - s)), s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    if kind == "TANH":
        t = torch.tanh(z)
        return t, 1.0 - t * t, -2.0 * t * (1.0 - t * t)
    raise ValueError(kind)


def mp_act_derivs(kind, slope, z):
    """sigma, sigma', sigma'' of one mpf."""
    if kind == "IDENTITY":
        return z, mp.mpf(1), mp.mpf(0)
    if kind == "RELU":
        return (z, mp.mpf(1), mp.mpf(0)) if z > 0 else (mp.mpf(0), mp.mpf(0), mp.mpf(0))
    if kind == "LEAKY_RELU":
        sl = mp.mpf(slope)
        return (z, mp.mpf(1), mp.mpf(0)) if z > 0 else (sl * z, sl, mp.mpf(0))
    if kind == "GELU":
        Phi = mp.erfc(-z / mp.sqrt(2)) / 2
        phi = mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)
        return z * Phi, Phi + z * phi, phi * (2 - z * z)
    if kind == "GELU_TANH":
        k = mp.mpf(GELU_K)
        c = mp.sqrt(2 / mp.pi)
        u = c * (z + k * z ** 3)
        t = mp.tanh(u)
        up = c * (1 + 3 * k * z * z)
        upp = 6 * c * k * z
        sech2 = 1 - t * t
        return z * (1 + t) / 2, (1 + t) / 2 + z * sech2 * up / 2, \
            sech2 * (up + z * (upp - 2 * t * up * up) / 2)
    if kind == "SILU":
        s = 1 / (1 + mp.exp(-z))
        return z * s, s * (1 + z * (1 - s)), s * (1 - s) * (2 + z * (1 - 2 * s))
    if kind == "TANH":
        t = mp.tanh(z)
        return t, 1 - t * t, -2 * t * (1 - t * t)
    raise ValueError(kind)


def mp_sigma(kind, slope):
    def f(z):
        return mp_act_derivs(kind, slope, mp.mpf(z))[0]
    return f


# ----------------------------------------------------------------------------------------------
# input generation
# ----------------------------------------------------------------------------------------------
class Case:
    pass


def logit_gaps(o):
    """o: [B, K] float64 -> per-sample top1 - top2."""
    srt = np.sort(o, axis=1)
    return srt[:, -1] - srt[:, -2]


def build_case(idx, spec):
    g = spec["geom"]
    rng = np.random.RandomState(spec["seed"])
    cs = Case()
    cs.spec = spec
    cs.g = g
    B, K = spec["B"], spec["K"]
    Cin, H, W, kh, kw, C = g["Cin"], g["H"], g["W"], g["kh"], g["kw"], g["C"]
    d = Cin * kh * kw
    Ho = out_size(H, kh, g["stride"][0], g["pad"][0], g["dil"][0])
    Wo = out_size(W, kw, g["stride"][1], g["pad"][1], g["dil"][1])
    assert Ho >= 1 and Wo >= 1
    cs.B, cs.K, cs.C, cs.Cin, cs.d, cs.P, cs.Ho, cs.Wo = B, K, C, Cin, d, Ho * Wo, Ho, Wo
    cs.act, cs.slope = spec["act"], spec["slope"]
    # float32 inputs; channel scales differ so that kappa_norm differs from kappa
    chan = f32(np.exp(rng.uniform(-0.7, 0.7, size=Cin)))
    cs.F = f32(rng.standard_normal((B, Cin, H, W)) * chan[None, :, None, None])
    cs.dead_channel = spec.get("dead_channel")
    if cs.dead_channel is not None:
        cs.F[:, cs.dead_channel] = 0.0
    cs.W = f32(rng.standard_normal((C, Cin, kh, kw)) / (math.sqrt(d) * chan[None, :, None, None]))
    cs.beta = f32(0.3 * rng.standard_normal(C)) if spec["bias"] else None
    mode = spec["mode"]
    cs.a = f32(rng.uniform(0.5, 2.0, size=C)) if mode in ("scale", "scale_residual") else None
    r = f32(0.5 * rng.standard_normal((B, C, Ho, Wo))) if mode == "scale_residual" else None
    cs.send_preact = mode in ("scale_residual", "preact")
    cs.residual = r is not None
    # patches and the float64 pre-activation from the float32 inputs
    cs.X = np.stack([im2col(cs.F[n].astype(np.float64), g) for n in range(B)])  # [B,P,d]
    Wf = cs.W.reshape(C, d).astype(np.float64)
    conv = np.einsum("npj,cj->ncp", cs.X, Wf)  # [B,C,P]
    if cs.beta is not None:
        conv = conv + cs.beta.astype(np.float64)[None, :, None]
    a64 = cs.a.astype(np.float64) if cs.a is not None else np.ones(C)
    z64 = a64[None, :, None] * conv
    if r is not None:
        z64 = z64 + r.reshape(B, C, -1).astype(np.float64)
    if cs.send_preact:
        cs.Z32 = f32(z64).reshape(B, C, Ho, Wo)
        z_used = cs.Z32.reshape(B, C, -1).astype(np.float64)
    else:
        cs.Z32 = None
        z_used = z64
    cs.z = z_used  # [B,C,P] float64 (exactly representable if sent)
    sig = f64_act_derivs(cs.act, cs.slope, torch.from_numpy(z_used))[0].numpy()
    h = sig.mean(axis=2)  # [B,C]

    # classifier
    V = rng.standard_normal((K, C)) / math.sqrt(C) * 2.0
    b = 0.5 * rng.standard_normal(K) if spec["cls_bias"] else np.zeros(K)
    conf = spec["confident"]
    if conf is None:
        V = f32(V)
        b = f32(b)
        for _ in range(20):  # keep non-confident cases clearly non-confident
            o = h @ V.astype(np.float64).T + b.astype(np.float64)
            if logit_gaps(o).max() <= 8.0:
                break
            V = f32(V * 0.7)
            b = f32(b * 0.7)
        y = rng.randint(0, K, size=B)
    else:
        V = f32(V)
        mech, target = conf["mech"], conf["gap"]
        if mech == "scale":
            o = h @ V.astype(np.float64).T
            lam = target / logit_gaps(o).max()
            V = f32(V * lam)
            b = f32(b) if spec["cls_bias"] else f32(np.zeros(K))
        else:
            k0 = rng.randint(0, K)
            b = f32(b)
            o = h @ V.astype(np.float64).T + b.astype(np.float64)
            others = np.delete(o, k0, axis=1).max(axis=1)
            dlt = o[:, k0] - others
            t = target - (dlt.min() if mech == "bias_min" else dlt.max())
            b = b.astype(np.float64)
            b[k0] += t
            b = f32(b)
        o = h @ V.astype(np.float64).T + b.astype(np.float64)
        top = o.argmax(axis=1)
        y = np.empty(B, dtype=np.int64)
        for n in range(B):
            wrong = conf["labels"] == "wrong" or (conf["labels"] == "mixed" and n % 2 == 1)
            if wrong:
                choices = [k for k in range(K) if k != top[n]]
                y[n] = choices[rng.randint(0, len(choices))]
            else:
                y[n] = top[n]
    cs.V, cs.b = V, (b if spec["cls_bias"] else None)
    cs.b_eff = b.astype(np.float64) if spec["cls_bias"] else np.zeros(K)
    cs.labels = [int(v) for v in y] if spec["labels"] else None
    cs.y = np.asarray(cs.labels if cs.labels is not None else [0] * B, dtype=np.int64)
    cs.wd = spec["wd"]
    cs.id = "case-%03d-%s" % (idx, cs.act.lower().replace("_", "") + (
        ("%g" % cs.slope).replace("0.", "") if cs.act == "LEAKY_RELU" else ""))
    # encodings of stride/padding/dilation: exercise empty, single-value and pair forms
    cs.enc_variant = idx % 3
    cs.groups = 1 if idx % 4 == 3 else 0
    return cs


# ----------------------------------------------------------------------------------------------
# reductions of a full kernel Hessian H [C*d, C*d]
# ----------------------------------------------------------------------------------------------
def reduce_kernel_hessian(Hm, cs, rho2):
    C, d = cs.C, cs.d
    H4 = Hm.reshape(C, d, C, d)
    T = torch.einsum("ajbj->ab", H4)
    # 1/rho^2, and 0 for a channel with rho = 0: the pseudo-inverse of eq. (12)
    Tn = torch.einsum("ajbj,j->ab", H4, torch.where(rho2 > 0, 1.0 / rho2, torch.zeros_like(rho2)))
    Wf = torch.from_numpy(cs.W.reshape(C, d).astype(np.float64))
    Om = Wf @ Wf.T
    Omn = (Wf * rho2) @ Wf.T
    Hs = 0.5 * (Hm + Hm.T)
    return dict(hessian_trace=float(torch.trace(T)),
                relative_flatness=float((Om * T).sum()),
                relative_flatness_normalized=float((Omn * Tn).sum()),
                hessian_max_eigenvalue=float(torch.linalg.eigvalsh(Hs).max()))


def rho2_f64(cs):
    r2 = (cs.F.astype(np.float64) ** 2).mean(axis=(0, 2, 3))  # [Cin]
    return torch.from_numpy(np.repeat(r2, cs.d // cs.Cin))


def wd_values(cs):
    if cs.wd is None:
        return 0.0, 0.0
    wsq = float(np.sum(cs.W.astype(np.float64) ** 2))
    return 2.0 * cs.wd * cs.C * cs.d, 2.0 * cs.wd * cs.d * wsq


# ----------------------------------------------------------------------------------------------
# autograd references
# ----------------------------------------------------------------------------------------------
def autograd_values(cs, dtype):
    C, d = cs.C, cs.d
    g = cs.g
    Ft = torch.from_numpy(cs.F).to(dtype)
    W0 = torch.from_numpy(cs.W).to(dtype).reshape(-1)
    beta = torch.from_numpy(cs.beta).to(dtype) if cs.beta is not None else None
    a = torch.from_numpy(cs.a).to(dtype) if cs.a is not None else None
    V0 = torch.from_numpy(cs.V).to(dtype)
    b = torch.from_numpy(cs.b).to(dtype) if cs.b is not None else None
    y = torch.from_numpy(cs.y)
    act = torch_act(cs.act, cs.slope)
    shape = (C, cs.Cin, g["kh"], g["kw"])

    def pre(w):
        z = TF.conv2d(Ft, w.reshape(shape), beta, stride=g["stride"], padding=g["pad"], dilation=g["dil"])
        if a is not None:
            z = z * a[None, :, None, None]
        return z

    r_eff = None
    if cs.send_preact:
        with torch.no_grad():
            # r_eff := Z32 - a(conv(F,W)+beta), so that z(W) equals the sent pre-activation
            r_eff = torch.from_numpy(cs.Z32.astype(np.float64)).to(dtype) - pre(W0)

    def head(w):
        z = pre(w)
        if r_eff is not None:
            z = z + r_eff
        return act(z).mean(dim=(2, 3))

    def kernel_loss(w):
        o = head(w) @ V0.T
        if b is not None:
            o = o + b
        return TF.cross_entropy(o, y)

    Hk = torch.autograd.functional.hessian(kernel_loss, W0.clone())
    with torch.no_grad():
        h = head(W0)

    def cls_loss(v):
        o = h @ v.reshape(V0.shape).T
        if b is not None:
            o = o + b
        return TF.cross_entropy(o, y)

    Hv = torch.autograd.functional.hessian(cls_loss, V0.reshape(-1).clone())
    vals = reduce_kernel_hessian(Hk.double(), cs, rho2_f64(cs))
    K = cs.K
    Hv4 = Hv.double().reshape(K, C, K, C)
    Tv = torch.einsum("acbc->ab", Hv4)
    V64 = V0.double()
    vals["classifier_hessian_trace"] = float(torch.trace(Tv))
    vals["classifier_relative_flatness"] = float(((V64 @ V64.T) * Tv).sum())
    with torch.no_grad():
        o = h @ V0.T
        if b is not None:
            o = o + b
        if cs.labels is not None:
            vals["loss"] = float(TF.cross_entropy(o.double(), y))
            vals["accuracy"] = float((o.argmax(dim=1) == y).double().mean())
        else:
            vals["loss"] = vals["accuracy"] = float("nan")
    vals["weight_decay_trace"], vals["weight_decay_relative_flatness"] = wd_values(cs)
    return vals, Hk.double()


# ----------------------------------------------------------------------------------------------
# float64 closed form (MATH.md eqs. 1-7, anchored softmax), full Hessian
# ----------------------------------------------------------------------------------------------
def closed_form_f64(cs):
    C, d, P, K, B = cs.C, cs.d, cs.P, cs.K, cs.B
    X = torch.from_numpy(cs.X)                                # [B,P,d]
    z = torch.from_numpy(cs.z)                                # [B,C,P]
    sig, M, S = f64_act_derivs(cs.act, cs.slope, z)
    a = torch.from_numpy(cs.a.astype(np.float64)) if cs.a is not None else torch.ones(C, dtype=torch.float64)
    V = torch.from_numpy(cs.V.astype(np.float64))
    h = sig.mean(dim=2)                                       # [B,C]
    o = h @ V.T + torch.from_numpy(cs.b_eff)
    logs = torch.log_softmax(o, dim=1)
    s = torch.exp(logs)
    Hm = torch.zeros(C * d, C * d, dtype=torch.float64)
    trV = kapV = trV_textbook = 0.0
    smooth = cs.act in SMOOTH
    for n in range(B):
        ks = int(torch.argmax(s[n]))
        Vt = V - V[ks]                                        # anchored rows
        ut = Vt.T @ s[n]
        A = Vt.T @ (s[n][:, None] * Vt) - torch.outer(ut, ut)
        G = a[:, None] * (M[n] @ X[n]) / P                    # [C,d]
        Hn = torch.einsum("ab,aj,bk->ajbk", A, G, G)
        if smooth:
            delta = ut - Vt[cs.y[n]]
            blk = torch.einsum("c,cp,pj,pk->cjk", delta * a * a / P, S[n], X[n], X[n])
            for c in range(C):
                Hn[c, :, c, :] += blk[c]
        Hm += Hn.reshape(C * d, C * d)
        one_minus = s[n].clone()
        one_minus[ks] = 0.0
        om = 1.0 - s[n]
        om[ks] = one_minus.sum()
        hh = float(h[n] @ h[n])
        trV += hh * float((s[n] * om).sum())
        trV_textbook += hh * float((s[n] * (1.0 - s[n])).sum())
        kapV += hh * float((s[n] * ((Vt - ut) ** 2).sum(dim=1)).sum())
    Hm /= B
    vals = reduce_kernel_hessian(Hm, cs, rho2_f64(cs))
    vals["classifier_hessian_trace"] = trV / B
    vals["classifier_relative_flatness"] = kapV / B
    vals["textbook_classifier_hessian_trace"] = trV_textbook / B   # 1 - s_m by subtraction, for the demo
    return vals, Hm


# ----------------------------------------------------------------------------------------------
# mpmath closed form, mp.dps = 50 (textbook forms of eqs. 1-7 -- independent of the anchored f64)
# ----------------------------------------------------------------------------------------------
class MPHead:
    def __init__(self, cs):
        C, d, P, K, B = cs.C, cs.d, cs.P, cs.K, cs.B
        self.cs = cs
        mpf = mp.mpf
        self.smooth = cs.act in SMOOTH
        Wf = [[mpf(float(v)) for v in row] for row in cs.W.reshape(C, d)]
        self.Wf = Wf
        a = [mpf(float(v)) for v in cs.a] if cs.a is not None else [mpf(1)] * C
        beta = [mpf(float(v)) for v in cs.beta] if cs.beta is not None else [mpf(0)] * C
        V = [[mpf(float(v)) for v in row] for row in cs.V]
        bb = [mpf(float(v)) for v in cs.b_eff]
        # rho_j^2 (exact mean of squares of the float32 input)
        r2c = []
        for i in range(cs.Cin):
            vals = cs.F[:, i].astype(np.float64).ravel()
            r2c.append(mp.fsum(mpf(float(v)) ** 2 for v in vals) / len(vals))
        kk = d // cs.Cin
        self.rho2 = [r2c[j // kk] for j in range(d)]
        inv_r2 = [1 / v if v != 0 else mpf(0) for v in self.rho2]
        self.samples = []
        tr = kap = kapn = trV = kapV = loss = mpf(0)
        correct = 0
        gaps = []
        invP = mpf(1) / P
        for n in range(B):
            X = [[mpf(float(v)) for v in row] for row in cs.X[n]]       # P x d, exact
            Xc = [list(col) for col in zip(*X)]                          # d x P
            if cs.Z32 is not None:
                Z = [[mpf(float(v)) for v in row] for row in cs.Z32[n].reshape(C, P)]
            else:
                Z = [[a[c] * (mp.fdot(Wf[c], X[p]) + beta[c]) for p in range(P)] for c in range(C)]
            sig, Mp, Sp = [], [], []
            for c in range(C):
                r = [mp_act_derivs(cs.act, cs.slope, Z[c][p]) for p in range(P)]
                sig.append([t[0] for t in r])
                Mp.append([t[1] for t in r])
                Sp.append([t[2] for t in r])
            h = [mp.fsum(sig[c]) * invP for c in range(C)]
            o = [mp.fdot(V[k], h) + bb[k] for k in range(K)]
            om = max(o)
            e = [mp.exp(v - om) for v in o]
            Zs = mp.fsum(e)
            s = [v / Zs for v in e]
            so = sorted(o)
            gaps.append(so[-1] - so[-2])
            u = [mp.fdot(s, [V[k][c] for k in range(K)]) for c in range(C)]      # V^T s
            # (1) A = V^T (diag s - s s^T) V ; delta = V^T (s - e_y)
            A = [[mp.fsum(s[k] * V[k][c] * V[k][c2] for k in range(K)) - u[c] * u[c2]
                  for c2 in range(C)] for c in range(C)]
            y = int(cs.y[n])
            delta = [u[c] - V[y][c] for c in range(C)]
            if cs.labels is not None:
                loss += mp.log(Zs) + om - o[y]
                correct += int(max(range(K), key=lambda k: o[k]) == y)
            # (2) g_c = (a_c/P) sum_p sigma'(z_cp) x_p
            G = [[a[c] * invP * mp.fdot(Mp[c], Xc[j]) for j in range(d)] for c in range(C)]
            Gam = [[mp.fdot(G[c], G[c2]) for c2 in range(C)] for c in range(C)]
            Gn = [[v * ir for v, ir in zip(G[c], inv_r2)] for c in range(C)]
            Gamn = [[mp.fdot(Gn[c], G[c2]) for c2 in range(C)] for c in range(C)]
            trn = mp.fsum(A[c][c] * Gam[c][c] for c in range(C))
            Sa = None
            if self.smooth:
                # (4) q_c = (a_c^2/P) sum_p sigma''(z_cp) ||x_p||^2  (and its rho-normalised twin)
                xx = [mp.fdot(X[p], X[p]) for p in range(P)]
                xxn = [mp.fdot([v * v for v in X[p]], inv_r2) for p in range(P)]
                Sa = [[a[c] * a[c] * invP * v for v in Sp[c]] for c in range(C)]
                q = [mp.fdot(Sa[c], xx) for c in range(C)]
                qn = [mp.fdot(Sa[c], xxn) for c in range(C)]
            else:
                q = qn = [mpf(0)] * C
            self.samples.append(dict(A=A, G=G, delta=delta, Sa=Sa, X=X, Xc=Xc))
            tr += trn + mp.fsum(delta[c] * q[c] for c in range(C))
            # (7)
            kap += mp.fsum(self.omega(c, c2) * A[c][c2] * Gam[c][c2] for c in range(C) for c2 in range(C)) \
                + mp.fsum(self.omega(c, c) * delta[c] * q[c] for c in range(C))
            kapn += mp.fsum(self.omegan(c, c2) * A[c][c2] * Gamn[c][c2] for c in range(C) for c2 in range(C)) \
                + mp.fsum(self.omegan(c, c) * delta[c] * qn[c] for c in range(C))
            # classifier: (diag s - s s^T) (x) h h^T
            hh = mp.fdot(h, h)
            trV += hh * mp.fsum(s[k] * (1 - s[k]) for k in range(K))
            kapV += hh * mp.fsum(s[k] * mp.fsum((V[k][c] - u[c]) ** 2 for c in range(C)) for k in range(K))
        self.gaps = gaps
        self.values = dict(hessian_trace=tr / B, relative_flatness=kap / B,
                           relative_flatness_normalized=kapn / B,
                           classifier_hessian_trace=trV / B, classifier_relative_flatness=kapV / B,
                           loss=(loss / B) if cs.labels is not None else None,
                           accuracy=(mpf(correct) / B) if cs.labels is not None else None)

    _om = None

    def omega(self, c, c2):
        if self._om is None:
            C = len(self.Wf)
            self._om = [[mp.fdot(self.Wf[i], self.Wf[j]) for j in range(C)] for i in range(C)]
            self._omn = [[mp.fdot([w * r for w, r in zip(self.Wf[i], self.rho2)], self.Wf[j])
                          for j in range(C)] for i in range(C)]
        return self._om[c][c2]

    def omegan(self, c, c2):
        self.omega(0, 0)
        return self._omn[c][c2]

    def hvp(self, v):
        """(Hv)_c = mean_n [ g_c (A rho)_c + delta_c (a_c^2/P) sum_p sigma''_cp x_p <x_p, v_c> ]; v: C x d."""
        cs = self.cs
        C, d, P = cs.C, cs.d, cs.P
        out = [[mp.mpf(0)] * d for _ in range(C)]
        for smp in self.samples:
            G, A = smp["G"], smp["A"]
            rho = [mp.fdot(G[c], v[c]) for c in range(C)]
            Ar = [mp.fdot(A[c], rho) for c in range(C)]
            for c in range(C):
                row = out[c]
                for j in range(d):
                    row[j] += G[c][j] * Ar[c]
            if self.smooth:
                X, Xc, Sa, delta = smp["X"], smp["Xc"], smp["Sa"], smp["delta"]
                for c in range(C):
                    coef = [delta[c] * Sa[c][p] * mp.fdot(X[p], v[c]) for p in range(P)]
                    row = out[c]
                    for j in range(d):
                        row[j] += mp.fdot(coef, Xc[j])
        B = len(self.samples)
        return [[x / B for x in row] for row in out]

    def full_hessian(self):
        """Eq. (5) blocks summed over samples, as an mpmath matrix (small heads only)."""
        cs = self.cs
        C, d, P = cs.C, cs.d, cs.P
        n = C * d
        Hm = mp.matrix(n, n)
        for smp in self.samples:
            G, A = smp["G"], smp["A"]
            for c in range(C):
                for c2 in range(C):
                    Acc = A[c][c2]
                    for j in range(d):
                        f = Acc * G[c][j]
                        for k in range(d):
                            Hm[c * d + j, c2 * d + k] += f * G[c2][k]
            if self.smooth:
                X, Sa, delta = smp["X"], smp["Sa"], smp["delta"]
                for c in range(C):
                    w = [delta[c] * Sa[c][p] for p in range(P)]
                    for j in range(d):
                        for k in range(j, d):
                            val = mp.fdot(w, [X[p][j] * X[p][k] for p in range(P)])
                            Hm[c * d + j, c * d + k] += val
                            if k != j:
                                Hm[c * d + k, c * d + j] += val
        return Hm / len(self.samples)

    def lambda_max(self, H64, k=3):
        """Rayleigh-Ritz in mp precision on the float64 top-k eigenvectors of the closed-form H.
        Returns (theta_max, error bound estimate ||r||^2/gap)."""
        cs = self.cs
        C, d = cs.C, cs.d
        n = C * d
        ev, evec = torch.linalg.eigh(0.5 * (H64 + H64.T))
        k = min(k, n)
        Q = [[mp.mpf(float(x)) for x in evec[:, n - 1 - i]] for i in range(k)]
        # modified Gram-Schmidt in mp
        for i in range(k):
            for j in range(i):
                pr = mp.fdot(Q[i], Q[j])
                Q[i] = [x - pr * y for x, y in zip(Q[i], Q[j])]
            nr = mp.sqrt(mp.fdot(Q[i], Q[i]))
            Q[i] = [x / nr for x in Q[i]]
        HQ = []
        for i in range(k):
            hv = self.hvp([Q[i][c * d:(c + 1) * d] for c in range(C)])
            HQ.append([x for row in hv for x in row])
        Mk = mp.matrix(k, k)
        for i in range(k):
            for j in range(k):
                Mk[i, j] = (mp.fdot(Q[i], HQ[j]) + mp.fdot(Q[j], HQ[i])) / 2
        E, U = mp.eigsy(Mk)
        order = sorted(range(k), key=lambda i: E[i])
        top = order[-1]
        theta = E[top]
        cvec = [U[i, top] for i in range(k)]
        yv = [mp.fsum(cvec[i] * Q[i][t] for i in range(k)) for t in range(n)]
        hy = [mp.fsum(cvec[i] * HQ[i][t] for i in range(k)) for t in range(n)]
        res = mp.sqrt(mp.fsum((hy[t] - theta * yv[t]) ** 2 for t in range(n)))
        lam2 = float(ev[n - 2]) if n >= 2 else -math.inf
        gap = float(theta) - lam2
        bound = min(float(res), float(res) ** 2 / gap if gap > 0 else math.inf)
        return theta, bound


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
def tensor_msg(tensor_pb2, arr):
    return tensor(arr, tensor_pb2)


def geom_list(pair, default, variant):
    """variant 0: empty when default else pair; 1: single value when equal; 2: always the pair."""
    pair = [int(pair[0]), int(pair[1])]
    if variant == 0 and tuple(pair) == default:
        return []
    if variant == 1 and pair[0] == pair[1]:
        return [pair[0]]
    return pair


def records(cs, tensor_pb2, telemetry_pb2, idx):
    g = cs.g
    ls = telemetry_pb2.LayerSnapshot(run_id=cs.id, layer="head", step=1)
    ls.kernel.CopyFrom(tensor_msg(tensor_pb2, cs.W))
    if cs.beta is not None:
        ls.bias.CopyFrom(tensor_msg(tensor_pb2, cs.beta))
    if cs.a is not None:
        ls.scale.CopyFrom(tensor_msg(tensor_pb2, cs.a))
    ls.stride.extend(geom_list(g["stride"], (1, 1), cs.enc_variant))
    ls.padding.extend(geom_list(g["pad"], (0, 0), cs.enc_variant))
    ls.dilation.extend(geom_list(g["dil"], (1, 1), cs.enc_variant))
    ls.groups = cs.groups
    ls.activation.kind = telemetry_pb2.ActivationKind.Value(cs.act)
    if cs.act == "LEAKY_RELU":
        ls.activation.negative_slope = cs.slope
    ls.classifier_weight.CopyFrom(tensor_msg(tensor_pb2, cs.V))
    if cs.b is not None:
        ls.classifier_bias.CopyFrom(tensor_msg(tensor_pb2, cs.b))
    if cs.wd is not None:
        ls.weight_decay = cs.wd
    ls.publish_time_micros = PUBLISH_TIME + 3 * idx
    ab = telemetry_pb2.ActivationBatch(run_id=cs.id, layer="head", step=1, split=telemetry_pb2.TRAIN,
                                       batch_index=0, publish_time_micros=PUBLISH_TIME + 3 * idx + 1)
    ab.input.CopyFrom(tensor_msg(tensor_pb2, cs.F))
    if cs.Z32 is not None:
        ab.pre_activation.CopyFrom(tensor_msg(tensor_pb2, cs.Z32))
    if cs.labels is not None:
        ab.labels.extend(cs.labels)
    md = telemetry_pb2.MeasurementDone(run_id=cs.id, step=1, layer="head",
                                       publish_time_micros=PUBLISH_TIME + 3 * idx + 2)
    return [telemetry_pb2.TelemetryRecord(layer_snapshot=ls),
            telemetry_pb2.TelemetryRecord(activation_batch=ab),
            telemetry_pb2.TelemetryRecord(measurement_done=md)]


def describe(cs, gap):
    g = cs.g
    parts = [cs.act.lower() + ("(slope=%g)" % cs.slope if cs.act == "LEAKY_RELU" else "")]
    parts.append("Cin=%d %dx%d k=%dx%d C=%d" % (cs.Cin, g["H"], g["W"], g["kh"], g["kw"], cs.C))
    parts.append("stride=%s pad=%s dil=%s" % tuple(
        ("%d" % p[0] if p[0] == p[1] else "(%d,%d)" % p) for p in (g["stride"], g["pad"], g["dil"])))
    parts.append("P=%d d=%d B=%d K=%d" % (cs.P, cs.d, cs.B, cs.K))
    parts.append("[geometry lists: %s%s]" % (("defaults-empty", "single-value", "pairs")[cs.enc_variant],
                                               ", groups=1" if cs.groups == 1 else ""))
    parts.append("bias" if cs.beta is not None else "no-bias")
    parts.append("cls-bias" if cs.b is not None else "no-cls-bias")
    if cs.a is not None and cs.residual:
        parts.append("bn-scale+residual (pre_activation sent)")
    elif cs.a is not None:
        parts.append("bn-scale (no pre_activation)")
    elif cs.send_preact:
        parts.append("pre_activation sent (no scale/residual)")
    parts.append("labels" if cs.labels is not None else "no-labels")
    if cs.dead_channel is not None:
        parts.append("input channel %d zero (rho = 0, left out of kappa_norm)" % cs.dead_channel)
    if cs.wd is not None:
        parts.append("weight_decay=%g" % cs.wd)
    conf = cs.spec["confident"]
    if conf is not None:
        parts.append("confident[%s via %s, max gap %.1f]" % (conf["labels"], conf["mech"], gap))
    else:
        parts.append("max gap %.1f" % gap)
    return " ".join(parts)


def fill_values(msg, vals):
    for f in VALUE_FIELDS:
        setattr(msg, f, float(vals[f]))


def relerr(x, ref):
    """|x - ref| / |ref|, no absolute floor; 0 when both are exactly equal (including both 0)."""
    if x == ref:
        return 0.0
    return abs(x - ref) / abs(ref) if ref != 0 else math.inf


# ----------------------------------------------------------------------------------------------
# self-tests
# ----------------------------------------------------------------------------------------------
def self_tests():
    # activation derivatives vs mpmath numerical differentiation
    worst = 0.0
    for kind, slope in ACTS:
        f = mp_sigma(kind, slope)
        for zf in (-2.7, -0.9, -0.13, 0.31, 1.4, 3.2):
            z = mp.mpf(zf)
            _, d1, d2 = mp_act_derivs(kind, slope, z)
            worst = max(worst, float(abs(d1 - mp.diff(f, z, 1))), float(abs(d2 - mp.diff(f, z, 2))))
            t = torch.tensor([zf], dtype=torch.float64)
            _, t1, t2 = f64_act_derivs(kind, slope, t)
            e64 = max(abs(float(t1) - float(d1)), abs(float(t2) - float(d2)))
            assert e64 < 1e-14, "float64 activation derivatives %s: %g" % (kind, e64)
    assert worst < 1e-25, "activation derivative self-test failed: %g" % worst
    # im2col vs torch unfold
    rng = np.random.RandomState(7)
    for g in GEOMS:
        Fx = rng.standard_normal((g["Cin"], g["H"], g["W"]))
        X = im2col(Fx, g)
        U = TF.unfold(torch.from_numpy(Fx)[None], (g["kh"], g["kw"]), dilation=g["dil"],
                      padding=g["pad"], stride=g["stride"])[0].T.numpy()
        assert np.array_equal(X, U), "im2col mismatch for %s" % g
    # weight decay: Hessian of alpha*||W||^2 is 2 alpha I
    Wt = torch.from_numpy(rng.standard_normal((3, 4))).reshape(-1)
    alpha = 0.003
    Hw = torch.autograd.functional.hessian(lambda w: alpha * (w * w).sum(), Wt)
    C_, d_ = 3, 4
    T = torch.einsum("ajbj->ab", Hw.reshape(C_, d_, C_, d_))
    Wf = Wt.reshape(C_, d_)
    assert abs(float(torch.trace(T)) - 2 * alpha * C_ * d_) < 1e-15
    assert abs(float(((Wf @ Wf.T) * T).sum()) - 2 * alpha * d_ * float((Wf ** 2).sum())) < 1e-14
    return worst


# ----------------------------------------------------------------------------------------------
# main generation
# ----------------------------------------------------------------------------------------------
def generate(out_dir, quiet=False):
    t_start = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mp.dps = MP_DPS
    tmp = tempfile.mkdtemp(prefix="flatmon_proto_")
    try:
        tensor_pb2, telemetry_pb2, oracle_pb2 = load_protos(tmp)
        st = self_tests()
        log = (lambda *a: None) if quiet else print
        log("self-tests ok (activation derivatives vs mpmath.diff: %.1e)" % st)
        specs = base_specs() + confident_specs() + dead_channel_specs()
        cases_bytes = bytearray()
        expected_bytes = bytearray()
        stats = dict(n=0, confident=0, worst_ag_cf=(0.0, None, None), worst_ag_mp=(0.0, None, None), worst_ag_mp_pure=(0.0, None, None, None), min_abs_z=(math.inf, None),
                     worst_mp_f64cf=(0.0, None, None), worst_lam_bound=(0.0, None),
                     worst_eigsy=(0.0, None), f32_demo=None, textbook_trV=(0.0, None), f32_worst=(0.0,), f64_conf=(0.0, None, None), cats={})
        cover = dict(acts=set(), strides=set(), pads=set(), dils=set(), kernels=set(), K=set(),
                     P1=0, nonsquare_in=0, bias=set(), cls_bias=set(), scale_res=0, preact_plain=0,
                     scale_only=0, no_preact=0, nolabels=0, wd=0, conf_correct=0, conf_wrong=0,
                     conf_smooth=0)
        for idx, spec in enumerate(specs):
            tc = time.time()
            cs = build_case(idx, spec)
            ag64, Hag64 = autograd_values(cs, torch.float64)
            ag32, _ = autograd_values(cs, torch.float32)
            cf64, Hcf64 = closed_form_f64(cs)
            mph = MPHead(cs)
            lam, lam_bound = mph.lambda_max(Hcf64)
            mpv = dict(mph.values)
            mpv["hessian_max_eigenvalue"] = lam
            gap = float(max(mph.gaps))
            confident = gap > CONFIDENT_GAP
            wdt, wdk = wd_values(cs)
            # mp-precision weight decay (exact inputs)
            if cs.wd is not None:
                wsq = mp.fsum(mp.mpf(float(v)) ** 2 for v in cs.W.ravel())
                wdk_mp = 2 * mp.mpf(cs.wd) * cs.d * wsq
                assert relerr(float(wdk_mp), wdk) < 1e-14
                wdk = float(wdk_mp)
            mp_float = {f: float(mpv[f]) for f in CURV_FIELDS}
            if cs.labels is not None:
                mp_float["loss"] = float(mpv["loss"])
                mp_float["accuracy"] = float(mpv["accuracy"])
                assert relerr(mp_float["loss"], ag64["loss"]) < 1e-12 or confident
                assert mp_float["accuracy"] == ag64["accuracy"]
            else:
                mp_float["loss"] = mp_float["accuracy"] = float("nan")
            mp_float["weight_decay_trace"], mp_float["weight_decay_relative_flatness"] = wdt, wdk
            ag64["weight_decay_relative_flatness"] = wdk
            ag32["weight_decay_relative_flatness"] = wdk
            # lambda_max: the Rayleigh-Ritz bound must be far below the tolerance
            scale = max(abs(float(lam)), float(torch.linalg.matrix_norm(Hcf64, 2)))
            lb = lam_bound / scale
            if lb > stats["worst_lam_bound"][0]:
                stats["worst_lam_bound"] = (lb, cs.id)
            assert lb < 1e-20, "%s: lambda_max Rayleigh-Ritz bound %g" % (cs.id, lb)
            # kinked activations: no pre-activation close enough to 0 for a float32 conv to flip the mask
            if cs.act in ("RELU", "LEAKY_RELU"):
                nz = np.abs(cs.X).sum(axis=2) > 0                    # [B,P] patches with data
                zz = np.abs(cs.z)[np.broadcast_to(nz[:, None, :], cs.z.shape)]
                if cs.beta is not None or cs.residual:
                    zz = np.abs(cs.z).ravel()
                mz = float(zz.min()) if zz.size else math.inf
                if mz < stats["min_abs_z"][0]:
                    stats["min_abs_z"] = (mz, cs.id)
                assert mz > 1e-5, "%s: |z| = %g too close to the kink" % (cs.id, mz)
            # validation of the closed forms
            for f in CURV_FIELDS:
                # float64 closed form vs mp (always; the anchored f64 form is accurate even when confident)
                e = relerr(cf64[f], mp_float[f])
                if e > stats["worst_mp_f64cf"][0]:
                    stats["worst_mp_f64cf"] = (e, cs.id, f)
                if not confident:
                    e = relerr(mp_float[f], ag64[f])
                    if e > stats["worst_ag_mp_pure"][0]:
                        stats["worst_ag_mp_pure"] = (e, cs.id, f, ag64[f])
                    for key, ref in (("worst_ag_cf", cf64[f]), ("worst_ag_mp", mp_float[f])):
                        e = relerr(ref, ag64[f])
                        if e > stats[key][0]:
                            stats[key] = (e, cs.id, f)
                        assert e <= AGREE_REL, "%s %s: closed form %r vs autograd %r (rel %g)" % (
                            cs.id, f, ref, ag64[f], e)
                else:
                    e = relerr(ag64[f], mp_float[f])
                    if e > stats["f64_conf"][0]:
                        stats["f64_conf"] = (e, cs.id, f)
            assert stats["worst_mp_f64cf"][0] < 1e-9, stats["worst_mp_f64cf"]
            e = relerr(cf64["textbook_classifier_hessian_trace"], mp_float["classifier_hessian_trace"])
            if e > stats["textbook_trV"][0]:
                stats["textbook_trV"] = (e, cs.id)
            # classifier closed form (kappa_V in centred form) vs autograd
            # (already covered by CURV_FIELDS above; keep an explicit message for the brief's self-test)
            # small confident heads: 50-digit eigsy of the full eq.-(5) Hessian vs Rayleigh-Ritz
            if confident and cs.C * cs.d <= 40:
                Hmp = mph.full_hessian()
                E = mp.eigsy(Hmp, eigvals_only=True)
                lam_full = max(E)
                tr_full = mp.fsum(Hmp[i, i] for i in range(cs.C * cs.d))
                e1 = float(abs(lam_full - lam) / abs(lam))
                e2 = float(abs(tr_full - mpv["hessian_trace"]) / abs(mpv["hessian_trace"]))
                e = max(e1, e2)
                if e > stats["worst_eigsy"][0] or stats["worst_eigsy"][1] is None:
                    stats["worst_eigsy"] = (max(e, stats["worst_eigsy"][0]), cs.id)
                assert e < 1e-25, "%s: eigsy check %g %g" % (cs.id, e1, e2)
            # the OracleCase
            oc = oracle_pb2.OracleCase(case_id=cs.id, description=describe(cs, gap),
                                       max_logit_gap=gap, confident=confident)
            if confident:
                fill_values(oc.expected, mp_float)
                oc.expected_source = "mpmath-50"
            else:
                fill_values(oc.expected, ag64)
                oc.expected_source = "autograd-float64"
            fill_values(oc.autograd_float64, ag64)
            fill_values(oc.autograd_float32, ag32)
            if confident:
                e_tr = relerr(ag32["hessian_trace"], mp_float["hessian_trace"])
                e_k = relerr(ag32["relative_flatness"], mp_float["relative_flatness"])
                cand = (max(e_tr, e_k), cs.id, mp_float["hessian_trace"], ag32["hessian_trace"], e_tr,
                        mp_float["relative_flatness"], ag32["relative_flatness"], e_k,
                        ag64["hessian_trace"], relerr(ag64["hessian_trace"], mp_float["hessian_trace"]))
                if idx == len(base_specs()):      # the designed demonstration case
                    stats["f32_demo"] = cand
                if cand[0] > stats["f32_worst"][0]:
                    stats["f32_worst"] = cand
            for r in records(cs, tensor_pb2, telemetry_pb2, idx):
                b = r.SerializeToString()
                cases_bytes += varint(len(b)) + b
            b = oc.SerializeToString()
            expected_bytes += varint(len(b)) + b
            # statistics / coverage
            stats["n"] += 1
            stats["confident"] += int(confident)
            key = cs.act + ("(%g)" % cs.slope if cs.act == "LEAKY_RELU" else "")
            stats["cats"][key] = stats["cats"].get(key, 0) + 1
            g = cs.g
            cover["acts"].add(key)
            cover["strides"].update(g["stride"])
            cover["pads"].update(g["pad"])
            cover["dils"].update(g["dil"])
            cover["kernels"].add((g["kh"], g["kw"]))
            cover["K"].add(cs.K)
            cover["P1"] += int(cs.P == 1)
            cover["nonsquare_in"] += int(g["H"] != g["W"])
            cover["bias"].add(cs.beta is not None)
            cover["cls_bias"].add(cs.b is not None)
            cover["scale_res"] += int(cs.residual)
            cover["preact_plain"] += int(cs.send_preact and cs.a is None)
            cover["scale_only"] += int(cs.a is not None and not cs.send_preact)
            cover["no_preact"] += int(not cs.send_preact)
            cover["nolabels"] += int(cs.labels is None)
            cover["wd"] += int(cs.wd is not None)
            if confident:
                conf_lab = cs.spec["confident"]["labels"] if cs.spec["confident"] else "mixed"
                cover["conf_correct"] += int(conf_lab in ("correct", "mixed"))
                cover["conf_wrong"] += int(conf_lab in ("wrong", "mixed"))
                cover["conf_smooth"] += int(cs.act in SMOOTH)
            assert (cs.spec["confident"] is not None) == confident, \
                "%s: designed confident=%s but max gap %.2f" % (cs.id, cs.spec["confident"] is not None, gap)
            log("%-22s %-16s gap %5.1f  TrH % .6e  kappa % .6e  (%.2fs)" % (
                cs.id, oc.expected_source, gap, oc.expected.hessian_trace, oc.expected.relative_flatness,
                time.time() - tc))
        # coverage requirements of the brief
        assert stats["n"] >= 64
        assert len(cover["acts"]) == 8
        assert cover["strides"] >= {1, 2} and cover["pads"] >= {0, 1, 2} and cover["dils"] >= {1, 2}
        assert {(1, 1), (3, 3), (2, 3)} <= cover["kernels"]
        assert {2, 3, 10, 37, 100} <= cover["K"]
        assert cover["P1"] >= 2 and cover["nonsquare_in"] >= 2 and cover["bias"] == {True, False}
        assert cover["cls_bias"] == {True, False}
        assert cover["scale_res"] >= 4 and cover["preact_plain"] >= 4 and cover["no_preact"] >= 4
        assert cover["nolabels"] >= 4 and cover["wd"] >= 8
        assert stats["confident"] >= 12 and cover["conf_correct"] and cover["conf_wrong"] and cover["conf_smooth"]
        demo = stats["f32_demo"]
        assert demo is not None and demo[0] > 1e-3, demo
        # the classifier fixtures must see the textbook complement 1 - s_m (float64) fail
        assert stats["textbook_trV"][0] > 1e-4, stats["textbook_trV"]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cases.pb").write_bytes(bytes(cases_bytes))
        (out_dir / "expected.pb").write_bytes(bytes(expected_bytes))
        elapsed = time.time() - t_start
        if not quiet:
            print()
            print("=" * 96)
            print("cases: %d   confident (mpmath-50): %d   autograd-float64: %d" % (
                stats["n"], stats["confident"], stats["n"] - stats["confident"]))
            print("by activation: " + ", ".join("%s=%d" % kv for kv in sorted(stats["cats"].items())))
            print("coverage: P=1 cases %d, bn-scale+residual %d, pre_activation w/o scale %d, scale only %d, "
                  "no labels %d, weight decay %d, K in %s" % (
                      cover["P1"], cover["scale_res"], cover["preact_plain"], cover["scale_only"],
                      cover["nolabels"], cover["wd"], sorted(cover["K"])))
            e, cid, f = stats["worst_ag_cf"]
            print("worst float64 closed form vs autograd float64 (non-confident): %.2e  (%s, %s)" % (e, cid, f))
            e, cid, f = stats["worst_ag_mp"]
            print("worst mpmath-50 closed form vs autograd float64 (non-confident): %.2e  (%s, %s)" % (e, cid, f))
            e, cid, f, v = stats["worst_ag_mp_pure"]
            print("   (autograd float64 relative to mpmath-50: %.2e  (%s, %s = %.3e))" % (e, cid, f, v))
            e, cid, f = stats["worst_mp_f64cf"]
            print("worst anchored float64 closed form vs mpmath-50 (all cases):      %.2e  (%s, %s)" % (e, cid, f))
            print("worst lambda_max Rayleigh-Ritz error bound (relative):           %.2e  (%s)" % stats["worst_lam_bound"])
            print("worst mp.eigsy(full eq.5 Hessian) vs Rayleigh-Ritz / trace:     %.2e  (%s)" % stats["worst_eigsy"])
            e, cid, f = stats["f64_conf"]
            print("worst autograd float64 vs mpmath-50 on confident cases:           %.2e  (%s, %s)" % (e, cid, f))
            print("smallest |z| at a ReLU/leaky kink (patches with data):          %.2e  (%s)" % stats["min_abs_z"])
            print("worst float64 Tr H_V with textbook 1 - s_m vs mpmath-50:          %.2e  (%s)" % stats["textbook_trV"])
            d = demo
            print("float32 autograd cancellation demo: %s" % d[1])
            print("   Tr H : expected %.15e  float32 autograd %.9e  rel err %.3e  (float64 autograd %.15e, rel err %.2e)"
                  % (d[2], d[3], d[4], d[8], d[9]))
            print("   kappa: expected %.15e  float32 autograd %.9e  rel err %.3e" % (d[5], d[6], d[7]))
            w = stats["f32_worst"]
            print("largest float32 autograd error on a confident case: %s  Tr H rel err %.2e, kappa rel err %.2e"
                  % (w[1], w[4], w[7]))
            print("files: %s (%d bytes), %s (%d bytes)" % (
                out_dir / "cases.pb", len(cases_bytes), out_dir / "expected.pb", len(expected_bytes)))
            print("time: %.1f s" % elapsed)
        return oracle_pb2, telemetry_pb2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp in sys.path:
            sys.path.remove(tmp)


def close(x, y, rel):
    """Both NaN, or equal (exact zeros included), or |x - y| <= rel * |x| with no absolute floor."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or abs(x - y) <= rel * abs(x)


def check(out_dir):
    committed = Path(out_dir)
    tmp = tempfile.mkdtemp(prefix="flatmon_oracle_check_")
    try:
        oracle_pb2, telemetry_pb2 = generate(tmp, quiet=True)
        ok = True
        for name in ("cases.pb", "expected.pb"):
            a = (committed / name).read_bytes() if (committed / name).exists() else None
            b = (Path(tmp) / name).read_bytes()
            if a == b:
                print("%s: identical (%d bytes)" % (name, len(b)))
                continue
            if a is None:
                print("%s: missing in %s" % (name, committed))
                ok = False
                continue
            if name == "cases.pb":
                print("cases.pb differs from a fresh generation (inputs must be bit-identical)")
                ok = False
                continue
            # numeric comparison of expected values
            ea = read_delimited(a, oracle_pb2.OracleCase)
            eb = read_delimited(b, oracle_pb2.OracleCase)
            if len(ea) != len(eb):
                print("expected.pb: %d vs %d cases" % (len(ea), len(eb)))
                ok = False
                continue
            bad = 0
            for x, y in zip(ea, eb):
                if (x.case_id, x.description, x.confident, x.expected_source) != \
                        (y.case_id, y.description, y.confident, y.expected_source):
                    print("%s: metadata differs" % x.case_id)
                    bad += 1
                    continue
                if not close(x.max_logit_gap, y.max_logit_gap, CHECK_REL):
                    print("%s: max_logit_gap differs" % x.case_id)
                    bad += 1
                for f in VALUE_FIELDS:
                    u, v = getattr(x.expected, f), getattr(y.expected, f)
                    if not close(u, v, CHECK_REL):
                        print("%s expected.%s: %r vs %r" % (x.case_id, f, u, v))
                        bad += 1
            print("expected.pb: bytes differ; expected values %s at %g relative" % (
                "agree" if bad == 0 else "DISAGREE (%d)" % bad, CHECK_REL))
            ok = ok and bad == 0
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and fail if it differs from the files in --out")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.out))
    generate(args.out)


if __name__ == "__main__":
    main()
