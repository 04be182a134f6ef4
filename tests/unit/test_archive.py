"""The raw archive: frames built from decoded batches, Parquet layout, the crash-safe spool."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate import _core, archive
from tidegate.archive import ArchiveWriter, archive_frame, read_archive
from tidegate.config import ArchiveConfig
from tidegate.stages import decode_messages
from tidegate.stages.decode import Admitted


def ev(i: int, hour: int = 5, **extra) -> dict:
    return {"type": "track", "event": "A", "userId": "u", "messageId": f"m{i}",
            "receivedAt": f"2026-11-26T{hour:02d}:30:44.000Z", **extra}


def envelope(events: list[dict], source: str = "web") -> bytes:
    return json.dumps({"v": 1, "source": source, "receivedAt": "2026-11-26T05:30:44.000Z", "events": events}).encode()


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(archive, optionflags=doctest.ELLIPSIS)
    assert tried and not failed


def test_frame_keeps_raw_events_of_envelopes_and_singles() -> None:
    tricky = ev(2, properties={"note": "line\nbreak \u001e sep", "nested": {"a": [1, 2]}})
    decoded = decode_messages([
        (envelope([ev(1), tricky]), 0, None),
        (b'{"type":"identify","userId":"z"}', 1_764_135_044_000, [("tidegate-source", b"server")]),
        (b"{not json \x1e", 1_764_135_044_000, None),
        (envelope([]), 0, None),
    ])
    df = archive_frame(decoded.messages)
    assert df.schema == archive.ARCHIVE_SCHEMA
    assert df["message_id"].to_list() == ["m1", "m2", None, None]
    assert df["source"].to_list() == ["web", "web", "server", "direct"]
    assert json.loads(df["event_json"][1]) == tricky  # byte-exact slice of the accepted event
    # Without receivedAt the Kafka timestamp is the receive time.
    assert df["received_at"][2] == datetime(2025, 11, 26, 5, 30, 44, tzinfo=timezone.utc)
    assert df["event_json"][3] == "{not json \\u001e"


def test_duplicates_flagged_by_dedupe_are_not_archived_again() -> None:
    decoded = decode_messages([(Admitted.of(envelope([ev(1), ev(2), ev(3)]), duplicates=b"\x00\x01\x00"), 0, None)])
    assert archive_frame(decoded.messages)["message_id"].to_list() == ["m1", "m3"]


def writer(tmp_path: Path, **kw) -> ArchiveWriter:
    return ArchiveWriter(ArchiveConfig(path=str(tmp_path / "archive"), **kw), start_timer=False)


def parquet_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "archive"
    return sorted(str(p.relative_to(root).parent) for p in root.rglob("*.parquet"))


def test_flush_at_n_events_partitions_by_source_date_and_hour(tmp_path: Path) -> None:
    w = writer(tmp_path, flush_events=4)
    w.add(decode_messages([(envelope([ev(1), ev(2, hour=6)]), 0, None)]).messages)
    assert parquet_files(tmp_path) == []  # below N: only spooled
    w.add(decode_messages([(envelope([ev(3), ev(4)], source="a/../b"), 0, None)]).messages)
    assert parquet_files(tmp_path) == [
        "source=a%2F%2E%2E%2Fb/date=2026-11-26/hour=05",
        "source=web/date=2026-11-26/hour=05",
        "source=web/date=2026-11-26/hour=06",
    ]
    assert not list((tmp_path / "archive" / "_spool").rglob("*.arrow"))
    w.close()
    df = read_archive(tmp_path / "archive")
    assert sorted(df["message_id"]) == ["m1", "m2", "m3", "m4"]
    assert set(df["source"]) == {"web", "a/../b"}


def test_flush_after_t_seconds(tmp_path: Path) -> None:
    w = ArchiveWriter(ArchiveConfig(path=str(tmp_path / "archive"), flush_seconds=0.2))
    w.add(decode_messages([(envelope([ev(1)]), 0, None)]).messages)
    import time

    deadline = time.monotonic() + 10
    while not parquet_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parquet_files(tmp_path) == ["source=web/date=2026-11-26/hour=05"]
    w.close()


def test_the_flush_at_n_events_runs_on_the_writers_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch waits for its spool segment, not for the Parquet flush it triggers; what is added
    while that flush runs stays spooled for the next one."""
    import threading
    import time

    from tidegate import archive as archive_mod

    release, started = threading.Event(), threading.Event()
    real = archive_mod._write_partitions

    def slow(root: Path, frames: object) -> int:
        started.set()
        release.wait(10)
        return real(root, frames)

    monkeypatch.setattr(archive_mod, "_write_partitions", slow)
    w = ArchiveWriter(ArchiveConfig(path=str(tmp_path / "archive"), flush_events=2))
    t0 = time.monotonic()
    w.add(decode_messages([(envelope([ev(1), ev(2)]), 0, None)]).messages)
    assert started.wait(5) and time.monotonic() - t0 < 5  # returned while the flush is held
    w.add(decode_messages([(envelope([ev(3)]), 0, None)]).messages)  # during the flush
    release.set()
    spooled = lambda: len(list((tmp_path / "archive" / "_spool").rglob("*.arrow")))  # noqa: E731
    deadline = time.monotonic() + 10
    while (not parquet_files(tmp_path) or spooled() != 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parquet_files(tmp_path) and spooled() == 1  # ev(3) is still spooled
    w.close()
    assert sorted(read_archive(tmp_path / "archive")["message_id"]) == ["m1", "m2", "m3"]


def test_read_archive_filters_by_time_and_source_and_keeps_one_copy(tmp_path: Path) -> None:
    w = writer(tmp_path)
    batch = decode_messages([(envelope([ev(1), ev(2, hour=7)]), 0, None),
                             (envelope([ev(9)], source="server"), 0, None)]).messages
    w.add(batch)
    w.flush()
    w.add(batch)  # a re-read after a crash archives the same events again
    root = tmp_path / "archive"
    assert read_archive(root).height == 3
    t = lambda h: datetime(2026, 11, 26, h, tzinfo=timezone.utc)  # noqa: E731
    assert read_archive(root, t(5), t(6))["message_id"].to_list() == ["m9", "m1"]  # by time, then source
    assert read_archive(root, t(5), t(8), ["web"])["message_id"].to_list() == ["m1", "m2"]
    assert read_archive(root, last=1)["message_id"].to_list() == ["m2"]
    w.close()


CRASH = """
import json, os, sys
from tidegate.archive import ArchiveWriter
from tidegate.config import ArchiveConfig
from tidegate.stages import decode_messages
w = ArchiveWriter(ArchiveConfig(path=sys.argv[1]), start_timer=False)
env = json.dumps({"v": 1, "source": "web", "receivedAt": "x", "events": [
    {"type": "track", "event": "A", "userId": "u", "messageId": "c1", "receivedAt": "2026-11-26T05:00:00.000Z"}]}).encode()
w.add(decode_messages([(env, 0, None)]).messages)
os._exit(9)  # killed: nothing flushed, the spool holds the event
"""


def test_spool_of_a_killed_writer_is_readable_and_recovered(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(root)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert list(root.rglob("*.arrow")) and not list(root.rglob("*.parquet"))
    assert read_archive(root)["message_id"].to_list() == ["c1"]  # readers read spools too
    w = writer(tmp_path)  # the next writer turns the orphaned spool into Parquet
    assert parquet_files(tmp_path) == ["source=web/date=2026-11-26/hour=05"]
    assert not list(root.rglob("*.arrow"))
    assert read_archive(root)["message_id"].to_list() == ["c1"]
    w.close()


def test_a_live_writers_spool_is_left_alone(tmp_path: Path) -> None:
    a = writer(tmp_path)
    a.add(decode_messages([(envelope([ev(1)]), 0, None)]).messages)
    b = writer(tmp_path)
    assert parquet_files(tmp_path) == []
    b.close()
    a.close()
    assert parquet_files(tmp_path) == ["source=web/date=2026-11-26/hour=05"]


def test_unwritable_archive_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(archive.ArchiveError, match="archive.path"):
        ArchiveWriter(ArchiveConfig(path=str(tmp_path / "file" / "archive")), start_timer=False)


def test_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(archive.ArchiveError, match="no archive at"):
        read_archive(tmp_path / "nowhere")


def test_frame_is_vectorised_for_big_batches() -> None:
    events = [ev(i) for i in range(50_000)]
    import time

    decoded = decode_messages([(envelope(events[i:i + 500]), 0, None) for i in range(0, 50_000, 500)])
    started = time.perf_counter()
    df = archive_frame(decoded.messages)
    took = time.perf_counter() - started
    assert df.height == 50_000 and df["message_id"].n_unique() == 50_000
    assert took < 2.0, f"{took:.2f}s for 50,000 events"
    print(f"archive_frame: {50_000 / took:,.0f} events/s")


def test_flush_streams_many_segments_into_one_file_per_partition(tmp_path: Path) -> None:
    """The spool is the flush's buffer: segments are read back one by one (nothing is held in
    memory between batches) and each partition still becomes one Parquet file."""
    w = writer(tmp_path, flush_events=1_000)
    for batch in range(5):
        w.add(decode_messages([(envelope([ev(batch * 10 + i, hour=5 + i % 2) for i in range(4)]), 0, None)]).messages)
    assert len(list((tmp_path / "archive" / "_spool").rglob("*.arrow"))) == 5
    assert w.flush() == 2
    assert parquet_files(tmp_path) == ["source=web/date=2026-11-26/hour=05", "source=web/date=2026-11-26/hour=06"]
    files = sorted((tmp_path / "archive").rglob("*.parquet"))
    assert [pl.read_parquet(f).height for f in files] == [10, 10]
    assert pl.read_parquet(files[0])["message_id"].to_list() == [f"m{b * 10 + i}" for b in range(5) for i in (0, 2)]
    assert not list((tmp_path / "archive" / "_spool").rglob("*.arrow"))
    w.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["messageId", "receivedAt", "type", "x"]), json_values, max_size=4),
                max_size=5),
       st.sampled_from([None, 2]), st.binary(max_size=30))
def test_rows_match_a_plain_python_split(events: list[dict], indent: int | None, junk: bytes) -> None:
    """Rust's split and field reads against msgspec's raw elements and json.loads."""
    import msgspec

    array = json.dumps(events, indent=indent).encode()
    texts_raw, counts, ids_raw, received = _core.archive_rows([array, junk])
    texts, ids = archive.strings(*texts_raw).to_list(), archive.strings(*ids_raw).to_list()
    raw = [bytes(r).decode() for r in msgspec.json.decode(array, type=list[msgspec.Raw])]
    assert texts[:len(raw)] == raw
    assert list(np.frombuffer(counts, dtype="<u4"))[0] == len(events)
    want = [e.get("messageId") if isinstance(e.get("messageId"), str) else
            (json.dumps(e["messageId"]) if isinstance(e.get("messageId"), (int, float, bool)) else None) for e in events]
    assert ids[:len(events)] == want
    assert len(np.frombuffer(received, dtype="<i8")) == len(texts)
