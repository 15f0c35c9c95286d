"""FlatmonMonitor: publishes a PyTorch model's head telemetry to flatmon and listens for its signals."""
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as TF

from . import _proto
from .head import analyze
from .policy import as_policy, needs_eval, validate
from .tensors import tensor

tensor_pb2, policy_pb2, telemetry_pb2, results_pb2 = _proto.load()

LOG = logging.getLogger("flatmon_client")
# librdkafka's own log lines (one per failed reconnect while a broker is down) go here instead of stderr; silent
# unless the application configures this logger. The client logs one warning per outage itself.
KAFKA_LOG = logging.getLogger("flatmon_client.librdkafka")
KAFKA_LOG.addHandler(logging.NullHandler())
KAFKA_LOG.propagate = False

TELEMETRY_TOPIC = "flatmon.v1.telemetry"
RESULTS_TOPIC = "flatmon.v1.results"
SIGNALS_TOPIC = "flatmon.v1.signals"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def producer_config(bootstrap_servers, **overrides):
    """librdkafka producer settings for flatmon telemetry: records up to 64 MiB, zstd at level 1 (the
    ratio of zstd's default level 3 on float tensors at 1.6x the speed; librdkafka has no negative
    levels, which flatmon's Java clients use), idempotent, and the murmur2 partitioner Java clients use
    (a run's records land where a JVM trainer's would)."""
    cfg = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "compression.level": 1,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.kbytes": 1048576,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
    }
    cfg.update(overrides)
    return cfg


def consumer_config(bootstrap_servers, group_id=None, **overrides):
    """Consumer settings for flatmon topics: committed records only (flatmon writes exactly-once)."""
    cfg = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id or "flatmon-client-" + uuid.uuid4().hex[:12],
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES + (1 << 20),
        "fetch.max.bytes": MAX_MESSAGE_BYTES + (1 << 20),
        "receive.message.max.bytes": MAX_MESSAGE_BYTES + (2 << 20),
    }
    cfg.update(overrides)
    return cfg


def unreachable(bootstrap_servers, error, timeout):
    return ("flatmon_client: cannot reach Kafka at %s within %.0f s (%s) — is flatmon running there (bin/flatmon "
            "serve)?" % (bootstrap_servers, timeout, error))


@dataclass
class DeliveryReport:
    """What close() could deliver: records acknowledged by the broker, dropped by the client to stay within
    its buffer while the broker was unreachable (oldest first), and not delivered (failed, or still queued
    when close() gave up)."""
    sent: int = 0
    dropped: int = 0
    undelivered: int = 0

    @property
    def complete(self):
        return self.dropped == 0 and self.undelivered == 0


class _Outage:
    """One warning line per lost connection to the broker (librdkafka reports every failed reconnect), and one
    info line when records are delivered again."""

    def __init__(self, bootstrap_servers, run_id):
        self.bootstrap_servers = bootstrap_servers
        self.run_id = run_id
        self.lock = threading.Lock()
        self.since = None
        self.outages = 0

    @property
    def active(self):
        return self.since is not None

    def error_cb(self, err):
        from confluent_kafka import KafkaError
        if err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
                              KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT):
            LOG.debug("flatmon_client: kafka error %s", err)
            return
        with self.lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
            self.outages += 1
        LOG.warning("flatmon_client: run %s lost the connection to Kafka at %s (%s); training continues, telemetry "
                    "is buffered and the oldest is dropped when the buffer is full", self.run_id,
                    self.bootstrap_servers, err.str())

    def delivered(self):
        if self.since is None:
            return
        with self.lock:
            if self.since is None:
                return
            seconds, self.since = time.monotonic() - self.since, None
        LOG.info("flatmon_client: run %s: Kafka at %s reachable again after %.1f s", self.run_id,
                 self.bootstrap_servers, seconds)


def _now_us():
    return time.time_ns() // 1000


def _np32(t):
    return t.detach().to("cpu", torch.float32).numpy().copy()


@dataclass
class Measurement:
    """What measure() published, with the model's own (eval-mode) loss and accuracy per split."""
    step: int
    samples: dict = field(default_factory=dict)        # split name -> count
    loss: dict = field(default_factory=dict)           # split name -> mean cross-entropy (float64 from logits)
    accuracy: dict = field(default_factory=dict)
    bytes_sent: int = 0
    seconds: float = 0.0
    payload: Optional[dict] = None                      # exact float32 values sent, if keep_payload


class _SignalListener(threading.Thread):
    """Reads flatmon.v1.signals from the current end of every partition and keeps this run's signals."""

    def __init__(self, bootstrap_servers, run_id, on_signal, consumer_overrides, connect_timeout=10.0, outage=None):
        super().__init__(name="flatmon-signals-" + run_id, daemon=True)
        from confluent_kafka import Consumer, TopicPartition, OFFSET_END  # noqa: F401
        self.run_id = run_id
        self.on_signal = on_signal
        self.signals = []
        self.seen = set()
        self.cond = threading.Condition()
        self.stop_event = threading.Event()
        self.stopped = threading.Event()
        self.error = None
        from confluent_kafka import KafkaException
        # Signals are read as soon as flatmon writes them, before its exactly-once transaction commits (up to
        # a commit interval earlier). A transaction that aborts is replayed from the same state and input, and
        # the detector is a pure function of both, so the replay repeats the same signal: duplicates of a
        # (step, reason) are dropped below.
        cfg = consumer_config(bootstrap_servers, **{"isolation.level": "read_uncommitted", "logger": KAFKA_LOG,
                                                    **({"error_cb": outage.error_cb} if outage else {}),
                                                    **consumer_overrides})
        self.consumer = Consumer(cfg)
        try:
            md = self.consumer.list_topics(SIGNALS_TOPIC, timeout=connect_timeout)
        except KafkaException as e:
            self.consumer.close()
            raise RuntimeError(unreachable(bootstrap_servers, e, connect_timeout)) from e
        topic = md.topics.get(SIGNALS_TOPIC)
        if topic is None or topic.error is not None or not topic.partitions:
            self.consumer.close()
            raise RuntimeError("flatmon_client: topic %s not found on %s — is flatmon running there (bin/flatmon "
                               "serve)?" % (SIGNALS_TOPIC, bootstrap_servers))
        assignment = []
        for p in sorted(topic.partitions):
            # Start at the current end, read synchronously: earlier signals of a reused run id are skipped and
            # none of this run can be missed (it has published nothing yet).
            _, high = self.consumer.get_watermark_offsets(TopicPartition(SIGNALS_TOPIC, p), timeout=connect_timeout,
                                                          cached=False)
            assignment.append(TopicPartition(SIGNALS_TOPIC, p, high))
        self.consumer.assign(assignment)

    def run(self):
        try:
            while not self.stop_event.is_set():
                msg = self.consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    LOG.debug("flatmon signals consumer: %s", msg.error())
                    continue
                if msg.key() is not None and msg.key().decode("utf-8", "replace") != self.run_id:
                    continue
                sig = results_pb2.TrainerSignal()
                sig.ParseFromString(msg.value())
                if sig.run_id != self.run_id or (sig.step, sig.reason) in self.seen:
                    continue
                self.seen.add((sig.step, sig.reason))
                with self.cond:
                    self.signals.append(sig)
                    if sig.action == results_pb2.STOP:
                        self.stopped.set()
                    self.cond.notify_all()
                if self.on_signal is not None:
                    try:
                        self.on_signal(sig)
                    except Exception:  # noqa: BLE001 - a user callback must not kill the listener
                        LOG.exception("flatmon on_signal callback failed")
        except Exception as e:  # noqa: BLE001
            self.error = e
            LOG.exception("flatmon signals consumer failed")
        finally:
            self.consumer.close()

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for s in self.signals:
                    if pred(s):
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class FlatmonMonitor:
    """Streams the curvature telemetry of one conv head of a PyTorch model to flatmon.

    Construction checks the head (:func:`flatmon_client.head.analyze`), opens the signals listener at
    the current end of ``flatmon.v1.signals`` and publishes ``RunStarted`` (with ``policy``).

    Measuring — explicit: ``monitor.measure(step, train_batch=(x, y), eval_batch=(x, y))``; every
    ``every_n_steps``: ``monitor.maybe_measure(step, ...)`` after each optimizer step (batches may be
    callables, evaluated only when a measurement is due); or fully automatic:
    ``monitor.attach(optimizer, train_batch=..., eval_batch=...)`` wraps ``optimizer.step`` to count steps
    and measure every ``every_n_steps``. A measurement puts the model in eval mode (BatchNorm uses its
    running statistics, which is what the folded ``scale`` describes), runs at most
    ``samples_per_measurement`` samples of each split through it under ``torch.no_grad()`` in chunks of
    ``split_batches`` samples, with forward hooks capturing the conv's input F and, for a BN or residual
    head, the pre-activation Z; it publishes the LayerSnapshot, one ActivationBatch per chunk and split,
    and MeasurementDone, then restores the training mode.

    When the trainer sees a STOP (``signal_mode``):

    * ``"interval"`` (the default with ``listen=True``; ``"async"`` without a listener): a measurement first waits until the previous measurement's signal has
      arrived (normally long since; at most ``signal_timeout`` s), so a run trains at most one measurement
      interval past the STOP it is sent.
    * ``"measurement"`` (blocking, like Lightning's callback): ``measure(step)`` returns once the signal of
      ``step`` has arrived (at most ``signal_timeout`` s), so ``should_stop()`` right after it reflects that
      very measurement and the run stops at exactly the measured step. Costs the signal delay per measurement.
    * ``"async"``: never waits; the STOP is seen whenever it arrives.

    After a timeout the monitor stops waiting (one warning) until a signal arrives again; while the broker is
    unreachable it does not wait at all. ``max_pending=k`` (older API) instead waits before a measurement
    until all but the last k measurements have their signal.

    A monitor does not hurt training: construction fails fast (``RuntimeError``, after ``connect_timeout``
    s) when Kafka is unreachable; if the broker is lost later, one warning is logged per outage, nothing
    blocks, and telemetry is buffered in up to ``buffer_bytes`` — beyond that the oldest queued records are
    dropped and counted. ``close()`` returns a :class:`DeliveryReport` (sent, dropped, undelivered) and
    raises only with ``strict=True``.

    Feedback: ``should_stop()``, ``last_signal``, ``signals``, ``wait_for_signal(step)`` and the
    ``on_signal(TrainerSignal)`` callback (called on the listener thread). ``close()`` publishes RunEnded
    and flushes; use the monitor as a context manager to get that on every exit.
    """

    SIGNAL_MODES = ("interval", "measurement", "async")

    def __init__(self, model, conv_layer, classifier, run_id, bootstrap_servers, every_n_steps=100,
                 samples_per_measurement=256, policy=None, split_batches=128, *, on_signal: Optional[Callable] = None,
                 display_name=None, labels=None, weight_decay=None, layer=None, send_pre_activation=None,
                 listen=True, keep_payload=False, max_pending=None, pending_timeout=60.0, producer_overrides=None,
                 consumer_overrides=None, signal_mode=None, signal_timeout=10.0, connect_timeout=10.0,
                 buffer_bytes=256 << 20, strict=False):
        from confluent_kafka import Producer
        if not run_id:
            raise ValueError("run_id is required")
        if samples_per_measurement <= 0 or split_batches <= 0:
            raise ValueError("samples_per_measurement and split_batches must be positive")
        self.model = model
        self.head = analyze(model, conv_layer, classifier)
        self.run_id = str(run_id)
        self.layer = layer or self.head.conv_name or "conv"
        self.every_n_steps = int(every_n_steps or 0)
        self.samples_per_measurement = int(samples_per_measurement)
        self.split_batches = int(split_batches)
        self.policy = as_policy(policy)
        if self.policy is not None:
            validate(self.policy)
        if signal_mode is None:
            # Without a signal listener there is nothing to wait for: "interval" is the default only with one.
            signal_mode = "interval" if listen else "async"
        if signal_mode not in self.SIGNAL_MODES:
            raise ValueError("signal_mode must be one of %s, got %r" % (", ".join(self.SIGNAL_MODES), signal_mode))
        if signal_mode != "async" and not listen:
            raise ValueError("signal_mode=%r needs listen=True (use signal_mode='async' with listen=False)"
                             % signal_mode)
        if buffer_bytes < (1 << 20):
            raise ValueError("buffer_bytes must be at least 1 MiB, got %d" % buffer_bytes)
        self.signal_mode = signal_mode
        self.signal_timeout = float(signal_timeout)
        self.strict = bool(strict)
        self._report = DeliveryReport()
        self._waiting = True
        self._outage = _Outage(bootstrap_servers, self.run_id)
        self.weight_decay = weight_decay
        self.send_pre_activation = self.head.needs_pre_activation if send_pre_activation is None \
            else bool(send_pre_activation)
        if self.head.needs_pre_activation and not self.send_pre_activation:
            raise ValueError("this head has an additive term (BN shift or shortcut): the pre-activation must be sent")
        if self.send_pre_activation and self.head.z_source is None:
            raise ValueError("send_pre_activation=True needs an activation module to hook")
        self.keep_payload = keep_payload
        if max_pending is not None and (not listen or int(max_pending) < 0):
            raise ValueError("max_pending needs listen=True and a value >= 0")
        self.max_pending = None if max_pending is None else int(max_pending)
        self.pending_timeout = float(pending_timeout)
        self._measured_steps = []
        self.last_step = None
        self.last_measurement = None
        self._errors = []
        self._closed = False
        self._auto_step = 0
        self._listener = None
        from confluent_kafka import KafkaException
        self._producer = Producer(producer_config(bootstrap_servers, **{
            "queue.buffering.max.kbytes": int(buffer_bytes) // 1024, "logger": KAFKA_LOG,
            "error_cb": self._outage.error_cb, **(producer_overrides or {})}))
        if connect_timeout is not None:  # None: no broker to check (a subclass whose _send writes elsewhere)
            try:
                self._producer.list_topics(TELEMETRY_TOPIC, timeout=connect_timeout)
            except KafkaException as e:
                raise RuntimeError(unreachable(bootstrap_servers, e, connect_timeout)) from e
        if listen:
            self._listener = _SignalListener(bootstrap_servers, self.run_id, on_signal, consumer_overrides or {},
                                             connect_timeout, self._outage)
            self._listener.start()
        started = telemetry_pb2.RunStarted(run_id=self.run_id, display_name=display_name or self.run_id,
                                           framework="pytorch " + torch.__version__,
                                           publish_time_micros=_now_us())
        started.labels.update({"model": type(model).__name__, "layer": self.layer,
                               "head": self.head.describe()[:500], **{k: str(v) for k, v in (labels or {}).items()}})
        if self.policy is not None:
            started.early_stop_policy.CopyFrom(self.policy)
        self._send(telemetry_pb2.TelemetryRecord(run_started=started))

    # ------------------------------------------------------------------------------------------
    # publishing
    # ------------------------------------------------------------------------------------------
    def _delivered(self, err, msg):
        from confluent_kafka import KafkaError
        if err is None:
            self._report.sent += 1
            self._outage.delivered()
        elif err.code() == KafkaError._PURGE_QUEUE and not self._closed:
            self._report.dropped += 1
        else:
            self._report.undelivered += 1
            self._errors.append(err)

    def _send(self, record):
        value = record.SerializeToString()
        if len(value) > MAX_MESSAGE_BYTES - (1 << 16):
            raise ValueError("a %s record of %d bytes exceeds flatmon's 64 MiB limit; lower split_batches"
                             % (record.WhichOneof("record"), len(value)))
        try:
            self._producer.produce(TELEMETRY_TOPIC, key=self.run_id.encode(), value=value, on_delivery=self._delivered)
        except BufferError:
            # The buffer is full (the broker is unreachable or far behind): drop what is queued — the oldest
            # records, not yet sent — rather than block training; the purged records are counted as dropped.
            before = self._report.dropped
            self._producer.purge(in_queue=True, in_flight=False, blocking=False)
            self._producer.poll(0)
            LOG.debug("flatmon_client: buffer full, dropped %d queued records", self._report.dropped - before)
            try:
                self._producer.produce(TELEMETRY_TOPIC, key=self.run_id.encode(), value=value,
                                       on_delivery=self._delivered)
            except BufferError:
                self._report.dropped += 1      # larger than the whole buffer
        self._producer.poll(0)
        if self._errors and self.strict:
            raise RuntimeError("flatmon_client: publishing to %s failed: %s" % (TELEMETRY_TOPIC, self._errors[0]))
        return len(value)

    def _snapshot(self, step):
        h = self.head
        conv, cls = h.conv, h.classifier
        s = telemetry_pb2.LayerSnapshot(run_id=self.run_id, layer=self.layer, step=step,
                                        kernel=tensor(_np32(conv.weight)), stride=list(h.stride),
                                        padding=list(h.padding), dilation=list(h.dilation),
                                        activation=telemetry_pb2.Activation(
                                            kind=telemetry_pb2.ActivationKind.Value(h.activation),
                                            negative_slope=h.negative_slope),
                                        classifier_weight=tensor(_np32(cls.weight)),
                                        publish_time_micros=_now_us())
        if conv.bias is not None:
            s.bias.CopyFrom(tensor(_np32(conv.bias)))
        if cls.bias is not None:
            s.classifier_bias.CopyFrom(tensor(_np32(cls.bias)))
        if h.bn is not None:
            bn = h.bn
            var = bn.running_var.detach().to("cpu", torch.float64)
            gamma = bn.weight.detach().to("cpu", torch.float64) if bn.affine else torch.ones_like(var)
            s.scale.CopyFrom(tensor((gamma / torch.sqrt(var + bn.eps)).numpy()))
        if self.weight_decay is not None:
            s.weight_decay = float(self.weight_decay)
        return s

    def _hooks(self, store):
        h = self.head
        handles = [h.conv.register_forward_pre_hook(lambda m, inp: store.__setitem__("F", _np32(inp[0])))]
        if self.send_pre_activation:
            module, _, ordinal, where = h.z_source

            def capture(value):
                # the module may run several times per forward (a BasicBlock's shared ReLU): take the traced call
                calls = store.setdefault("calls", [0])
                if calls[0] == ordinal:
                    store["Z"] = _np32(value)
                calls[0] += 1

            if where == "input":
                handles.append(module.register_forward_pre_hook(lambda m, inp: capture(inp[0])))
            else:
                handles.append(module.register_forward_hook(lambda m, inp, out: capture(out)))
        return handles

    def _device(self):
        return self.head.conv.weight.device

    def _take(self, batch):
        if callable(batch):
            batch = batch()
        x, y = batch
        n = self.samples_per_measurement
        x = torch.as_tensor(x)[:n]
        y = torch.as_tensor(y)[:n].to("cpu", torch.int64)
        if x.shape[0] != y.shape[0]:
            raise ValueError("batch has %d inputs but %d labels" % (x.shape[0], y.shape[0]))
        k = self.head.classifier.out_features
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError("labels must lie in [0, %d)" % k)
        return x, y

    def measure(self, step, train_batch=None, eval_batch=None) -> Measurement:
        """Publishes one measurement of `step`: the snapshot of the current weights, then the head's
        activations on the train and eval samples (each a (x, y) pair or a callable returning one),
        then MeasurementDone. Steps must increase."""
        step = int(step)
        if self._closed:
            raise RuntimeError("the monitor is closed")
        if self.last_step is not None and step <= self.last_step:
            raise ValueError("measurement steps must increase (got %d after %d)" % (step, self.last_step))
        splits = [(telemetry_pb2.TRAIN, "train", train_batch), (telemetry_pb2.EVAL, "eval", eval_batch)]
        splits = [(s, name, self._take(b)) for s, name, b in splits if b is not None]
        if not splits:
            raise ValueError("measure() needs a train_batch and/or an eval_batch")
        if self.max_pending is not None:
            self._backpressure()
        elif self.signal_mode == "interval" and self._measured_steps:
            self._await_signal(self._measured_steps[-1])
        t0 = time.perf_counter()
        out = Measurement(step=step)
        snap = self._snapshot(step)
        out.bytes_sent += self._send(telemetry_pb2.TelemetryRecord(layer_snapshot=snap))
        if self.keep_payload:
            out.payload = dict(kernel=np.frombuffer(snap.kernel.data, "<f4").reshape(snap.kernel.shape),
                               bias=_np32(self.head.conv.bias) if self.head.conv.bias is not None else None,
                               scale=(np.frombuffer(snap.scale.data, "<f4").copy() if snap.HasField("scale")
                                      else None),
                               classifier_weight=_np32(self.head.classifier.weight),
                               classifier_bias=(_np32(self.head.classifier.bias)
                                                if self.head.classifier.bias is not None else None),
                               stride=self.head.stride, padding=self.head.padding, dilation=self.head.dilation,
                               activation=self.head.activation, negative_slope=self.head.negative_slope,
                               weight_decay=self.weight_decay)
        modes = {m: m.training for m in self.model.modules()}
        store = {}
        handles = self._hooks(store)
        try:
            self.model.eval()
            with torch.no_grad():
                for split, name, (x, y) in splits:
                    loss_sum, correct, parts = 0.0, 0, []
                    for bi, start in enumerate(range(0, x.shape[0], self.split_batches)):
                        xc = x[start:start + self.split_batches].to(self._device())
                        yc = y[start:start + self.split_batches]
                        store.clear()
                        store["calls"] = [0]
                        logits = self.model(xc)
                        if "F" not in store or (self.send_pre_activation and "Z" not in store):
                            raise RuntimeError("flatmon_client: the forward hooks did not fire as the traced head "
                                               "predicts (conv input captured: %s, pre-activation captured: %s)"
                                               % ("F" in store, "Z" in store))
                        batch = telemetry_pb2.ActivationBatch(run_id=self.run_id, layer=self.layer, step=step,
                                                              split=split, input=tensor(store["F"]),
                                                              labels=[int(v) for v in yc], batch_index=bi,
                                                              publish_time_micros=_now_us())
                        if self.send_pre_activation:
                            batch.pre_activation.CopyFrom(tensor(store["Z"]))
                        out.bytes_sent += self._send(telemetry_pb2.TelemetryRecord(activation_batch=batch))
                        lg = logits.detach().to("cpu", torch.float64)
                        loss_sum += float(TF.cross_entropy(lg, yc, reduction="sum"))
                        correct += int((lg.argmax(dim=1) == yc).sum())
                        if self.keep_payload:
                            parts.append((store["F"], store.get("Z"), yc.numpy().copy()))
                    n = x.shape[0]
                    out.samples[name] = n
                    out.loss[name] = loss_sum / n if n else math.nan
                    out.accuracy[name] = correct / n if n else math.nan
                    if self.keep_payload:
                        out.payload[name] = dict(
                            input=np.concatenate([p[0] for p in parts]),
                            pre_activation=(np.concatenate([p[1] for p in parts]) if self.send_pre_activation
                                            else None),
                            labels=np.concatenate([p[2] for p in parts]))
        finally:
            for hd in handles:
                hd.remove()
            for m, training in modes.items():
                m.training = training
        out.bytes_sent += self._send(telemetry_pb2.TelemetryRecord(measurement_done=telemetry_pb2.MeasurementDone(
            run_id=self.run_id, step=step, layer=self.layer, publish_time_micros=_now_us())))
        out.seconds = time.perf_counter() - t0
        self.last_step = step
        self.last_measurement = out
        self._measured_steps.append(step)
        if self.signal_mode == "measurement" and self.max_pending is None:
            self._producer.poll(0)
            self._await_signal(step)
        return out

    def _await_signal(self, step):
        """Waits up to signal_timeout for the signal of `step`, unless a STOP is in, the broker is unreachable
        or an earlier wait timed out (until a signal arrives again)."""
        if self._listener is None or self.should_stop() or self._outage.active:
            return
        if not self._waiting:
            self._waiting = bool(self.signals) and self.signals[-1].step >= step
            return
        if self._listener.wait_for(lambda s: s.step >= step, self.signal_timeout) is None and not self._outage.active:
            self._waiting = False
            LOG.warning("flatmon_client: no signal for step %d within %.1f s; not waiting for signals until one "
                        "arrives (is the service running, and does the policy's split get measured?)",
                        step, self.signal_timeout)

    def _backpressure(self):
        """With max_pending=k, wait until flatmon has answered all but the last k measurements."""
        if self.max_pending is None or len(self._measured_steps) <= self.max_pending or self.should_stop():
            return
        self._producer.poll(0)
        due = self._measured_steps[-1 - self.max_pending]
        if self._listener.wait_for(lambda s: s.step >= due, self.pending_timeout) is None:
            LOG.warning("flatmon_client: no signal for step %d within %.0f s; continuing without it (does the "
                        "policy's monitored split get measured?)", due, self.pending_timeout)

    def maybe_measure(self, step, train_batch=None, eval_batch=None) -> Optional[Measurement]:
        """measure() when `step` is a multiple of every_n_steps (batches may be callables, only called
        then); None otherwise."""
        if self.every_n_steps > 0 and int(step) % self.every_n_steps == 0:
            return self.measure(step, train_batch, eval_batch)
        self._producer.poll(0)
        return None

    def attach(self, optimizer, train_batch, eval_batch=None, start_step=0):
        """Automatic mode: wraps optimizer.step so that every call counts a step and every
        every_n_steps-th one is measured with train_batch/eval_batch ((x, y) or callables)."""
        if eval_batch is None and needs_eval(self.policy):
            raise ValueError("the policy monitors %s, which needs eval data, but attach() got no eval_batch"
                             % policy_pb2.MonitoredQuantity.Name(self.policy.monitor))
        self._auto_step = int(start_step)
        original = optimizer.step

        def step(*args, **kwargs):
            result = original(*args, **kwargs)
            self._auto_step += 1
            self.maybe_measure(self._auto_step, train_batch, eval_batch)
            return result

        optimizer.step = step
        return self

    # ------------------------------------------------------------------------------------------
    # signals
    # ------------------------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """True once flatmon has sent STOP for this run."""
        return self._listener is not None and self._listener.stopped.is_set()

    @property
    def signals(self):
        """Every TrainerSignal received for this run, in order."""
        if self._listener is None:
            return []
        with self._listener.cond:
            return list(self._listener.signals)

    @property
    def last_signal(self):
        s = self.signals
        return s[-1] if s else None

    def stop_signal(self):
        """The first STOP signal (its best_step says which weights to restore), or None."""
        return next((s for s in self.signals if s.action == results_pb2.STOP), None)

    def wait_for_signal(self, step=None, timeout=30.0):
        """Blocks until the signal of `step` (default: the last measured step) arrives; None on timeout."""
        if self._listener is None:
            raise RuntimeError("the monitor was created with listen=False")
        step = self.last_step if step is None else int(step)
        return self._listener.wait_for(lambda s: s.step >= step, timeout)

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    def flush(self, timeout=30.0):
        """Waits up to `timeout` s for queued records; returns how many are left (raises for them, or for a
        failed delivery, only with strict=True)."""
        left = self._producer.flush(timeout)
        if self.strict and left:
            raise RuntimeError("flatmon_client: %d telemetry records not delivered within %.0f s" % (left, timeout))
        if self.strict and self._errors:
            raise RuntimeError("flatmon_client: publishing to %s failed: %s" % (TELEMETRY_TOPIC, self._errors[0]))
        return left

    @property
    def delivery_report(self):
        """The DeliveryReport so far (close() returns the final one)."""
        return DeliveryReport(self._report.sent, self._report.dropped, self._report.undelivered)

    def close(self, reason=None, final_step=None, timeout=10.0) -> DeliveryReport:
        """Publishes RunEnded, waits up to `timeout` s for every record and stops the signal listener.
        Returns the DeliveryReport; raises RuntimeError when records were dropped or not delivered only
        with strict=True. Idempotent."""
        if self._closed:
            return self._final_report
        self._closed = True
        self._final_report = None
        try:
            if reason is None:
                reason = "early_stopped" if self.should_stop() else "completed"
            if final_step is None:
                final_step = max(self._auto_step, self.last_step or 0)
            self._send(telemetry_pb2.TelemetryRecord(run_ended=telemetry_pb2.RunEnded(
                run_id=self.run_id, reason=reason, final_step=int(final_step), publish_time_micros=_now_us())))
            left = self._producer.flush(timeout)
            if left:
                # Give up on what is still queued; purging delivers its reports as undelivered-by-close.
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
                self._producer.poll(0)
            report = self._final_report = self.delivery_report
        finally:
            if self._listener is not None:
                self._listener.stop_event.set()
                self._listener.join(10)
        if self.strict and not report.complete:
            raise RuntimeError("flatmon_client: telemetry incomplete: %d records sent, %d dropped while Kafka was "
                               "unreachable, %d not delivered" % (report.sent, report.dropped, report.undelivered))
        return report

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(reason="failed" if exc_type is not None else None)
        return False
