"""Measuring the trained models through flatmon's real pipeline: `bin/flatmon serve` (embedded Kafka
broker + the Kafka Streams service), FlatmonMonitor publishing each model's final weights and head
activations, ResultsReader reading the final FlatnessResults back, the service's own engine-time metric
(flatmon_batch_compute_seconds) for the time it took, and `bin/flatmon compute --eigen --json` on the very
records the monitor sent (teed to files) for λ_max."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch

from flatmon_client import FlatmonMonitor
from flatmon_client.results import ResultsReader
from flatmon_client.tensors import delimited

from .models import load_split, monitored, noisy_labels, study_cnn

REPO = Path(__file__).resolve().parents[3]
SERVING = re.compile(r"flatmon serving: Kafka (\S+), query API and metrics (http://\S+)/runs")


class FlatmonServe:
    """`bin/flatmon serve --data-dir TMP --broker-port 0 --http-port 0` (free ports, printed on its
    "flatmon serving:" line) as a child in its own process group; stop() sends SIGTERM (clean shutdown),
    then SIGKILL."""

    def __init__(self, log_path, start_timeout=900):
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.proc = None
        self.bootstrap = self.http = None
        self.data_dir = None

    def start(self):
        t0 = time.monotonic()
        self.data_dir = tempfile.mkdtemp(prefix="flatmon-study-")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(REPO / "bin" / "flatmon"), "serve", "--data-dir",
                                      os.path.join(self.data_dir, "state"), "--broker-port", "0", "--http-port", "0"],
                                     cwd=str(REPO), stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        found = {}

        def read():
            for line in iter(self.proc.stdout.readline, b""):
                self.log.write(line)
                m = SERVING.search(line.decode(errors="replace"))
                if m and not found:
                    found["bootstrap"], found["http"] = m.group(1), m.group(2)

        threading.Thread(target=read, daemon=True).start()
        while not found:
            if self.proc.poll() is not None or time.monotonic() - t0 > self.start_timeout:
                self.stop()
                raise RuntimeError("flatmon serve did not start (exit %s); see %s" % (self.proc.returncode,
                                                                                      self.log_path))
            time.sleep(0.2)
        self.bootstrap, self.http = found["bootstrap"], found["http"]
        self.startup_seconds = time.monotonic() - t0
        return self

    def engine_seconds(self):
        """(sum, count) of the service's flatmon_batch_compute_seconds timer: engine time per batch."""
        text = urllib.request.urlopen(self.http + "/metrics", timeout=30).read().decode()
        s = c = None
        for line in text.splitlines():
            if line.startswith("flatmon_batch_compute_seconds_sum"):
                s = float(line.split()[-1])
            elif line.startswith("flatmon_batch_compute_seconds_count"):
                c = float(line.split()[-1])
        if s is None or c is None:
            raise RuntimeError("flatmon_batch_compute_seconds not found on %s/metrics" % self.http)
        return s, c

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class TeeMonitor(FlatmonMonitor):
    """A FlatmonMonitor that also appends every record it publishes, length-delimited (the format of
    `flatmon compute`), to `tee` while `teeing` is true."""

    def __init__(self, *args, tee=None, **kwargs):
        self.tee = tee
        self.teeing = True
        super().__init__(*args, **kwargs)

    def _send(self, record):
        n = super()._send(record)
        if self.tee is not None and self.teeing:
            self.tee.write(delimited(record))
        return n


def load_model(row):
    model = study_cnn(row["width"], row["depth"])
    model.load_state_dict(torch.load(row["model_path"]))
    model.eval()
    return model


def run_id(tag, key):
    return "study-%s-%s" % (tag, key)


def feed(rows, train_size, out_dir, tag, with_eval=True, chunk=48, log=print):
    """Publishes one TRAIN measurement (step 1: final weights, the full training set with the labels the
    model was trained on) and, with_eval, one EVAL measurement (step 2: the clean test set) per model,
    waits for flatmon's final results, and records the engine time of the TRAIN measurement from the
    service's metrics. The TRAIN records go to records-NNN.pb files of `chunk` models each.
    Returns {key: dict of flatmon's values}."""
    xtr, ytr_clean, xte, yte = load_split(train_size)
    rec_dir = os.path.join(out_dir, "records")
    os.makedirs(rec_dir, exist_ok=True)
    out = {}
    with FlatmonServe(os.path.join(out_dir, "serve.log")) as serve:
        log("flatmon serve: Kafka %s, HTTP %s (started in %.1f s)" % (serve.bootstrap, serve.http,
                                                                     serve.startup_seconds))
        prefix = "study-%s-" % tag
        with ResultsReader(serve.bootstrap, run_filter=lambda r: r.startswith(prefix)) as reader:
            t0 = time.monotonic()
            tee = None
            for k, row in enumerate(rows):
                if k % chunk == 0:
                    if tee is not None:
                        tee.close()
                    tee = open(os.path.join(rec_dir, "records-%03d.pb" % (k // chunk)), "wb")
                model = load_model(row)
                conv, cls = monitored(model)
                ytr, _ = noisy_labels(ytr_clean, row["label_noise"], row["seed"])
                rid = run_id(tag, row["key"])
                n = max(len(ytr), len(yte))
                mon = TeeMonitor(model, conv, cls, rid, serve.bootstrap, samples_per_measurement=n, split_batches=128,
                                 listen=False, weight_decay=row["weight_decay"] or None, tee=tee,
                                 labels={"study": tag, **{h: row[h] for h in ("width", "depth", "weight_decay",
                                                                             "batch_size", "lr", "label_noise",
                                                                             "seed")}})
                try:
                    s0, c0 = serve.engine_seconds()
                    m1 = mon.measure(1, train_batch=(xtr, ytr))
                    mon.flush()
                    r_tr = reader.wait_final(rid, 1, "TRAIN", timeout=300)
                    if r_tr is None:
                        raise RuntimeError("no final TRAIN result for %s within 300 s" % rid)
                    s1, c1 = serve.engine_seconds()
                    mon.teeing = False
                    r_ev = None
                    if with_eval:
                        mon.measure(2, eval_batch=(xte, yte))
                        mon.flush()
                        r_ev = reader.wait_final(rid, 2, "EVAL", timeout=300)
                        if r_ev is None:
                            raise RuntimeError("no final EVAL result for %s within 300 s" % rid)
                finally:
                    mon.teeing = True
                    mon.close(final_step=2 if with_eval else 1)
                    del mon                   # its librdkafka producer goes now, not at interpreter exit
                out[row["key"]] = dict(
                    run_id=rid, kappa=r_tr.relative_flatness.mean, kappa_se=r_tr.relative_flatness.standard_error,
                    kappa_norm=r_tr.relative_flatness_normalized.mean, trace=r_tr.hessian_trace.mean,
                    kappa_v=r_tr.classifier_relative_flatness.mean, trace_v=r_tr.classifier_hessian_trace.mean,
                    flatmon_train_loss=r_tr.loss.mean, flatmon_train_acc=r_tr.accuracy.mean,
                    wd_kappa=r_tr.weight_decay_relative_flatness, samples=r_tr.samples, batches=r_tr.batches,
                    non_finite=r_tr.non_finite, engine_seconds=s1 - s0, engine_batches=int(c1 - c0),
                    monitor_train_loss=m1.loss["train"],
                    flatmon_test_loss=r_ev.loss.mean if r_ev else float("nan"),
                    flatmon_test_kappa=r_ev.relative_flatness.mean if r_ev else float("nan"),
                    record_file="records-%03d.pb" % (k // chunk))
                el = time.monotonic() - t0
                log("  [%3d/%d] %-34s κ %.4g  Tr H %.4g  κ_V %.4g  engine %.3f s (%d batches)  (elapsed %d s, "
                    "~%d s left)" % (k + 1, len(rows), row["key"], out[row["key"]]["kappa"],
                                     out[row["key"]]["trace"], out[row["key"]]["kappa_v"],
                                     out[row["key"]]["engine_seconds"], out[row["key"]]["engine_batches"], el,
                                     el / (k + 1) * (len(rows) - k - 1)))
            if tee is not None:
                tee.close()
    return out


def offline_eigen(out_dir, log=print):
    """`bin/flatmon compute --eigen --json` on every records-*.pb file: {run_id: λ_max of TRAIN}."""
    rec_dir = os.path.join(out_dir, "records")
    files = sorted(f for f in os.listdir(rec_dir) if f.endswith(".pb"))
    lam = {}
    t0 = time.monotonic()
    for i, f in enumerate(files, 1):
        proc = subprocess.run([str(REPO / "bin" / "flatmon"), "compute", "--eigen", "--json",
                               os.path.join(rec_dir, f)], cwd=str(REPO), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("flatmon compute --eigen failed on %s:\n%s" % (f, proc.stderr[-3000:]))
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                if r.get("split", "TRAIN") == "TRAIN":
                    lam[r["run_id"]] = dict(lambda_max=float(r["hessian_max_eigenvalue"]),
                                            offline_kappa=float(r["relative_flatness"]["mean"]),
                                            offline_trace=float(r["hessian_trace"]["mean"]))
        log("  flatmon compute --eigen %s: %d measurements so far (%d s)" % (f, len(lam), time.monotonic() - t0))
    return lam
