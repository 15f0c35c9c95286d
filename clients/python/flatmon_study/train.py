"""Training one model to the study's stopping criterion: SGD (momentum 0.9) until the cross-entropy on the
full training set, with the labels it is trained on, is ≤ target_loss (checked after every epoch), or
max_epochs (then the model is excluded from the analysis and counted)."""
import json
import math
import os
import time

import torch
import torch.nn.functional as TF

from .models import load_split, noisy_labels, study_cnn

TARGET_LOSS = 0.01
EVAL_CHUNK = 250        # one 1000-sample forward is ~9x slower than four of 250 on CPU (torch 1.13)


def full_loss(model, x, y):
    """(mean cross-entropy in float64, error rate) of `model` in eval mode over all of (x, y)."""
    model.eval()
    loss, wrong = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), EVAL_CHUNK):
            lg = model(x[i:i + EVAL_CHUNK]).double()
            loss += float(TF.cross_entropy(lg, y[i:i + EVAL_CHUNK], reduction="sum"))
            wrong += int((lg.argmax(1) != y[i:i + EVAL_CHUNK]).sum())
    return loss / len(y), wrong / len(y)


def random_shift(x, k, gen):
    """Each image of x [B,1,H,W] shifted by its own random (dy, dx) ∈ [−k, k]²: zero-padded by k, then a
    random H×W crop (the augmentation of docs/study-protocol.md)."""
    B, _, H, W = x.shape
    xp = TF.pad(x, (k, k, k, k))
    off = torch.randint(0, 2 * k + 1, (B, 2), generator=gen)
    return torch.stack([xp[i, :, off[i, 0]:off[i, 0] + H, off[i, 1]:off[i, 1] + W] for i in range(B)])


def train_one(cfg, max_epochs, train_size, model_dir, target_loss=TARGET_LOSS):
    """Trains `cfg` and saves its final weights to model_dir/<key>.pt; returns a dict of what happened."""
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    xtr, ytr_clean, xte, yte = load_split(train_size)
    ytr, flipped = noisy_labels(ytr_clean, cfg.label_noise, cfg.seed)
    model = study_cnn(cfg.width, cfg.depth)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    schedule = getattr(cfg, "schedule", "constant")
    augment = int(getattr(cfg, "augment", 0) or 0)
    t0 = time.perf_counter()
    train_loss, reached, epoch, diverged = float("nan"), False, 0, False
    for epoch in range(1, max_epochs + 1):
        if schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max_epochs))
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            xb = random_shift(xtr[b], augment, gen) if augment else xtr[b]
            opt.zero_grad()
            TF.cross_entropy(model(xb), ytr[b]).backward()
            opt.step()
        train_loss, _ = full_loss(model, xtr, ytr)
        if train_loss <= target_loss:
            reached = True
            break
        if not torch.isfinite(torch.tensor(train_loss)):
            diverged = True
            break
    seconds = time.perf_counter() - t0
    train_loss, train_err = full_loss(model, xtr, ytr)
    _, train_clean_err = full_loss(model, xtr, ytr_clean)
    test_loss, test_err = full_loss(model, xte, yte)
    path = os.path.join(model_dir, cfg.key + ".pt")
    torch.save(model.state_dict(), path)
    return dict(key=cfg.key, **cfg.hparams(), reached=reached, diverged=diverged, epochs=epoch,
                train_seconds=round(seconds, 3), train_loss=train_loss, train_error=train_err,
                train_clean_error=train_clean_err, test_loss=test_loss, test_error=test_err,
                gap=test_loss - train_loss, flipped=int(flipped.sum()), model_path=path)


def _worker(args):
    cfg, max_epochs, train_size, model_dir = args
    return train_one(cfg, max_epochs, train_size, model_dir)


def train_all(cfgs, max_epochs, train_size, out_dir, workers=2, log=print):
    """Trains every config not already in out_dir/training.jsonl (so an interrupted study resumes), with
    at most `workers` processes; returns every row of training.jsonl for `cfgs`."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing as mp
    model_dir = os.path.join(out_dir, "models")
    os.makedirs(model_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "training.jsonl")
    done = {}
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    done[row["key"]] = row
    todo = [c for c in cfgs if c.key not in done]
    log("training: %d models (%d already done), %d worker process(es), cap %d epochs, stop at train CE <= %g"
        % (len(cfgs), len(cfgs) - len(todo), workers, max_epochs, TARGET_LOSS))
    t0 = time.monotonic()
    if todo:
        # Longest-first keeps the two workers busy to the end: wide, deep, noisy, small-lr models are slowest.
        todo.sort(key=lambda c: -(c.width ** 2 * c.depth * (1 + 4 * c.label_noise) * (1 + 32 / c.batch_size) / c.lr))
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool, open(log_path, "a") as f:
            futures = [pool.submit(_worker, (c, max_epochs, train_size, model_dir)) for c in todo]
            for k, fut in enumerate(as_completed(futures), 1):
                row = fut.result()
                f.write(json.dumps(row) + "\n")
                f.flush()
                done[row["key"]] = row
                el = time.monotonic() - t0
                log("  [%3d/%d] %-34s %s epoch %3d  train CE %.4f  test CE %.3f err %.3f  %5.1fs  (elapsed %s, "
                    "~%s left)" % (k, len(todo), row["key"], "reached " if row["reached"] else "EXCLUDED",
                                   row["epochs"], row["train_loss"], row["test_loss"], row["test_error"],
                                   row["train_seconds"], _mmss(el), _mmss(el / k * (len(todo) - k))))
    return [done[c.key] for c in cfgs]


def _mmss(s):
    return "%d:%02d" % (s // 60, s % 60)
