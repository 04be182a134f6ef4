"""Helpers of the end-to-end tests: installing their packages (scripts/e2e-deps), reading
the collector's metrics, waiting for the pipeline to settle, a fault-injecting reverse proxy."""

from __future__ import annotations

import gzip
import http.server
import importlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tidegate.status import Samples
from support import ROOT, Stack, http_get, wait_until

E2E = Path(__file__).resolve().parent
UNAVAILABLE = 75  # scripts/e2e-deps: a package could not be fetched from its registry


def install(part: str) -> None:
    """Run ``scripts/e2e-deps part``: skip (naming the package) only if a registry could not
    deliver it, fail on anything else."""
    proc = subprocess.run([str(ROOT / "scripts" / "e2e-deps"), part], capture_output=True, text=True, timeout=900)
    if proc.returncode == UNAVAILABLE:
        pytest.skip(f"scripts/e2e-deps {part}: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"scripts/e2e-deps {part} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    importlib.invalidate_caches()


def metric_at(url: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter/gauge at ``url`` over the series matching ``labels``."""
    status, text = http_get(url)
    return Samples.parse(text).total(name, **labels) if status == 200 else 0.0


def collector_metric(stack: Stack, name: str, **labels: str) -> float:
    return metric_at(f"{stack.url}/metrics", name, **labels)


def settle(stack: Stack, events_sent: int, at_least_delivered: int, timeout: float = 60) -> None:
    """Wait until the pipeline has seen every event the collector accepted (``events_sent``,
    duplicates included: counted by the govern stage, or by dedupe when it drops them) and
    delivered at least ``at_least_delivered``, and then until delivery stopped moving."""
    governed = lambda: sum(stack.metric("tidegate_pipeline_events_total", stage=s)  # noqa: E731
                           for s in ("govern", "dedupe"))
    delivered = lambda: stack.metric("tidegate_sink_events_total", outcome="delivered")  # noqa: E731
    dead = lambda: stack.pipeline is not None and stack.pipeline.poll() is not None  # noqa: E731
    try:
        wait_until(lambda: (governed() >= events_sent and delivered() >= at_least_delivered) or dead(), timeout,
                   f"pipeline to govern {events_sent} and deliver {at_least_delivered} events")
    except AssertionError as e:
        raise AssertionError(f"{e} (governed {governed()}, delivered {delivered()}); pipeline log:\n"
                             + stack.log("pipeline")[-4000:]) from None
    assert not dead(), stack.log("pipeline")
    last, since = delivered(), time.monotonic()
    while time.monotonic() - since < 1.5:
        time.sleep(0.25)
        now = delivered()
        if now != last:
            last, since = now, time.monotonic()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    events: int
    answered: int
    forwarded: bool


@dataclass
class FaultyProxy:
    """A reverse proxy in front of the collector. ``script`` says what to do with the n-th POST:
    ``"forward"``; ``"forward+503"`` (the collector accepts the batch, but the client is told
    503: the lost-acknowledgement case that makes clients resend what was already stored);
    ``"429"``/``"503"`` (refused without forwarding). Requests after the script are forwarded."""

    upstream: str
    script: list[str] = field(default_factory=list)
    retry_after: str | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    step = proxy.script[len(proxy.seen)] if len(proxy.seen) < len(proxy.script) else "forward"
                    plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                    events = len(json.loads(plain).get("batch", [None]))
                    record = Seen("POST", self.path, dict(self.headers), events, 0, step.startswith("forward"))
                    proxy.seen.append(record)
                status, text, headers = 0, b"", {}
                if step.startswith("forward"):
                    fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                    req = urllib.request.Request(proxy.upstream + self.path, data=body, headers=fwd, method="POST")
                    try:
                        with urllib.request.urlopen(req, timeout=30) as r:
                            status, text = r.status, r.read()
                            headers = {"Content-Type": r.headers.get("Content-Type", "text/plain")}
                    except urllib.error.HTTPError as e:
                        status, text = e.code, e.read()
                        headers = {"Content-Type": e.headers.get("Content-Type", "text/plain")}
                if step in ("429", "503", "forward+503"):
                    status = int(step[-3:])
                    text = json.dumps({"code": "injected", "message": f"fault injected by the test proxy ({step})"}).encode()
                    headers = {"Content-Type": "application/json"}
                    if proxy.retry_after and status == 429:
                        headers["Retry-After"] = proxy.retry_after
                record.answered = status
                self._answer(status, text, headers)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
