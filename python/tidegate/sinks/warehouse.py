"""What the SQL warehouse sinks (DuckDB, PostgreSQL) share.

Both keep the Segment/RudderStack layout and the same semantics; only connecting, transactions
and how a frame is handed to the database differ, and those are what a subclass of
:class:`WarehouseSink` supplies. The pure pieces (:func:`conform`, :func:`rows_to_store`) are
also used by the Delta Lake sink.

One batch is one transaction: tables are created or widened (``ADD COLUMN``) for the batch's
columns, every event row is inserted unless its ``id`` is already there (a redelivered batch adds
nothing; :attr:`WarehouseSink.id_index` says how each database finds stored ids), ``users`` is
upserted (the newest non-null trait wins, older data arriving later never overwrites newer), and
a value whose type conflicts with its column's is stored as NULL and recorded in ``discards``.
"""

from __future__ import annotations

import abc
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Mapping, Sequence

import polars as pl

from .. import metrics
from ..stages.govern import EVENT_TYPE_TABLES, STATE_TABLES, GovernedBatch
from . import aggregates
from .base import Sink

__all__ = ["Dialect", "KEYS", "WarehouseSink", "changing_columns", "conform", "fitted", "rows_to_store", "newest_per_id",
           "quote", "store_batch", "updated_only", "upsert_values"]

DISCARDS_DDL = """CREATE TABLE IF NOT EXISTS {s}.discards (
    table_name VARCHAR, row_id VARCHAR, column_name VARCHAR, column_value VARCHAR,
    reason VARCHAR, received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ,
    PRIMARY KEY (table_name, row_id, column_name))"""
REJECTED_DDL = """CREATE TABLE IF NOT EXISTS {s}.discarded_events (
    id VARCHAR PRIMARY KEY, source_id VARCHAR, reason VARCHAR, detail VARCHAR, event VARCHAR,
    received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ)"""


@dataclass(frozen=True)
class Dialect:
    """How a database names the column types the layout uses."""

    types: Mapping[type[pl.DataType], str]
    """polars type -> column type used when creating a column."""
    polars_of: Mapping[str, pl.DataType]
    """``information_schema.columns.data_type`` -> the polars type values are cast to."""
    text: str
    """Column type of anything else (nested values arrive as JSON text)."""
    param: str
    """Placeholder of a query parameter."""

    def sql_type(self, dtype: pl.DataType) -> str:
        return self.types.get(type(dtype), self.text)


def quote(name: str) -> str:
    """A quoted SQL identifier.

    >>> print(quote('a"b'))
    "a""b"
    """
    return '"' + name.replace('"', '""') + '"'


def conform(table: str, df: pl.DataFrame, targets: Mapping[str, tuple[pl.DataType, str]]) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Cast ``df``'s columns to the stored types ``targets`` (column -> (polars type, type name
    for the reason)); a value that does not fit becomes NULL and one ``discards`` row. Columns
    not in ``targets`` are left as they are. What fits is said by :func:`fitted`.

    >>> df = pl.DataFrame({"id": ["a", "b", "c"], "total": ["1.5", "a lot", None]})
    >>> fitted_df, (d,) = conform("orders", df, {"total": (pl.Float64(), "DOUBLE")})
    >>> fitted_df["total"].to_list(), d["row_id"].to_list(), d["column_value"].to_list()
    ([1.5, None, None], ['b'], ['a lot'])
    """
    conflicts: list[pl.DataFrame] = []
    casts = []
    for column, dtype in df.schema.items():
        if column not in targets:
            continue
        target, label = targets[column]
        if target == dtype:
            continue
        casted = fitted(df[column], target)
        failed = df[column].is_not_null() & casted.is_null()
        if failed.any():
            bad = df.filter(failed)
            conflicts.append(pl.DataFrame({
                "table_name": table,
                "row_id": bad["id"].cast(pl.String) if "id" in bad.columns else pl.Series([None] * bad.height, dtype=pl.String),
                "column_name": column,
                "column_value": bad[column].cast(pl.String),
                "reason": f"incompatible schema conversion from {dtype} to {label}",
                "received_at": bad["received_at"] if "received_at" in bad.columns else None,
            }))
        casts.append(casted.alias(column))
    return (df.with_columns(casts) if casts else df), conflicts


def fitted(values: pl.Series, target: pl.DataType) -> pl.Series:
    """``values`` as the stored type ``target``, NULL where a value does not fit it exactly.

    Anything fits a text column; integers fit a float column; a float fits an integer column only
    when it is a whole number in range (``2.7`` into BIGINT is a conflict, not ``2``); booleans
    and numbers never stand for each other; text fits a number, boolean (``true``/``false``) or
    timestamp column when it spells one (see `TIME_FORMATS`). Never raises: a conversion polars
    cannot do is a conflict for every value.

    >>> fitted(pl.Series([2.0, 2.7, 1e30]), pl.Int64()).to_list()
    [2, None, None]
    >>> fitted(pl.Series([True, False]), pl.Int64()).to_list(), fitted(pl.Series([1, 5]), pl.Boolean()).to_list()
    ([None, None], [None, None])
    >>> fitted(pl.Series(["TRUE", "false", "yes"]), pl.Boolean()).to_list()
    [True, False, None]
    """
    source = values.dtype
    nothing = pl.Series(values.name, [None] * values.len(), dtype=target)
    if target == pl.String:
        return values.cast(pl.String)
    if (source == pl.Boolean) != (target == pl.Boolean) and (source.is_numeric() or target.is_numeric()):
        return nothing
    if source.is_temporal() != target.is_temporal() and source != pl.String and source != pl.Null:
        return nothing
    try:
        if target == pl.Boolean and source == pl.String:
            lower = values.str.to_lowercase()
            return pl.select(pl.when(lower == "true").then(True).when(lower == "false").then(False)
                             .otherwise(None).alias(values.name)).to_series()
        if isinstance(target, pl.Datetime) and source == pl.String:
            return _times(values, target)
        casted = values.cast(target, strict=False)
        if target.is_integer() and source.is_float():
            return casted.set(casted.cast(source) != values, None)  # type: ignore[arg-type]
        return casted
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
        return nothing


# How text spells a time for a timestamp column: an ISO 8601 date, or date and time ('T' or a
# space between; seconds and their fraction optional), with an offset ('Z', '+05:00') or without,
# which means UTC as every time the layout stores does; digits below a microsecond are cut, as
# the core cuts them from event times. Each value is read by the format it matches: polars' own
# inference reads a whole column by the format of its first value.
TIME_FORMATS = tuple(f"%Y-%m-%d{sep}{time}{zone}" for zone in ("%#z", "") for sep in ("T", " ")
                     for time in ("%H:%M:%S%.f", "%H:%M")) + ("%Y-%m-%d",)


def _times(text: pl.Series, target: pl.Datetime) -> pl.Series:
    """``text`` read by `TIME_FORMATS` as instants, then as ``target`` stores them: a column
    without a time zone takes the UTC time, as it does from a time column (DuckDB would shift a
    zoned value by its session's time zone)."""
    utc = pl.select(pl.coalesce(pl.lit(text).str.to_datetime(f, time_unit=target.time_unit, time_zone="UTC", strict=False)
                                for f in TIME_FORMATS)).to_series().alias(text.name)
    return utc.dt.replace_time_zone(None) if target.time_zone is None else utc.dt.convert_time_zone(target.time_zone)


# The columns that identify a row of a table, where that is not its `id`.
KEYS = {"discards": ("table_name", "row_id", "column_name")}


def key_of(table: str) -> tuple[str, ...]:
    return KEYS.get(table, ("id",))


def updated_only(table: str, stored: str) -> str | None:
    """The SQL condition on a stored row (``stored`` names it) under which an upsert into
    ``table`` updates it; ``None``: always. A ``discards`` row follows the row it is about: the
    newest for a state table's (upserted, the newest version winning), the first for an event's
    (stored once, by its first write). So one statement stores a write's discards of both kinds
    (measured: a second one per write made DuckDB writes 6% dearer)."""
    if table != "discards":
        return None
    tables = ", ".join(f"'{t}'" for t in STATE_TABLES)
    return f"{stored}.table_name IN ({tables})"


def newest_per_id(df: pl.DataFrame, key: Sequence[str] = ("id",)) -> pl.DataFrame:
    """One row per id (``key``): for each column the newest non-null value (``users`` merges traits)."""
    if "received_at" in df.columns:
        # Stable: of two versions received at the same moment the later one wins, as it does
        # when they are written one after the other.
        df = df.sort("received_at", nulls_last=False, maintain_order=True)
    return df.group_by(list(key), maintain_order=True).agg(pl.all().drop_nulls().last())


def rows_to_store(df: pl.DataFrame, *, upsert: bool, key: Sequence[str] = ("id",)) -> pl.DataFrame:
    """At most one row per id (``key``), as one INSERT can take: the newest merge for an upsert,
    else the first seen (later copies of an event are redeliveries)."""
    if not set(key) <= set(df.columns):
        return df
    # The usual case, nothing to merge, on the column alone where the key is one: a frame's
    # `n_unique(subset=...)` cost 7% of the deliver thread in a drain (py-spy), the column's little.
    unique = df[key[0]].n_unique() if len(key) == 1 else df.select(pl.struct(list(key)).n_unique()).item()
    if unique == df.height:
        return df
    return newest_per_id(df, key) if upsert else df.unique(subset=list(key), keep="first", maintain_order=True)


def upsert_values(table: str, columns: Sequence[str], *, new: str = "excluded") -> dict[str, str]:
    """Per column, the value a ``users`` upsert stores: newer data fills and overrides, older
    data only fills what is still NULL. ``table`` and ``new`` name the stored and the incoming row."""
    t = quote(table)
    return {
        c: f"CASE WHEN {new}.received_at >= {t}.received_at OR {t}.received_at IS NULL "
           f"THEN coalesce({new}.{quote(c)}, {t}.{quote(c)}) ELSE coalesce({t}.{quote(c)}, {new}.{quote(c)}) END"
        for c in columns if c != "id"
    }


# Columns of a state table that its id determines: an upsert never changes them.
FIXED_BY_ID = {"identity_map": ("node_kind", "node_id")}


def changing_columns(table: str, df: pl.DataFrame) -> list[str]:
    """The columns an upsert of ``df`` into ``table`` can change: not the key, not what the key
    determines, and not a column that is NULL in every row (`upsert_values` keeps the stored
    value for a NULL). Each column left out is one fewer to update per stored row, which is what
    an upsert costs in DuckDB.

    >>> changing_columns("users", pl.DataFrame({"id": ["u"], "plan": ["pro"], "city": [None]}))
    ['plan']
    """
    fixed = key_of(table) + FIXED_BY_ID.get(table, ())
    return [c for c in df.columns if c not in fixed and df[c].null_count() < df.height]


def _stamped(df: pl.DataFrame, now_us: int) -> pl.DataFrame:
    """``df`` with ``uuid_ts`` set to ``now_us`` on every row (appended as a column: no query)."""
    stamp = pl.Series("uuid_ts", [now_us], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")).new_from_index(0, df.height)
    return (df.drop("uuid_ts") if "uuid_ts" in df.columns else df).hstack([stamp])


def store_batch(
    batch: GovernedBatch,
    fit: Callable[[str, pl.DataFrame], tuple[pl.DataFrame, list[pl.DataFrame]]],
    insert: Callable[[str, pl.DataFrame, bool], None],
) -> int:
    """The layout's write order: every table fitted (``fit`` returns the rows as they can be
    stored plus ``discards`` rows) and inserted (``users`` upserted), then ``discards`` and
    ``discarded_events``. A discard says why a stored row lacks a value, so it follows that row
    (see `updated_only`). Each row gets ``uuid_ts``, when it was stored. Returns the number of
    values the fitting discarded (conflicts with stored column types; the batch's own discards,
    which `deliver` counts, are not among them)."""
    now_us = time.time_ns() // 1000
    discards = [batch.discards]
    for table, df in batch.tables.items():
        df, conflicts = fit(table, _stamped(df, now_us))
        discards.extend(conflicts)
        insert(table, df, table in STATE_TABLES)
    found = pl.concat(discards, how="diagonal_relaxed")
    of_state = found.height > 0 and bool(found["table_name"].is_in(STATE_TABLES).any())
    for table, df, upsert in (("discards", found, of_state), ("discarded_events", batch.rejected, False)):
        if df.height:
            # Fitted too, so that a column added to these frames is added to their tables; their
            # values are text and times, which cannot conflict.
            df, _ = fit(table, _stamped(df, now_us))
            insert(table, df, upsert)
    return sum(d.height for d in discards[1:])


class WarehouseSink(Sink):
    """A SQL warehouse sink; a subclass connects and says how to run SQL and stage a frame."""

    dialect: Dialect

    def __init__(self, name: str, schema: str):
        super().__init__(name)
        self.schema = schema
        self._columns: dict[str, dict[str, str]] | None = None
        self._keyed: set[str] = set()  # tables with a primary key
        # The pipeline writes from its own thread; `tidegate up` reads counts from another.
        self._lock = threading.Lock()
        self._holding = False  # see `HOLDS_STATE`
        self._held: list[tuple[str, pl.DataFrame]] = []

    # -- what a database supplies ------------------------------------------------------------
    @abc.abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its result rows ([] for a statement without any)."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Commit what ran inside on success, roll it back on an exception."""

    @abc.abstractmethod
    def _staged(self, table: str, df: pl.DataFrame) -> AbstractContextManager[str]:
        """Make ``df`` readable by SQL for the duration; yield the name to select it from.
        ``table`` names the stored table the rows are for, or only what they are if none."""

    # -- shared ------------------------------------------------------------------------------
    def _create_layout(self) -> None:
        s = quote(self.schema)
        self._rows(f"CREATE SCHEMA IF NOT EXISTS {s}")
        self._rows(DISCARDS_DDL.format(s=s))
        self._rows(REJECTED_DDL.format(s=s))
        self._load_columns()

    def _load_columns(self) -> None:
        rows = self._rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = {self.dialect.param}",
            [self.schema],
        )
        columns: dict[str, dict[str, str]] = {}
        for table, column, dtype in rows:
            columns.setdefault(table, {})[column] = dtype
        self._keyed = {r[0] for r in self._rows(
            "SELECT table_name FROM information_schema.table_constraints "
            f"WHERE table_schema = {self.dialect.param} AND constraint_type = 'PRIMARY KEY'", [self.schema])}
        self._columns = columns

    # How event tables created here stay keyed by `id`, so that a re-read after a crash or a
    # backoff, or a replay, adds nothing. True: a primary key, and inserts skip stored ids with
    # ON CONFLICT (PostgreSQL, whose index lives on disk). False (DuckDB): no index, because DuckDB keeps a
    # primary key's index in memory for every stored row (measured: ≈150 bytes per event, the
    # pipeline's memory grew with the warehouse) and maintaining it cost ≈1.8 µs per row. An
    # insert then skips the ids stored with a `received_at` within `RECEIVED_MARGIN` of the
    # batch's own: a re-read or a replayed event carries the `receivedAt` it was first stored
    # with, and a scan restricted to that range reads only the recent row groups. A producer's
    # retry of an event (a new `receivedAt`) is the dedupe stage's to drop, within its window.
    # A table that has a primary key (`users`, or created by an earlier version) uses it.
    id_index = True
    RECEIVED_MARGIN = timedelta(seconds=1)

    # Whether the pipeline's writes keep the state tables' rows (`users`, `accounts`,
    # `identity_map`) back until its checkpoint, which upserts each table once for all its writes
    # (see `hold_state`). In DuckDB an upsert that updates stored rows costs little more for
    # 2,000 rows than for 100 (measured on a 147K-row `identity_map`: 60-70 ms per statement,
    # where inserting the same rows without updates takes 9 ms), so it is paid once per
    # checkpoint instead of once per write; the checkpoint then waits for a DuckDB write still
    # running. PostgreSQL updates rows through its index at a cost per row, and keeps writing
    # them at once.
    HOLDS_STATE = False

    def hold_state(self) -> None:
        self._holding = self.HOLDS_STATE

    def write(self, batch: GovernedBatch) -> None:
        with self._lock:
            held = [(t, df) for t, df in batch.tables.items() if t in STATE_TABLES and df.height] if self._holding else []
            if held:
                batch = replace(batch, tables={t: df for t, df in batch.tables.items() if t not in STATE_TABLES})
            self._store(batch)
            self._held.extend(held)  # only once the rest of the write is stored
            if held:
                metrics.sink.held_rows.labels(self.name).set(sum(df.height for _, df in self._held))

    def _store(self, batch: GovernedBatch) -> None:
        """One transaction: the batch's rows (see `store_batch`) and its hourly counts."""
        try:
            with self._transaction():
                if self._columns is None:
                    self._load_columns()
                self._tracks_stored = self._stored_track_ids(batch)  # before the batch's rows land
                hourly = self._new_hourly_counts(batch)
                conflicts = store_batch(batch, self._fit, self._insert)
                aggregates.apply_hourly_counts(hourly, self.schema, quote, self.dialect.param, self._rows,
                                               self._staged, time.time_ns() // 1000)
        except BaseException:
            self._columns = None  # DDL inside the failed transaction was rolled back too
            raise
        finally:
            self._tracks_stored = None
        metrics.sink.discards.labels(self.name).inc(conflicts)

    def checkpoint(self) -> None:
        """Upsert the rows the writes since the last checkpoint kept back, in one transaction:
        per table, consecutive writes' rows of the same columns as one statement (the newest
        version of an id wins, column by column, as one upsert after another would have it).
        On failure they stay kept (see `stop_holding`)."""
        if not self._held:
            # Without taking the lock: a sink that keeps nothing back (PostgreSQL) never makes
            # the checkpoint wait for a write of its that overran `delivery.write_timeout_s`.
            return
        with self._lock:
            if not self._held:
                return
            started = time.perf_counter()
            groups: dict[str, list[list[pl.DataFrame]]] = {}
            for table, df in self._held:
                runs = groups.setdefault(table, [])
                if runs and runs[-1][-1].schema == df.schema:
                    runs[-1].append(df)
                else:
                    runs.append([df])
            conflicts = 0
            try:
                with self._transaction():
                    if self._columns is None:
                        self._load_columns()
                    for table, runs in groups.items():
                        for run in runs:
                            conflicts += store_batch(GovernedBatch(tables={table: pl.concat(run, rechunk=False)}),
                                                     self._fit, self._insert)
            except BaseException:
                self._columns = None  # DDL inside the failed transaction was rolled back too
                raise
            metrics.sink.discards.labels(self.name).inc(conflicts)
            self._held = []
            metrics.sink.held_rows.labels(self.name).set(0)
            metrics.sink.checkpoint_seconds.labels(self.name).observe(time.perf_counter() - started)

    def stop_holding(self) -> None:
        with self._lock:
            self._holding = False
            self._held = []
            metrics.sink.held_rows.labels(self.name).set(0)

    def forget_held(self, user_id: str) -> None:
        """Drop the kept-back rows a deletion of ``user_id`` removes from the tables (see
        `regulations.delete_user_rows`: ``users`` by ``id``, ``identity_map`` by ``node_id`` and
        ``canonical_id``, others by ``user_id``), so that the next checkpoint does not store them
        again. Call with the sink's lock held."""
        def keep(table: str, df: pl.DataFrame) -> pl.DataFrame:
            columns = ("id",) if table == "users" else ("node_id", "canonical_id") if table == "identity_map" else ("user_id",)
            for column in columns:
                if column in df.columns:
                    df = df.filter(pl.col(column).cast(pl.String).ne_missing(user_id))
            return df
        self._held = [(t, keep(t, df)) for t, df in self._held]

    # Without an id index, which of a batch's track events are stored already is looked up once
    # per write, in `tracks`, and that answer serves `tracks`, its hourly counts and every track
    # event's own table: a track event's two rows are only ever written in one transaction. (Each
    # of them used to look its stored ids up itself: measured on 6,000-event writes into a
    # growing DuckDB file, the lookups cost 1.5-3.5 µs per event.)
    _tracks_stored: tuple[pl.Series, pl.Series] | None = None

    def _stored_track_ids(self, batch: GovernedBatch) -> tuple[pl.Series, pl.Series] | None:
        """(the ids of the batch's ``tracks`` rows, those of them stored already), or ``None``
        where the tables look stored ids up themselves (a primary key on ``tracks``)."""
        assert self._columns is not None
        tracks = batch.tables.get("tracks")
        if tracks is None or "id" not in tracks.columns or "tracks" not in self._columns or "tracks" in self._keyed:
            return None
        ids = tracks["id"]
        if tracks.is_empty():
            return ids, ids.clear()
        condition, params = self._stored_rows("tracks", tracks)
        with self._staged("tracks", tracks.select("id")) as source:
            stored = self._rows(f"SELECT b.id FROM {source} b WHERE EXISTS (SELECT 1 FROM {quote(self.schema)}.tracks s "
                                f"WHERE s.id = b.id AND {condition})", params)
        return ids, pl.Series("id", [r[0] for r in stored], dtype=ids.dtype)

    def _stored_from_tracks(self, table: str, df: pl.DataFrame) -> pl.Series | None:
        """The stored ids among ``df``'s, if the lookup in ``tracks`` answers for ``table``:
        ``tracks`` itself, or a track event's table whose ids are all the batch's tracks'."""
        if self._tracks_stored is None or "id" not in df.columns:
            return None
        ids, stored = self._tracks_stored
        if table == "tracks":
            return stored
        if table in EVENT_TYPE_TABLES.values() or table in STATE_TABLES or table in ("discards", "discarded_events"):
            return None
        return stored if df["id"].is_in(ids.implode()).all() else None

    def _new_hourly_counts(self, batch: GovernedBatch) -> pl.DataFrame:
        tracks = batch.tables.get("tracks")
        if tracks is None or tracks.is_empty():
            return pl.DataFrame()
        assert self._columns is not None
        if aggregates.HOURLY_TABLE not in self._columns:
            self._rows(aggregates.hourly_ddl(self.schema, quote))
            self._columns[aggregates.HOURLY_TABLE] = {}
        if self._tracks_stored is not None:
            stored_ids = self._tracks_stored[1]
            new = tracks.filter(~pl.col("id").is_in(stored_ids.implode())) if stored_ids.len() else tracks
            return aggregates.count_new_tracks(new, None, self.schema, quote, self._rows, self._staged)
        stored = self._stored_rows("tracks", tracks) if "tracks" in self._columns else None
        return aggregates.count_new_tracks(tracks, stored, self.schema, quote, self._rows, self._staged)

    def _stored_rows(self, table: str, df: pl.DataFrame) -> tuple[str, list[Any]]:
        """A condition on ``s``, the stored rows of ``table``, that every stored row a row of
        ``df`` may repeat meets, and its parameters: the `received_at` range (see `id_index`)."""
        if table in self._keyed or "received_at" not in df.columns or "received_at" not in (self._columns or {}).get(table, {}):
            return "TRUE", []
        received = df["received_at"]
        lo: Any = received.min()  # datetimes: the column is `received_at`
        hi: Any = received.max()
        if lo is None:
            return "s.received_at IS NULL", []
        p = self.dialect.param
        nulls = " OR s.received_at IS NULL" if received.null_count() else ""
        return f"(s.received_at BETWEEN {p} AND {p}{nulls})", [lo - self.RECEIVED_MARGIN, hi + self.RECEIVED_MARGIN]

    def _fit(self, table: str, df: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        """Create or widen the table for ``df``; cast ``df`` to the table's column types, turning
        values that do not fit into ``discards`` rows."""
        assert self._columns is not None
        existing = self._columns.get(table)
        s, t = quote(self.schema), quote(table)
        if existing is None:
            cols = ", ".join(f"{quote(c)} {self.dialect.sql_type(d)}" for c, d in df.schema.items())
            keyed = "id" in df.columns and (self.id_index or table in STATE_TABLES)
            self._rows(f"CREATE TABLE IF NOT EXISTS {s}.{t} ({cols}{', PRIMARY KEY (id)' if keyed else ''})")
            if keyed:
                self._keyed.add(table)
            self._columns[table] = {c: self.dialect.sql_type(d) for c, d in df.schema.items()}
            return df, []
        targets: dict[str, tuple[pl.DataType, str]] = {}
        for column, dtype in df.schema.items():
            have = existing.get(column)
            if have is None:
                # IF NOT EXISTS: another writer (a pipeline replica) may have added it meanwhile.
                self._rows(f"ALTER TABLE {s}.{t} ADD COLUMN IF NOT EXISTS {quote(column)} {self.dialect.sql_type(dtype)}")
                existing[column] = self.dialect.sql_type(dtype)
            elif have in self.dialect.polars_of:
                targets[column] = (self.dialect.polars_of[have], have)
        return conform(table, df, targets)

    def _insert(self, table: str, df: pl.DataFrame, upsert: bool) -> None:
        key = key_of(table)
        df = rows_to_store(df, upsert=upsert, key=key)
        rows = df.height
        cols = ", ".join(quote(c) for c in df.columns)
        target = f"{quote(self.schema)}.{quote(table)}"
        where = on_conflict = ""
        params: list[Any] = []
        if upsert:
            sets = ", ".join(f"{quote(c)} = {v}" for c, v in upsert_values(table, changing_columns(table, df)).items())
            only = updated_only(table, quote(table))
            on_conflict = (f"ON CONFLICT ({', '.join(map(quote, key))}) DO UPDATE SET {sets}" + (f" WHERE {only}" if only else "")
                           if sets else "ON CONFLICT DO NOTHING")
        elif table in self._keyed or "id" not in df.columns:
            on_conflict = "ON CONFLICT DO NOTHING" if table in self._keyed else ""
        elif (stored_ids := self._stored_from_tracks(table, df)) is not None:
            if stored_ids.len():
                df = df.filter(~pl.col("id").is_in(stored_ids.implode()))
        else:
            stored, params = self._stored_rows(table, df)
            where = f"WHERE NOT EXISTS (SELECT 1 FROM {target} s WHERE s.id = b.id AND {stored})"
        inserted: int | None = 0
        if df.height:
            with self._staged(table, df) as source:
                inserted = self._insert_rows(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} b {where} {on_conflict}", params)
        if inserted is not None and not upsert and inserted < rows:
            metrics.sink.rows_skipped.labels(self.name).inc(rows - inserted)

    def _insert_rows(self, sql: str, params: Sequence[Any]) -> int | None:
        """Run an INSERT; how many rows it inserted, if the database says."""
        rows = self._rows(sql, params)
        return int(rows[0][0]) if rows else None

    def vacuum(self) -> None:
        """Reclaim the storage of deleted rows now, where the database leaves it to this sink
        (DuckDB; PostgreSQL's autovacuum does it by itself)."""

    # -- reading (for `tidegate up` and tests) ------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        with self._lock:
            tables = [r[0] for r in self._rows(
                "SELECT table_name FROM information_schema.tables "
                f"WHERE table_schema = {self.dialect.param} ORDER BY table_name",
                [self.schema])]
            return {t: self._rows(f"SELECT count(*) FROM {quote(self.schema)}.{quote(t)}")[0][0] for t in tables}
