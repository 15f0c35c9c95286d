"""PyTorch estimators of the curvature flatmon computes in closed form, for comparisons and studies.

Stable API (other scripts import it):

- ``head_loss(payload, split="train", dtype=torch.float32)`` -> ``(loss_fn, weight)``: the head's mean
  cross-entropy as a function of the conv kernel, built from the wire tensors a measurement sent.
- ``hutchinson_trace(loss_fn, weight, m, generator=None, batch=1, max_seconds=None)`` ->
  ``(estimate, per_probe_values)``
- ``hutchinson_trace_budget(loss_fn, weight, seconds, generator=None, batch=1)`` -> ``(estimate, probes_used)``
- ``hessian_vector_product(loss_fn, weight, v)``
- ``exact_curvature(loss_fn, weight)`` -> ``dict(hessian_trace, relative_flatness)`` from the dense
  autograd Hessian (all blocks; memory ``(Cd)²``), and ``dense_hessian_bytes(C, d)`` to check it first.
- ``hvp_loop_curvature(loss_fn, weight, max_seconds=None)``: the same two values from ``C·d``
  Hessian-vector products, without storing the Hessian (memory ``O(Cd)``, time ``C·d`` HVPs).
- ``rademacher(shape, dtype, generator)``, ``relative_error(estimate, exact)``.

Throughout, ``loss_fn(w)`` returns the scalar mean cross-entropy ``L`` (the loss flatmon's ``H`` is the
Hessian of, docs/math.md §1) as a differentiable function of the kernel tensor ``w`` of shape
``[C, C_in, kh, kw]``; ``weight`` is the point of evaluation (any tensor of that shape; it is not
modified). ``Tr H = Σ_c Tr H_cc`` and ``κ = Σ_{c,c'} <w_c, w_c'> Tr H_cc'`` (docs/math.md eqs. 6, 7).

A *payload* is the dict ``FlatmonMonitor(keep_payload=True)`` keeps of what a measurement sent
(``Measurement.payload``; the same dict :func:`flatmon_client.reference.autograd_reference` reads):
``kernel, bias, scale, classifier_weight, classifier_bias, stride, padding, dilation, activation,
negative_slope, weight_decay`` and, per split name, ``dict(input, pre_activation, labels)``.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as TF

from .reference import _ACT

__all__ = ["head_loss", "hutchinson_trace", "hutchinson_trace_budget", "hessian_vector_product",
           "exact_curvature", "hvp_loop_curvature", "dense_hessian_bytes", "rademacher", "relative_error"]


def head_loss(payload, split="train", dtype=torch.float32):
    """The head's mean cross-entropy as a function of the conv kernel, from a payload (see module doc).

    Same construction as :mod:`flatmon_client.reference`: the conv is a product with torch's own
    ``unfold`` patches (same function as ``conv2d``, much cheaper double backward), here one GEMM
    ``W_f [C, d] × X [d, N·P]`` over the whole batch (faster than per-sample products); when the
    pre-activation ``Z`` was sent, the additive term ``r = Z − a·(conv(F, W) + β)`` is taken at the sent
    ``W`` so that ``z(W)`` reproduces ``Z``. Weight decay is not part of the loss (flatmon reports it
    separately, eq. 8).

    Returns ``(loss_fn, weight)``: ``loss_fn(w) -> scalar tensor`` and the sent kernel as a tensor of
    ``dtype`` (a fresh leaf, ``requires_grad=False``).
    """
    W0 = torch.as_tensor(np.array(payload["kernel"], np.float32)).to(dtype)
    shape = tuple(W0.shape)
    C = shape[0]
    d = int(np.prod(shape[1:]))

    def opt(name):
        v = payload.get(name)
        return None if v is None else torch.as_tensor(np.asarray(v, np.float32)).to(dtype)

    beta, a, V, b = opt("bias"), opt("scale"), opt("classifier_weight"), opt("classifier_bias")
    data = payload[split]
    F = torch.as_tensor(np.asarray(data["input"], np.float32)).to(dtype)
    y = torch.as_tensor(np.asarray(data["labels"], np.int64))
    act = _ACT[payload.get("activation", "RELU")]
    slope = float(payload.get("negative_slope", 0.0) or 0.0)
    X = TF.unfold(F, shape[2:], dilation=tuple(payload.get("dilation", (1, 1))),
                  padding=tuple(payload.get("padding", (0, 0))), stride=tuple(payload.get("stride", (1, 1))))
    N, P = X.shape[0], X.shape[2]
    Xm = X.permute(1, 0, 2).reshape(d, N * P).contiguous()                   # [d, N·P]: one GEMM

    def pre(w):
        z = (w.reshape(C, d) @ Xm).reshape(C, N, P).permute(1, 0, 2)           # [N, C, P]
        if beta is not None:
            z = z + beta[None, :, None]
        return z * a[None, :, None] if a is not None else z

    r = None
    if data.get("pre_activation") is not None:
        with torch.no_grad():
            Z = torch.as_tensor(np.asarray(data["pre_activation"], np.float32)).to(dtype)
            r = Z.reshape(F.shape[0], C, -1) - pre(W0)

    def loss_fn(w):
        z = pre(w)
        if r is not None:
            z = z + r
        h = act(z, slope).mean(dim=2)
        o = h @ V.T
        if b is not None:
            o = o + b
        return TF.cross_entropy(o, y)

    return loss_fn, W0


def _leaf(weight):
    return weight.detach().clone().requires_grad_(True)


def rademacher(shape, dtype=torch.float32, generator=None):
    """A ±1 tensor (Rademacher probe)."""
    return (torch.randint(0, 2, tuple(shape), generator=generator) * 2 - 1).to(dtype)


def hessian_vector_product(loss_fn, weight, v):
    """``H v`` by double backward (Pearlmutter): ``g = ∂L/∂w`` with ``create_graph``, then ``∂(g·v)/∂w``."""
    w = _leaf(weight)
    g, = torch.autograd.grad(loss_fn(w), w, create_graph=True)
    hv, = torch.autograd.grad(g, w, grad_outputs=v)
    return hv


class _Hvp:
    """Builds ``g = ∂L/∂w`` (with its graph) once; each call is then one backward through it."""

    def __init__(self, loss_fn, weight):
        self.w = _leaf(weight)
        self.g, = torch.autograd.grad(loss_fn(self.w), self.w, create_graph=True)

    def __call__(self, v, batched=False):
        hv, = torch.autograd.grad(self.g, self.w, grad_outputs=v, retain_graph=True, is_grads_batched=batched)
        return hv

    def quad(self, vs):
        """``vᵀHv`` for a stack of probes ``vs [B, *w.shape]`` (one batched backward when B > 1)."""
        if vs.shape[0] == 1:
            return [float((vs[0] * self(vs[0])).sum())]
        hv = self(vs, batched=True)
        return (vs * hv).reshape(vs.shape[0], -1).sum(1).double().tolist()


def hutchinson_trace(loss_fn, weight, m, generator=None, batch=1, max_seconds=None):
    """Hutchinson's estimator ``Tr H ≈ (1/m) Σ_i v_iᵀ H v_i`` with ``m`` Rademacher probes ``v_i``.

    Hessian-vector products by double backward; the gradient graph is built once and each probe costs one
    backward through it. Computes in ``weight``'s dtype. ``generator`` (a ``torch.Generator``) seeds the
    probes; None uses torch's global generator. ``batch > 1`` pushes that many probes through one
    backward (``is_grads_batched``, vmap); the probes come from the same random stream, so the values
    match ``batch=1``'s with the same seed up to rounding. ``max_seconds`` (wall time, the gradient graph
    included) stops early: then fewer than ``m`` values come back.

    Returns ``(estimate, per_probe_values)``: a float and a float64 numpy array of the ``m`` values
    ``v_iᵀ H v_i`` (their running means are the estimates with fewer probes).
    """
    if m < 1:
        raise ValueError("m must be >= 1")
    t0 = time.perf_counter()
    hvp = _Hvp(loss_fn, weight)
    vals = np.empty(m, np.float64)
    i = 0
    while i < m:
        if max_seconds is not None and i > 0 and time.perf_counter() - t0 >= max_seconds:
            vals = vals[:i]
            break
        k = min(batch, m - i)
        vals[i:i + k] = hvp.quad(rademacher((k,) + tuple(weight.shape), weight.dtype, generator))
        i += k
    return float(vals.mean()), vals


def hutchinson_trace_budget(loss_fn, weight, seconds, generator=None, batch=1):
    """Hutchinson's estimator with as many probes as fit in ``seconds`` of wall time (at least one; the
    gradient graph's construction counts against the budget; ``batch`` as in :func:`hutchinson_trace`).

    Returns ``(estimate, probes_used)``.
    """
    t0 = time.perf_counter()
    hvp = _Hvp(loss_fn, weight)
    total, n = 0.0, 0
    while n == 0 or time.perf_counter() - t0 < seconds:
        vals = hvp.quad(rademacher((batch,) + tuple(weight.shape), weight.dtype, generator))
        total += sum(vals)
        n += len(vals)
    return total / n, n


def _reduce(blocks_trace, weight):
    """``Tr H`` and ``κ`` from the ``C × C`` matrix ``T_cc' = Tr H_cc'``."""
    C = weight.shape[0]
    Wf = weight.detach().reshape(C, -1).to(blocks_trace.dtype)
    return dict(hessian_trace=float(torch.trace(blocks_trace)),
                relative_flatness=float(((Wf @ Wf.T) * blocks_trace).sum()))


def dense_hessian_bytes(C, d, itemsize=8):
    """Memory of one dense ``Cd × Cd`` Hessian (float64 by default); autograd's ``hessian`` holds it plus
    its ``Cd`` rows while building it, so plan for at least this much."""
    return (C * d) ** 2 * itemsize


def exact_curvature(loss_fn, weight):
    """``Tr H`` and ``κ`` from the full Hessian by ``torch.autograd.functional.hessian`` (all ``C²``
    blocks), in ``weight``'s dtype (pass float64 for a reference). Time ``C·d`` backward passes, memory
    :func:`dense_hessian_bytes`. For a payload this is the construction of
    :func:`flatmon_client.reference.autograd_reference`.

    Returns ``dict(hessian_trace, relative_flatness)``.
    """
    C = weight.shape[0]
    d = int(np.prod(weight.shape[1:]))
    H = torch.autograd.functional.hessian(lambda w: loss_fn(w.reshape(weight.shape)),
                                          weight.detach().reshape(-1).clone())
    T = torch.einsum("ajbj->ab", H.reshape(C, d, C, d))
    return _reduce(T, weight)


def hvp_loop_curvature(loss_fn, weight, max_seconds=None):
    """``Tr H`` and ``κ`` exactly from ``C·d`` Hessian-vector products ``H e_(c',j)`` (one per kernel
    coordinate), keeping only the ``C × C`` block traces: memory ``O(Cd)`` instead of ``(Cd)²``, time
    ``C·d`` HVPs — the matrix-free exact alternative to flatmon's closed form (docs/math.md §6).

    Returns ``dict(hessian_trace, relative_flatness, hvps, complete, seconds)``. With ``max_seconds``
    the loop may stop early (``complete`` False, the two values NaN): ``seconds / hvps`` then times one
    HVP, for extrapolating the whole loop.
    """
    C = weight.shape[0]
    d = int(np.prod(weight.shape[1:]))
    t0 = time.perf_counter()
    hvp = _Hvp(loss_fn, weight)
    T = torch.zeros(C, C, dtype=weight.dtype)
    e = torch.zeros(C, d, dtype=weight.dtype)
    done = 0
    for c2 in range(C):
        for j in range(d):
            if max_seconds is not None and done > 0 and time.perf_counter() - t0 >= max_seconds:
                return dict(hessian_trace=math.nan, relative_flatness=math.nan, hvps=done, complete=False,
                            seconds=time.perf_counter() - t0)
            e[c2, j] = 1.0
            col = hvp(e.reshape(weight.shape)).reshape(C, d)       # column (c', j) of H
            T[:, c2] += col[:, j].detach()                         # Σ_j H_(c,j),(c',j) = Tr H_cc'
            e[c2, j] = 0.0
            done += 1
    out = _reduce(T, weight)
    out.update(hvps=done, complete=True, seconds=time.perf_counter() - t0)
    return out


def relative_error(estimate, exact):
    """``|estimate − exact| / |exact|`` (inf when exact is 0 and the estimate is not)."""
    if exact == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - exact) / abs(exact)
