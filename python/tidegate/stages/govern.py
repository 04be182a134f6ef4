"""Stage `govern`: one call into the Rust core per batch.

The core checks each event (object, known type, identity), computes its idempotency key and
lays it out as warehouse rows; this module turns the core's buffers into polars frames. Nothing
here loops per event.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import polars as pl

from .. import _core, metrics
from .decode import DecodedBatch

__all__ = ["GovernedBatch", "govern", "POLARS_TYPES"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "datetime": pl.Int64(),  # microseconds from the core, cast below
}

DISCARDS_SCHEMA = {
    "table_name": pl.String, "row_id": pl.String, "column_name": pl.String,
    "column_value": pl.String, "reason": pl.String, "received_at": pl.Int64,
}
REJECTED_SCHEMA = {
    "id": pl.String, "source_id": pl.String, "reason": pl.String, "detail": pl.String,
    "event": pl.String, "received_at": pl.Int64,
}


@dataclass
class GovernedBatch:
    """What every destination receives: rows per table plus what could not be stored."""

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    discards: pl.DataFrame = field(default_factory=lambda: _frame(b"", DISCARDS_SCHEMA, ["received_at"]))
    rejected: pl.DataFrame = field(default_factory=lambda: _frame(b"", REJECTED_SCHEMA, ["received_at"]))
    events_in: int = 0
    accepted: int = 0
    keys: bytes = b""

    @property
    def empty(self) -> bool:
        return not self.tables and self.discards.is_empty() and self.rejected.is_empty()


def _frame(ndjson: bytes, schema: dict[str, pl.DataType] | dict[str, type[pl.DataType]], datetimes: list[str]) -> pl.DataFrame:
    if not ndjson:
        df = pl.DataFrame(schema=schema)
    else:
        df = pl.read_ndjson(io.BytesIO(ndjson), schema=schema)
    return df.with_columns(pl.col(c).cast(pl.Datetime("us", "UTC")) for c in datetimes)


def govern(decoded: DecodedBatch, *, config_version: str = "") -> GovernedBatch:
    started = time.perf_counter()
    result = _core.process_batch(decoded.messages, [("tidegate_config_version", config_version or None)])
    batch = GovernedBatch(events_in=result.events_in, accepted=result.accepted, keys=result.keys)
    for name, columns, rows, _count in result.tables:
        schema = {c: POLARS_TYPES[t] for c, t in columns}
        batch.tables[name] = _frame(rows, schema, [c for c, t in columns if t == "datetime"])
    batch.discards = _frame(result.discards, DISCARDS_SCHEMA, ["received_at"])
    batch.rejected = _frame(result.rejected, REJECTED_SCHEMA, ["received_at"])
    metrics.pipeline.events.labels("govern", "accepted").inc(result.accepted)
    for reason, n in result.rejected_reasons.items():
        metrics.pipeline.events.labels("govern", reason).inc(n)
    metrics.pipeline.batch_events.observe(result.events_in)
    metrics.pipeline.stage_seconds.labels("govern").observe(time.perf_counter() - started)
    return batch
