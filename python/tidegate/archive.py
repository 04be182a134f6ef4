"""The raw archive: every accepted event, as it was accepted, in Parquet.

Layout (hive style, one directory per source, UTC date and hour of ``receivedAt``)::

    <archive.path>/source=<source>/date=YYYY-MM-DD/hour=HH/<yyyymmddThhmmss>-<uuid>.parquet

Rows: ``message_id``, ``source``, ``received_at`` (UTC, microseconds) and ``event_json`` (the
event exactly as the pipeline read it from the raw topic: stamped by the collector, before any
policy). Events the dedupe stage flagged as repeats are not archived again.

**Guarantee: at least once, never lost.** Parquet files are large (``flush_events`` events or
``flush_seconds``), far larger than a checkpoint, so the events buffered for the next file are
also appended to a *spool* — one Arrow IPC segment per checkpoint batch, fsynced and renamed into
place — before the pipeline delivers and commits that batch's offsets. A Parquet file is written
(to a temporary name, fsynced, renamed) before the spool segments it replaces are deleted. So:

- a crash before a commit re-reads the messages: the archive may then hold a copy of the same
  event twice (once in the spool or a file, once re-read); replay and plan previews keep one copy
  per ``(source, message_id)``;
- a crash after a commit leaves the events in the spool; the next writer on the same archive
  turns every orphaned spool (its owner's lock is free) into Parquet files, and readers read
  spools too, so nothing committed is ever missing from the archive.

Building the frame does no per-event Python work: one Rust call per batch splits each
message's ``events`` array into the events as received (sonic-rs skips over each element rather
than parsing it) and reads ``messageId`` and ``receivedAt`` from each event's top level. A
Parquet flush reads the spool back one segment at a time, so the archive holds no events in
memory between batches.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client import Counter

from . import _core, metrics, threads
from .config import ArchiveConfig, Config
from .errors import TidegateError
from .stages.govern import arrow_array

__all__ = ["ARCHIVE_SCHEMA", "ArchiveWriter", "ArchiveError", "archive_frame", "strings", "record", "read_archive",
           "partition_dir", "source_of_dir", "close_all"]

log = logging.getLogger("tidegate.archive")

ARCHIVE_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "source": pl.String(),
    "received_at": pl.Datetime("us", "UTC"),
    "event_json": pl.String(),
}
SPOOL = "_spool"

events_archived = Counter("tidegate_archive_events", "Events appended to the raw archive (spool).",
                          registry=metrics.REGISTRY)
files_written = Counter("tidegate_archive_files", "Parquet files written to the raw archive.",
                        registry=metrics.REGISTRY)


class ArchiveError(TidegateError):
    """The archive cannot be written or read; the message names the path."""


# -- building the frame ---------------------------------------------------------------------

def strings(validity: _core.Buffer | None, offsets: _core.Buffer, data: _core.Buffer) -> pl.Series:
    """A string column the core returns as Arrow ``large_string`` buffers, as a Series (no
    Python object per row, no copy before polars')."""
    series = pl.from_arrow(arrow_array(pa.large_string(), len(offsets) // 8 - 1, validity, offsets, data))
    assert isinstance(series, pl.Series)
    return series


def archive_frame(messages: Iterable[tuple[Any, ...]]) -> pl.DataFrame:
    """Archive rows of decoded messages ``(source, kafka_time_us, events_json, duplicate_flags, ...)``.

    One Rust call splits every message into its events as received (an array's elements, else
    the message itself, JSON or not) and reads each event's ``messageId`` and ``receivedAt``;
    ``received_at`` falls back to the Kafka time. Events flagged as duplicates are left out.

    >>> import json
    >>> env = json.dumps([{"type": "track", "messageId": "m1", "receivedAt": "2026-11-26T05:30:44.000Z"},
    ...                   {"type": "track", "messageId": "m2", "receivedAt": "2026-11-26T06:00:00.000Z"}]).encode()
    >>> df = archive_frame([("web", 0, env, b"\\x00\\x01")])   # m2 was flagged a duplicate
    >>> df.select("message_id", "source", "received_at").rows()
    [('m1', 'web', datetime.datetime(2026, 11, 26, 5, 30, 44, tzinfo=zoneinfo.ZoneInfo(key='UTC')))]
    """
    messages = list(messages)
    if not messages:
        return pl.DataFrame(schema=ARCHIVE_SCHEMA)
    events_raw, counts_raw, ids_raw, received_raw = _core.archive_rows([m[2] for m in messages])
    events, message_ids = strings(*events_raw), strings(*ids_raw)
    if events.is_empty():
        return pl.DataFrame(schema=ARCHIVE_SCHEMA)
    counts = np.frombuffer(counts_raw, dtype="<u4")
    index = np.repeat(np.arange(len(messages), dtype=np.int64), counts)
    flags = b"".join(m[3] if len(m[3]) == n else bytes(int(n)) for m, n in zip(messages, counts))
    received = np.frombuffer(received_raw, dtype="<i8")
    kafka_us = np.fromiter((int(m[1]) for m in messages), dtype=np.int64, count=len(messages))[index]
    return pl.DataFrame({
        "message_id": message_ids,
        "source": pl.Series([m[0] for m in messages], dtype=pl.String).gather(index),
        "received_at": pl.Series(np.where(received == np.iinfo(np.int64).min, kafka_us, received))
                         .cast(pl.Datetime("us", "UTC")),
        "event_json": events,
    }).filter(pl.Series(np.frombuffer(flags, dtype=np.uint8) == 0))


# -- layout ---------------------------------------------------------------------------------

def _quote_source(source: str) -> str:
    """A source id as a safe directory name (``..`` and ``/`` cannot escape the archive)."""
    return quote(source, safe="-_").replace(".", "%2E") or "%00"


def partition_dir(root: Path, source: str, when: datetime) -> Path:
    """The directory of one (source, hour) partition.

    >>> partition_dir(Path("a"), "web/1", datetime(2026, 11, 26, 5, tzinfo=timezone.utc)).as_posix()
    'a/source=web%2F1/date=2026-11-26/hour=05'
    """
    return root / f"source={_quote_source(source)}" / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"


def source_of_dir(name: str) -> str:
    return unquote(name.removeprefix("source="))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems do not fsync directories
        pass


def _read_segment(path: Path) -> pl.DataFrame:
    """A spool segment, memory-mapped rather than read into memory (no copy of its events): the
    mapping stays valid if the segment's writer deletes it meanwhile (POSIX)."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def _write_partitions(root: Path, frames: Iterable[pl.DataFrame]) -> int:
    """Write the rows of ``frames`` (spool segments, read one at a time) as one Parquet file per
    (source, date, hour); return the number of files. Each frame's share of a partition is one
    row group, so memory holds one segment, not the whole flush; rows keep arrival order."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    writers: dict[tuple[str, Any], tuple[pq.ParquetWriter, Path, Path]] = {}
    try:
        for df in frames:
            if df.is_empty():
                continue
            keyed = df.with_columns(pl.col("received_at").dt.truncate("1h").alias("_hour"))
            for (source, hour), part in keyed.partition_by(["source", "_hour"], as_dict=True,
                                                           maintain_order=True).items():
                table = part.drop("_hour").to_arrow()
                key = (str(source), hour)
                if key not in writers:
                    directory = partition_dir(root, str(source), hour)  # type: ignore[arg-type]
                    directory.mkdir(parents=True, exist_ok=True)
                    final = directory / f"{stamp}-{uuid.uuid4().hex[:16]}.parquet"
                    tmp = final.with_suffix(".parquet.tmp")
                    writers[key] = (pq.ParquetWriter(tmp, table.schema, compression="zstd"), tmp, final)
                writers[key][0].write_table(table)
        for writer, tmp, final in writers.values():
            writer.close()
            _fsync_file(tmp)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        for writer, tmp, _ in writers.values():
            try:
                writer.close()
            finally:
                tmp.unlink(missing_ok=True)
        raise
    files_written.inc(len(writers))
    return len(writers)


# -- writer ---------------------------------------------------------------------------------

class ArchiveWriter:
    """Buffers archive rows, spools each batch durably, writes Parquet at N events or T seconds
    (on its own thread when it has one, so a batch waits for its spool segment, not a flush)."""

    def __init__(self, cfg: ArchiveConfig, *, start_timer: bool = True):
        self.cfg = cfg
        self.root = Path(cfg.path)
        self.spool = self.root / SPOOL / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.spool / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise ArchiveError(f"cannot create the archive spool in {self.root}: {e.strerror}; "
                               "fix archive.path or its permissions") from None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._lock = threading.Lock()  # the spool's bookkeeping
        self._flushing = threading.Lock()  # one Parquet flush at a time
        self._segments: list[Path] = []
        self._buffered = 0
        self._oldest: float | None = None
        self._closed = False
        self.recover_orphans()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._timer: threading.Thread | None = None
        if start_timer:
            self._timer = threads.Thread(target=self._tick, name="tidegate-archive", daemon=True)
            self._timer.start()

    def add(self, messages: Iterable[tuple[Any, ...]]) -> int:
        """Archive a batch; returns when its events are durable (spooled). Call before committing."""
        df = archive_frame(messages)
        if df.is_empty():
            return 0
        with self._lock:
            if self._closed:
                raise ArchiveError("the archive writer is closed")
            segment = self.spool / f"{time.time_ns():020d}.arrow"
            tmp = segment.with_suffix(".tmp")
            try:
                df.write_ipc(tmp)
                _fsync_file(tmp)
                os.replace(tmp, segment)
            except OSError as e:
                raise ArchiveError(f"cannot write the archive spool {segment}: {e.strerror}") from None
            self._segments.append(segment)
            self._buffered += df.height
            if self._oldest is None:
                self._oldest = time.monotonic()
            events_archived.inc(df.height)
            buffered = self._buffered
        if buffered >= self.cfg.flush_events:
            # Durable already (spooled): the Parquet file is written off the caller's path, by the
            # writer's thread, unless that thread is missing or has fallen far behind (a flush
            # that keeps failing): then here, so that its error reaches the pipeline.
            if self._timer is None or buffered >= 4 * self.cfg.flush_events:
                self.flush()
            else:
                self._wake.set()
        return df.height

    def flush(self) -> int:
        """Write what is spooled as Parquet now; returns the number of files written. Batches
        can be added meanwhile: they stay spooled for the next flush."""
        with self._flushing:
            with self._lock:
                segments, events = list(self._segments), self._buffered
            if not segments:
                return 0
            try:
                # The spool is the buffer: segments are read back one at a time, nothing is kept in memory.
                written = _write_partitions(self.root, (_read_segment(s) for s in segments))
            except OSError as e:
                raise ArchiveError(f"cannot write Parquet files under {self.root}: {e.strerror}") from None
            with self._lock:
                for segment in segments:
                    segment.unlink(missing_ok=True)
                self._segments = self._segments[len(segments):]
                self._buffered -= events
                self._oldest = time.monotonic() if self._segments else None
            return written

    def _tick(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(1.0, self.cfg.flush_seconds / 4))
            self._wake.clear()
            if self._stop.is_set():
                return
            oldest = self._oldest
            due = self._buffered >= self.cfg.flush_events or (
                oldest is not None and time.monotonic() - oldest >= self.cfg.flush_seconds)
            if due:
                try:
                    self.flush()
                except Exception as e:  # noqa: BLE001 - the spool keeps the events; retried next tick
                    log.error("archive flush failed (events stay in the spool and are retried): %s", e)

    def recover_orphans(self) -> int:
        """Turn spools left by writers that died into Parquet; returns the events recovered."""
        recovered = 0
        for spool in sorted((self.root / SPOOL).glob("*")):
            if spool == self.spool or not spool.is_dir():
                continue
            try:
                fd = os.open(spool / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer owns it
                segments = sorted(spool.glob("*.arrow"))
                if segments:
                    _write_partitions(self.root, (_read_segment(s) for s in segments))
                    recovered += sum(pl.scan_ipc(s).select(pl.len()).collect().item() for s in segments)
                for p in spool.iterdir():
                    p.unlink(missing_ok=True)
                spool.rmdir()
            finally:
                os.close(fd)
        if recovered:
            log.warning("archive: recovered %d spooled events of a writer that stopped without flushing", recovered)
        return recovered

    def close(self) -> None:
        """Flush and release the spool (shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        with self._lock:
            if self._closed:
                return
            # Closed before the last flush: a batch added after it would be spooled, then deleted
            # with the spool below without reaching Parquet; now its `add` fails (no commit).
            self._closed = True
        self.flush()
        with self._lock:
            try:
                for p in self.spool.iterdir():
                    p.unlink(missing_ok=True)
                self.spool.rmdir()
            except OSError:
                pass
            os.close(self._lock_fd)


_writers: dict[str, ArchiveWriter] = {}
_writers_lock = threading.Lock()


def record(cfg: Config, decoded: Any) -> None:
    """The pipeline's hook: archive a decoded batch (``DecodedBatch``) before it is delivered."""
    if not cfg.archive.enabled:
        return
    writer = _writers.get(cfg.archive.path)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(cfg.archive.path)
            if writer is None:
                writer = _writers[cfg.archive.path] = ArchiveWriter(cfg.archive)
    writer.add(decoded.messages)


@atexit.register
def close_all() -> None:
    """Flush every writer of this process (called at exit, after a graceful shutdown)."""
    with _writers_lock:
        for path, writer in list(_writers.items()):
            try:
                writer.close()
            except Exception as e:  # noqa: BLE001 - the spool keeps the events for recovery
                log.error("archive %s: final flush failed; the spool is recovered on the next start: %s", path, e)
            del _writers[path]


# -- reading --------------------------------------------------------------------------------

@dataclass
class ArchiveFiles:
    parquet: list[Path]
    spool: list[Path]


def archive_files(root: Path, start: datetime | None = None, end: datetime | None = None,
                  sources: Iterable[str] | None = None) -> ArchiveFiles:
    """Files that may hold events received in ``[start, end)``, pruned by partition. A listing
    only: while a writer flushes, read as ``read_archive`` does (the spool first)."""
    spool = _spool_segments(root)
    return ArchiveFiles(_parquet_files(root, start, end, sources), spool)


def _parquet_files(root: Path, start: datetime | None, end: datetime | None,
                   sources: Iterable[str] | None) -> list[Path]:
    wanted = set(sources) if sources else None
    parquet: list[Path] = []
    for sdir in sorted(root.glob("source=*")):
        if wanted is not None and source_of_dir(sdir.name) not in wanted:
            continue
        for hdir in sorted(sdir.glob("date=*/hour=*")):
            try:
                hour = datetime.strptime(f"{hdir.parent.name[5:]} {hdir.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
            except ValueError:
                continue
            if start is not None and hour.timestamp() + 3600 <= start.timestamp():
                continue
            if end is not None and hour >= end:
                continue
            parquet.extend(sorted(hdir.glob("*.parquet")))
    return parquet


def _spool_segments(root: Path) -> list[Path]:
    """The segments of every spool, live or orphaned. A spool removed while it is listed (its
    writer closed, or another recovered it) is skipped: its events are in Parquet files by then."""
    segments: list[Path] = []
    for spool in sorted((root / SPOOL).glob("*")):
        try:
            segments.extend(sorted(p for p in spool.iterdir() if p.suffix == ".arrow"))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return segments


def read_archive(root: str | os.PathLike[str], start: datetime | None = None, end: datetime | None = None,
                 sources: Iterable[str] | None = None, *, last: int | None = None) -> pl.DataFrame:
    """Archived events received in ``[start, end)`` (of the given sources), oldest first, one row
    per ``(source, message_id)`` (events without an id: per identical content). ``last`` keeps
    only the newest N. Safe against writers flushing meanwhile: no event archived before the
    call is missed."""
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"no archive at {root}; is [archive] enabled and has the pipeline run? "
                           "(archive.path in the config)")
    sources = list(sources) if sources else None
    # The spool is listed and every segment opened and read first, the Parquet files listed only
    # then. A writer (a flush, or the recovery of an orphaned spool) renames a Parquet file into
    # place before it deletes the segments it replaces, and Parquet files are never deleted. So
    # each segment that existed when this read began is either read here (a mapping outlives
    # the file's deletion), or was already gone when listed or opened: deleted, hence its
    # Parquet file renamed, before the Parquet listing below, which finds it. Listing Parquet
    # first would miss a flush whose rename comes after that listing and whose deletions come
    # before the spool's. Events read both ways are kept once below, by (source, message_id).
    spooled: list[pl.LazyFrame] = []
    for segment in _spool_segments(root):
        try:
            spooled.append(_read_segment(segment).lazy())
        except FileNotFoundError:
            continue  # flushed and deleted since the listing: the Parquet listing below has it
        except OSError as e:
            raise ArchiveError(f"cannot read the archive spool segment {segment}: {e.strerror or e}") from None
    parquet = _parquet_files(root, start, end, sources)
    frames: list[pl.LazyFrame] = []
    if parquet:
        frames.append(pl.scan_parquet(parquet, hive_partitioning=False, schema=ARCHIVE_SCHEMA))
    frames.extend(spooled)
    if not frames:
        return pl.DataFrame(schema=ARCHIVE_SCHEMA)
    lf = pl.concat(frames, how="vertical_relaxed")
    if start is not None:
        lf = lf.filter(pl.col("received_at") >= start)
    if end is not None:
        lf = lf.filter(pl.col("received_at") < end)
    if sources:
        lf = lf.filter(pl.col("source").is_in(sources))
    df = lf.sort("received_at", "source", "message_id", nulls_last=True, maintain_order=True).collect()
    df = (df.with_columns(pl.coalesce("message_id", "event_json").alias("_key"))
            .unique(subset=["source", "_key"], keep="first", maintain_order=True)
            .drop("_key"))
    if last is not None:
        df = df.tail(last)
    return df
