"""Reading flatmon's output topics (results and signals) from Python."""
import threading
import time
from collections import defaultdict

from . import _proto
from .monitor import RESULTS_TOPIC, SIGNALS_TOPIC, consumer_config

_, _, telemetry_pb2, results_pb2 = _proto.load()


class ResultsReader(threading.Thread):
    """Background reader of flatmon.v1.results and flatmon.v1.signals (committed records only).

    Keeps the final FlatnessResults by (run_id, layer, step, split name) and every TrainerSignal by run.
    ``from_beginning=False`` starts at the current end of each partition.

        with ResultsReader("127.0.0.1:9092") as reader:
            r = reader.wait_final("run-1", step=100, split="eval", timeout=30)
    """

    def __init__(self, bootstrap_servers, from_beginning=True, run_filter=None):
        super().__init__(name="flatmon-results-reader", daemon=True)
        from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
        self.consumer = Consumer(consumer_config(bootstrap_servers))
        self.run_filter = run_filter
        self.final = {}
        self.signals = defaultdict(list)
        self.cond = threading.Condition()
        self._halt = threading.Event()
        self.error = None
        assignment = []
        for topic in (RESULTS_TOPIC, SIGNALS_TOPIC):
            md = self.consumer.list_topics(topic, timeout=30).topics.get(topic)
            if md is None or md.error is not None or not md.partitions:
                self.consumer.close()
                raise RuntimeError("topic %s not found on %s — is flatmon running?" % (topic, bootstrap_servers))
            for p in sorted(md.partitions):
                if from_beginning:
                    off = OFFSET_BEGINNING
                else:
                    _, off = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
                assignment.append(TopicPartition(topic, p, off))
        self.consumer.assign(assignment)

    def run(self):
        try:
            while not self._halt.is_set():
                msg = self.consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                if msg.topic() == RESULTS_TOPIC:
                    r = results_pb2.FlatnessResult()
                    r.ParseFromString(msg.value())
                    if not r.final or (self.run_filter and not self.run_filter(r.run_id)):
                        continue
                    with self.cond:
                        self.final[(r.run_id, r.layer, r.step, telemetry_pb2.Split.Name(r.split or telemetry_pb2.TRAIN))] = r
                        self.cond.notify_all()
                else:
                    s = results_pb2.TrainerSignal()
                    s.ParseFromString(msg.value())
                    if self.run_filter and not self.run_filter(s.run_id):
                        continue
                    with self.cond:
                        self.signals[s.run_id].append(s)
                        self.cond.notify_all()
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            self.consumer.close()

    def close(self):
        self._halt.set()
        self.join(10)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self, predicate, timeout=60.0):
        """Waits until predicate(reader) is truthy (called under the lock); returns its value or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.error is not None:
                    raise RuntimeError("flatmon results reader failed: %r" % self.error)
                v = predicate(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))

    def final_result(self, run_id, step, split="TRAIN", layer=None):
        for (run, lay, st, sp), r in self.final.items():
            if run == run_id and st == step and sp == split.upper() and (layer is None or lay == layer):
                return r
        return None

    def wait_final(self, run_id, step, split="TRAIN", layer=None, timeout=60.0):
        return self.wait(lambda s: s.final_result(run_id, step, split, layer), timeout)

    def series(self, run_id, split="TRAIN", layer=None):
        """The run's final results of one split, ordered by step."""
        with self.cond:
            rs = [r for (run, lay, st, sp), r in self.final.items()
                  if run == run_id and sp == split.upper() and (layer is None or lay == layer)]
        return sorted(rs, key=lambda r: r.step)

    def run_signals(self, run_id):
        with self.cond:
            return list(self.signals.get(run_id, []))
