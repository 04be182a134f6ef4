"""Delivery bugs found in review: a webhook redirect counted as delivered, a retried batch counted
failed once per attempt, and ``dead_letter = false`` leaving destinations' state stale. Real
sinks against a real HTTP server in a thread."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import msgspec
import pytest

from sink_support import batch, event
from tidegate import load_config, metrics
from tidegate.config import Config, DeliveryConfig, WebhookDestination
from tidegate.dlq import Fanout, deliver_with_retries
from tidegate.errors import DeliveryError
from tidegate.sinks import WebhookSink, build_sink, deliver
from tidegate.stages import PolicyPath


class Server:
    """An HTTP server in a thread: ``answers[path]`` scripts the statuses of the POSTs to that
    path (a 3xx redirects to ``/moved``), then 200; ``seen`` is every request as (method, path, body bytes)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[int]] = {}
        self.seen: list[tuple[str, str, int]] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    server.seen.append((self.command, self.path, len(body)))
                    script = server.answers.get(self.path) if self.command == "POST" else None
                    status = script.pop(0) if script else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def posts(self, path: str) -> int:
        return sum(1 for method, p, _ in self.seen if method == "POST" and p == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.stop()


def webhook(name: str, url: str) -> WebhookSink:
    sink = WebhookSink(name, msgspec.convert({"type": "webhook", "url": url, "max_retries": 0}, WebhookDestination))
    sink.setup()
    return sink


def events_total(destination: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("tidegate_sink_events_total",
                                             {"destination": destination, "outcome": outcome}) or 0.0


def retries_total(destination: str) -> float:
    return metrics.REGISTRY.get_sample_value("tidegate_sink_retries_total", {"destination": destination}) or 0.0


NO_BACKOFF = {"backoff_initial_s": 0.0, "backoff_max_s": 0.0}


# -- 1. a webhook redirect is a failure, not a delivery ------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_webhook_redirect_fails_the_batch_and_names_the_location(server: Server, status: int) -> None:
    name = f"redirected-{status}"
    server.answers["/hook"] = [status] * 2
    b = batch([event(i) for i in range(5)])
    delivered = events_total(name, "delivered")
    cfg = msgspec.convert({"max_attempts": 2, **NO_BACKOFF}, DeliveryConfig)
    error = deliver_with_retries(webhook(name, server.url + "/hook"), b, cfg)
    # Not delivered: the error goes to the dead-letter path; urllib's body-less GET never happened.
    assert isinstance(error, DeliveryError)
    assert f"HTTP {status}" in str(error) and f"redirecting to {server.url}/moved" in str(error)
    assert "configure the final URL" in str(error)
    assert [s for s in server.seen if s[1] != "/hook"] == []
    assert server.posts("/hook") == 2  # one request per attempt: the sink does not retry a redirect itself
    assert events_total(name, "delivered") == delivered


# -- 2. "failed" counts a batch once, when the retries give up ------------------------------------

def test_a_batch_delivered_on_a_later_attempt_is_not_counted_failed(server: Server) -> None:
    name = "flaky-hook"
    server.answers["/flaky"] = [400, 400, 400]  # refused three times, then taken
    b = batch([event(i) for i in range(10)])
    before = events_total(name, "failed"), events_total(name, "delivered"), retries_total(name)
    cfg = msgspec.convert({"max_attempts": 5, **NO_BACKOFF}, DeliveryConfig)
    assert deliver_with_retries(webhook(name, server.url + "/flaky"), b, cfg) is None
    assert events_total(name, "failed") - before[0] == 0
    assert events_total(name, "delivered") - before[1] == b.accepted == 10
    assert retries_total(name) - before[2] == 3


def test_a_batch_that_exhausts_its_attempts_is_counted_failed_once(server: Server) -> None:
    name = "dead-hook"
    server.answers["/dead"] = [400] * 3
    b = batch([event(i) for i in range(10)])
    failed = events_total(name, "failed")
    cfg = msgspec.convert({"max_attempts": 3, **NO_BACKOFF}, DeliveryConfig)
    assert deliver_with_retries(webhook(name, server.url + "/dead"), b, cfg) is not None
    assert events_total(name, "failed") - failed == b.accepted
    # A single write outside the retries (replay, tools) still counts its failure.
    server.answers["/dead"] = [400]
    with pytest.raises(DeliveryError):
        deliver(webhook(name, server.url + "/dead"), b)
    assert events_total(name, "failed") - failed == 2 * b.accepted


# -- 3. dead_letter = false: every destination's state is updated before raising -----------------

def without_dlq(tmp_path: Path, url: str, names: list[str]) -> tuple[Config, Fanout]:
    hooks = "".join(f'[destinations.{n}]\ntype = "webhook"\nurl = "{url}/{n}"\nmax_retries = 0\n' for n in names)
    p = tmp_path / "tidegate.toml"
    p.write_text('[sources.web]\nwrite_key = "k1"\n' + hooks
                 + "[delivery]\nmax_attempts = 3\nbackoff_initial_s = 0.0\nbackoff_max_s = 0.0\ndead_letter = false\n")
    cfg = load_config(p, env={})
    return cfg, Fanout(cfg, {n: build_sink(n, cfg.destinations[n]) for n in names}, PolicyPath(cfg))


def test_fanout_without_dlq_updates_every_destination_before_raising(tmp_path: Path, server: Server) -> None:
    cfg, fanout = without_dlq(tmp_path, server.url, ["a", "b"])
    b = batch([event(i) for i in range(4)])
    try:
        # 1: b fails all its attempts; from now on it gets one attempt per batch.
        server.answers["/b"] = [400] * 3
        with pytest.raises(DeliveryError, match="'b'"):
            fanout.deliver(cfg, b, [])
        # 2: a (earlier in the loop) fails and is raised; b succeeds, so it has recovered.
        server.answers["/a"] = [400] * 3
        with pytest.raises(DeliveryError, match="'a'"):
            fanout.deliver(cfg, b, [])
        assert server.posts("/b") == 4
        # 3: b is refused once: recovered, it has all its attempts again, and the batch goes through.
        server.answers["/b"] = [400]
        assert fanout.deliver(cfg, b, []) == {}
        assert server.posts("/b") == 6
    finally:
        fanout.close()


def test_fanout_without_dlq_gives_no_replay_hint(tmp_path: Path, server: Server,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg, fanout = without_dlq(tmp_path, server.url, ["solo"])
    b = batch([event(i) for i in range(4)])
    try:
        server.answers["/solo"] = [400] * 3
        with pytest.raises(DeliveryError):
            fanout.deliver(cfg, b, [])
        with caplog.at_level(logging.WARNING, logger="tidegate.dlq"):
            assert fanout.deliver(cfg, b, []) == {}
        assert "recovered" in caplog.text and "dlq replay" not in caplog.text
    finally:
        fanout.close()
