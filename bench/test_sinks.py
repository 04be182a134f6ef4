"""Sink write throughput (events/s) for the warehouse sinks on the standard corpus.

Not part of the default test run; run with::

    .venv/bin/python -m pytest bench/test_sinks.py --benchmark-only

Every round writes the same governed batch of ``TIDEGATE_BENCH_EVENTS`` corpus events into a
warm destination (its tables already exist from 2,000 other events): ``new`` measures storing
new ids, ``redelivered`` the same batch a second time (the idempotent path, which stores nothing).
PostgreSQL is $TIDEGATE_TEST_POSTGRES, else the one ``scripts/postgres-local start`` gives.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

import corpus
from conftest import PARTITIONS, Corpus

from tidegate.config import DeltaDestination, DuckDBDestination, PostgresDestination
from tidegate.sinks import DeltaSink, DuckDBSink, PostgresSink, Sink
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
