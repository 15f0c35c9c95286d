"""End to end on the real stack: `bin/flatmon serve` (embedded Kafka broker + Kafka Streams service) and
PyTorch trainers on scikit-learn's digits, publishing through FlatmonMonitor.

(a) flatmon's Tr H and κ equal float64 autograd on the same samples (plain and BN+residual heads);
(b) a long run on heavily label-noised data with monitor=EVAL_LOSS gets STOP, stops, and best_step is
    the step of its lowest eval loss;
(c) a run diverging to NaN gets STOP / NON_FINITE;
(d) for every run, the step where a κ-based policy would have stopped is printed next to the eval-loss
    optimum (reported, not asserted).

Run from the repository root:  /usr/bin/python3 -m unittest discover -s clients/python/tests -v
"""
import copy
import math
import sys
import time
import unittest
import uuid

import support  # noqa: F401  (sets sys.path)

import torch
import torch.nn as nn
import torch.nn.functional as TF

import digits
from flatmon_client import FlatmonMonitor, make_policy, policy_pb2, results_pb2, simulate
from flatmon_client.reference import autograd_reference
from flatmon_client.results import ResultsReader

# One thread: on a small shared machine torch's OpenMP pool with 2 threads is up to 10x slower under load.
torch.set_num_threads(1)

SERVER = None
READER = None
RUNS = []          # (label, run_id, stop_signal or None) for the report of (d)
REL = 1e-4


def setUpModule():
    global SERVER, READER
    t0 = time.monotonic()
    SERVER = support.FlatmonServer().start()
    READER = ResultsReader(SERVER.bootstrap, run_filter=lambda r: r.startswith("e2e-"))
    READER.start()
    print("\nflatmon serving on %s (started in %.1f s)" % (SERVER.bootstrap, time.monotonic() - t0), file=sys.stderr)


def tearDownModule():
    try:
        if READER is not None:
            report()
            READER.close()
    finally:
        if SERVER is not None:
            SERVER.stop()


def run_id(label):
    return "e2e-%s-%s" % (label, uuid.uuid4().hex[:8])


def train_step(model, opt, x, y):
    model.train()
    opt.zero_grad()
    loss = TF.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


def report():
    """(d): where would a κ-based policy have stopped each run, next to the eval-loss optimum."""
    kappa_p3 = make_policy("relative_flatness", patience=3)
    kappa_p10 = make_policy("relative_flatness", patience=10)   # the former server default
    lines = ["", "(d) kappa-based early stopping vs the eval-loss optimum (reported, not asserted)",
             "%-34s %5s %11s %11s %13s %13s %s" % ("run", "meas", "eval-opt", "eval-loss", "kappa-stop p3",
                                                  "kappa-stop p10", "flatmon STOP (monitor, reason, best)")]
    for label, rid, stop in RUNS:
        train = READER.series(rid, "TRAIN")
        ev = READER.series(rid, "EVAL")
        finite = [r for r in ev if math.isfinite(r.loss.mean)]
        opt = min(finite, key=lambda r: r.loss.mean) if finite else None
        kappa = [(r.step, r.relative_flatness.mean) for r in train]
        s3, s10 = simulate(kappa_p3, kappa), simulate(kappa_p10, kappa)

        def fmt(s):
            return "-" if s["stop_step"] is None else "%d%s" % (s["stop_step"], "" if s["reason"] ==
                                                                "PATIENCE_EXHAUSTED" else "(%s)" % s["reason"])

        flat = "-" if stop is None else "step %d (%s, %s, best %d)" % (
            stop.step, policy_pb2.MonitoredQuantity.Name(stop.monitor), results_pb2.SignalReason.Name(stop.reason),
            stop.best_step)
        lines.append("%-34s %5d %11s %11s %13s %13s %s" % (
            label, len(train), opt.step if opt else "-", "%.4f" % opt.loss.mean if opt else "-", fmt(s3), fmt(s10),
            flat))
    print("\n".join(lines))
    sys.stdout.flush()


class A_Exactness(unittest.TestCase):
    """(a) Tr H and κ from flatmon == float64 autograd on the very samples sent (1e-4 relative)."""

    def check(self, label, model, weight_decay=None, steps=20, every=10):
        torch.manual_seed(0)
        xtr, ytr, xev, yev = digits.load_digits(400, 200, seed=1)
        conv, cls = digits.monitored(model)
        rid = run_id(label)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        sent = {}
        with FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=every, samples_per_measurement=128,
                            split_batches=48, keep_payload=True, weight_decay=weight_decay) as mon:
            for step in range(1, steps + 1):
                train_step(model, opt, xtr, ytr)
                m = mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev))
                if m is not None:
                    sent[step] = m
        RUNS.append((label, rid, None))
        worst = 0.0
        for step, m in sent.items():
            for split in ("TRAIN", "EVAL"):
                r = READER.wait_final(rid, step, split, timeout=90)
                self.assertIsNotNone(r, "no final %s result of step %d for %s" % (split, step, rid))
                ref = autograd_reference(m.payload, split.lower())
                self.assertEqual(r.samples, 128)
                self.assertEqual(r.batches, 3)          # 48 + 48 + 32: the running sums merge across batches
                self.assertFalse(r.non_finite)
                for name, got, want in (("Tr H", r.hessian_trace.mean, ref["hessian_trace"]),
                                        ("kappa", r.relative_flatness.mean, ref["relative_flatness"]),
                                        ("loss", r.loss.mean, ref["loss"]),
                                        ("wd Tr H", r.weight_decay_trace, ref["weight_decay_trace"]),
                                        ("wd kappa", r.weight_decay_relative_flatness,
                                         ref["weight_decay_relative_flatness"])):
                    if want == 0:                       # zero by construction (no weight decay): exactly zero
                        self.assertEqual(got, 0.0, "%s step %d %s %s: flatmon %r, expected exactly 0"
                                         % (label, step, split, name, got))
                        continue
                    err = abs(got - want) / abs(want)   # relative, no absolute floor
                    worst = max(worst, err) if name in ("Tr H", "kappa") else worst
                    self.assertLessEqual(err, REL, "%s step %d %s %s: flatmon %r vs autograd float64 %r (rel %.2e)"
                                         % (label, step, split, name, got, want, err))
                print("  %s step %d %-5s Tr H %.10g (autograd %.10g)  kappa %.10g (autograd %.10g)" % (
                    label, step, split, r.hessian_trace.mean, ref["hessian_trace"], r.relative_flatness.mean,
                    ref["relative_flatness"]), file=sys.stderr)
        print("  %s: worst relative error of Tr H / kappa vs float64 autograd: %.2e" % (label, worst), file=sys.stderr)

    def test_plain_relu_head(self):
        torch.manual_seed(0)
        self.check("exact-plain-relu", digits.plain_cnn(width=8, head_width=12, head_in=8), weight_decay=1e-4)

    def test_bn_residual_head(self):
        torch.manual_seed(0)
        model = digits.ResNetDigits(width=8, head_width=12)
        self.check("exact-bn-residual", model)


class B_EvalLossStop(unittest.TestCase):
    """(b) monitor=EVAL_LOSS, patience 3: STOP arrives, the trainer stops, best_step = argmin eval loss."""

    def test_label_noise_run_stops_at_eval_loss_optimum(self):
        torch.manual_seed(0)
        xtr, ytr, xev, yev = digits.load_digits(200, 400, label_noise=0.6, seed=0)
        model = digits.plain_cnn(width=24, head_width=24)
        conv, cls = digits.monitored(model)
        opt = torch.optim.Adam(model.parameters(), 4e-3)
        rid = run_id("evalloss-noisy-labels")
        max_steps, every = 3000, 10
        checkpoints, local = {}, {}
        mon = FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=every, samples_per_measurement=256,
                             split_batches=128, policy=make_policy("eval_loss", patience=3, check_finite=True),
                             max_pending=1)
        stopped_at = None
        try:
            for step in range(1, max_steps + 1):
                train_step(model, opt, xtr, ytr)
                m = mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev))
                if m is not None:
                    checkpoints[step] = copy.deepcopy(model.state_dict())
                    local[step] = m.loss["eval"]
                if mon.should_stop():
                    stopped_at = step
                    break
        finally:
            mon.close()
        stop = mon.stop_signal()
        RUNS.append(("evalloss-noisy-labels", rid, stop))
        self.assertIsNotNone(stop, "no STOP within %d steps" % max_steps)
        self.assertIsNotNone(stopped_at)
        self.assertLess(stopped_at, max_steps)
        # max_pending=1: training runs at most two measurement intervals past the STOP measurement
        self.assertLessEqual(stopped_at, stop.step + 2 * every)
        self.assertEqual(results_pb2.SignalReason.Name(stop.reason), "PATIENCE_EXHAUSTED")
        self.assertEqual(stop.monitor, policy_pb2.EVAL_LOSS)
        # the eval losses flatmon measured up to the STOP step, and their minimum
        evals = [r for r in (READER.wait_final(rid, s, "EVAL", timeout=60) for s in sorted(local) if s <= stop.step)]
        self.assertTrue(all(r is not None for r in evals))
        best = min(evals, key=lambda r: r.loss.mean)
        print("  eval losses (step: flatmon / local): " + ", ".join(
            "%d: %.4f/%.4f" % (r.step, r.loss.mean, local[r.step]) for r in evals), file=sys.stderr)
        print("  STOP at step %d (trainer stopped at %d), best_step %d, best eval loss %.5f"
              % (stop.step, stopped_at, stop.best_step, stop.best_value), file=sys.stderr)
        self.assertEqual(stop.best_step, best.step)
        self.assertAlmostEqual(stop.best_value, best.loss.mean, places=12)
        self.assertEqual(stop.step, stop.best_step + 3 * every, "patience 3 measurements after the best")
        # flatmon's eval loss is the model's: the local float64 cross-entropy on the same logits agrees
        for r in evals:
            self.assertAlmostEqual(r.loss.mean, local[r.step], delta=1e-5 * max(1.0, local[r.step]))
        # the best weights are restorable: reload them and get the best eval loss back
        model.load_state_dict(checkpoints[stop.best_step])
        model.eval()
        with torch.no_grad():
            restored = float(TF.cross_entropy(model(xev[:256]).double(), yev[:256]))
        self.assertAlmostEqual(restored, stop.best_value, delta=1e-5)
        # and the run did overfit: its final eval loss is worse than the best
        self.assertGreater(local[max(local)], stop.best_value)


class C_Divergence(unittest.TestCase):
    """(c) a learning rate that drives the weights to NaN: STOP with reason NON_FINITE (check_finite)."""

    def test_nan_divergence_stops_non_finite(self):
        torch.manual_seed(0)
        xtr, ytr, xev, yev = digits.load_digits(300, 200, seed=0)
        model = digits.plain_cnn(width=8, head_width=12, head_in=8,
                                 activation=lambda: nn.LeakyReLU(0.1), trunk_activation=lambda: nn.LeakyReLU(0.1))
        conv, cls = digits.monitored(model)
        opt = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9)
        rid = run_id("diverging-lr10")
        first_nan = None
        mon = FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=5, samples_per_measurement=128,
                             policy=make_policy("relative_flatness", patience=1000, check_finite=True),
                             max_pending=1)
        try:
            for step in range(1, 301):
                train_step(model, opt, xtr, ytr)
                if first_nan is None and not torch.isfinite(conv.weight).all():
                    first_nan = step
                mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev))
                if mon.should_stop():
                    break
            if not mon.should_stop():
                mon.wait_for_signal(timeout=30)
        finally:
            mon.close()
        stop = mon.stop_signal()
        RUNS.append(("diverging-lr10", rid, stop))
        stopped_at = step
        self.assertIsNotNone(first_nan, "the run did not diverge")
        self.assertIsNotNone(stop, "no STOP for a diverged run")
        self.assertEqual(results_pb2.SignalReason.Name(stop.reason), "NON_FINITE")
        first_measured_nan = (first_nan + 4) // 5 * 5
        self.assertLessEqual(stop.step, first_measured_nan, "STOP by the first measurement after the divergence")
        r = READER.wait_final(rid, stop.step, "TRAIN", timeout=60)
        self.assertTrue(r.non_finite)
        self.assertTrue(math.isnan(stop.value) or math.isinf(stop.value))
        self.assertTrue(stop.best_step < first_nan)
        self.assertLessEqual(stopped_at, stop.step + 2 * 5, "the trainer stopped within two measurements")
        print("  weights non-finite from step %d; STOP %s at step %d, best kappa %.4g at step %d"
              % (first_nan, results_pb2.SignalReason.Name(stop.reason), stop.step, stop.best_value, stop.best_step),
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
