"""Governed batches for the sink tests, made by the real core from envelope bytes as the
pipeline makes them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from tidegate.stages import GovernedBatch, decode_messages, govern

ROOT = Path(__file__).resolve().parents[1]
RECEIVED = "2026-11-26T05:30:44.000Z"


def event(n: int, kind: str = "track", **fields: Any) -> dict[str, Any]:
    """Event ``n`` of a small shop: tracks are "Order Completed" with a total, others minimal."""
    e: dict[str, Any] = {"type": kind, "userId": f"user-{n % 5}", "messageId": f"msg-{n}", "receivedAt": RECEIVED,
                         "timestamp": "2026-11-25T23:59:00.000Z", "context": {"library": {"name": "sink-tests"}}}
    if kind == "track":
        e.update(event="Order Completed", properties={"total": n + 0.5, "currency": "EUR", "items": n % 4})
    elif kind == "identify":
        e["traits"] = {"plan": "free", "email": f"user{n}@example.com"}
    elif kind in ("page", "screen"):
        e["name"] = "Home"
    e.update(fields)
    return e


def batch(events: list[dict[str, Any]], *, source: str = "web") -> GovernedBatch:
    body = json.dumps({"v": 1, "source": source, "receivedAt": RECEIVED, "events": events}).encode()
    return govern(decode_messages([(body, 1_764_000_000_000, None)]), config_version="test")


def conflicting_traits() -> list[GovernedBatch]:
    """Identifies of user ``u1``, one per batch: ``age`` stored as a number, then three times as
    text its column cannot take (the newest of them written before an older one), then the
    newest again (a redelivery). Their discards are `CONFLICTING_TRAITS_DISCARDS`."""
    ages = ((0, 30), (1, "old"), (3, "ancient"), (2, "older"), (3, "ancient"))
    return [batch([event(n, "identify", userId="u1", traits={"age": age}, receivedAt=f"2026-11-26T05:30:4{n}.000Z")])
            for n, age in ages]


# (table, row, column, value): each identify's own, and the newest one's for `users`, whose row
# is upserted with the newest trait winning.
CONFLICTING_TRAITS_DISCARDS = [("identifies", "msg-1", "age", "old"), ("identifies", "msg-2", "age", "older"),
                               ("identifies", "msg-3", "age", "ancient"), ("users", "u1", "age", "ancient")]


HASH_KEY = "k" * 32  # the [pii] hash key the policy tests set


def policy_path(tmp_path: Path, toml: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The `PolicyPath` of a config written from ``toml`` (with the hash key in its environment)."""
    from tidegate import load_config
    from tidegate.stages import PolicyPath

    monkeypatch.setenv("TIDEGATE_PII_HASH_KEY", HASH_KEY)
    (tmp_path / "t.toml").write_text(toml)
    return PolicyPath(load_config(tmp_path / "t.toml", env={}))


def envelope_message(source: str, events: list[dict[str, Any]]) -> tuple[bytes, int, None]:
    """A raw-topic message of ``events`` (each stamped ``receivedAt``) from ``source``."""
    body = {"v": 1, "source": source, "receivedAt": RECEIVED, "events": [{**e, "receivedAt": RECEIVED} for e in events]}
    return json.dumps(body).encode(), 0, None


def mixed(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` events, mostly tracks, with identifies, pages and screens among them."""
    kinds = ("track", "track", "track", "identify", "page", "track", "screen")
    return [event(i, kinds[i % len(kinds)]) for i in range(start, start + n)]


def postgres_dsn() -> str:
    """The PostgreSQL of the test run: $TIDEGATE_TEST_POSTGRES, else the one scripts/postgres-local starts."""
    dsn = os.environ.get("TIDEGATE_TEST_POSTGRES")
    if dsn:
        return dsn
    out = subprocess.run([str(ROOT / "scripts" / "postgres-local"), "start"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def assert_standard_metrics(destination: str, table: str = "tracks") -> None:
    """The standard sink series that ``deliver()`` emits are there for ``destination``."""
    from tidegate import metrics

    get = metrics.REGISTRY.get_sample_value
    assert (get("tidegate_sink_events_total", {"destination": destination, "outcome": "delivered"}) or 0) >= 1
    assert (get("tidegate_sink_write_seconds_count", {"destination": destination}) or 0) >= 1
    assert (get("tidegate_sink_rows_total", {"destination": destination, "table": table}) or 0) >= 1
    assert (get("tidegate_end_to_end_latency_seconds_count", {"destination": destination}) or 0) >= 1


class Receiver:
    """An HTTP server in a thread of its own; ``answers`` scripts its statuses, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self.answers: list[int] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        status = self.answers.pop(0) if self.answers else 200
        self.statuses.append(status)
        if status == 200:
            return web.json_response({"ok": True})
        return web.Response(status=status, text=f"scripted {status}: bad payload" if status < 500 else "unavailable",
                            headers={"Retry-After": "0"} if status == 429 else None)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        """Events of the requests that were answered 200."""
        return [e for (_, body), status in zip(self.requests, self.statuses) if status == 200 for e in body["batch"]]


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic``: waits for ``expected``, then reads a little longer for extras."""
    with warnings.catch_warnings(record=True):  # confluent-kafka's import warns (authlib)
        from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < expected:
            for m in c.consume(500, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m)
        got.extend(m for m in c.consume(500, timeout=1.0) if m.error() is None)
    finally:
        c.close()
    return got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started :class:`Receiver` (import this fixture into a test module to use it)."""
    r = Receiver()
    r.start()
    yield r
    r.stop()


def warehouse_config(tmp_path: Path, *, pipeline: str = "", dead_letter: bool = False, extra: str = "") -> Any:
    """The loaded config of a pipeline with one source (``web``) and one DuckDB warehouse in
    ``tmp_path``, no retries; ``pipeline`` adds lines to ``[pipeline]``, ``extra`` whole sections."""
    from tidegate import load_config

    (tmp_path / "tidegate.toml").write_text(f"""
[kafka]
raw_topic = "tidegate.unit"
[pipeline]
state_dir = "state"
{pipeline}
[sources.web]
write_key = "k"
[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
[delivery]
max_attempts = 1
dead_letter = {str(dead_letter).lower()}
{extra}""")
    return load_config(tmp_path / "tidegate.toml", env={})
