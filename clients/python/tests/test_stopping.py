"""The early-stopping loop on the real stack (`bin/flatmon serve`: embedded broker + service) with the
Python client: the default policy, an opt-in curvature policy, when the trainer sees a STOP, a
misconfigured policy, and a broker that is unreachable or lost mid-run.

Run from the repository root:
    /usr/bin/python3 -m unittest discover -s clients/python/tests -p test_stopping.py -v
"""
import logging
import math
import socket
import time
import unittest
import uuid

import support  # noqa: F401  (sets sys.path)

import torch
import torch.nn as nn
import torch.nn.functional as TF

import digits
from flatmon_client import FlatmonMonitor, make_policy, policy_pb2, results_pb2, simulate, telemetry_pb2
from flatmon_client.monitor import TELEMETRY_TOPIC, producer_config
from flatmon_client.results import ResultsReader

torch.set_num_threads(1)

SERVER = None
READER = None


def setUpModule():
    global SERVER, READER
    SERVER = support.FlatmonServer().start()
    READER = ResultsReader(SERVER.bootstrap, run_filter=lambda r: r.startswith("stop-"))
    READER.start()


def tearDownModule():
    try:
        if READER is not None:
            READER.close()
    finally:
        if SERVER is not None:
            SERVER.stop()


def run_id(label):
    return "stop-%s-%s" % (label, uuid.uuid4().hex[:8])


def name(enum, value):
    return enum.Name(value)


def action_reason(sig):
    return "%s/%s" % (results_pb2.SignalAction.Name(sig.action), results_pb2.SignalReason.Name(sig.reason))


def train(mon, model, opt, data, steps, every, stop_on_signal=True):
    """Trains `steps` mini-batch steps of 64, measuring every `every`; returns the step it stopped at."""
    xtr, ytr, xev, yev = data
    gen = torch.Generator().manual_seed(0)
    step = 0
    while step < steps:
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr) - 63, 64):
            idx = perm[i:i + 64]
            model.train()
            opt.zero_grad()
            TF.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            step += 1
            mon.maybe_measure(step, train_batch=(xtr, ytr), eval_batch=(xev, yev) if xev is not None else None)
            if (stop_on_signal and mon.should_stop()) or step >= steps:
                return step
    return step


def healthy(seed=0):
    torch.manual_seed(seed)
    model = digits.plain_cnn(16, 16)
    conv, cls = digits.monitored(model)
    return model, conv, cls, torch.optim.Adam(model.parameters(), 3e-3, weight_decay=5e-4), \
        digits.load_digits(600, 300, seed=seed)


class DefaultPolicy(unittest.TestCase):
    """With no policy the server's default stops only for the unambiguous."""

    def test_healthy_run_without_policy_gets_no_stop(self):
        model, conv, cls, opt, data = healthy()
        rid = run_id("default-healthy")
        with FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=20, samples_per_measurement=128,
                            signal_mode="measurement") as mon:
            steps = train(mon, model, opt, data, 400, 20)
        self.assertEqual(steps, 400)
        sigs = mon.signals
        self.assertEqual([s.step for s in sigs], list(range(20, 401, 20)), "one signal per measurement")
        self.assertEqual({action_reason(s) for s in sigs}, {"CONTINUE/HEALTHY"})
        # κ rose and settled: the old default (κ, lower is better, patience 10) would have stopped this run
        kappa = [(r.step, r.relative_flatness.mean) for r in READER.series(rid, "TRAIN")]
        self.assertIsNotNone(simulate(make_policy("relative_flatness", patience=10), kappa)["stop_step"])
        self.assertEqual(name(policy_pb2.MonitoredQuantity, sigs[-1].monitor), "GUARD_ONLY")

    def test_nan_run_gets_stop_non_finite(self):
        torch.manual_seed(0)
        model = digits.plain_cnn(width=8, head_width=12, head_in=8, activation=lambda: nn.LeakyReLU(0.1),
                                 trunk_activation=lambda: nn.LeakyReLU(0.1))
        conv, cls = digits.monitored(model)
        opt = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9)
        rid = run_id("default-nan")
        with FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=5, samples_per_measurement=128,
                            signal_mode="measurement") as mon:
            stopped = train(mon, model, opt, digits.load_digits(300, 200, seed=0) , 300, 5)
        stop = mon.stop_signal()
        self.assertIsNotNone(stop, "no STOP for a run whose weights went NaN")
        self.assertEqual(action_reason(stop), "STOP/NON_FINITE")
        self.assertRegex(stop.detail, r"^(train loss|Tr H|relative flatness|normalized relative flatness) is "
                                      r"(NaN|Infinity|-Infinity)$")
        self.assertEqual(stopped, stop.step, "blocking mode: the trainer stops at the measured step")


class OptInCurvature(unittest.TestCase):
    """A κ policy with the recommended settings (docs/early-stopping.md) decides as documented: nothing
    before start_from_step, then Keras semantics on the mean of the last `smoothing` values with a relative
    min_delta — the same decisions as flatmon_client.simulate on the values flatmon measured."""

    def test_recommended_kappa_policy(self):
        model, conv, cls, opt, data = healthy(seed=1)
        policy = make_policy("relative_flatness", start_from_step=100, smoothing=3, min_delta_relative=0.05,
                             patience=3)
        rid = run_id("kappa-recommended")
        with FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=20, samples_per_measurement=128,
                            policy=policy, signal_mode="measurement") as mon:
            stopped = train(mon, model, opt, data, 600, 20)
        sigs = mon.signals
        warm = [s for s in sigs if s.step < 100]
        self.assertEqual({action_reason(s) for s in warm}, {"CONTINUE/WARMING_UP"})
        # signals are read before flatmon's transaction commits, results after: wait for the results
        for s in sigs:
            self.assertIsNotNone(READER.wait_final(rid, s.step, "TRAIN", timeout=60))
        kappa = [(r.step, r.relative_flatness.mean) for r in READER.series(rid, "TRAIN")]
        expected = simulate(policy, kappa)
        got = [(s.step, results_pb2.SignalAction.Name(s.action), results_pb2.SignalReason.Name(s.reason))
               for s in sigs]
        self.assertEqual(got, expected["decisions"])
        if expected["stop_step"] is not None:
            stop = mon.stop_signal()
            self.assertEqual(stop.step, expected["stop_step"])
            self.assertEqual(stop.best_step, expected["best_step"])
            self.assertEqual(stopped, stop.step)
            # the value carried is the smoothed one the detector compared
            window = [v for s, v in kappa if 100 <= s <= stop.step][-3:]
            self.assertAlmostEqual(stop.value, sum(window) / len(window), delta=1e-9 * abs(stop.value))


class OnTime(unittest.TestCase):
    """When the trainer sees a STOP: default mode within one measurement interval, blocking mode at the step."""

    POLICY = dict(monitor="relative_flatness", patience=1, start_from_step=60)

    def run_mode(self, mode, every=10):
        model, conv, cls, opt, data = healthy(seed=2)
        rid = run_id("ontime-" + mode)
        with FlatmonMonitor(model, conv, cls, rid, SERVER.bootstrap, every_n_steps=every, samples_per_measurement=64,
                            policy=make_policy(**self.POLICY), signal_mode=mode) as mon:
            stopped = train(mon, model, opt, data, 2000, every)
        stop = mon.stop_signal()
        self.assertIsNotNone(stop, "no STOP")
        return stopped, stop

    def test_default_mode_stops_within_one_interval(self):
        stopped, stop = self.run_mode("interval")
        self.assertGreaterEqual(stopped, stop.step)
        self.assertLessEqual(stopped - stop.step, 10, "trained %d steps past the STOP of step %d"
                             % (stopped - stop.step, stop.step))

    def test_blocking_mode_stops_at_the_measured_step(self):
        stopped, stop = self.run_mode("measurement")
        self.assertEqual(stopped, stop.step)


class Misconfigured(unittest.TestCase):
    """Client and server name what is wrong with a policy."""

    def test_client_messages(self):
        cases = [
            (dict(monitor="kappa_squared"), "unknown monitor 'kappa_squared'; one of eval_loss, generalization_gap, "
             "guard_only, hessian_trace, kappa, kappa_norm, relative_flatness, relative_flatness_normalized, trace"),
            (dict(monitor="eval_loss", patience=-1), "invalid early-stop policy: patience must be >= 0, got -1"),
            (dict(mode="lower"), "unknown mode 'lower'; one of max, min"),
            (dict(stopping_threshold=5, divergence_threshold=3),
             "invalid early-stop policy: stopping_threshold 5.0 must be below divergence_threshold 3.0 in mode min"),
            (dict(mode="max", stopping_threshold=0.5, divergence_threshold=0.9),
             "invalid early-stop policy: stopping_threshold 0.5 must be above divergence_threshold 0.9 in mode max"),
            (dict(baseline=4, divergence_threshold=3),
             "invalid early-stop policy: baseline 4.0 must be below divergence_threshold 3.0 in mode min"),
            (dict(smoothing=-1, min_delta_relative=2),
             "invalid early-stop policy: smoothing must be >= 0, got -1; min_delta_relative must be in [0, 1), "
             "got 2.0"),
            (dict(loss_divergence_factor=1), "invalid early-stop policy: loss_divergence_factor must be > 1, got 1.0"),
        ]
        for kw, message in cases:
            with self.subTest(**kw):
                with self.assertRaises(ValueError) as cm:
                    make_policy(**kw)
                self.assertEqual(str(cm.exception), message)

    def test_eval_policy_without_eval_batch_is_refused_by_attach(self):
        model, conv, cls, opt, _ = healthy()
        with FlatmonMonitor(model, conv, cls, run_id("attach-no-eval"), SERVER.bootstrap,
                            policy=make_policy("eval_loss", patience=3), signal_mode="async") as mon:
            with self.assertRaises(ValueError) as cm:
                mon.attach(opt, train_batch=(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)))
        self.assertEqual(str(cm.exception),
                         "the policy monitors EVAL_LOSS, which needs eval data, but attach() got no eval_batch")

    def test_server_warns_eval_data_missing_at_each_measurement_without_it(self):
        model, conv, cls, opt, (xtr, ytr, _, _) = healthy()
        with FlatmonMonitor(model, conv, cls, run_id("no-eval"), SERVER.bootstrap, every_n_steps=10,
                            samples_per_measurement=64, policy=make_policy("eval_loss", patience=3),
                            signal_mode="measurement", signal_timeout=60) as mon:
            train(mon, model, opt, (xtr, ytr, None, None), 20, 10)
        self.assertEqual([(s.step, action_reason(s), s.detail) for s in mon.signals], [
            (10, "WARN/EVAL_DATA_MISSING", "the policy monitors EVAL_LOSS but the measurement of step 10 has no eval "
                                           "split"),
            (20, "WARN/EVAL_DATA_MISSING", "the policy monitors EVAL_LOSS but the measurement of step 20 has no eval "
                                           "split")])

    def test_server_refuses_an_invalid_policy_with_a_warning(self):
        """A policy that bypassed the client's checks (another client, an older one): the server says why and
        applies its default."""
        from confluent_kafka import Producer
        rid = run_id("invalid-policy")
        bad = policy_pb2.EarlyStopPolicy(monitor=policy_pb2.EVAL_LOSS, mode=policy_pb2.MIN, patience=-1)
        p = Producer(producer_config(SERVER.bootstrap))
        p.produce(TELEMETRY_TOPIC, key=rid.encode(), value=telemetry_pb2.TelemetryRecord(
            run_started=telemetry_pb2.RunStarted(run_id=rid, early_stop_policy=bad)).SerializeToString())
        self.assertEqual(p.flush(30), 0)
        sigs = READER.wait(lambda r: r.run_signals(rid), timeout=60)
        self.assertIsNotNone(sigs, "no signal for a run with an invalid policy")
        self.assertEqual([(s.step, action_reason(s), s.detail) for s in sigs], [
            (0, "WARN/INVALID_POLICY", "invalid early-stop policy: patience must be >= 0, got -1; the server default "
                                       "applies")])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerTrouble(unittest.TestCase):
    """A monitor must not hurt training."""

    def test_unreachable_at_start_fails_fast_with_the_timeout_given(self):
        model, conv, cls, _, _ = healthy()
        address = "127.0.0.1:%d" % free_port()
        t0 = time.monotonic()
        with self.assertRaises(RuntimeError) as cm:
            FlatmonMonitor(model, conv, cls, run_id("unreachable"), address, connect_timeout=2)
        elapsed = time.monotonic() - t0
        self.assertRegex(str(cm.exception), r"^flatmon_client: cannot reach Kafka at %s within 2 s \(.*\) — is "
                                            r"flatmon running there \(bin/flatmon serve\)\?$" % address)
        self.assertLess(elapsed, 2 + 5, "construction took %.1f s with connect_timeout=2" % elapsed)

    def test_broker_lost_mid_run(self):
        server = support.FlatmonServer().start()
        try:
            model, conv, cls, opt, (xtr, ytr, xev, yev) = healthy()
            kw = dict(every_n_steps=1, samples_per_measurement=256, signal_timeout=2, buffer_bytes=4 << 20)
            mon = FlatmonMonitor(model, conv, cls, run_id("lost"), server.bootstrap, **kw)
            strict = FlatmonMonitor(model, conv, cls, run_id("lost-strict"), server.bootstrap, strict=True,
                                    **dict(kw, signal_mode="async"))
            for step in (1, 2):
                mon.measure(step, (xtr, ytr), (xev, yev))
                strict.measure(step, (xtr, ytr))
            mon.flush(30)
            strict.flush(30)
            before = mon.delivery_report      # (a slow broker may already have made it drop some: 4 MiB is small)
            self.assertEqual(before.undelivered, 0)
            with self.assertLogs("flatmon_client", logging.INFO) as logs:
                server.stop()
                slowest = 0.0
                for step in range(3, 23):
                    t0 = time.monotonic()
                    mon.measure(step, (xtr, ytr), (xev, yev))
                    slowest = max(slowest, time.monotonic() - t0)
                    time.sleep(0.1)
                strict.measure(3, (xtr, ytr))
                report = mon.close(timeout=1)
                with self.assertRaises(RuntimeError) as cm:
                    strict.close(timeout=1)
            warnings = [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]
            for m in (mon, strict):
                mine = [w for w in warnings if m.run_id in w]
                self.assertEqual(len(mine), 1, "one warning per monitor and outage:\n" + "\n".join(warnings))
                self.assertRegex(mine[0], r"^flatmon_client: run %s lost the connection to Kafka at %s \(.*\); "
                                          r"training continues, telemetry is buffered and the oldest is dropped when "
                                          r"the buffer is full$" % (m.run_id, server.bootstrap))
            self.assertEqual(len(warnings), 2, "\n".join(warnings))
            # 20 measurements of ~3 MB into a 4 MiB buffer: the oldest were dropped, the rest never delivered
            self.assertLess(slowest, 5.0, "a measurement blocked %.1f s while the broker was down" % slowest)
            self.assertEqual(report.sent, before.sent)
            self.assertGreater(report.dropped, before.dropped)
            self.assertGreater(report.undelivered, 0)
            self.assertFalse(report.complete)
            self.assertRegex(str(cm.exception), r"^flatmon_client: telemetry incomplete: \d+ records sent, \d+ dropped "
                                                r"while Kafka was unreachable, [1-9]\d* not delivered$")
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
