"""Stage `govern`: one call into the Rust core per batch.

The core checks each event (object, known type, identity), computes its idempotency key and
lays it out as warehouse rows; this module turns the core's buffers into polars frames. Nothing
here loops per event.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from .. import _core, metrics
from ..config import Config, DestinationPii
from ..errors import ConfigError
from ..plans import load_plan
from .decode import DecodedBatch

__all__ = ["GovernedBatch", "govern", "build_policy", "POLARS_TYPES", "STATE_TABLES", "arrow_array"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "datetime": pl.Int64(),  # microseconds from the core, cast below
}

# How the core's column buffers read as Arrow arrays (strings: i64 offsets).
ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.large_string(),
    "string_view": pa.string_view(),  # how the core lends string columns (zero-copy into polars)
    "datetime": pa.timestamp("us", tz="UTC"),
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
    duplicates: int = 0
    keys: bytes = b""

    # The decoded messages it came from, for a destination that needs its own PII pass.
    source: DecodedBatch | None = None
    # (hour, source_id, event, events, late): which hourly aggregates this batch touches.
    hourly_counts: pl.DataFrame = field(default_factory=lambda: hourly_counts(None))

    @property
    def empty(self) -> bool:
        return not self.tables and self.discards.is_empty() and self.rejected.is_empty()


def _frame(ndjson: bytes, schema: dict[str, pl.DataType] | dict[str, type[pl.DataType]], datetimes: list[str]) -> pl.DataFrame:
    if not ndjson:
        df = pl.DataFrame(schema=schema)
    else:
        df = pl.read_ndjson(io.BytesIO(ndjson), schema=schema)
    return df.with_columns(pl.col(c).cast(pl.Datetime("us", "UTC")) for c in datetimes)


def arrow_array(dtype: pa.DataType, rows: int, validity: _core.Buffer | None, values: _core.Buffer,
                data: _core.Buffer | None = None) -> pa.Array:
    """One column the core lends as Arrow buffers (validity bitmap or None, values or string
    offsets, string bytes) as an Arrow array, without copying them."""
    return pa.Array.from_buffers(dtype, rows, [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values),
                                               *([] if data is None else [pa.py_buffer(data)])])


def _table_frame(columns: list[tuple[str, str]], buffers: list[tuple[_core.Buffer | None, _core.Buffer, _core.Buffer | None]],
                 rows: int) -> pl.DataFrame:
    """A table of the core's result as a frame: its columns arrive as Arrow buffers the core
    owns (no copy), so this is one array per column and no parsing."""
    arrays = [arrow_array(ARROW_TYPES[kind], rows, validity, values, data)
              for (_, kind), (validity, values, data) in zip(columns, buffers, strict=True)]
    df = pl.from_arrow(pa.Table.from_arrays(arrays, names=[name for name, _ in columns]))
    assert isinstance(df, pl.DataFrame)
    return df


# Tables keyed by `id` that hold the latest state (upserted, newest wins) rather than one row per
# event: they are not event streams for outbound sinks, and not partitioned by event date.
STATE_TABLES = ("users", "accounts", "identity_map")

# The table every event of a type lands in (a named track also fills its own table).
EVENT_TYPE_TABLES = {"track": "tracks", "identify": "identifies", "page": "pages", "screen": "screens",
                     "group": "groups", "alias": "aliases"}

HOURLY_SCHEMA = {"hour": pl.Datetime("us", "UTC"), "source_id": pl.String, "event": pl.String,
                 "events": pl.UInt32, "late": pl.Boolean}


def hourly_counts(tracks: pl.DataFrame | None) -> pl.DataFrame:
    """Track events of the batch per hour (of event time), source and event name, and whether
    any of them arrived late: the keys of the `event_counts_hourly` aggregate to refresh."""
    if tracks is None or tracks.is_empty():
        return pl.DataFrame(schema=HOURLY_SCHEMA)
    late = pl.col("late") if "late" in tracks.columns else pl.lit(False)
    return (
        tracks.group_by(
            pl.col("timestamp").dt.truncate("1h").alias("hour"),
            pl.col("context_source_id").alias("source_id"),
            pl.col("event_text").alias("event"),
        )
        .agg(pl.len().cast(pl.UInt32).alias("events"), late.any().alias("late"))
        .cast(HOURLY_SCHEMA)  # type: ignore[arg-type]
    )


def build_policy(cfg: Config, pii_actions: DestinationPii | None = None, *, key: str = "pii.actions") -> _core.Governance:
    """Compile the config's tracking plans and PII policy once; raise ConfigError naming the plan
    file or key at fault. Reads the plan files and the hash key's environment variable.
    ``pii_actions`` replaces the workspace's PII actions (a destination's own ``pii``, whose
    config key is ``key``)."""
    try:
        plans = [(plan_id, load_plan(plan.path, plan_id)) for plan_id, plan in cfg.plans.items()]
    except ConfigError as e:
        raise ConfigError(e.message, file=cfg.path, key=e.key) from None
    sources = [(name, s.tracking_plan, s.violations.dropped())
               for name, s in cfg.sources.items() if s.tracking_plan is not None]
    pii = None
    if cfg.pii.enabled:
        actions, default = (cfg.pii.actions, cfg.pii.default_action) if pii_actions is None else \
            (pii_actions.actions, pii_actions.default_action)
        secret = os.environ.get(cfg.pii.hash_key_env, "").encode()
        if ("hash" in actions.values() or default == "hash") and len(secret) < 16:
            raise ConfigError(f"PII action `hash` needs a secret of at least 16 bytes in ${cfg.pii.hash_key_env}; "
                              "set it (e.g. `openssl rand -hex 32`) or choose another action", file=cfg.path, key=key)
        keys = cfg.pii.sensitive_keys if cfg.pii.sensitive_keys is not None else list(_core.DEFAULT_SENSITIVE_KEYS)
        pii = (keys, sorted(actions.items()), default, secret)
    try:
        # The workspace pass keeps identifiers from redact/drop_field: the identity graph, `users`
        # and the regulations key on them (a destination's own pass takes who is who from it).
        return _core.Governance(plans, sources, pii, cfg.identity.lowercase_email_ids, keep_identifiers=pii_actions is None)
    except ConfigError as e:
        raise ConfigError(str(e), file=cfg.path) from None


def govern(decoded: DecodedBatch, *, config_version: str = "", policy: _core.Governance | None = None,
           destination: str | None = None) -> GovernedBatch:
    """Run the Rust core over a decoded batch. ``destination`` marks an extra pass with that
    destination's own PII actions: it records only that destination's PII metrics."""
    started = time.perf_counter()
    result = _core.process_batch(decoded.messages, [("tidegate_config_version", config_version or None)], policy)
    batch = GovernedBatch(events_in=result.events_in, accepted=result.accepted, keys=result.keys,
                          duplicates=result.duplicates)
    # Event tables arrive in event-time order (the reconcile stage's promise for events within
    # the allowed lateness): the core orders their rows by `timestamp`.
    for name, columns, buffers, count in result.tables:
        batch.tables[name] = _table_frame(columns, buffers, count)
    batch.hourly_counts = hourly_counts(batch.tables.get("tracks"))
    batch.discards = _frame(result.discards, DISCARDS_SCHEMA, ["received_at"])
    batch.rejected = _frame(result.rejected, REJECTED_SCHEMA, ["received_at"])
    batch.source = decoded
    if destination is not None:
        for cls, action, n in result.pii_counts:
            metrics.policy.pii_destination_actions.labels(destination, cls, action).inc(n)
        return batch
    metrics.pipeline.events.labels("govern", "accepted").inc(result.accepted)
    metrics.pipeline.events.labels("dedupe", "duplicate").inc(result.duplicates)
    metrics.pipeline.events.labels("reconcile", "late").inc(result.late)
    for reason, n in result.rejected_reasons.items():
        metrics.pipeline.events.labels("govern", reason).inc(n)
    for source, kind, action, n in result.violation_counts:
        metrics.policy.violations.labels(source, kind, action).inc(n)
    for cls, action, n in result.pii_counts:
        metrics.policy.pii_actions.labels(cls, action).inc(n)
    metrics.pipeline.batch_events.observe(result.events_in)
    metrics.pipeline.stage_seconds.labels("govern").observe(time.perf_counter() - started)
    return batch
