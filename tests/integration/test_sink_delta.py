"""The Delta Lake sink on real Delta tables in a temporary directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from sink_support import CONFLICTING_TRAITS_DISCARDS, assert_standard_metrics, batch, conflicting_traits, event, mixed
from tidegate.config import DeltaDestination
from tidegate.metrics import REGISTRY
from tidegate.sinks import DeltaSink, deliver


@pytest.fixture
def sink(tmp_path: Path) -> DeltaSink:
    s = DeltaSink("lake", DeltaDestination(path=str(tmp_path / "lake")))
    s.setup()
    return s


def test_layout_partitioning_and_idempotent_writes(sink: DeltaSink) -> None:
    b = batch(mixed(30))
    deliver(sink, b)
    deliver(sink, b)  # a redelivered batch adds nothing
    oc = sink.read("order_completed")
    assert oc.height == 18 and oc["id"].n_unique() == 18
    assert oc.schema["total"] == pl.Float64 and oc.schema["received_at"] == pl.Datetime("us", "UTC")
    assert oc["event_date"].unique().to_list() == [dt.date(2026, 11, 25)]  # from timestamp, not received_at
    assert sink.read("tracks").height == 18 and sink.read("identifies").height == 4 and sink.read("users").height == 4
    table = DeltaTable(str(sink.base / "order_completed"))
    assert table.metadata().partition_columns == ["event_date"]
    assert (sink.base / "order_completed" / "event_date=2026-11-25").is_dir()
    assert DeltaTable(str(sink.base / "users")).metadata().partition_columns == []
    assert_standard_metrics("lake")


def test_schema_evolves_and_type_conflicts_are_discarded(sink: DeltaSink) -> None:
    deliver(sink, batch([event(1)]))
    deliver(sink, batch([event(2, properties={"total": "n/a", "coupon": "WINTER"})]))
    deliver(sink, batch([event(2, properties={"total": "n/a", "coupon": "WINTER"})]))
    row = sink.read("order_completed").filter(pl.col("id") == "msg-2").row(0, named=True)
    assert row["total"] is None and row["coupon"] == "WINTER"
    d = sink.read("discards")
    assert d.height == 1
    r = d.row(0, named=True)
    assert (r["table_name"], r["row_id"], r["column_name"], r["column_value"]) == ("order_completed", "msg-2", "total", "n/a")
    assert "String" in r["reason"] and "double" in r["reason"]


def test_users_keep_newest_traits(sink: DeltaSink) -> None:
    older = event(1, "identify", userId="u9", receivedAt="2026-11-26T05:00:00.000Z", traits={"plan": "free", "city": "Oslo"})
    newer = event(2, "identify", userId="u9", receivedAt="2026-11-26T06:00:00.000Z", traits={"plan": "pro"})
    deliver(sink, batch([newer]))
    deliver(sink, batch([older]))
    deliver(sink, batch([event(3, "identify", userId="u9", receivedAt="2026-11-26T07:00:00.000Z", traits={"vip": True})]))
    u = sink.read("users").filter(pl.col("id") == "u9")
    assert u.height == 1
    assert u.select("plan", "city", "vip").row(0) == ("pro", "Oslo", True)


def test_rejected_events_are_kept_with_reason(sink: DeltaSink) -> None:
    deliver(sink, batch([{"type": "track", "event": "x", "messageId": "bad-1"}]))
    deliver(sink, batch([{"type": "track", "event": "x", "messageId": "bad-1"}]))
    assert sink.read("discarded_events").select("id", "reason").rows() == [("bad-1", "missing_identity")]


def test_redelivery_after_later_writes_adds_nothing(sink: DeltaSink) -> None:
    first = batch(mixed(14))
    deliver(sink, first)
    deliver(sink, batch([event(n, receivedAt="2026-11-26T09:00:00.000Z") for n in range(100, 110)]))
    skipped = REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "lake"}) or 0
    deliver(sink, first)  # a re-read after a crash: the same events, the same receivedAt
    tracks = sink.read("tracks")
    assert tracks.height == 8 + 10 and tracks["id"].n_unique() == 18
    assert sink.read("order_completed").height == 18 and sink.read("pages").height == 2
    # tracks 8, order_completed 8, identifies, pages and screens 2 each (users are upserted)
    assert REGISTRY.get_sample_value("tidegate_sink_rows_skipped_total", {"destination": "lake"}) == skipped + 22


def test_a_write_reads_keys_of_the_files_received_near_it_only(sink: DeltaSink) -> None:
    deliver(sink, batch([event(1)]))  # received at 05:30:44
    deliver(sink, batch([event(2, receivedAt="2026-11-26T12:00:00.000Z")]))
    deliver(sink, batch([event(3, receivedAt="2026-11-26T12:00:00.500Z")]))
    probe = sink.read("tracks").filter(pl.col("id") == "msg-2")
    table = sink.table("tracks")
    assert table is not None and len(table.file_uris()) == 3
    near = sink._stored_keys("tracks", table, probe, ("id",))
    assert near is not None and sorted(near["id"]) == ["msg-2", "msg-3"]  # not msg-1's file, two hours off


def test_tables_are_compacted_as_files_accumulate(tmp_path: Path) -> None:
    sink = DeltaSink("lake", DeltaDestination(path=str(tmp_path / "lake"), compact_after_files=3))
    sink.setup()
    before = REGISTRY.get_sample_value("tidegate_sink_compactions_total", {"destination": "lake"}) or 0
    writes = [batch([event(n, receivedAt=f"2026-11-26T0{n}:00:00.000Z")]) for n in range(1, 6)]
    for b in writes:
        deliver(sink, b)
    table = sink.table("order_completed")
    assert table is not None and len(table.file_uris()) < 5  # one file per write without compaction
    assert REGISTRY.get_sample_value("tidegate_sink_compactions_total", {"destination": "lake"}) > before
    for b in writes:  # redelivered after compaction: still nothing new
        deliver(sink, b)
    oc = sink.read("order_completed")
    assert oc.height == 5 and sorted(oc["id"]) == [f"msg-{n}" for n in range(1, 6)]
    assert sink.read("tracks").height == 5


def test_a_failed_compaction_does_not_fail_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from deltalake.table import TableOptimizer

    def broken(self: TableOptimizer, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(TableOptimizer, "compact", broken)
    sink = DeltaSink("lake", DeltaDestination(path=str(tmp_path / "lake"), compact_after_files=2))
    sink.setup()
    for n in range(1, 4):
        deliver(sink, batch([event(n, receivedAt=f"2026-11-26T0{n}:00:00.000Z")]))
    assert sink.read("order_completed").height == 3
    assert "compacting table" in caplog.text and "disk full" in caplog.text


def test_a_table_that_fails_fails_the_write_and_its_retry_completes_it(sink: DeltaSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidegate.sinks import delta

    deliver(sink, batch(mixed(7)))  # every table exists
    real = delta.write_deltalake

    def pages_fail(target: object, df: pl.DataFrame, **kwargs: object) -> None:
        if "pages" in str(getattr(target, "table_uri", target)):
            raise OSError("disk full")
        real(target, df, **kwargs)

    later = batch(mixed(14, start=7))
    monkeypatch.setattr(delta, "write_deltalake", pages_fail)
    with pytest.raises(Exception, match="disk full"):
        deliver(sink, later)
    assert sink.read("tracks").height == 4 + 8 and sink.read("pages").height == 1  # the other tables were written
    monkeypatch.setattr(delta, "write_deltalake", real)
    deliver(sink, later)  # the pipeline's retry
    assert sink.read("pages").height == 1 + 2 and sink.read("tracks").height == 12
    assert sink.read("tracks")["id"].n_unique() == 12


def test_values_of_another_type_than_their_column_are_discarded_not_altered(sink: DeltaSink) -> None:
    deliver(sink, batch([event(1, properties={"items": 3, "gift": True})]))
    deliver(sink, batch([event(2, properties={"items": 2.7, "gift": "yes"})]))  # was truncated / failed the write
    rows = sink.read("order_completed").sort("id").select("id", "items", "gift").rows()
    assert rows == [("msg-1", 3, True), ("msg-2", None, None)]
    assert sorted(sink.read("discards").select("column_name", "column_value").rows()) == [("gift", "yes"), ("items", "2.7")]


def test_a_users_discard_is_its_newest_writes(sink: DeltaSink) -> None:
    for b in conflicting_traits():
        deliver(sink, b)
    found = sink.read("discards").select("table_name", "row_id", "column_name", "column_value")
    assert found.sort(pl.all()).rows() == CONFLICTING_TRAITS_DISCARDS
