"""Every sink type in the real pipeline: HTTP -> collector -> Kafka -> pipeline -> DuckDB,
PostgreSQL, Delta, a Kafka topic and a webhook, configured from TOML as operators do."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import polars as pl
import psycopg
import pytest

from sink_support import Receiver, consume_all, event, postgres_dsn, receiver  # noqa: F401 (fixture)
from support import Stack


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    dsn, schema = postgres_dsn(), f"t_{uuid.uuid4().hex[:10]}"
    yield dsn, schema
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_all_sinks_receive_every_event_after_a_webhook_outage(
        tmp_path: Path, kafka: str, receiver: Receiver, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    topic = f"tidegate.test.governed.{uuid.uuid4().hex[:8]}"
    stack = Stack(tmp_path, kafka, extra_toml=f"""
[destinations.pg]
type = "postgres"
dsn = "{dsn}"
schema = "{schema}"

[destinations.lake]
type = "delta"
path = "lake"

[destinations.downstream]
type = "kafka"
topic = "{topic}"
bootstrap_servers = "{kafka}"

[destinations.hook]
type = "webhook"
url = "{receiver.url}"
max_retries = 1
backoff_initial_s = 0.01
""")
    # The webhook fails the first write (both tries) and the first retry of the re-read batch.
    receiver.answers = [500, 500, 503]
    events = [event(i, kind) for i, kind in enumerate(["track"] * 40 + ["identify"] * 5 + ["page"] * 5)]
    for e in events:
        e.pop("receivedAt")
    try:
        stack.start_collector()
        stack.start_pipeline()
        assert stack.post("/v1/batch", {"batch": events})[0] == 200
        stack.wait_processed(5 * len(events), timeout=90)
        # the outage shows as retried attempts; the batch got through, so none of it counts as failed
        assert stack.metric("tidegate_sink_retries_total", destination="hook") >= 1
        assert stack.metric("tidegate_sink_events_total", destination="hook", outcome="failed") == 0
        assert stack.stop_pipeline() == 0
    finally:
        stack.stop()

    ids = {e["messageId"] for e in events}
    # warehouses: exactly once, although the batch was delivered again after the outage
    assert dict(stack.query("select 'tracks', count(*) from tracks union all select 'pages', count(*) from pages")) == \
        {"tracks": 40, "pages": 5}
    with psycopg.connect(dsn) as con:
        assert con.execute(f"select count(*), count(distinct id) from {schema}.tracks").fetchone() == (40, 40)
        assert con.execute(f"select count(*) from {schema}.identifies").fetchone() == (5,)
        assert con.execute(f"select count(*) from {schema}.users").fetchone() == (5,)
    lake = pl.read_delta(str(tmp_path / "lake" / "order_completed"))
    assert lake.height == 40 and lake["id"].n_unique() == 40
    # event streams: every event, at least once (the Kafka topic got the re-read batch again)
    got = {m.key().decode() for m in consume_all(kafka, topic, len(events))}
    assert got == ids
    delivered = receiver.events()
    assert {e["id"] for e in delivered} == ids and len(delivered) == len(events)
    assert all(e["tidegate_config_version"] for e in delivered)
