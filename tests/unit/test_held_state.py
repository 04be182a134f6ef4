"""State-table rows (`users`, `accounts`, `identity_map`) kept back by the pipeline's DuckDB writes
until the checkpoint, which upserts each table once (`Sink.hold_state`, `Sink.checkpoint`).

What a checkpoint stores must be exactly what the writes would have stored one by one; nothing
kept back may be lost to a failure, a deletion or a shutdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from quixstreams.sinks import SinkBackpressureError

from tidegate.config import DuckDBDestination
from tidegate.errors import DeliveryError
from tidegate.regulations import delete_user_rows
from tidegate.sinks import warehouse
from tidegate.sinks.duckdb import DuckDBSink
from tidegate.stages import GovernedBatch, decode_messages, govern
from tidegate.stages.identity import IdentityResolver

from sink_support import event
from test_checkpoint_writes import SOURCE, Warehouse, make_sink


def governed(events: list[dict[str, Any]], received: str, resolver: IdentityResolver) -> GovernedBatch:
    body = json.dumps({"v": 1, "source": "web", "receivedAt": received, "events": events}).encode()
    return resolver.process(govern(decode_messages([(body, 1_764_000_000_000, None)]), config_version="test"))


def writes() -> list[GovernedBatch]:
    """Identifies of the same users across writes: traits that change, go missing (in a whole
    write, too) and appear,
    a trait whose type changes (a column of another type: another run of the checkpoint), and
    anonymous ids joined to users later and two users merged (identity_map rows relabelled)."""
    resolver = IdentityResolver()
    out = []
    for w in range(6):
        evs = []
        for n in range(12):
            traits: dict[str, Any] = {"plan": f"plan-{w}" if n % 3 and w != 5 else None, "seen": w}
            if w >= 2 and n % 2:
                traits["city"] = f"city-{w}-{n}"
            if w == 4:
                traits["seen"] = f"w{w}"  # another type than the stored column's
            e = event(n, "identify", userId=f"user-{n % 7}", traits=traits, anonymousId=f"anon-{n}-{w // 2}",
                      messageId=f"msg-{w}-{n}")
            evs.append(e)
        evs.append(event(100 + w, "track", userId=None, anonymousId=f"anon-{w}-9", messageId=f"t-{w}"))
        if w:  # the previous write's anonymous visitor signs up: its id is relabelled
            evs.append(event(200 + w, "identify", userId=f"user-{10 + w}", anonymousId=f"anon-{w - 1}-9", messageId=f"i-{w}"))
        if w == 3:  # one visitor joins two users: the larger one's id is relabelled to the smaller
            evs.append(event(300, "identify", userId="user-12", anonymousId="anon-0-9", messageId="j-3"))
        out.append(governed(evs, f"2026-11-26T05:30:{40 + w:02d}.000Z", resolver))
    return out


def add(pipeline: Any, n: int) -> None:
    """Identify ``n`` (user ``user-<n>``) as a raw-topic message at offset ``n``."""
    value = json.dumps(event(n, "identify", userId=f"user-{n}")).encode()
    pipeline.add(value, None, 1_767_607_200_000, SOURCE, "raw", 0, n)


def sink(path: Path, *, hold: bool) -> DuckDBSink:
    s = DuckDBSink("warehouse", DuckDBDestination(path=str(path)))
    s.setup()
    if hold:
        s.hold_state()
    return s


def table(s: DuckDBSink, name: str) -> pl.DataFrame:
    cols = [c for c in s._columns[name] if c != "uuid_ts"]  # noqa: SLF001 - the sink's own layout
    rows = s._rows(f"SELECT {', '.join(cols)} FROM {name} ORDER BY ALL")  # noqa: SLF001
    return pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None)


def test_a_checkpoint_stores_what_the_writes_would_have(tmp_path: Path) -> None:
    batches = writes()
    now, held = sink(tmp_path / "now.duckdb", hold=False), sink(tmp_path / "held.duckdb", hold=True)
    for b in batches:
        now.write(b)
        held.write(b)
    assert "users" not in held.row_counts() or held.row_counts()["users"] == 0
    assert held.row_counts()["identifies"] == now.row_counts()["identifies"] == 78
    held.checkpoint()
    for name in ("users", "identity_map", "discards"):
        assert table(held, name).equals(table(now, name)), name
    assert table(held, "users").height == 12 and table(held, "identity_map").height > 7
    assert held._held == []  # noqa: SLF001
    held.checkpoint()  # nothing left: no statement, nothing changes
    assert table(held, "users").equals(table(now, "users"))


def test_the_pipeline_stores_kept_rows_before_its_offsets_commit(tmp_path: Path) -> None:
    sink_, warehouse = make_sink(tmp_path, max_write_mb=1e-6)  # a write per message
    committed: list[dict[str, int]] = []
    sink_.before_commit.append(lambda: committed.append(warehouse.row_counts()))
    for n in range(4):
        add(sink_, n)
    sink_._writes[-1].delivered.result(10)  # noqa: SLF001 - delivered before the flush
    assert warehouse.row_counts()["identifies"] == 4 and warehouse.row_counts().get("users", 0) == 0
    sink_.flush()
    assert committed[-1]["users"] == 4  # users 0-3, stored before the commit hook ran


class FailingCheckpoint(Warehouse):
    fail = 0

    def checkpoint(self) -> None:
        if self.fail:
            self.fail -= 1
            raise duckdb.IOException("disk full (test)")
        super().checkpoint()


def test_a_failed_checkpoint_keeps_the_rows_and_backs_off(tmp_path: Path) -> None:
    pipeline, warehouse = make_sink(tmp_path, max_write_mb=16, warehouse_class=FailingCheckpoint)
    assert isinstance(warehouse, FailingCheckpoint)
    warehouse.fail = 1
    for n in range(3):
        add(pipeline, n)
    with pytest.raises(SinkBackpressureError) as e:
        pipeline.flush()
    assert isinstance(e.value.__cause__, DeliveryError)
    assert "could not store the rows its writes kept for the checkpoint: disk full" in str(e.value.__cause__)
    assert warehouse.row_counts()["identifies"] == 3 and warehouse.row_counts().get("users", 0) == 0
    pipeline.on_paused()
    for n in range(3):  # the re-read
        add(pipeline, n)
    pipeline.flush()
    assert warehouse.row_counts()["users"] == 3 and warehouse.row_counts()["identifies"] == 3


class Parked:
    """Stands in for the dead-letter topics: what was parked, for which destination and why."""

    def __init__(self) -> None:
        self.parked: list[tuple[str, int, str]] = []

    def park(self, destination: str, items: list[Any], *, reason: str, **_: Any) -> None:
        self.parked.append((destination, len(items), reason))

    def close(self) -> None:
        pass


def test_rows_a_checkpoint_can_never_store_are_dead_lettered_with_their_write(tmp_path: Path) -> None:
    """A failed checkpoint's re-read stores the state rows write by write: the write whose rows
    the warehouse refuses is dead-lettered, the others stored, and the pipeline goes on (it
    failed every checkpoint, holding one more copy of the rows after each re-read)."""
    pipeline, warehouse = make_sink(tmp_path, max_write_mb=1e-6, dead_letter=True)  # a write per message
    warehouse._rows("CREATE TABLE users (id VARCHAR PRIMARY KEY, plan VARCHAR CHECK (plan <> 'banned'))")  # noqa: SLF001
    warehouse._columns = None  # noqa: SLF001 - the table was made by the warehouse's owner
    pipeline.fanout.dead_letters = parked = Parked()  # type: ignore[assignment]

    def consume(plans: dict[int, str]) -> None:
        for n, plan in plans.items():
            value = json.dumps(event(n, "identify", userId=f"user-{n}", traits={"plan": plan})).encode()
            pipeline.add(value, None, 1_767_607_200_000, SOURCE, "raw", 0, n)

    consume({0: "free", 1: "banned", 2: "free"})
    with pytest.raises(SinkBackpressureError) as e:
        pipeline.flush()
    assert 'CHECK constraint failed on table "users"' in str(e.value.__cause__)
    pipeline.on_paused()
    consume({0: "free", 1: "banned", 2: "free"})  # the re-read
    pipeline.flush()
    [(destination, messages, reason)] = parked.parked
    assert destination == "warehouse" and messages == 1 and 'CHECK constraint failed on table "users"' in reason
    assert table(warehouse, "users")["id"].to_list() == ["user-0", "user-2"]
    assert warehouse._held == []  # noqa: SLF001
    consume({3: "pro"})  # committed: rows are kept back for the checkpoint again
    pipeline._writes[-1].delivered.result(10)  # noqa: SLF001
    assert warehouse.row_counts()["users"] == 2
    pipeline.flush()
    assert warehouse.row_counts()["users"] == 3 and not parked.parked[1:]


def test_deleting_a_user_drops_their_kept_rows(tmp_path: Path) -> None:
    s = sink(tmp_path / "w.duckdb", hold=True)
    for b in writes()[:2]:
        s.write(b)
    delete_user_rows(s, "user-3")
    s.checkpoint()
    users = table(s, "users")["id"].to_list()
    assert "user-3" not in users and "user-2" in users


def test_closing_stores_kept_rows(tmp_path: Path) -> None:
    s = sink(tmp_path / "w.duckdb", hold=True)
    s.write(writes()[0])
    s.close()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM users").fetchone() == (7,)


def test_upserts_leave_out_only_columns_they_cannot_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`changing_columns` (no key-determined column, no all-NULL column) stores what updating
    every column stores."""
    batches = writes()
    every = sink(tmp_path / "every.duckdb", hold=False)
    with monkeypatch.context() as m:
        m.setattr(warehouse, "changing_columns", lambda table, df: [c for c in df.columns if c != "id"])
        for b in batches:
            every.write(b)
    some = sink(tmp_path / "some.duckdb", hold=False)
    for b in batches:
        some.write(b)
    for name in ("users", "identity_map"):
        assert table(some, name).equals(table(every, name)), name
