"""decode -> govern on real bytes, and the DuckDB sink on the result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tidegate import _core, metrics
from tidegate.config import DuckDBDestination
from tidegate.sinks import DuckDBSink, deliver
from tidegate.stages import decode_messages, govern
from tidegate.stages.decode import Admitted

KAFKA_MS = 1_764_000_000_000


def envelope(events: list[dict], source: str = "web") -> bytes:
    return json.dumps({"v": 1, "source": source, "receivedAt": "2026-11-26T05:30:44.000Z", "events": events}).encode()


def ev(i: int, **kw) -> dict:
    base = {"type": "track", "event": "Order Completed", "userId": f"u{i % 3}", "messageId": f"m{i}",
            "receivedAt": "2026-11-26T05:30:44.000Z", "timestamp": "2026-11-26T05:30:40.000Z",
            "context": {"library": {"name": "test"}}, "properties": {"total": 10.5 + i, "currency": "EUR"}}
    base.update(kw)
    return base


def test_decode_envelopes_and_single_events() -> None:
    msgs = [
        (envelope([ev(1), ev(2)]), KAFKA_MS, None),
        (json.dumps({"type": "page", "anonymousId": "a"}).encode(), KAFKA_MS, [("tidegate-source", b"backend")]),
        (b"garbage", KAFKA_MS, None),
    ]
    d = decode_messages(msgs)
    assert (d.envelopes, d.singles) == (1, 2)
    assert d.messages[0][0] == "web" and json.loads(bytes(d.messages[0][2]))[1]["messageId"] == "m2"
    assert d.messages[1][0] == "backend"
    assert d.messages[2][0] == "direct"


def test_govern_builds_typed_tables_and_rejects() -> None:
    d = decode_messages([
        (envelope([ev(1), ev(2), {"type": "track", "event": "x"}]), KAFKA_MS, None),
        (envelope([ev(3, type="identify", traits={"email": "a@example.com", "age": 31})]), KAFKA_MS, None),
        (b"{broken", KAFKA_MS, None),
    ])
    g = govern(d, config_version="abc123")
    assert (g.events_in, g.accepted) == (5, 3)
    assert set(g.tables) == {"tracks", "order_completed", "identifies", "users"}
    oc = g.tables["order_completed"]
    assert oc.schema["total"] == pl.Float64
    assert oc.schema["received_at"] == pl.Datetime("us", "UTC")
    assert oc["tidegate_config_version"].to_list() == ["abc123", "abc123"]
    assert oc["context_source_id"].to_list() == ["web", "web"]
    assert g.tables["users"]["id"].to_list() == ["u0"]
    assert sorted(g.rejected["reason"].to_list()) == ["invalid_json", "missing_identity"]
    assert len(g.keys) == 16 * 3


def test_type_conflicts_inside_a_batch_go_to_discards() -> None:
    d = decode_messages([(envelope([ev(1), ev(2, properties={"total": "a lot"})]), KAFKA_MS, None)])
    g = govern(d)
    assert g.discards.height == 1
    row = g.discards.row(0, named=True)
    assert (row["table_name"], row["row_id"], row["column_name"], row["column_value"]) == ("order_completed", "m2", "total", "a lot")


@pytest.fixture
def sink(tmp_path: Path):
    s = DuckDBSink("warehouse", DuckDBDestination(path=str(tmp_path / "w.duckdb")))
    s.setup()
    yield s
    s.close()


def governed(events: list[dict]):
    return govern(decode_messages([(envelope(events), KAFKA_MS, None)]))


def test_duckdb_layout_and_idempotent_writes(sink: DuckDBSink) -> None:
    batch = governed([ev(i) for i in range(10)] + [ev(20, type="page", name="Home", properties={"path": "/"})])
    deliver(sink, batch)
    deliver(sink, batch)  # a redelivered batch adds nothing
    counts = sink.row_counts()
    assert counts["tracks"] == 10 and counts["order_completed"] == 10 and counts["pages"] == 1
    cols = {r[0] for r in sink.con.execute(
        "select column_name from information_schema.columns where table_name = 'order_completed'").fetchall()}
    assert {"id", "user_id", "received_at", "timestamp", "context_library_name", "total", "currency", "event",
            "event_text", "uuid_ts", "context_source_id"} <= cols
    assert sink.con.execute("select event, event_text from tracks limit 1").fetchone() == ("order_completed", "Order Completed")


def test_duckdb_event_tables_are_keyed_without_an_index(sink: DuckDBSink) -> None:
    skipped = metrics.REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "warehouse"}) or 0
    received = "2026-11-26T05:30:44.789456Z"
    deliver(sink, governed([ev(i, receivedAt=received) for i in range(5)]))
    # No primary-key index (DuckDB keeps one in memory per stored row), except on `users`.
    keyed = {r[0] for r in sink.con.execute(
        "select table_name from duckdb_constraints() where constraint_type = 'PRIMARY KEY'").fetchall()}
    assert "tracks" not in keyed and "order_completed" not in keyed
    # A re-read after a crash: part of the batch is stored already, part is new.
    deliver(sink, governed([ev(i, receivedAt=received) for i in range(3, 8)]))
    assert sink.row_counts()["tracks"] == 8 and sink.row_counts()["order_completed"] == 8
    assert sink.con.execute("select count(distinct id), count(*) from order_completed").fetchone() == (8, 8)
    # 2 rows in each of tracks and order_completed were stored already.
    assert metrics.REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "warehouse"}) == skipped + 4
    # A replay re-stamps receivedAt to the millisecond: still found (the lookup allows a second).
    deliver(sink, governed([ev(i, receivedAt="2026-11-26T05:30:44.789Z") for i in range(8)]))
    assert sink.row_counts()["tracks"] == 8
    # The hourly counts grew only by the new rows.
    assert sink.con.execute("select sum(event_count) from event_counts_hourly").fetchone() == (8,)
    # The same id received again a day later is a producer's resend, the dedupe stage's to drop
    # (within its window); the warehouse does not look that far back.
    deliver(sink, governed([ev(0, receivedAt="2026-11-27T05:30:44.789Z")]))
    assert sink.row_counts()["tracks"] == 9


def test_duckdb_track_event_tables_follow_the_tracks_lookup_only_when_it_answers_for_them(sink: DuckDBSink) -> None:
    """One stored-id lookup in `tracks` serves a track event's own table when every row of it
    is one of the batch's tracks; a table with other rows (a transform function dropped tracks
    rows) looks its ids up itself. Either way a redelivery adds nothing."""
    import dataclasses

    batch = governed([ev(i) for i in range(6)])
    deliver(sink, batch)
    partial = dataclasses.replace(batch, tables={**batch.tables, "tracks": batch.tables["tracks"].head(2)})
    more = governed([ev(i) for i in range(4, 9)])
    for b in (batch, partial, more, partial, more):
        deliver(sink, b)
    assert sink.row_counts()["tracks"] == 9 and sink.row_counts()["order_completed"] == 9
    assert sink.con.execute("select count(distinct id) from order_completed").fetchone() == (9,)
    assert sink.con.execute("select sum(event_count) from event_counts_hourly").fetchone() == (9,)


def test_duckdb_keeps_using_a_primary_key_a_table_already_has(sink: DuckDBSink) -> None:
    """A file written by a version that keyed event tables with a primary key."""
    deliver(sink, governed([ev(1)]))
    sink.con.execute("create table pages (id varchar primary key, received_at timestamptz)")
    sink.con.execute("insert into pages values ('m20', '2020-01-01T00:00:00Z')")
    sink._columns = None  # reloaded, as after a restart
    page = ev(20, type="page", name="Home", properties={"path": "/"})
    deliver(sink, governed([page, ev(21, type="page", name="Home", properties={"path": "/"})]))
    assert sink.con.execute("select id from pages order by id").fetchall() == [("m20",), ("m21",)]


def test_duckdb_memory_limit_grows_instead_of_failing_a_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`memory_limit_mb` bounds DuckDB's cache; a write that needs more gets a higher limit."""
    s = DuckDBSink("small", DuckDBDestination(path=str(tmp_path / "w.duckdb"), memory_limit_mb=4))
    s.setup()
    try:
        pad = "x" * 400
        for round_ in range(6):  # ≈12 MB of rows not yet checkpointed: well past 4 MB
            deliver(s, governed([ev(round_ * 5000 + i, properties={"total": 1.0, "note": pad}) for i in range(5000)]))
        assert s.row_counts()["tracks"] == 30_000
        assert s._memory_limit_mb > 4
        assert metrics.REGISTRY.get_sample_value("tidegate_sink_memory_limit_bytes", {"destination": "small"}) == s._memory_limit_mb * 2**20
        assert "needed more than DuckDB's memory limit of 4 MB" in caplog.text
        limit = s.con.execute("select current_setting('memory_limit')").fetchone()[0]
        assert limit.endswith(("MiB", "MB", "GiB")) and limit != "4.0 MiB"
    finally:
        s.close()


def test_duckdb_schema_evolves_and_conflicts_are_discarded(sink: DuckDBSink) -> None:
    deliver(sink, governed([ev(1)]))
    deliver(sink, governed([ev(2, properties={"total": "n/a", "coupon": "WINTER"})]))
    assert sink.con.execute("select total, coupon from order_completed where id = 'm2'").fetchone() == (None, "WINTER")
    row = sink.con.execute("select table_name, row_id, column_name, column_value, reason from discards").fetchone()
    assert row[:4] == ("order_completed", "m2", "total", "n/a")
    assert "String" in row[4] and "DOUBLE" in row[4]


def test_duckdb_values_of_another_type_than_their_column_are_discarded_not_altered(sink: DuckDBSink) -> None:
    """Across writes: a float is not truncated into a BIGINT column, booleans and numbers do not
    stand for each other, and text in a BOOLEAN column is a discard, not a failed write."""
    before = metrics.REGISTRY.get_sample_value("tidegate_sink_discards_total", {"destination": "warehouse"}) or 0
    deliver(sink, governed([ev(1, properties={"items": 3, "gift": True, "vip": False})]))
    deliver(sink, governed([ev(2, properties={"items": 2.7, "gift": 5, "vip": "yes"})]))
    deliver(sink, governed([ev(3, properties={"items": 4.0, "gift": "FALSE", "vip": True})]))
    rows = sink.con.execute("select id, items, gift, vip from order_completed order by id").fetchall()
    assert rows == [("m1", 3, True, False), ("m2", None, None, None), ("m3", 4, False, True)]
    kept = sink.con.execute("select row_id, column_name, column_value from discards order by all").fetchall()
    assert kept == [("m2", "gift", "5"), ("m2", "items", "2.7"), ("m2", "vip", "yes")]
    after = metrics.REGISTRY.get_sample_value("tidegate_sink_discards_total", {"destination": "warehouse"})
    assert after - before == 3  # conflicts with stored columns are counted like the batch's own


def test_duckdb_users_keep_newest_traits(sink: DuckDBSink) -> None:
    first = ev(1, type="identify", userId="u9", receivedAt="2026-11-26T05:00:00.000Z", traits={"plan": "free", "city": "Oslo"})
    second = ev(2, type="identify", userId="u9", receivedAt="2026-11-26T06:00:00.000Z", traits={"plan": "pro"})
    deliver(sink, governed([second]))
    deliver(sink, governed([first]))  # older data arrives later: it must not win
    assert sink.con.execute("select plan, city from users where id = 'u9'").fetchone() == ("pro", "Oslo")


def test_rejected_events_are_kept_with_reason(sink: DuckDBSink) -> None:
    deliver(sink, governed([{"type": "track", "event": "x", "messageId": "bad-1"}]))
    assert sink.con.execute("select id, reason from discarded_events").fetchall() == [("bad-1", "missing_identity")]


def test_snake_case_binding() -> None:
    assert _core.snake_case("checkoutStep Completed") == "checkout_step_completed"
    assert _core.event_table("Identifies") == "_identifies"
    a = _core.idempotency_key("web", b'{"type":"track","userId":"u","sentAt":"1"}')
    b = _core.idempotency_key("web", b'{"userId":"u","type":"track","sentAt":"2"}')
    assert a == b and len(a) == 32


def test_hourly_counts_update_in_place_and_restate_when_late(sink: DuckDBSink) -> None:
    def batch(ids, late_ms=0):
        evs = [ev(i, timestamp="2026-11-26T05:10:00.000Z") for i in ids]
        late = np.full(len(evs), late_ms, dtype="<i8").tobytes()
        return govern(decode_messages([(Admitted.of(envelope(evs), late_by_ms=late), KAFKA_MS, None)]))

    deliver(sink, batch([1, 2]))
    deliver(sink, batch([3]))
    deliver(sink, batch([3]))  # redelivered: counts must not move
    rows = sink.con.execute("select version, event_count, restated from event_counts_hourly").fetchall()
    assert rows == [(1, 3, False)]
    deliver(sink, batch([4, 5], late_ms=7_200_000))  # beyond the allowed lateness
    rows = sink.con.execute("select version, event_count, restated from event_counts_hourly order by version").fetchall()
    assert rows == [(1, 3, False), (2, 5, True)]
    deliver(sink, batch([6]))  # in time again: the newest version grows
    rows = sink.con.execute("select version, event_count, restated from event_counts_hourly order by version").fetchall()
    assert rows == [(1, 3, False), (2, 6, True)]
    late = sink.con.execute("select id, late, late_by_ms from order_completed where late order by id").fetchall()
    assert late == [("m4", True, 7_200_000), ("m5", True, 7_200_000)]


def test_batch_rows_are_in_event_time_order() -> None:
    times = ["2026-11-26T05:10:03.000Z", "2026-11-26T05:10:01.000Z", "2026-11-26T05:10:02.000Z"]
    g = governed([ev(i, timestamp=t) for i, t in enumerate(times)])
    assert g.tables["order_completed"]["id"].to_list() == ["m1", "m2", "m0"]
    assert g.tables["tracks"]["id"].to_list() == ["m1", "m2", "m0"]


def test_decode_keeps_envelope_events_as_a_view_the_core_reads_without_a_copy() -> None:
    """An envelope's events stay a `msgspec.Raw` view into the Kafka message; every batch call
    reads it (and any contiguous bytes-like object) exactly as it reads `bytes`."""
    import msgspec

    raw = envelope([ev(1), ev(2, userId="u2")])
    d = decode_messages([(raw, 1_000, None)])
    events = d.messages[0][2]
    assert isinstance(events, msgspec.Raw) and bytes(events) in raw
    as_bytes = bytes(events)
    for form in (events, memoryview(as_bytes), bytearray(as_bytes)):
        assert _core.message_index("web", form, 0) == _core.message_index("web", as_bytes, 0)
        assert _core.archive_rows([form])[1] == _core.archive_rows([as_bytes])[1]
        assert _core.process_batch([("web", 0, form, b"", b"")]).keys == _core.process_batch([("web", 0, as_bytes, b"", b"")]).keys
    with pytest.raises(TypeError, match="bytes-like object, got int"):
        _core.message_index("web", 5, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="contiguous"):
        _core.message_index("web", memoryview(as_bytes)[::2], 0)


def test_core_lends_column_buffers_read_only_and_they_outlive_the_result() -> None:
    """`BatchResult.tables` lends each column through the buffer protocol (no copy): read-only,
    the column's bytes, and still valid once the result itself is gone."""
    import ctypes
    import gc

    env = json.dumps([{"type": "track", "event": "A", "userId": "u", "messageId": "m-1"}]).encode()
    result = _core.process_batch([("web", 0, env, b"", b"")])
    columns = {name: dict(zip([c for c, _ in cols], bufs)) for name, cols, bufs, _ in result.tables}
    assert dict(next(cols for name, cols, _, _ in result.tables if name == "tracks"))["id"] == "string_view"
    _validity, views, data = columns["tracks"]["id"]
    del result, columns
    gc.collect()
    view = memoryview(data)
    assert view.readonly and len(data) == view.nbytes == 3
    # An Arrow string view: the length, then a string of up to 12 bytes inline.
    assert view.tobytes() == b"m-1" and memoryview(views).tobytes() == (3).to_bytes(4, "little") + b"m-1" + bytes(9)
    with pytest.raises(TypeError, match="not writable"):
        (ctypes.c_char * 3).from_buffer(data)  # a writable view is refused


def test_event_tables_come_out_in_event_time_order_users_as_received() -> None:
    """Rows of each event table are ordered by `timestamp` (ties as received); string columns
    stay correct through the core's string views. (Rows without one: `Layout` tests in Rust.)"""
    stamps = ["2026-01-05T10:00:03Z", "2026-01-05T10:00:02Z", "2026-01-05T10:00:01Z", "2026-01-05T10:00:03Z"]
    events = []
    for i, t in enumerate(stamps):
        events.append({"type": "identify", "messageId": f"m{i}", "userId": f"user-{3 - i}", "timestamp": t,
                       "traits": {"bio": "x" * (5 + 10 * i)}})
    g = govern(decode_messages([(envelope(events[:2]), 1_000, None), (envelope(events[2:]), 1_000, None)]))
    ids = g.tables["identifies"]
    assert ids["id"].to_list() == ["m2", "m1", "m0", "m3"]
    assert ids["bio"].to_list() == ["x" * 25, "x" * 15, "x" * 5, "x" * 35]
    assert g.tables["users"]["id"].to_list() == ["user-3", "user-2", "user-1", "user-0"]
