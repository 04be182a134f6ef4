"""The PostgreSQL sink against a real server (scripts/postgres-local)."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any, Iterator

import psycopg
import pytest

from sink_support import (CONFLICTING_TRAITS_DISCARDS, ROOT, assert_standard_metrics, batch, conflicting_traits, event,
                          mixed, postgres_dsn)
from support import free_port
from tidegate import metrics
from tidegate.config import PostgresDestination
from tidegate.errors import DeliveryError
from tidegate.sinks import PostgresSink, deliver
from tidegate.stages.decode import Admitted


@pytest.fixture(scope="session")
def dsn() -> str:
    return postgres_dsn()


@pytest.fixture
def sink(dsn: str) -> Iterator[PostgresSink]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    s = PostgresSink("pg", PostgresDestination(dsn=dsn, schema=schema))
    s.setup()
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def query(s: PostgresSink, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return s.con.execute(sql.replace("{s}", s.schema), params).fetchall()


def columns(s: PostgresSink, table: str) -> dict[str, str]:
    return dict(query(s, "select column_name, data_type from information_schema.columns "
                         "where table_schema = %s and table_name = %s", s.schema, table))


def test_layout_and_idempotent_writes(sink: PostgresSink) -> None:
    b = batch(mixed(30))
    deliver(sink, b)
    skipped = metrics.REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "pg"}) or 0
    deliver(sink, b)  # a redelivered batch adds nothing
    counts = sink.row_counts()
    assert counts["tracks"] == counts["order_completed"] == 18
    # Every event row of the second delivery was stored already (users are upserted, not skipped).
    event_rows = sum(df.height for t, df in b.tables.items() if t != "users")
    assert metrics.REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "pg"}) == skipped + event_rows
    assert counts["identifies"] == 4 and counts["pages"] == 4 and counts["screens"] == 4
    assert counts["users"] == 4 and counts["discards"] == 0
    cols = columns(sink, "order_completed")
    assert cols["total"] == "double precision" and cols["items"] == "bigint"
    assert cols["received_at"] == "timestamp with time zone" and cols["context_library_name"] == "text"
    assert {"id", "user_id", "event", "event_text", "uuid_ts", "tidegate_config_version", "context_source_id"} <= cols.keys()
    row = query(sink, "select event, event_text, total, currency, received_at::text from {s}.order_completed where id = 'msg-7'")
    assert row == [("order_completed", "Order Completed", 7.5, "EUR", "2026-11-26 05:30:44+00")]
    assert_standard_metrics("pg")


def test_schema_evolves_and_type_conflicts_are_discarded(sink: PostgresSink) -> None:
    deliver(sink, batch([event(1)]))
    deliver(sink, batch([event(2, properties={"total": "n/a", "coupon": "WINTER", "items": 2})]))
    assert query(sink, "select total, coupon from {s}.order_completed where id = 'msg-2'") == [(None, "WINTER")]
    rows = query(sink, "select table_name, row_id, column_name, column_value, reason, received_at is not null from {s}.discards")
    assert len(rows) == 1
    assert rows[0][:4] == ("order_completed", "msg-2", "total", "n/a")
    assert "String" in rows[0][4] and "double precision" in rows[0][4] and rows[0][5]
    deliver(sink, batch([event(2, properties={"total": "n/a", "coupon": "WINTER", "items": 2})]))
    assert sink.row_counts()["discards"] == 1  # the discard is idempotent too


def test_values_of_another_type_than_their_column_are_discarded_not_altered(sink: PostgresSink) -> None:
    deliver(sink, batch([event(1, properties={"items": 3, "gift": True})]))
    deliver(sink, batch([event(2, properties={"items": 2.7, "gift": "yes"})]))  # was truncated / failed the write
    assert query(sink, "select id, items, gift from {s}.order_completed order by id") == [("msg-1", 3, True), ("msg-2", None, None)]
    assert query(sink, "select column_name, column_value from {s}.discards order by 1") == [("gift", "yes"), ("items", "2.7")]


def test_values_round_trip_exactly(sink: PostgresSink) -> None:
    tricky = 'quote " comma , newline \n tab \t backslash \\N unicode ✓ nul \x00 end'
    deliver(sink, batch([event(1, properties={"note": tricky, "empty": "", "flag": True, "nothing": None,
                                              "nested": {"a": [1, 2]}})]))
    note, empty, flag, nested = query(sink, "select note, empty, flag, nested_a from {s}.order_completed")[0]
    assert note == tricky.replace("\x00", "\ufffd") and empty == "" and flag is True
    assert nested == "[1,2]"


def test_users_keep_newest_traits(sink: PostgresSink) -> None:
    older = event(1, "identify", userId="u9", receivedAt="2026-11-26T05:00:00.000Z", traits={"plan": "free", "city": "Oslo"})
    newer = event(2, "identify", userId="u9", receivedAt="2026-11-26T06:00:00.000Z", traits={"plan": "pro"})
    deliver(sink, batch([newer]))
    deliver(sink, batch([older]))  # older data arriving later must not win
    assert query(sink, "select plan, city from {s}.users where id = 'u9'") == [("pro", "Oslo")]


def test_rejected_events_are_kept_with_reason(sink: PostgresSink) -> None:
    deliver(sink, batch([{"type": "track", "event": "x", "messageId": "bad-1"}]))
    assert query(sink, "select id, reason from {s}.discarded_events") == [("bad-1", "missing_identity")]


def test_a_failed_batch_leaves_nothing_behind(sink: PostgresSink, monkeypatch: pytest.MonkeyPatch) -> None:
    deliver(sink, batch([event(1)]))
    real = sink._insert
    def fail_on_discards(table: str, *a: Any, **kw: Any) -> None:
        if table == "discards":
            raise RuntimeError("boom")
        real(table, *a, **kw)
    monkeypatch.setattr(sink, "_insert", fail_on_discards)
    with pytest.raises(DeliveryError, match="boom"):
        deliver(sink, batch([event(2, properties={"total": "x", "brand_new": 1})]))
    monkeypatch.undo()
    assert sink.row_counts()["order_completed"] == 1
    assert "brand_new" not in columns(sink, "order_completed")  # the ADD COLUMN was rolled back
    deliver(sink, batch([event(2, properties={"total": "x", "brand_new": 1})]))
    assert sink.row_counts()["order_completed"] == 2 and "brand_new" in columns(sink, "order_completed")


def test_killed_connection_fails_the_batch_then_reconnects(sink: PostgresSink, dsn: str) -> None:
    deliver(sink, batch([event(1)]))
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'tidegate:pg'"
                      " and pid <> pg_backend_pid()")
    with pytest.raises(DeliveryError, match="unreachable"):
        deliver(sink, batch([event(2)]))
    deliver(sink, batch([event(2)]))
    assert sink.row_counts()["order_completed"] == 2


def test_unreachable_server_does_not_stop_setup() -> None:
    s = PostgresSink("down", PostgresDestination(dsn=f"postgresql://tidegate@127.0.0.1:{free_port()}/tidegate",
                                                 connect_timeout_s=2))
    s.setup()
    assert not s.ready()
    with pytest.raises(DeliveryError, match="PostgreSQL unreachable"):
        deliver(s, batch([event(1)]))
    s.close()


def pg_local(command: str, port: int) -> str:
    env = {**os.environ, "TIDEGATE_PG_PORT": str(port), "TIDEGATE_PG_HOME": str(ROOT / ".cache" / "postgres-outage")}
    env.pop("TIDEGATE_POSTGRES_DSN", None)
    out = subprocess.run([str(ROOT / "scripts" / "postgres-local"), command], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def test_server_outage_loses_nothing_and_duplicates_nothing() -> None:
    """A server of its own is stopped mid-stream: batches fail (the pipeline would re-read them),
    and after the restart every event is there exactly once."""
    if os.environ.get("TIDEGATE_POSTGRES_DSN"):
        pytest.skip("an external TIDEGATE_POSTGRES_DSN is in use; cannot stop a private server")
    port = free_port()
    dsn = pg_local("start", port)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    s = PostgresSink("outage", PostgresDestination(dsn=dsn, schema=schema, connect_timeout_s=2))
    try:
        s.setup()
        deliver(s, batch(mixed(20)))
        pg_local("stop", port)
        with pytest.raises(DeliveryError):
            deliver(s, batch(mixed(20, start=20)))
        assert not s.ready()
        pg_local("start", port)
        # The pipeline re-reads from its last commit: the first batch again, then the second.
        deliver(s, batch(mixed(20)))
        deliver(s, batch(mixed(20, start=20)))
        counts = s.row_counts()
        assert counts["tracks"] == 23 and counts["identifies"] == 6
        assert s.con.execute(f"select count(distinct id), count(*) from {schema}.tracks").fetchone() == (23, 23)
    finally:
        s.close()
        pg_local("stop", port)


def test_hourly_counts_update_in_place_and_restate_when_late(sink: PostgresSink) -> None:
    """The one-statement hourly upsert (aggregates.apply_hourly_counts) in PostgreSQL's dialect."""
    import json
    import struct

    from tidegate.stages import decode_messages, govern

    def late_batch(ids: list[int], late_ms: int = 0) -> Any:
        late = struct.pack("<q", late_ms)
        source = [("tidegate-source", b"web")]
        return govern(decode_messages([(Admitted.of(json.dumps(event(i, timestamp="2026-11-26T05:10:00.000Z")).encode(), source,
                                                    late_by_ms=late), 1_767_607_200_000, source) for i in ids]))

    deliver(sink, late_batch([1, 2]))
    deliver(sink, late_batch([3]))
    deliver(sink, late_batch([3]))  # redelivered: counts must not move
    hourly = "select version, event_count, restated from {s}.event_counts_hourly order by version"
    assert query(sink, hourly) == [(1, 3, False)]
    deliver(sink, late_batch([4, 5], late_ms=7_200_000))  # beyond the allowed lateness
    assert query(sink, hourly) == [(1, 3, False), (2, 5, True)]
    deliver(sink, late_batch([6]))  # in time again: the newest version grows
    assert query(sink, hourly) == [(1, 3, False), (2, 6, True)]


def test_a_users_discard_is_its_newest_writes(sink: PostgresSink) -> None:
    for b in conflicting_traits():
        deliver(sink, b)
    assert query(sink, "select table_name, row_id, column_name, column_value from {s}.discards order by 1, 2") == \
        CONFLICTING_TRAITS_DISCARDS
