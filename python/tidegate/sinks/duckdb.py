"""DuckDB warehouse sink (the embedded default).

Segment/RudderStack layout, one table per event type plus one per track event name. Tables are
created on first sight and evolve by adding columns. Writes are idempotent: every event table
has ``id`` as its primary key and rows are inserted with ``INSERT OR IGNORE``, so a redelivered
batch adds nothing; ``users`` is upserted (newest non-null trait wins). A value whose type
conflicts with its column's is set NULL in the row and recorded in ``discards``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb
import polars as pl

from ..config import DuckDBDestination
from ..errors import DeliveryError
from ..stages.govern import GovernedBatch
from .base import Sink

__all__ = ["DuckDBSink", "DUCKDB_TYPES"]

DUCKDB_TYPES: dict[type[pl.DataType], str] = {
    pl.Boolean: "BOOLEAN",
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
    pl.String: "VARCHAR",
    pl.Datetime: "TIMESTAMPTZ",
}
_POLARS_OF = {
    "BOOLEAN": pl.Boolean(), "BIGINT": pl.Int64(), "DOUBLE": pl.Float64(), "VARCHAR": pl.String(),
    "TIMESTAMP WITH TIME ZONE": pl.Datetime("us", "UTC"), "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
    "INTEGER": pl.Int32(), "FLOAT": pl.Float32(), "TIMESTAMP": pl.Datetime("us"),
}

DISCARDS_DDL = """CREATE TABLE IF NOT EXISTS {s}.discards (
    table_name VARCHAR, row_id VARCHAR, column_name VARCHAR, column_value VARCHAR,
    reason VARCHAR, received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ,
    PRIMARY KEY (table_name, row_id, column_name))"""
REJECTED_DDL = """CREATE TABLE IF NOT EXISTS {s}.discarded_events (
    id VARCHAR PRIMARY KEY, source_id VARCHAR, reason VARCHAR, detail VARCHAR, event VARCHAR,
    received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ)"""


def _sql_type(dtype: pl.DataType) -> str:
    return DUCKDB_TYPES.get(type(dtype), "VARCHAR")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBSink(Sink):
    def __init__(self, name: str, cfg: DuckDBDestination):
        super().__init__(name)
        self.cfg = cfg
        self.schema = cfg.schema
        self._con: duckdb.DuckDBPyConnection | None = None
        self._columns: dict[str, dict[str, str]] = {}
        # The pipeline writes from its own thread; `tidegate up` reads counts from another.
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        path = Path(self.cfg.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path))
        except duckdb.IOException as e:
            raise DeliveryError(
                f"cannot open DuckDB file {path}: {e}. Another process may hold it; stop it or use another path"
            ) from None
        s = _q(self.schema)
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        self._con.execute(DISCARDS_DDL.format(s=s))
        self._con.execute(REJECTED_DDL.format(s=s))
        self._load_columns()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def ready(self) -> bool:
        return self._con is not None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self.setup()
        assert self._con is not None
        return self._con

    def _load_columns(self) -> None:
        rows = self.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ?",
            [self.schema],
        ).fetchall()
        self._columns = {}
        for table, column, dtype in rows:
            self._columns.setdefault(table, {})[column] = dtype

    # -- writing -----------------------------------------------------------------------------
    def write(self, batch: GovernedBatch) -> None:
        with self._lock:
            con = self.con
            now = pl.lit(time.time_ns() // 1000).cast(pl.Datetime("us", "UTC"))
            con.execute("BEGIN TRANSACTION")
            try:
                discards = [batch.discards]
                for table, df in batch.tables.items():
                    df, conflicts = self._fit(table, df.with_columns(now.alias("uuid_ts")))
                    discards.extend(conflicts)
                    self._insert(table, df, upsert=(table == "users"))
                all_discards = pl.concat(discards, how="diagonal_relaxed") if discards else batch.discards
                if all_discards.height:
                    self._insert("discards", all_discards.with_columns(now.alias("uuid_ts")), upsert=False)
                if batch.rejected.height:
                    self._insert("discarded_events", batch.rejected.with_columns(now.alias("uuid_ts")), upsert=False)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                self._load_columns()  # DDL inside the failed transaction was rolled back too
                raise

    def _fit(self, table: str, df: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        """Create or widen the table for ``df``; cast ``df`` to the table's column types, turning
        values that do not fit into ``discards`` rows."""
        existing = self._columns.get(table)
        s, t = _q(self.schema), _q(table)
        if existing is None:
            cols = ", ".join(f"{_q(c)} {_sql_type(d)}" for c, d in df.schema.items())
            key = ", PRIMARY KEY (id)" if "id" in df.columns else ""
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {s}.{t} ({cols}{key})")
            self._columns[table] = {c: _sql_type(d) for c, d in df.schema.items()}
            return df, []
        conflicts: list[pl.DataFrame] = []
        casts = []
        for column, dtype in df.schema.items():
            have = existing.get(column)
            if have is None:
                self.con.execute(f"ALTER TABLE {s}.{t} ADD COLUMN {_q(column)} {_sql_type(dtype)}")
                existing[column] = _sql_type(dtype)
                continue
            target = _POLARS_OF.get(have)
            if target is None or target == dtype:
                continue
            casted = df[column].cast(target, strict=False)
            failed = df[column].is_not_null() & casted.is_null()
            if failed.any():
                bad = df.filter(failed)
                conflicts.append(pl.DataFrame({
                    "table_name": table,
                    "row_id": bad["id"].cast(pl.String) if "id" in bad.columns else pl.Series([None] * bad.height, dtype=pl.String),
                    "column_name": column,
                    "column_value": bad[column].cast(pl.String),
                    "reason": f"incompatible schema conversion from {dtype} to {have}",
                    "received_at": bad["received_at"] if "received_at" in bad.columns else None,
                }))
            casts.append(casted.alias(column))
        return (df.with_columns(casts) if casts else df), conflicts

    def _insert(self, table: str, df: pl.DataFrame, *, upsert: bool) -> None:
        if "id" in df.columns:
            df = _newest_per_id(df) if upsert else df.unique(subset="id", keep="first", maintain_order=True)
        s, t = _q(self.schema), _q(table)
        self.con.register("_tidegate_batch", df)
        try:
            if upsert:
                updates = ", ".join(
                    f"{_q(c)} = CASE WHEN excluded.received_at >= {t}.received_at OR {t}.received_at IS NULL "
                    f"THEN coalesce(excluded.{_q(c)}, {t}.{_q(c)}) ELSE coalesce({t}.{_q(c)}, excluded.{_q(c)}) END"
                    for c in df.columns if c != "id"
                )
                self.con.execute(f"INSERT INTO {s}.{t} BY NAME SELECT * FROM _tidegate_batch "
                                 f"ON CONFLICT (id) DO UPDATE SET {updates}")
            else:
                self.con.execute(f"INSERT OR IGNORE INTO {s}.{t} BY NAME SELECT * FROM _tidegate_batch")
        finally:
            self.con.unregister("_tidegate_batch")

    # -- reading (for `tidegate up` and tests) ------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        with self._lock:
            tables = [r[0] for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
                [self.schema]).fetchall()]
            return {t: self.con.execute(f"SELECT count(*) FROM {_q(self.schema)}.{_q(t)}").fetchone()[0] for t in tables}


def _newest_per_id(df: pl.DataFrame) -> pl.DataFrame:
    """One row per id: for each column the newest non-null value (``users`` merges traits)."""
    if "received_at" in df.columns:
        df = df.sort("received_at", nulls_last=False)
    return df.group_by("id", maintain_order=True).agg(pl.all().drop_nulls().last())
