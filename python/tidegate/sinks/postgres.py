"""PostgreSQL warehouse sink: the DuckDB layout and semantics (see :mod:`.warehouse`).

Each table's rows are COPYed (CSV) into a temporary table and moved with ``INSERT ... ON CONFLICT
(id) DO NOTHING`` (``users``: ``DO UPDATE``), all of a batch in one transaction. When the server
cannot be reached the batch fails with :class:`DeliveryError` (the pipeline backs off and re-reads
it, nothing is lost) and the next write connects again.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import polars as pl
import psycopg

from ..config import PostgresDestination
from ..errors import DeliveryError
from .warehouse import Dialect, WarehouseSink, quote

__all__ = ["PostgresSink", "POSTGRES"]

log = logging.getLogger("tidegate.sinks.postgres")

POSTGRES = Dialect(
    types={
        pl.Boolean: "boolean",
        pl.Int64: "bigint",
        pl.Float64: "double precision",
        pl.String: "text",
        pl.Datetime: "timestamptz",
    },
    polars_of={
        "boolean": pl.Boolean(), "bigint": pl.Int64(), "double precision": pl.Float64(),
        "text": pl.String(), "character varying": pl.String(),
        "timestamp with time zone": pl.Datetime("us", "UTC"), "timestamp without time zone": pl.Datetime("us"),
        "integer": pl.Int32(), "smallint": pl.Int16(), "real": pl.Float32(),
    },
    text="text",
    param="%s",
)
_STAGE = "_tidegate_batch"


class PostgresSink(WarehouseSink):
    dialect = POSTGRES

    def __init__(self, name: str, cfg: PostgresDestination):
        super().__init__(name, cfg.schema)
        self.cfg = cfg
        self._con: psycopg.Connection[tuple[Any, ...]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        # A server that is down at start must not stop the pipeline: the first write retries,
        # and /readyz says not ready until then.
        try:
            with self._lock:
                self._connect()
        except DeliveryError as e:
            log.warning("%s; retrying with the first batch", e)

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def ready(self) -> bool:
        return self._con is not None and not self._con.closed

    @property
    def con(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._con is None or self._con.closed:
            self._connect()
        assert self._con is not None
        return self._con

    def _connect(self) -> None:
        self._disconnect()
        try:
            self._con = psycopg.connect(self.cfg.dsn, autocommit=True, connect_timeout=self.cfg.connect_timeout_s,
                                        application_name=f"tidegate:{self.name}")
            self._create_layout()
        except psycopg.OperationalError as e:
            self._disconnect()
            raise self._unreachable(e) from None

    def _disconnect(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._columns = None

    def _unreachable(self, e: Exception) -> DeliveryError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return DeliveryError(
            f"destination {self.name!r}: PostgreSQL unreachable ({reason}); "
            "check that the server runs and the destination's dsn"
        )

    # -- what WarehouseSink needs --------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.con.execute(sql, params)  # type: ignore[call-overload]
        return cur.fetchall() if cur.description is not None else []

    def _insert_rows(self, sql: str, params: Sequence[Any]) -> int | None:
        return self.con.execute(sql, params).rowcount  # type: ignore[call-overload]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self.con.transaction():
                yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if self._con is None or self._con.broken or self._con.closed:
                self._disconnect()
                raise self._unreachable(e) from None
            raise

    @contextmanager
    def _staged(self, table: str, df: pl.DataFrame) -> Iterator[str]:
        # Created inside the batch's transaction: a failed batch's rollback removes it too.
        if self._columns is not None and table in self._columns:
            # The stored table's own column types, so COPY parses values as the table takes them
            # (also for types the layout does not create, such as jsonb or numeric).
            cols = ", ".join(quote(c) for c in df.columns)
            self._rows(f"CREATE TEMP TABLE {_STAGE} AS SELECT {cols} FROM {quote(self.schema)}.{quote(table)} WITH NO DATA")
        else:  # a frame that is not a table's rows (e.g. keys to look up)
            cols = ", ".join(f"{quote(c)} {self.dialect.sql_type(d)}" for c, d in df.schema.items())
            self._rows(f"CREATE TEMP TABLE {_STAGE} ({cols})")
        self._copy(df)
        yield _STAGE
        self._rows(f"DROP TABLE {_STAGE}")

    def _copy(self, df: pl.DataFrame) -> None:
        # Text cannot hold NUL in PostgreSQL; it is the one character replaced rather than stored.
        df = df.with_columns(pl.col(pl.String).str.replace_all("\x00", "\ufffd", literal=True))
        # Strings are quoted and NULLs are not, so COPY tells an empty string from NULL.
        data = df.write_csv(include_header=False, quote_style="non_numeric", datetime_format="%Y-%m-%dT%H:%M:%S%.6f%z")
        cols = ", ".join(quote(c) for c in df.columns)
        with self.con.cursor().copy(f"COPY {_STAGE} ({cols}) FROM STDIN (FORMAT csv)") as copy:  # type: ignore[arg-type]
            copy.write(data)
