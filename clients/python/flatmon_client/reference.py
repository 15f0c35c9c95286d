"""Float64 autograd reference for what flatmon computes, from the exact float32 values a measurement sent.

Same construction as scripts/oracle/generate.py: the full Hessian of the mean cross-entropy w.r.t. the
conv kernel by torch.autograd.functional.hessian in float64, then Tr H = Σ_c Tr H_cc and
κ = Σ_{c,c'} <w_c, w_c'> Tr H_cc'. When the pre-activation Z was sent, the additive term is
r = Z − a·(conv(F, W) + β) evaluated at the sent W, so that z(W) reproduces the sent Z exactly.
Cost: C·d Hessian-vector products — fine for small heads (tests), not for production layers.
"""
import numpy as np
import torch
import torch.nn.functional as TF

VECTORIZE = False

_ACT = {
    "IDENTITY": lambda z, s: z,
    "RELU": lambda z, s: torch.relu(z),
    "LEAKY_RELU": lambda z, s: TF.leaky_relu(z, s),
    "GELU": lambda z, s: TF.gelu(z),
    "GELU_TANH": lambda z, s: TF.gelu(z, approximate="tanh"),
    "SILU": lambda z, s: TF.silu(z),
    "TANH": lambda z, s: torch.tanh(z),
}


def autograd_reference(payload, split="train"):
    """Returns dict(hessian_trace, relative_flatness, loss, weight_decay_trace,
    weight_decay_relative_flatness) for one split of a Measurement.payload (keep_payload=True)."""
    from .estimators import head_loss   # (estimators imports _ACT from here)

    # The loss of flatmon_client.estimators.head_loss in float64: the conv as a product with torch's own
    # unfold patches, Z's additive term taken at the sent W.
    loss, W0 = head_loss(payload, split, dtype=torch.float64)
    C = W0.shape[0]
    d = W0[0].numel()
    Hm = torch.autograd.functional.hessian(loss, W0.reshape(-1).clone(), vectorize=VECTORIZE)
    H4 = Hm.reshape(C, d, C, d)
    T = torch.einsum("ajbj->ab", H4)
    Wf = W0.reshape(C, d)
    out = dict(hessian_trace=float(torch.trace(T)), relative_flatness=float(((Wf @ Wf.T) * T).sum()))
    with torch.no_grad():
        out["loss"] = float(loss(W0.reshape(-1)))
    wd = payload.get("weight_decay")
    out["weight_decay_trace"] = 0.0 if wd is None else 2.0 * wd * C * d
    out["weight_decay_relative_flatness"] = 0.0 if wd is None else 2.0 * wd * d * float((W0 * W0).sum())
    return out
