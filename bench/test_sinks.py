"""Sink write throughput (events/s) for every sink on the standard corpus.

Not part of the default test run; run with::

    .venv/bin/python -m pytest bench/test_sinks.py --benchmark-only

Every round writes the same governed batch of ``TIDEGATE_BENCH_EVENTS`` corpus events into a
warm destination (its tables already exist from 2,000 other events): ``new`` measures storing
new ids, ``redelivered`` the same batch a second time (the idempotent path, which stores nothing).
PostgreSQL is $TIDEGATE_TEST_POSTGRES, else the one ``scripts/postgres-local start`` gives.

The streaming sinks (``test_sink_send``) write the same batch as outbound events: ``kafka`` to a
fresh topic on $TIDEGATE_TEST_KAFKA (default 127.0.0.1:9092, ``scripts/kafka-local start``), each
write returning once the broker acknowledged every message; ``webhook`` as POSTs of 500 events to
a receiver in this process that parses every body (it shares the cores with the sink, as a
receiver on the same machine would).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

import corpus
from conftest import PARTITIONS, Corpus

from tidegate.config import DeltaDestination, DuckDBDestination, KafkaDestination, PostgresDestination, WebhookDestination
from tidegate.sinks import DeltaSink, DuckDBSink, KafkaSink, PostgresSink, Sink, WebhookSink
from tidegate.sinks.outbound import outbound_events
from tidegate.stages import GovernedBatch, decode_messages, govern

ROOT = Path(__file__).resolve().parents[1]
KAFKA_TS_MS = 1_767_607_200_000
EVENT_TABLES = ("tracks", "pages", "screens", "identifies", "groups", "aliases")


def _governed(events: list[dict[str, Any]]) -> GovernedBatch:
    envs = corpus.envelopes(events, partitions=PARTITIONS, received_at="2026-01-05T10:00:00.000Z")
    return govern(decode_messages([(p, KAFKA_TS_MS, None) for _, _, p in envs]), config_version="bench")


@pytest.fixture(scope="module")
def postgres_dsn() -> str:
    dsn = os.environ.get("TIDEGATE_TEST_POSTGRES")
    if not dsn:
        out = subprocess.run([str(ROOT / "scripts" / "postgres-local"), "start"], check=True, capture_output=True, text=True)
        dsn = out.stdout.strip().splitlines()[-1]
    return dsn


def _factory(kind: str, tmp_path: Path, postgres_dsn: str, schemas: list[str]) -> Callable[[int], Sink]:
    def make(n: int) -> Sink:
        if kind == "duckdb":
            return DuckDBSink("bench", DuckDBDestination(path=str(tmp_path / f"w{n}.duckdb")))
        if kind == "delta":
            return DeltaSink("bench", DeltaDestination(path=str(tmp_path / f"lake{n}")))
        schemas.append(f"bench_{uuid.uuid4().hex[:8]}")
        return PostgresSink("bench", PostgresDestination(dsn=postgres_dsn, schema=schemas[-1]))
    return make


@pytest.mark.parametrize("mode", ["new", "redelivered"])
@pytest.mark.parametrize("kind", ["duckdb", "postgres", "delta"])
def test_sink_write(benchmark: Any, record: Any, data: Corpus, tmp_path: Path, kind: str, mode: str,
                    request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("postgres_dsn") if kind == "postgres" else ""
    warm = _governed(corpus.events(2000, seed=99))
    batch = _governed(data.events)
    schemas: list[str] = []
    make = _factory(kind, tmp_path, dsn, schemas)
    rounds = iter(range(1000))
    sinks: list[Sink] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        sink = make(next(rounds))
        sink.setup()
        sink.write(warm)
        if mode == "redelivered":
            sink.write(batch)
        sinks.append(sink)
        return (batch,), {}

    def run(b: GovernedBatch) -> None:
        sinks[-1].write(b)

    try:
        benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
        last = sinks[-1]
        if isinstance(last, DeltaSink):
            stored = sum(last.read(t).height for t in EVENT_TABLES)
        else:
            stored = sum(v for k, v in last.row_counts().items() if k in EVENT_TABLES)  # type: ignore[attr-defined]
        assert stored >= len(data.events) * 0.9
    finally:
        for s in sinks:
            s.close()
        if schemas:
            with psycopg.connect(dsn, autocommit=True) as con:
                for schema in schemas:
                    con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    record(len(data.events))


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: counts the events of every batch it is sent."""

    events = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n = len(json.loads(body)["batch"])
        with self.lock:
            type(self).events += n
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


def _kafka_messages(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["kafka", "webhook"])
def test_sink_send(benchmark: Any, record: Any, data: Corpus, kind: str) -> None:
    batch = _governed(data.events)
    sink: Sink
    if kind == "kafka":
        bootstrap = os.environ.get("TIDEGATE_TEST_KAFKA", "127.0.0.1:9092")
        topic = f"bench.sink.{uuid.uuid4().hex[:8]}"
        sink = KafkaSink("bench", KafkaDestination(topic=topic, bootstrap_servers=bootstrap, partitions=4))
    else:
        _Receiver.events = 0
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        sink = WebhookSink("bench", WebhookDestination(url=f"http://127.0.0.1:{server.server_port}/events"))
    sink.setup()
    rounds = 5
    try:
        sink.write(batch)  # warm-up: the Kafka topic gets created, the code paths loaded
        benchmark.pedantic(sink.write, args=(batch,), rounds=rounds, iterations=1)
        if kind == "kafka":
            sent = _kafka_messages(bootstrap, topic)
        else:
            sent = _Receiver.events
        assert sent == (rounds + 1) * len(outbound_events(batch))  # warm-up + rounds, each event once
    finally:
        sink.close()
        if kind == "webhook":
            server.shutdown()
            server.server_close()
        else:
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
    record(len(data.events))
