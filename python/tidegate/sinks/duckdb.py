"""DuckDB warehouse sink (the embedded default).

Segment/RudderStack layout, one table per event type plus one per track event name. Tables are
created on first sight and evolve by adding columns. Writes are idempotent: a row is inserted
only if its ``id`` is not stored yet, looked up among the rows received around the same time
(event tables carry no primary key: DuckDB would keep its index in memory for every stored row;
see ``WarehouseSink.id_index``), so a redelivered batch adds nothing; ``users`` is upserted
(newest non-null trait wins). A value whose type conflicts with its column's is set NULL in the
row and recorded in ``discards``. ``memory_limit_mb`` bounds DuckDB's cache and grows when a write
needs more. The layout logic is shared with PostgreSQL in :mod:`.warehouse`.
"""

from __future__ import annotations

import itertools
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import duckdb
import polars as pl

from .. import metrics
from ..config import DuckDBDestination
from ..errors import DeliveryError
from ..stages.govern import GovernedBatch
from .warehouse import Dialect, WarehouseSink

__all__ = ["DuckDBSink", "DUCKDB"]

log = logging.getLogger("tidegate.sinks.duckdb")

# Names of staged frames (see `DuckDBSink._staged`), unique within the process.
_STAGE_IDS = itertools.count()

DUCKDB = Dialect(
    types={
        pl.Boolean: "BOOLEAN",
        pl.Int64: "BIGINT",
        pl.Float64: "DOUBLE",
        pl.String: "VARCHAR",
        pl.Datetime: "TIMESTAMPTZ",
    },
    polars_of={
        "BOOLEAN": pl.Boolean(), "BIGINT": pl.Int64(), "DOUBLE": pl.Float64(), "VARCHAR": pl.String(),
        "TIMESTAMP WITH TIME ZONE": pl.Datetime("us", "UTC"), "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
        "INTEGER": pl.Int32(), "FLOAT": pl.Float32(), "TIMESTAMP": pl.Datetime("us"),
    },
    text="VARCHAR",
    param="?",
)


class DuckDBSink(WarehouseSink):
    dialect = DUCKDB
    id_index = False
    HOLDS_STATE = True

    # A write that meets the memory limit is retried with a limit this much higher, this often.
    MEMORY_LIMIT_GROWTH = 1.5
    MEMORY_LIMIT_RETRIES = 8

    def __init__(self, name: str, cfg: DuckDBDestination):
        super().__init__(name, cfg.schema)
        self.cfg = cfg
        self._con: duckdb.DuckDBPyConnection | None = None
        self._memory_limit_mb = cfg.memory_limit_mb
        self._checkpoints = 0  # run by this sink (every `vacuum_every`th vacuums)
        self._vacuum_tasks = 0  # DuckDB's own max_vacuum_tasks, read at setup

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        with self._lock:  # `tidegate up` may read row counts from another thread meanwhile
            self._setup()

    def _setup(self) -> None:
        path = Path(self.cfg.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path))
        except duckdb.IOException as e:
            raise DeliveryError(
                f"cannot open DuckDB file {path}: {e}. Another process may hold it; stop it or use another path"
            ) from None
        # DuckDB's default checkpoints every 16 MB of WAL, which dominated commit time under load
        # (measured: 37K -> 50K events/s per 10K-event batch with a larger threshold).
        self._con.execute(f"SET checkpoint_threshold = '{int(self.cfg.checkpoint_threshold_mb)}MB'")
        (self._vacuum_tasks,) = self._con.execute("SELECT current_setting('max_vacuum_tasks')").fetchall()[0]
        self._set_vacuum(self.cfg.vacuum_every == 1)
        if self._memory_limit_mb:
            self._set_memory_limit(self._con)
        if self.cfg.threads:
            self._con.execute(f"SET threads = {int(self.cfg.threads)}")
        self._create_layout()

    def close(self) -> None:
        if self._held and self._con is not None:
            try:  # normally stored at the pipeline's last checkpoint already
                self.checkpoint()
            except Exception as e:  # noqa: BLE001 - the offsets were not committed: they are re-read
                log.warning("destination %r: rows kept for the checkpoint not stored on closing: %s", self.name, e)
        with self._lock:
            if self._con is not None:
                try:  # the checkpoint on closing merges what was appended since the last one
                    self._set_vacuum(True)
                except duckdb.Error as e:  # an invalidated database still gets closed
                    log.warning("destination %r: %s", self.name, str(e).splitlines()[0])
                self._con.close()
                self._con = None

    def _set_vacuum(self, on: bool) -> None:
        """Whether checkpoints merge small row groups from now on (see `vacuum_every`)."""
        assert self._con is not None
        self._con.execute(f"SET max_vacuum_tasks = {int(self._vacuum_tasks) if on else 0}")

    def vacuum(self) -> None:
        """Checkpoint now, merging row groups and dropping deleted rows' storage where DuckDB
        does (after a user's rows were deleted)."""
        with self._lock:
            if self._con is not None:
                self._checkpoint(vacuum=True)

    def _checkpoint(self, *, vacuum: bool = False) -> None:
        """CHECKPOINT; with a vacuum if asked, or if it is the `vacuum_every`th."""
        assert self._con is not None
        every = self.cfg.vacuum_every
        vacuum = vacuum or (every > 0 and (self._checkpoints + 1) % every == 0)
        if vacuum and every != 1:  # with 1 it is always on
            self._set_vacuum(True)
            try:
                self._con.execute("CHECKPOINT")
            finally:
                self._set_vacuum(False)
        else:
            self._con.execute("CHECKPOINT")
        self._checkpoints += 1

    def ready(self) -> bool:
        return self._con is not None

    def write(self, batch: GovernedBatch) -> None:
        """The shared write; one that needs more memory than the limit is written again with a
        higher limit: `memory_limit_mb` bounds DuckDB's cache, it must not fail a write."""
        self._with_memory(lambda: super(DuckDBSink, self).write(batch))

    def checkpoint(self) -> None:
        """The shared checkpoint, with more memory if it needs it (as `write`)."""
        self._with_memory(super().checkpoint)

    def _with_memory(self, run: Callable[[], None]) -> None:
        for _ in range(self.MEMORY_LIMIT_RETRIES):
            try:
                return run()
            except duckdb.Error as e:
                if not self._memory_limit_mb or not _out_of_memory(e):
                    raise
                self._grow_memory_limit(e)
        run()

    def _grow_memory_limit(self, e: duckdb.Error) -> None:
        before, self._memory_limit_mb = self._memory_limit_mb, int(self._memory_limit_mb * self.MEMORY_LIMIT_GROWTH)
        log.warning("destination %r: a write needed more than DuckDB's memory limit of %d MB (%s); "
                    "writing it again with %d MB. Raise memory_limit_mb to start there",
                    self.name, before, str(e).splitlines()[0][:200], self._memory_limit_mb)
        with self._lock:
            self._set_memory_limit(self.con)

    def _set_memory_limit(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"SET memory_limit = '{int(self._memory_limit_mb)}MiB'")
        metrics.sink.memory_limit_bytes.labels(self.name).set(self._memory_limit_mb * 2**20)

    def idle(self) -> None:
        """Checkpoint while nothing waits, once the WAL holds `idle_checkpoint_mb`: data not yet
        checkpointed stays in memory, and DuckDB's own checkpoint (at `checkpoint_threshold_mb`)
        stalls the write that reaches it, so smaller ones in idle moments bound memory and
        latency (measured with 64 MB: −100 MB peak RSS, p99 at half the max rate ≈1.7 instead of
        up to 3.4 s, the drain rate unchanged; 32 MB had cost an earlier build ≈10% of it)."""
        limit = self.cfg.idle_checkpoint_mb
        if not limit or self._con is None:
            return
        try:
            wal = os.path.getsize(f"{self.cfg.path}.wal")
        except OSError:
            return
        # Not while a write runs (one that overran `delivery.write_timeout_s`): the upkeep runs
        # on the deliver thread, and waiting there would hold every destination's next write.
        if wal >= limit * 1024 * 1024 and self._lock.acquire(blocking=False):
            try:
                if self._con is not None:  # not closed meanwhile (upkeep runs beside shutdown)
                    self._checkpoint()
            finally:
                self._lock.release()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self.setup()
        assert self._con is not None
        return self._con

    # -- what WarehouseSink needs --------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Every statement runs here: this frame's globals (this module's) are where DuckDB's
        # replacement scan finds the frames `_staged` holds.
        return self.con.execute(sql, params).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextmanager
    def _staged(self, table: str, df: pl.DataFrame) -> Iterator[str]:
        """``df`` under a name the statements of the block can read it by, as a module global
        that DuckDB's replacement scan finds from ``_rows`` (it looks a name that is no table up
        among the callers' variables). Registering a view and dropping it again costs ≈1 ms per
        table and write, half of a small INSERT; the replacement scan reads the same Arrow
        table without touching the catalog. The name is this sink's and this block's own.

        Strings go over as Arrow string views, as polars holds them (``to_arrow()``'s default
        copies them into ``large_string`` first, which DuckDB then reads less cheaply too:
        measured ≈0.6 µs per event and write in all)."""
        name = f"_tidegate_staged_{id(self):x}_{next(_STAGE_IDS)}"
        globals()[name] = df.to_arrow(compat_level=pl.CompatLevel.newest())
        try:
            yield name
        finally:
            del globals()[name]


def _out_of_memory(e: duckdb.Error) -> bool:
    """DuckDB ran out of its memory limit: an OutOfMemoryException, or a commit that could not
    get a block (raised as a TransactionException)."""
    text = str(e)
    return (isinstance(e, duckdb.OutOfMemoryException) or "failed to pin block" in text
            or "could not allocate block" in text)
