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
    d64 = torch.float64
    W0 = torch.from_numpy(np.array(payload["kernel"], np.float32)).to(d64)
    shape = tuple(W0.shape)
    C = shape[0]
    d = int(np.prod(shape[1:]))
    beta = None if payload["bias"] is None else torch.from_numpy(payload["bias"]).to(d64)
    a = None if payload["scale"] is None else torch.from_numpy(payload["scale"]).to(d64)
    V = torch.from_numpy(payload["classifier_weight"]).to(d64)
    b = None if payload["classifier_bias"] is None else torch.from_numpy(payload["classifier_bias"]).to(d64)
    data = payload[split]
    F = torch.from_numpy(data["input"]).to(d64)
    y = torch.from_numpy(np.asarray(data["labels"], np.int64))
    act = _ACT[payload["activation"]]
    slope = payload.get("negative_slope", 0.0)

    # The conv as a product with the im2col patches (torch's own unfold): the same function as conv2d,
    # with a much cheaper double backward than conv2d's.
    X = TF.unfold(F, shape[2:], dilation=payload["dilation"], padding=payload["padding"],
                  stride=payload["stride"])                                   # [N, d, P]

    def pre(w):
        z = torch.einsum("cd,ndp->ncp", w.reshape(C, d), X)
        if beta is not None:
            z = z + beta[None, :, None]
        return z * a[None, :, None] if a is not None else z

    r = None
    if data.get("pre_activation") is not None:
        with torch.no_grad():
            r = torch.from_numpy(data["pre_activation"]).to(d64).reshape(F.shape[0], C, -1) - pre(W0)

    def loss(wflat):
        z = pre(wflat)
        if r is not None:
            z = z + r
        h = act(z, slope).mean(dim=2)
        o = h @ V.T
        if b is not None:
            o = o + b
        return TF.cross_entropy(o, y)

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
