"""The Delta Lake sink on real Delta tables in a temporary directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from sink_support import assert_standard_metrics, batch, event, mixed
from tidegate.config import DeltaDestination
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
