"""A read of the archive while its writer flushes and closes: replays, plan previews and dry runs
read a live pipeline's archive, and must not miss an event that moves from the spool to a Parquet
file meanwhile, whatever the order in which the reader's and the writer's steps interleave."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pytest

from tidegate.archive import ArchiveWriter, read_archive
from tidegate.config import ArchiveConfig

IDS = [f"m{i}" for i in range(5)]


def envelope(ids: list[str]) -> bytes:
    return json.dumps([{"type": "track", "messageId": i, "receivedAt": "2026-11-26T05:30:44.000Z"} for i in ids]).encode()


class Closing:
    """The writer's own ``close()`` (a Parquet flush, then its spool removed) on a thread, held
    before each step a reader can see: the rename of the Parquet file into place, the deletion of
    each spool segment, the removal of the spool directory. ``step()`` lets the next one happen
    and returns once it has."""

    def __init__(self, writer: ArchiveWriter):
        self.cond = threading.Condition()
        self.allowed = self.reached = 0
        self.done = False
        self.thread = threading.Thread(target=self._close, args=(writer,))

    def start(self) -> None:
        self.thread.start()
        with self.cond:
            assert self.cond.wait_for(lambda: self.reached == 1 or self.done, timeout=10)

    def _close(self, writer: ArchiveWriter) -> None:
        try:
            writer.close()
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def gate(self) -> None:
        if threading.current_thread() is not self.thread:
            return
        with self.cond:
            self.reached += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.allowed >= self.reached)

    def step(self) -> None:
        with self.cond:
            self.allowed += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.reached > self.allowed or self.done, timeout=10)

    def finish(self) -> None:
        while not self.done:
            self.step()
        self.thread.join(timeout=10)


STEPS = 4  # the Parquet rename, two segment deletions, the spool's removal


def test_every_interleaving_of_a_flush_with_a_read_keeps_every_event(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    closing: list[Closing] = []
    real_replace, real_unlink, real_rmdir = os.replace, Path.unlink, Path.rmdir

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        if closing and str(dst).endswith(".parquet"):
            closing[-1].gate()
        real_replace(src, dst, *a, **k)

    def unlink(path: Path, *a: Any, **k: Any) -> None:
        if closing and path.suffix == ".arrow":
            closing[-1].gate()
        real_unlink(path, *a, **k)

    def rmdir(path: Path) -> None:
        if closing:
            closing[-1].gate()
        real_rmdir(path)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(Path, "rmdir", rmdir)

    # The reader's steps: every listing (glob, iterdir) and every segment it opens. The writer's
    # steps are let happen right before the reader's step of the schedule, in their own order.
    schedule: list[int] = []
    calls = [0]

    def reader_step(real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*a: Any, **k: Any) -> Any:
            if threading.current_thread() is threading.main_thread() and closing:
                while schedule and schedule[0] <= calls[0]:
                    schedule.pop(0)
                    closing[-1].step()
                calls[0] += 1
            return real(*a, **k)
        return step

    monkeypatch.setattr(Path, "glob", reader_step(Path.glob))
    monkeypatch.setattr(Path, "iterdir", reader_step(Path.iterdir))
    monkeypatch.setattr(pa, "memory_map", reader_step(pa.memory_map))

    points = 8  # more than the reader's steps: a step scheduled past the last one comes after the read
    runs, most, lost = 0, 0, []
    for n, when in enumerate(itertools.combinations_with_replacement(range(points), STEPS)):
        root = tmp_path / f"archive-{n}"
        w = ArchiveWriter(ArchiveConfig(path=str(root), flush_events=10**6, flush_seconds=3600), start_timer=False)
        w.add([("web", 0, envelope(IDS[:3]), b"")])
        w.add([("web", 0, envelope(IDS[3:]), b"")])  # two spool segments
        closing.append(Closing(w))
        closing[-1].start()  # held before the Parquet rename
        schedule[:], calls[0] = list(when), 0
        try:
            got = read_archive(root)["message_id"].to_list()
            most = max(most, calls[0])
        finally:
            schedule.clear()
            closing[-1].finish()
        assert closing[-1].reached == STEPS  # the writer was held at each of its steps
        if sorted(got) != IDS:
            lost.append((when, got))
        assert not list((root / "_spool").glob("*")) and sorted(read_archive(root)["message_id"]) == IDS
        runs += 1
    assert runs == 330 and most < points  # every place between, before and after the reader's steps
    assert not lost, f"(writer steps before reader steps, events read) where events were missed: {lost}"


def test_a_batch_added_while_the_writer_closes_is_refused_not_lost(tmp_path: Path) -> None:
    """``close`` flushes, then removes its spool: a batch spooled between the two would be deleted
    without reaching Parquet (its caller, told it was durable, would commit). Now ``add`` fails
    once closing has begun, and the caller re-reads instead."""
    from tidegate.archive import ArchiveError

    w = ArchiveWriter(ArchiveConfig(path=str(tmp_path / "a"), flush_events=10**6, flush_seconds=3600), start_timer=False)
    w.add([("web", 0, envelope(IDS[:3]), b"")])
    w._flushing.acquire()  # hold close() inside its last flush
    closer = threading.Thread(target=w.close)
    closer.start()
    try:
        with pytest.raises(ArchiveError, match="closed"):
            for _ in range(200):  # until close() has begun
                w.add([("web", 0, envelope(IDS[3:]), b"")])
                w._segments.pop()
                threading.Event().wait(0.005)
    finally:
        w._flushing.release()
        closer.join(10)
    assert sorted(read_archive(str(tmp_path / "a"))["message_id"].to_list()) == IDS[:3]
