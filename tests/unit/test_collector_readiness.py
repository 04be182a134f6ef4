"""The collector answers as soon as it listens, whether Kafka is reachable or not: `/healthz` 200,
`/readyz` 503 with the reason and event requests 503 `kafka_unavailable` until Kafka is
reachable, and SIGTERM stops it at once. Other methods than POST on an event endpoint get the
collector's JSON error."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import tidegate.collector as collector_module
from tidegate.collector import Collector
from tidegate.config import Config, load_config
from tidegate.errors import TidegateError

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once
AUTH = {"Authorization": "Basic " + base64.b64encode(b"k:").decode()}
EVENT = {"userId": "u1", "event": "Signed Up"}


def config(tmp_path: Path, bootstrap: str = UNREACHABLE, port: int = 0) -> Path:
    path = tmp_path / "tidegate.toml"
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
raw_topic = "tidegate.test.readiness"

[collector]
port = {port}
ack_timeout_s = 5

[sources.web]
write_key = "k"

[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
""")
    return path


def load(tmp_path: Path) -> Config:
    return load_config(config(tmp_path), env={})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "CONNECT_ATTEMPT_S", 0.3, raising=False)
    monkeypatch.setattr(collector_module, "CONNECT_RETRY_S", 0.05, raising=False)


def test_answers_at_once_while_kafka_is_unreachable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        started = time.monotonic()
        async with TestClient(TestServer(Collector(load(tmp_path)).app)) as client:
            assert time.monotonic() - started < 2, "the startup waited for Kafka"
            r = await client.get("/healthz")
            assert r.status == 200
            r = await client.post("/v1/track", json=EVENT, headers=AUTH)
            assert r.status == 503
            body = await r.json()
            assert body["code"] == body["error"] == "kafka_unavailable"
            assert "cannot reach Kafka at 127.0.0.1:1" in body["message"] and "nothing was written" in body["message"]
            r = await client.get("/readyz")
            assert r.status == 503
            assert "cannot reach Kafka at 127.0.0.1:1" in await r.text()
            await asyncio.sleep(1)  # a few more attempts fail
            r = await client.post("/v1/batch", json={"batch": [{"type": "track", **EVENT}]}, headers=AUTH)
            assert (r.status, (await r.json())["code"]) == (503, "kafka_unavailable")

    with caplog.at_level(logging.WARNING, logger="tidegate.collector"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records if r.name == "tidegate.collector"]
    assert len(said) == 1, "the same reason is said once, not at every attempt"
    assert "cannot reach Kafka" in said[0] and "/readyz answers 503" in said[0]


class FakeProducer:
    def __init__(self, _cfg: Config) -> None:
        self.sent: list[tuple[str, bytes, int]] = []
        self.closed = False

    def produce(self, topic: str, value: bytes, partition: int, key: bytes | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, value, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def ready(self, timeout: float = 2.0) -> bool:
        return True

    def close(self, timeout: float = 10.0) -> int:
        self.closed = True
        return 0


def test_ready_once_kafka_is_reachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[float] = []

    def ensure_topic(_settings: dict[str, Any], topic: str, partitions: int, _rf: int, timeout: float) -> int:
        attempts.append(timeout)
        if len(attempts) < 3:
            raise TidegateError("cannot reach Kafka at test (down)")
        return 3

    monkeypatch.setattr(collector_module, "ensure_topic", ensure_topic)
    monkeypatch.setattr(collector_module, "AsyncProducer", FakeProducer)

    async def main() -> Collector:
        collector = Collector(load(tmp_path))
        async with TestClient(TestServer(collector.app)) as client:
            for _ in range(100):
                if (await client.get("/readyz")).status == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/readyz")).status == 200
            r = await client.post("/v1/track", json=EVENT, headers=AUTH)
            assert (r.status, await r.text()) == (200, "OK")
            assert collector.partitions == 3
            assert isinstance(collector.producer, FakeProducer) and len(collector.producer.sent) == 1
        return collector

    with caplog.at_level(logging.WARNING, logger="tidegate.collector"):
        collector = asyncio.run(main())
    assert len(attempts) == 3 and all(t == collector_module.CONNECT_ATTEMPT_S for t in attempts)
    assert isinstance(collector.producer, FakeProducer) and collector.producer.closed
    said = [r.getMessage() for r in caplog.records if r.name == "tidegate.collector"]
    assert said[0].startswith("cannot reach Kafka at test (down)") and "is reachable" in said[-1]


def test_a_request_as_the_collector_starts_waits_for_the_first_attempt(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka up: a request that comes in before the collector reached it is not refused for that."""
    def slow_ensure_topic(*_args: Any) -> int:
        time.sleep(0.5)
        return 1

    monkeypatch.setattr(collector_module, "ensure_topic", slow_ensure_topic)
    monkeypatch.setattr(collector_module, "AsyncProducer", FakeProducer)

    async def main() -> None:
        async with TestClient(TestServer(Collector(load(tmp_path)).app)) as client:
            r = await client.post("/v1/track", json=EVENT, headers=AUTH)
            assert (r.status, await r.text()) == (200, "OK")

    asyncio.run(main())


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_an_event_endpoint_get_a_json_405(tmp_path: Path, method: str) -> None:
    async def main() -> None:
        async with TestClient(TestServer(Collector(load(tmp_path)).app)) as client:
            r = await client.request(method, "/v1/track", headers={"Origin": "http://localhost:3000"})
            assert r.status == 405
            assert r.headers["Allow"] == "POST, OPTIONS"
            assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            body = await r.json()
            assert body["code"] == body["error"] == "method_not_allowed"
            assert body["message"] == f"{method} is not allowed on /v1/track; send events with POST"
            r = await client.options("/v1/track", headers={"Origin": "http://localhost:3000"})
            assert r.status == 204  # the CORS preflight is still answered

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops_on_sigterm_while_kafka_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(tmp_path, port=port)
    env = {**os.environ, "PYTHONPATH": str(Path(collector_module.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "tidegate", "serve", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    status = r.status
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200, "the collector did not answer /healthz within 10 s"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert e.value.code == 503
        e.value.close()
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=10)
        assert time.monotonic() - stopping < 3, "SIGTERM took too long"
        assert proc.returncode == 0
        assert out.startswith(f"tidegate collector on http://127.0.0.1:{port}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
