"""flatmon client for PyTorch trainers.

    from flatmon_client import FlatmonMonitor, make_policy

    monitor = FlatmonMonitor(model, conv_layer=model.features[-2], classifier=model.fc, run_id="run-1",
                             bootstrap_servers="127.0.0.1:9092", every_n_steps=50, samples_per_measurement=256,
                             policy=make_policy("eval_loss", patience=3))
    for step in range(1, steps + 1):
        ...; optimizer.step()
        monitor.maybe_measure(step, train_batch=(x_tr, y_tr), eval_batch=(x_ev, y_ev))
        if monitor.should_stop():
            break
    monitor.close()

See docs/python-client.md. The protobuf modules are generated from the repository's proto/ with protoc
on first import (into flatmon_client/_generated, git-ignored).
"""
from ._proto import load as _load

tensor_pb2, policy_pb2, telemetry_pb2, results_pb2 = _load()

from .head import Head, UnsupportedModelError, analyze  # noqa: E402
from .policy import make_policy, needs_eval, problems, simulate, validate  # noqa: E402
from .monitor import (DeliveryReport, FlatmonMonitor, Measurement, consumer_config, producer_config,  # noqa: E402
                      RESULTS_TOPIC, SIGNALS_TOPIC, TELEMETRY_TOPIC)

__all__ = ["FlatmonMonitor", "Measurement", "DeliveryReport", "UnsupportedModelError", "Head", "analyze", "make_policy", "simulate", "validate", "problems", "needs_eval",
           "producer_config", "consumer_config", "tensor_pb2", "policy_pb2", "telemetry_pb2", "results_pb2",
           "TELEMETRY_TOPIC", "RESULTS_TOPIC", "SIGNALS_TOPIC"]
