"""Unit tests of the client without a broker: head recognition, snapshot folding, policy replay."""
import unittest

import support  # noqa: F401  (sets sys.path)

import torch
import torch.nn as nn
import torch.nn.functional as TF

import digits
from flatmon_client import UnsupportedModelError, analyze, make_policy, simulate


def seq(*mods):
    return nn.Sequential(*mods)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding="same", bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(TF.gelu(self.bn(self.conv(x)), approximate="tanh").mean((2, 3)))


class FunctionalResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(TF.adaptive_avg_pool2d(TF.relu(self.conv(x) + x), 1), 1))


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        z = self.conv(x)
        return self.fc(self.pool(torch.relu(z)).flatten(1)) + z.mean()


class HeadRecognition(unittest.TestCase):
    def test_sequential_plain(self):
        m = digits.plain_cnn(4, 6, 4)
        h = analyze(m, m[4], m[-1])
        self.assertEqual((h.activation, h.bn, h.residual, h.needs_pre_activation), ("RELU", None, False, False))
        self.assertEqual((h.stride, h.padding, h.dilation), ((2, 2), (1, 1), (1, 1)))

    def test_names_instead_of_modules(self):
        m = digits.plain_cnn(4, 6, 4)
        self.assertEqual(analyze(m, "4", "8").conv_name, "4")

    def test_resnet_basic_block(self):
        m = digits.ResNetDigits()
        h = analyze(m, m.layer2[-1].conv2, m.fc)
        self.assertTrue(h.residual)
        self.assertIs(h.bn, m.layer2[-1].bn2)
        # the block's shared ReLU runs twice per forward; Z is the input of its second call
        self.assertEqual(h.z_source[1:], ("layer2.0.relu", 1, "input"))

    def test_activations(self):
        for act, kind, slope in ((nn.LeakyReLU(0.2), "LEAKY_RELU", 0.2), (nn.GELU(), "GELU", 0.0),
                                 (nn.SiLU(), "SILU", 0.0), (nn.Tanh(), "TANH", 0.0), (nn.Identity(), "IDENTITY", 0.0)):
            m = seq(nn.Conv2d(3, 8, 3), act, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Dropout(0.1),
                    nn.Linear(8, 4))
            h = analyze(m, m[0], m[-1])
            self.assertEqual((h.activation, h.negative_slope), (kind, slope), kind)

    def test_functional_forms(self):
        m = Functional()
        h = analyze(m, m.conv, m.fc)
        self.assertEqual((h.activation, h.padding), ("GELU_TANH", (1, 1)))
        self.assertEqual(h.z_source[1:], ("bn", 0, "output"))

    def errors(self, model, conv, cls, *fragments):
        with self.assertRaises(UnsupportedModelError) as cm:
            analyze(model, conv, cls)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    def test_unsupported(self):
        def lin(c=8):
            return nn.Linear(c, 4)
        m = seq(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "groups=2")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "ReLU6", "not supported")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "max pooling")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), lin(32))
        self.errors(m, m[0], m[-1], "in_features=32")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin(), nn.LogSoftmax(1))
        self.errors(m, m[0], m[-2], "LogSoftmax", "logits")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin(), nn.ReLU(), lin(4))
        self.errors(m, m[0], m[4], "ReLU")
        m = seq(nn.Conv2d(3, 8, 3, padding_mode="reflect", padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "padding_mode")
        m = seq(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "Conv1d")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin())
        self.errors(m, m[0], m[-1], "Conv2d '2'", "global average pooling")
        m = Branching()
        self.errors(m, m.conv, m.fc, "used 2 times")
        m = FunctionalResidual()
        self.errors(m, m.conv, m.fc, "nn.ReLU")
        m = seq(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin())
        self.errors(m, nn.Conv2d(3, 8, 3), m[-1], "not a submodule")


class PolicyReplay(unittest.TestCase):
    def test_patience_and_best(self):
        p = make_policy("eval_loss", patience=3)
        s = simulate(p, [(10, 2.0), (20, 1.5), (30, 1.6), (40, 1.4), (50, 1.5), (60, 1.5), (70, 1.45), (80, 1.0)])
        self.assertEqual((s["stop_step"], s["best_step"], s["reason"]), (70, 40, "PATIENCE_EXHAUSTED"))

    def test_min_delta_tie_is_not_improvement(self):
        s = simulate(make_policy("kappa", patience=1, min_delta=0.5), [(1, 2.0), (2, 1.5)])
        self.assertEqual((s["stop_step"], s["best_step"]), (2, 1))

    def test_non_finite(self):
        s = simulate(make_policy("kappa", patience=5, check_finite=True), [(1, 1.0), (2, float("nan"))])
        self.assertEqual((s["stop_step"], s["reason"]), (2, "NON_FINITE"))
        s = simulate(make_policy("kappa", patience=5, check_finite=False), [(1, 1.0), (2, float("nan"))])
        self.assertIsNone(s["stop_step"])

    def test_max_mode_thresholds_and_baseline(self):
        s = simulate(make_policy("kappa", mode="max", patience=10, stopping_threshold=5), [(1, 1), (2, 6)])
        self.assertEqual((s["stop_step"], s["reason"], s["best_step"]), (2, "THRESHOLD_REACHED", 2))
        s = simulate(make_policy("kappa", patience=10, divergence_threshold=5), [(1, 1), (2, 6)])
        self.assertEqual((s["stop_step"], s["reason"]), (2, "DIVERGED"))
        s = simulate(make_policy("kappa", patience=2, baseline=0.5), [(1, 1), (2, 0.9)])
        self.assertEqual((s["stop_step"], s["reason"]), (2, "BASELINE_NOT_MET"))
        s = simulate(make_policy("kappa", patience=2, start_from_step=3), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)])
        self.assertEqual((s["stop_step"], s["best_step"]), (5, 3))

    def test_smoothing_relative_delta_warn_only_guard_only(self):
        """The same sequences as StopDetectorTest's rows: the replay agrees with the server's detector."""
        s = simulate(make_policy("kappa", patience=1, smoothing=2), [(10, 4), (20, 2), (30, 3), (40, 3)])
        self.assertEqual((s["stop_step"], s["best_step"]), (40, 30))
        s = simulate(make_policy("kappa", patience=1, min_delta_relative=0.1), [(10, 10), (20, 9.5), (30, 8)])
        self.assertEqual((s["stop_step"], s["best_step"]), (20, 10))
        s = simulate(make_policy("kappa", patience=1, min_delta_relative=0.1), [(10, 10), (20, 8.9)])
        self.assertEqual((s["stop_step"], s["best_step"]), (None, 20))
        s = simulate(make_policy("kappa", patience=2, warn_only=True), [(10, 3), (20, 4), (30, 5), (40, 6), (50, 1)])
        self.assertEqual(([d[2] for d in s["decisions"]], s["warn_steps"], s["stop_step"]), (
            ["IMPROVED", "NO_IMPROVEMENT", "PATIENCE_EXHAUSTED", "PATIENCE_EXHAUSTED", "IMPROVED"], [30, 40], None))
        s = simulate(make_policy("guard_only"), [(10, 2.3), (20, 50.0), (30, float("nan"))])
        self.assertEqual(([d[1:] for d in s["decisions"]], s["stop_step"]), (
            [("CONTINUE", "HEALTHY"), ("CONTINUE", "HEALTHY"), ("STOP", "NON_FINITE")], 30))


class Snapshot(unittest.TestCase):
    def test_bn_folded_scale(self):
        from flatmon_client.monitor import FlatmonMonitor
        import numpy as np
        m = digits.ResNetDigits()
        bn = m.layer2[-1].bn2
        with torch.no_grad():
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
        mon = FlatmonMonitor.__new__(FlatmonMonitor)     # no broker: only the snapshot builder
        mon.head = analyze(m, m.layer2[-1].conv2, m.fc)
        mon.run_id, mon.layer, mon.weight_decay = "r", "layer2.0.conv2", None
        s = mon._snapshot(7)
        a = np.frombuffer(s.scale.data, "<f4")
        want = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        np.testing.assert_allclose(a, want, rtol=1e-6)
        self.assertEqual(list(s.kernel.shape), [12, 12, 3, 3])
        self.assertFalse(s.HasField("bias"))


if __name__ == "__main__":
    unittest.main()
