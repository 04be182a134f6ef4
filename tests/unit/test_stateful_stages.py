"""dedupe and reconcile on a real Quix Streams RocksDB state partition (what the pipeline uses)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quixstreams.state.rocksdb import RocksDBStorePartition

from tidegate import _core
from tidegate.stages.dedupe import Dedupe
from tidegate.stages.reconcile import Reconcile

HOUR_US = 3_600_000_000
NOW_US = 1_795_000_000_000_000


@pytest.fixture
def partition(tmp_path: Path):
    p = RocksDBStorePartition(str(tmp_path / "state"))
    yield p
    p.close()


def times(*us: int) -> bytes:
    return np.asarray(us, dtype="<i8").tobytes()


def late_ms(raw: bytes) -> list[int]:
    return np.frombuffer(raw, dtype="<i8").tolist()


def index(source: str, events: list[dict]) -> bytes:
    keys, _ = _core.message_index(source, json.dumps(events).encode(), NOW_US)
    return keys


def ev(i: int) -> dict:
    return {"type": "track", "userId": "u", "messageId": f"m{i}"}


def commit(tx) -> None:
    tx.prepare()
    tx.flush()


def test_dedupe_flags_repeats_within_and_across_checkpoints(partition) -> None:
    dedupe = Dedupe(window_s=3600)
    scope = (0, b"web")
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert dedupe.flags(index("web", [ev(1), ev(2), ev(1), ev(3)]), NOW_US, state, scope) == b"\x00\x00\x01\x00"
    assert dedupe.flags(index("web", [ev(2), ev(4)]), NOW_US, state, scope) == b"\x01\x00"  # same checkpoint
    dedupe.persist()
    commit(tx)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert dedupe.flags(index("web", [ev(1), ev(9)]), NOW_US + 1, state, scope) == b"\x01\x00"
    # the key is scoped by source: the same messageId from another source is new
    assert dedupe.flags(index("ios", [ev(1)]), NOW_US + 2, state, scope) == b"\x00"


def test_dedupe_writes_one_segment_per_checkpoint(partition) -> None:
    dedupe = Dedupe(window_s=3600)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    for i in range(5):
        dedupe.flags(index("web", [ev(2 * i), ev(2 * i + 1)]), NOW_US + i, state, (0, b"web"))
    assert state.get(b"dd:head") is None  # nothing written per message
    dedupe.persist()
    assert state.get(b"dd:head") == 1 and len(state.get_bytes(b"dd:seg:0")) == 8 + 10 * 16
    dedupe.persist()  # nothing new: no empty segment
    assert state.get(b"dd:head") == 1


def test_dedupe_state_survives_a_restart(partition) -> None:
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    first = Dedupe(window_s=3600)
    first.flags(index("web", [ev(1), ev(2)]), NOW_US, state, (0, b"web"))
    first.flags(index("web", [ev(3)]), NOW_US, state, (0, b"web"))
    first.persist()
    commit(tx)
    # a new process (empty memory) rebuilds its index from the committed segments
    fresh = Dedupe(window_s=3600)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert fresh.flags(index("web", [ev(3), ev(2), ev(4)]), NOW_US + 5, state, (0, b"web")) == b"\x01\x01\x00"


def test_dedupe_rebuilds_when_another_replica_wrote(partition) -> None:
    a, b = Dedupe(window_s=3600), Dedupe(window_s=3600)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    a.flags(index("web", [ev(1)]), NOW_US, state, (0, b"web"))
    a.persist()
    # the partition moved to b, which checkpointed, then back
    b.flags(index("web", [ev(2)]), NOW_US, state, (0, b"web"))
    b.persist()
    assert a.flags(index("web", [ev(2), ev(1)]), NOW_US + 1, state, (0, b"web")) == b"\x01\x01"


def test_dedupe_forgets_what_a_backed_off_checkpoint_learned(partition) -> None:
    """The sink backed off: the checkpoint's state is discarded and its messages are re-read;
    they must not be flagged as repeats of themselves."""
    dedupe = Dedupe(window_s=3600)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    dedupe.flags(index("web", [ev(1)]), NOW_US, state, (0, b"web"))
    dedupe.persist()
    commit(tx)
    tx = partition.begin()  # the next checkpoint: learns ev(2), then backs off
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert dedupe.flags(index("web", [ev(2)]), NOW_US + 1, state, (0, b"web")) == b"\x00"
    dedupe.forget()
    tx = partition.begin()  # the re-read, on a fresh transaction
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert dedupe.flags(index("web", [ev(2), ev(1)]), NOW_US + 2, state, (0, b"web")) == b"\x00\x01"


def test_dedupe_forgets_after_the_window_and_prunes_state(partition) -> None:
    dedupe = Dedupe(window_s=60)
    tx = partition.begin()
    state = tx.as_state(prefix=b"k", timestamp=NOW_US // 1000)
    assert dedupe.flags(index("web", [ev(1)]), NOW_US, state, (0, b"k")) == b"\x00"
    dedupe.persist()
    later = NOW_US + 61_000_000
    state = tx.as_state(prefix=b"k", timestamp=later // 1000)
    assert dedupe.flags(index("web", [ev(1)]), later, state, (0, b"k")) == b"\x00", "expired"
    dedupe.persist()
    assert state.get(b"dd:tail") == 1, "the expired segment was deleted"
    assert state.get_bytes(b"dd:seg:0") is None


def test_reconcile_flags_only_beyond_allowed_lateness(partition) -> None:
    r = Reconcile(allowed_lateness_s=3600)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    # in order, then 30 min behind (within lateness), then 3 h behind (late), then ahead again
    got = late_ms(r.lateness(times(NOW_US, NOW_US + 10, NOW_US - HOUR_US // 2, NOW_US - 3 * HOUR_US, NOW_US + 20), NOW_US, state))
    assert got == [0, 0, 0, (3 * HOUR_US + 10) // 1000, 0]
    tx.prepare()
    tx.flush()
    # the watermark survives the checkpoint: a fresh transaction still knows it
    tx = partition.begin()
    got = late_ms(r.lateness(times(NOW_US - 2 * HOUR_US), NOW_US, tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)))
    assert got == [(2 * HOUR_US + 20) // 1000]


def test_reconcile_ignores_clocks_from_the_future(partition) -> None:
    r = Reconcile(allowed_lateness_s=60)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    year_ahead = NOW_US + 365 * 24 * HOUR_US
    got = late_ms(r.lateness(times(year_ahead, NOW_US, NOW_US - 30_000_000), NOW_US, state))
    # the skewed device does not drag the watermark a year ahead: honest events stay in time
    assert got == [0, 0, 0]


def test_message_index_times_follow_the_skew_rule() -> None:
    events = [
        {"type": "track", "userId": "u", "timestamp": "2026-11-26T05:00:00.000Z"},
        {"type": "track", "userId": "u", "originalTimestamp": "2026-11-26T05:00:10.000Z",
         "sentAt": "2026-11-26T05:00:20.000Z", "receivedAt": "2026-11-26T05:00:30.000Z"},
        {"type": "track", "userId": "u"},
    ]
    keys, t = _core.message_index("web", json.dumps(events).encode(), 42)
    assert len(keys) == 48
    from datetime import datetime, timezone

    base = int(datetime(2026, 11, 26, 5, tzinfo=timezone.utc).timestamp()) * 1_000_000
    assert np.frombuffer(t, dtype="<i8").tolist() == [base, base + 20_000_000, 42]
