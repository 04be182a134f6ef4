"""Test support: a real Tidegate stack (collector and pipeline as subprocesses, the way operators
run them) on a real Kafka, with its own topic, consumer group, ports and DuckDB file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import duckdb

from tidegate.status import Samples

ROOT = Path(__file__).resolve().parents[1]
TIDEGATE = [sys.executable, "-m", "tidegate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_bootstrap() -> str:
    """The broker of the test run: $TIDEGATE_TEST_KAFKA, else the one scripts/kafka-local starts."""
    servers = os.environ.get("TIDEGATE_TEST_KAFKA") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        return servers
    subprocess.run([str(ROOT / "scripts" / "kafka-local"), "start"], check=True, stdout=subprocess.DEVNULL)
    return "127.0.0.1:9092"


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


class Stack:
    """One isolated Tidegate deployment for a test."""

    WRITE_KEYS = {"web": "web-test-key", "server": "server-test-key"}

    def __init__(self, tmp: Path, bootstrap: str, *, partitions: int = 3, extra_toml: str = "",
                 env: dict[str, str] | None = None):
        self.tmp = tmp
        self.env = env or {}
        run = uuid.uuid4().hex[:10]
        self.topic = f"tidegate.test.{run}"
        self.group = f"tidegate-test-{run}"
        self.collector_port = free_port()
        self.metrics_port = free_port()
        self.duckdb_path = tmp / "warehouse.duckdb"
        self.config_path = tmp / "tidegate.toml"
        self.config_path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
raw_topic = "{self.topic}"
partitions = {partitions}
consumer_group = "{self.group}"

[collector]
port = {self.collector_port}

[pipeline]
commit_interval_s = 0.5
state_dir = "state"
metrics_port = {self.metrics_port}

[sources.web]
write_key = "{self.WRITE_KEYS['web']}"

[sources.server]
write_key = "{self.WRITE_KEYS['server']}"

[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
{extra_toml}
""")
        self.collector: subprocess.Popen[bytes] | None = None
        self.pipeline: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.collector_port}"

    def _spawn(self, command: str, name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        # The child keeps its own copy of the log descriptor; ours can close at once.
        with open(self.tmp / f"{name}.log", "ab") as log:
            return subprocess.Popen([*TIDEGATE, command, "-c", str(self.config_path)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.tmp)

    def log(self, name: str) -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start_collector(self) -> None:
        self.collector = self._spawn("serve", "collector")
        wait_until(lambda: http_get(f"{self.url}/readyz")[0] == 200 or self.collector.poll() is not None, 60, "collector ready")
        assert self.collector.poll() is None, self.log("collector")

    def start_pipeline(self) -> None:
        self.pipeline = self._spawn("run", "pipeline")
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200
                   or self.pipeline.poll() is not None, 60, "pipeline ready")
        assert self.pipeline.poll() is None, self.log("pipeline")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a pipeline metric over the series matching ``labels`` (0 while it is down)."""
        status, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return Samples.parse(text).total(name, **labels) if status == 200 else 0.0

    def wait_processed(self, events: int, timeout: float = 60) -> None:
        """Wait until the pipeline is done with ``events`` events (delivered, refused or duplicate)."""
        def processed() -> float:
            delivered = self.metric("tidegate_sink_events_total", outcome="delivered")
            refused = sum(self.metric("tidegate_pipeline_events_total", stage="govern", outcome=r)
                          for r in ("missing_identity", "unknown_type", "not_an_object", "invalid_json",
                                    "tracking_plan", "pii_blocked"))
            duplicates = self.metric("tidegate_pipeline_events_total", stage="dedupe", outcome="duplicate")
            return delivered + refused + duplicates
        wait_until(lambda: processed() >= events or (self.pipeline is not None and self.pipeline.poll() is not None),
                   timeout, f"{events} events processed")
        assert self.pipeline is None or self.pipeline.poll() is None, self.log("pipeline")

    def stop_pipeline(self, sig: int = signal.SIGTERM) -> int:
        assert self.pipeline is not None
        self.pipeline.send_signal(sig)
        try:
            code = self.pipeline.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.pipeline.kill()
            code = self.pipeline.wait()
        self.pipeline = None
        return code

    def stop(self) -> None:
        for proc in (self.pipeline, self.collector):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.pipeline = self.collector = None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the warehouse (the pipeline must be stopped: DuckDB allows one writer process)."""
        con = duckdb.connect(str(self.duckdb_path), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def post(self, path: str, body: Any, *, source: str = "web", gzip_body: bool = False,
             write_key: str | None = None, raw: bytes | None = None,
             encoding: str | None = None) -> tuple[int, dict[str, Any] | str]:
        """``raw``: the body as given; ``encoding`` then names its Content-Encoding as sent."""
        from tidegate.sample import post
        import base64, gzip as gz  # noqa: E401

        key = self.WRITE_KEYS[source] if write_key is None else write_key
        if raw is not None:
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
            data = gz.compress(raw) if gzip_body else raw
            if gzip_body or encoding:
                headers["Content-Encoding"] = encoding or "gzip"
            req = urllib.request.Request(self.url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, text = r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                status, text = e.code, e.read().decode()
        else:
            status, text = post(self.url + path, key, body, gzip_body=gzip_body)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text
