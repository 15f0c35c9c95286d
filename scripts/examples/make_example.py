#!/usr/bin/python3
"""Writes examples/two-runs.pb: a small telemetry file for `flatmon compute` (and the README).

Two training runs, each with a ResNet-style head (conv 3x3 -> BN -> +shortcut -> ReLU -> GAP -> fc,
so the pre-activation Z is sent) measured at two steps on train and eval batches; run-b also monitors
a second, GELU head. Random but realistically scaled weights; deterministic (fixed seed).

    /usr/bin/python3 scripts/examples/make_example.py [--out examples/two-runs.pb]
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "oracle"))
from generate import load_protos  # noqa: E402
from flatmon_client.tensors import delimited, tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def conv_same3(F, W):
    """3x3 conv, stride 1, padding 1: F [B,Cin,H,W], W [C,Cin,3,3] -> [B,C,H,W] (float64)."""
    B, Cin, H, Wd = F.shape
    Fp = np.zeros((B, Cin, H + 2, Wd + 2))
    Fp[:, :, 1:-1, 1:-1] = F
    out = np.zeros((B, W.shape[0], H, Wd))
    for u in range(3):
        for v in range(3):
            out += np.einsum("bihw,ci->bchw", Fp[:, :, u:u + H, v:v + Wd], W[:, :, u, v])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "examples" / "two-runs.pb"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    try:
        tensor_pb2, tel, _ = load_protos(tmp)
        rng = np.random.RandomState(7)
        C = Cin = 32
        K, H = 10, 4
        out = bytearray()
        t = 1767225600000000

        def emit(**kw):
            nonlocal out
            out += delimited(tel.TelemetryRecord(**kw))

        for run, heads in (("run-a", ["layer4.1.conv2"]), ("run-b", ["layer4.1.conv2", "head.gelu"])):
            emit(run_started=tel.RunStarted(run_id=run, display_name=run, framework="example",
                                            publish_time_micros=t))
            W0 = {h: rng.standard_normal((C, Cin, 3, 3)) / np.sqrt(Cin * 9) for h in heads}
            V0 = {h: rng.standard_normal((K, C)) / np.sqrt(C) * 3 for h in heads}
            for step in (100, 200):
                for h in heads:
                    growth = 1.0 + step / 200.0           # weights grow as training goes on
                    W = (W0[h] * growth).astype(np.float32)
                    V = (V0[h] * growth).astype(np.float32)
                    b = (0.1 * rng.standard_normal(K)).astype(np.float32)
                    gelu = h == "head.gelu"
                    a = None if gelu else rng.uniform(0.6, 1.4, C).astype(np.float32)
                    snap = tel.LayerSnapshot(
                        run_id=run, layer=h, step=step, kernel=tensor(W, tensor_pb2),
                        stride=[1], padding=[1],
                        activation=tel.Activation(kind=tel.GELU if gelu else tel.RELU),
                        classifier_weight=tensor(V, tensor_pb2), classifier_bias=tensor(b, tensor_pb2),
                        weight_decay=5e-4, publish_time_micros=t)
                    if a is not None:
                        snap.scale.CopyFrom(tensor(a, tensor_pb2))
                    emit(layer_snapshot=snap)
                    for split in (tel.TRAIN, tel.EVAL):
                        for bi in range(2):
                            B = 8
                            F = np.maximum(rng.standard_normal((B, Cin, H, H)), 0).astype(np.float32)
                            y = rng.randint(0, K, B)
                            batch = tel.ActivationBatch(run_id=run, layer=h, step=step, split=split,
                                                        input=tensor(F, tensor_pb2), labels=[int(v) for v in y],
                                                        batch_index=bi, publish_time_micros=t)
                            if not gelu:   # BN scale + shift + residual shortcut: send Z
                                z = a[None, :, None, None] * conv_same3(F.astype(np.float64), W.astype(np.float64))
                                z += 0.1 * rng.standard_normal((1, C, 1, 1)) + 0.5 * rng.standard_normal(z.shape)
                                batch.pre_activation.CopyFrom(tensor(z, tensor_pb2))
                            emit(activation_batch=batch)
                            t += 1000
                emit(measurement_done=tel.MeasurementDone(run_id=run, step=step, publish_time_micros=t))
            emit(run_ended=tel.RunEnded(run_id=run, reason="completed", final_step=200, publish_time_micros=t))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(bytes(out))
        print("wrote %s (%d bytes)" % (args.out, len(out)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
