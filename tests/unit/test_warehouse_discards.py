"""What a DuckDB warehouse stores of a value its column cannot take: NULL in the row, one
``discards`` row and ``tidegate_sink_discards_total``; never a value shifted or misread."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sink_support import CONFLICTING_TRAITS_DISCARDS, batch, conflicting_traits, event
from tidegate import metrics
from tidegate.config import DuckDBDestination
from tidegate.sinks.duckdb import DuckDBSink


def sink(path: Path) -> DuckDBSink:
    s = DuckDBSink("warehouse", DuckDBDestination(path=str(path)))
    s.setup()
    return s


def discards_total(destination: str = "warehouse") -> float:
    return metrics.REGISTRY.get_sample_value("tidegate_sink_discards_total", {"destination": destination}) or 0.0


def test_text_into_a_timestamp_column_without_a_zone_lands_as_its_utc_time(tmp_path: Path) -> None:
    s = sink(tmp_path / "w.duckdb")
    s.write(batch([event(0)]))
    s._rows("ALTER TABLE order_completed ADD COLUMN due TIMESTAMP")  # noqa: SLF001 - made by another tool
    s._columns = None  # noqa: SLF001 - read the table again, as a restart would
    s._rows("SET TimeZone = 'Asia/Kolkata'")  # noqa: SLF001 - the host's zone must not matter
    before = discards_total()
    due = ["2026-01-05T10:00:00+05:00", "2026-01-05 10:00", "not a date", "99999-01-05T10:00:00"]
    s.write(batch([event(n + 1, properties={"due": d}) for n, d in enumerate(due)]))
    assert s._rows("SELECT id, due FROM order_completed WHERE id <> 'msg-0' ORDER BY id") == [  # noqa: SLF001
        ("msg-1", dt.datetime(2026, 1, 5, 5)), ("msg-2", dt.datetime(2026, 1, 5, 10)), ("msg-3", None), ("msg-4", None)]
    assert s._rows("SELECT row_id, column_value FROM discards ORDER BY row_id") == [  # noqa: SLF001
        ("msg-3", "not a date"), ("msg-4", "99999-01-05T10:00:00")]
    assert discards_total() - before == 2


def discards(s: DuckDBSink) -> list[tuple[str, str, str, str]]:
    return s._rows("SELECT table_name, row_id, column_name, column_value FROM discards ORDER BY ALL")  # noqa: SLF001


@pytest.mark.parametrize("hold", [False, True], ids=["write", "checkpoint"])
def test_a_state_rows_discard_is_its_newest_writes(tmp_path: Path, hold: bool) -> None:
    """``users`` is upserted, the newest trait winning: so is the reason one of its values is
    missing. An event's row is stored once, by its first write: so is its discard."""
    s = sink(tmp_path / "w.duckdb")
    if hold:
        s.hold_state()
    first, *later = conflicting_traits()
    s.write(first)
    s.checkpoint()
    for b in later:
        s.write(b)
    s.checkpoint()
    assert discards(s) == CONFLICTING_TRAITS_DISCARDS
    assert s._rows("SELECT age FROM users") == [(30,)]  # noqa: SLF001


def test_a_redelivered_event_adds_no_discard(tmp_path: Path) -> None:
    s = sink(tmp_path / "w.duckdb")
    s.write(batch([event(0)]))
    again = batch([event(1, properties={"total": "a lot"})])
    s.write(again)
    s.write(again)
    assert discards(s) == [("order_completed", "msg-1", "total", "a lot")]


def test_one_write_keeps_an_events_first_discard_and_updates_a_state_rows(tmp_path: Path) -> None:
    """Both kinds of discard in the same writes (one statement stores them): the event's stays
    the one of its first write, ``users``' follows the newest trait."""
    s = sink(tmp_path / "w.duckdb")
    s.write(batch([event(0), event(9, "identify", userId="u1", traits={"age": 30}, receivedAt="2026-11-26T05:30:40.000Z")]))
    s.write(batch([event(1, properties={"total": "a lot"}),
                   event(10, "identify", userId="u1", traits={"age": "old"}, receivedAt="2026-11-26T05:30:41.000Z")]))
    s.write(batch([event(1, properties={"total": "plenty"}),  # the same event again, as a replay under another policy
                   event(11, "identify", userId="u1", traits={"age": "older"}, receivedAt="2026-11-26T05:30:42.000Z")]))
    assert discards(s) == [("identifies", "msg-10", "age", "old"), ("identifies", "msg-11", "age", "older"),
                           ("order_completed", "msg-1", "total", "a lot"), ("users", "u1", "age", "older")]
