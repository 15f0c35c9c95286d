#!/usr/bin/python3
"""Trains a small CNN on scikit-learn's 8x8 digits and streams its head to flatmon with FlatmonMonitor.

Used by `flatmon demo` (three of these with different regularisation); also runs on its own against
`bin/flatmon serve`:

    PYTHONPATH=clients/python /usr/bin/python3 clients/python/examples/digits_trainer.py \\
        --bootstrap 127.0.0.1:9092 --run-id my-run --steps 600 --label-noise 0.4 --train-size 150

Every --every steps it measures the head on --samples train and eval samples. It stops when flatmon
sends STOP and restores the weights of the signal's best_step. Prints one line per measurement and a
final `RESULT ...` line.
"""
import argparse
import copy
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

INSTALL = ("apt-get install python3-torch python3-confluent-kafka python3-protobuf python3-sklearn "
           "protobuf-compiler")


def watch_parent(pid):
    """Exit when the process that started us is gone (nothing is left running after a killed demo)."""
    def loop():
        while True:
            time.sleep(1.0)
            if os.getppid() != pid:
                os._exit(3)
    threading.Thread(target=loop, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--display-name")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=20, help="measure every N steps")
    ap.add_argument("--samples", type=int, default=256, help="samples per split per measurement")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels randomised")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight_decay (L2 coefficient)")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--model", choices=["plain", "resnet"], default="plain")
    ap.add_argument("--monitor", default="eval_loss",
                    help="policy: eval_loss, relative_flatness, hessian_trace, ... or 'server' for the server default")
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parent-pid", type=int, help="exit when this process (the demo) goes away")
    args = ap.parse_args()
    if args.parent_pid:
        watch_parent(args.parent_pid)
    try:
        import torch
        import torch.nn.functional as TF
        import digits
        from flatmon_client import FlatmonMonitor, make_policy, results_pb2
    except ImportError as e:
        print("digits_trainer: %s. Install the dependencies: %s" % (e, INSTALL), file=sys.stderr)
        return 3
    torch.set_num_threads(1)      # several trainers share a small machine
    torch.manual_seed(args.seed)
    xtr, ytr, xev, yev = digits.load_digits(args.train_size, args.eval_size, label_noise=args.label_noise,
                                            seed=args.seed)
    if args.model == "resnet":
        model = digits.ResNetDigits(width=args.width // 2, head_width=args.width)
    else:
        model = digits.plain_cnn(args.width, args.width, dropout=args.dropout)
    conv, cls = digits.monitored(model)
    opt = torch.optim.Adam(model.parameters(), args.lr, weight_decay=args.weight_decay)
    policy = None if args.monitor == "server" else make_policy(args.monitor, patience=args.patience)
    gen = torch.Generator().manual_seed(args.seed)
    best_weights = {}

    def on_signal(sig):
        print("signal step %d: %s %s (%s)" % (sig.step, results_pb2.SignalAction.Name(sig.action),
                                              results_pb2.SignalReason.Name(sig.reason), sig.detail), flush=True)

    # Adam's weight_decay adds wd*W to the gradient, i.e. the loss term (wd/2)||W||^2: flatmon's alpha is wd/2.
    mon = FlatmonMonitor(model, conv, cls, args.run_id, args.bootstrap, every_n_steps=args.every,
                         samples_per_measurement=args.samples, split_batches=128, policy=policy,
                         on_signal=on_signal, display_name=args.display_name or args.run_id,
                         weight_decay=args.weight_decay / 2 if args.weight_decay else None,
                         signal_mode="measurement",
                         labels={"dataset": "sklearn-digits", "train_size": args.train_size,
                                 "label_noise": args.label_noise, "weight_decay": args.weight_decay,
                                 "dropout": args.dropout})
    step, reason = 0, "completed"
    t0 = time.time()
    try:
        while step < args.steps:
            perm = torch.randperm(len(ytr), generator=gen)
            for i in range(0, len(ytr), args.batch_size):
                idx = perm[i:i + args.batch_size]
                model.train()
                opt.zero_grad()
                loss = TF.cross_entropy(model(xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                step += 1
                m = mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev))
                if m is not None:
                    best_weights[step] = copy.deepcopy(model.state_dict())
                    print("step %d: train loss %.4f acc %.3f | eval loss %.4f acc %.3f | %d bytes in %.3f s"
                          % (step, m.loss["train"], m.accuracy["train"], m.loss["eval"], m.accuracy["eval"],
                             m.bytes_sent, m.seconds), flush=True)
                if mon.should_stop() or step >= args.steps:
                    break
            if mon.should_stop():
                reason = "early_stopped"
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        mon.close(reason=reason, final_step=step)
    stop = mon.stop_signal()
    restored = ""
    if stop is not None and stop.best_step in best_weights:
        model.load_state_dict(best_weights[stop.best_step])
        restored = " restored_step=%d" % stop.best_step
    print("RESULT run=%s reason=%s steps=%d seconds=%.1f%s" % (args.run_id, reason, step, time.time() - t0,
                                                               restored), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
