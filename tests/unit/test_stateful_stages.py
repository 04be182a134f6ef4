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


def test_dedupe_flags_repeats_within_and_across_checkpoints(partition) -> None:
    dedupe = Dedupe(window_s=3600)
    events = [{"type": "track", "userId": "u", "messageId": f"m{i}"} for i in (1, 2, 1, 3)]
    keys, _ = _core.message_index("web", json.dumps(events).encode(), NOW_US)
    tx = partition.begin()
    state = tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)
    assert dedupe.flags(keys, state) == b"\x00\x00\x01\x00"
    tx.prepare()
    tx.flush()
    # after the checkpoint committed, the same ids are duplicates; a new one is not
    keys2, _ = _core.message_index("web", json.dumps(events[:1] + [{"type": "track", "userId": "u", "messageId": "m9"}]).encode(), NOW_US)
    tx = partition.begin()
    assert dedupe.flags(keys2, tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)) == b"\x01\x00"
    # the key is scoped by source: the same messageId from another source is new
    keys3, _ = _core.message_index("ios", json.dumps(events[:1]).encode(), NOW_US)
    assert dedupe.flags(keys3, tx.as_state(prefix=b"web", timestamp=NOW_US // 1000)) == b"\x00"


def test_dedupe_forgets_after_the_window(partition) -> None:
    dedupe = Dedupe(window_s=60)
    keys, _ = _core.message_index("web", b'{"type":"track","userId":"u","messageId":"m1"}', NOW_US)
    tx = partition.begin()
    assert dedupe.flags(keys, tx.as_state(prefix=b"k", timestamp=NOW_US // 1000)) == b"\x00"
    tx.prepare()
    tx.flush()
    tx = partition.begin()
    later = NOW_US // 1000 + 61_000
    assert dedupe.flags(keys, tx.as_state(prefix=b"k", timestamp=later)) == b"\x00", "expired by TTL"


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
