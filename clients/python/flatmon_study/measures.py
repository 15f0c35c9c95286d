"""Baselines computed in PyTorch: norms of the monitored head and a Hutchinson estimate of Tr H at a fixed
time budget (flatmon_client.estimators, on the same loss flatmon measures: the head's mean cross-entropy
over the full training set as a function of the conv kernel)."""
import time

import numpy as np
import torch

from .models import load_split, monitored, noisy_labels
from .pipeline import load_model

try:
    from flatmon_client.estimators import head_loss, hutchinson_trace_budget
except ImportError:  # pragma: no cover - estimators.py is part of the client since 5e7b04a
    head_loss = hutchinson_trace_budget = None


def _payload(model, x, y):
    """The wire tensors of a TRAIN measurement (what FlatmonMonitor(keep_payload=True) keeps)."""
    conv, cls = monitored(model)
    store = {}
    h = conv.register_forward_pre_hook(lambda m, inp: store.__setitem__("F", inp[0].detach().numpy().copy()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return dict(kernel=conv.weight.detach().numpy(), bias=conv.bias.detach().numpy(),
                scale=None, classifier_weight=cls.weight.detach().numpy(), classifier_bias=cls.bias.detach().numpy(),
                stride=conv.stride, padding=conv.padding, dilation=conv.dilation, activation="RELU",
                negative_slope=0.0, weight_decay=None, train=dict(input=store["F"], pre_activation=None,
                                                                  labels=y.numpy()))


def baselines(rows, train_size, budget_seconds, log=print):
    """{key: dict(w_norm2, wv_norm2, hutchinson, hutchinson_probes, hutchinson_seconds)}."""
    if hutchinson_trace_budget is None:
        raise RuntimeError("flatmon_client.estimators is missing")
    torch.set_num_threads(1)
    xtr, ytr_clean, _, _ = load_split(train_size)
    out = {}
    t0 = time.monotonic()
    for k, row in enumerate(rows):
        model = load_model(row)
        conv, cls = monitored(model)
        ytr, _ = noisy_labels(ytr_clean, row["label_noise"], row["seed"])
        w2 = float((conv.weight.detach().double() ** 2).sum())
        v2 = float((cls.weight.detach().double() ** 2).sum())
        loss_fn, w0 = head_loss(_payload(model, xtr, ytr), "train")
        g = torch.Generator().manual_seed(1000 + k)
        t1 = time.perf_counter()
        est, probes = hutchinson_trace_budget(loss_fn, w0, budget_seconds, generator=g)
        out[row["key"]] = dict(w_norm2=w2, v_norm2=v2, wv_norm2=w2 * v2, hutchinson=float(est),
                               hutchinson_probes=int(probes), hutchinson_seconds=time.perf_counter() - t1)
        if (k + 1) % 16 == 0 or k + 1 == len(rows):
            log("  baselines %d/%d (%d s)" % (k + 1, len(rows), time.monotonic() - t0))
    return out
