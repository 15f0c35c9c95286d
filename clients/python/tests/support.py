"""Test support: a real `bin/flatmon serve` (embedded broker) on free ports, in a temporary data dir."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent
REPO = CLIENT.parents[1]
for p in (str(CLIENT), str(CLIENT / "examples")):
    if p not in sys.path:
        sys.path.insert(0, p)

SERVING = re.compile(r"flatmon serving: Kafka (\S+), query API and metrics (http://\S+)/runs")


class FlatmonServer:
    """`bin/flatmon serve --data-dir TMP --broker-port 0 --http-port 0` as a child process (its own process
    group), stopped with SIGTERM (the service's clean shutdown) and, failing that, SIGKILL.

    FLATMON_BOOTSTRAP=host:port makes the tests use an already running service instead."""

    def __init__(self, start_timeout=600):
        self.start_timeout = start_timeout
        self.proc = None
        self.data_dir = None
        self.bootstrap = os.environ.get("FLATMON_BOOTSTRAP")
        self.http = None
        self.startup_seconds = 0.0

    def start(self):
        if self.bootstrap:
            return self
        t0 = time.monotonic()
        self.data_dir = tempfile.mkdtemp(prefix="flatmon-pytest-")
        self.log = open(os.path.join(self.data_dir, "serve.log"), "w+b")
        self.proc = subprocess.Popen(
            [str(REPO / "bin" / "flatmon"), "serve", "--data-dir", os.path.join(self.data_dir, "state"),
             "--broker-port", "0", "--http-port", "0"],
            cwd=str(REPO), stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        found = {}

        def read():
            for line in iter(self.proc.stdout.readline, b""):
                m = SERVING.search(line.decode(errors="replace"))
                if m and not found:
                    found["bootstrap"], found["http"] = m.group(1), m.group(2)

        threading.Thread(target=read, daemon=True).start()
        while not found:
            if self.proc.poll() is not None or time.monotonic() - t0 > self.start_timeout:
                tail = self._log_tail()
                self.stop()
                raise RuntimeError("flatmon serve did not start (exit %s):\n%s" % (self.proc.returncode, tail))
            time.sleep(0.2)
        self.bootstrap, self.http = found["bootstrap"], found["http"]
        self.startup_seconds = time.monotonic() - t0
        return self

    def _log_tail(self, n=4000):
        try:
            self.log.flush()
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-n:]
        except Exception:  # noqa: BLE001
            return ""

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
            self.log.close()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
