"""The hourly event-count aggregate the warehouse sinks maintain, with restatements.

``event_counts_hourly(hour, source_id, event, version, event_count, restated, updated_at)``
counts track events per hour of event time, source and event name. Events within the allowed
lateness update the current version in place (the hour is still open); a late event (beyond the
lateness, flagged by the reconcile stage) changes an hour already reported, so the new count is
written as a *new version* with ``restated = true`` and the old version stays: a consumer sees
that the number changed and by how much, instead of a silent shift.

Counts only grow by rows the batch really inserts (ids not yet in ``tracks``), so a re-delivered
or replayed batch leaves them unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager

import polars as pl

__all__ = ["HOURLY_TABLE", "hourly_ddl", "count_new_tracks", "apply_hourly_counts"]

HOURLY_TABLE = "event_counts_hourly"

Rows = Callable[..., list[tuple[Any, ...]]]
Staged = Callable[[str, pl.DataFrame], ContextManager[str]]
_GROUPS = {"hour_index": pl.Int64, "source_id": pl.String, "event": pl.String, "events": pl.Int64, "late": pl.Boolean}


def hourly_ddl(schema: str, quote: Callable[[str], str]) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{HOURLY_TABLE} ("
            "hour_start TIMESTAMPTZ NOT NULL, source_id VARCHAR NOT NULL, event VARCHAR NOT NULL, "
            "version INTEGER NOT NULL, event_count BIGINT NOT NULL, restated BOOLEAN NOT NULL, "
            "updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (hour_start, source_id, event, version))")


def count_new_tracks(tracks: pl.DataFrame, stored: tuple[str, list[Any]] | None, schema: str,
                     quote: Callable[[str], str], rows: Rows, staged: Staged) -> pl.DataFrame:
    """Per (hour, source, event): how many of ``tracks`` are new to the warehouse, and whether
    any new one is late. Run before the batch's rows are inserted. ``stored``: ``None`` if there
    is no ``tracks`` table yet, else a condition on its rows ``s`` (and its parameters) that the
    rows a batch row may repeat meet, as the insert itself looks them up."""
    keys = tracks.select(
        "id",
        (pl.col("timestamp").dt.epoch("s") // 3600).alias("hour_index"),
        pl.col("context_source_id").fill_null("").alias("source_id"),
        pl.col("event_text").fill_null("").alias("event"),
        (pl.col("late") if "late" in tracks.columns else pl.lit(False)).fill_null(False).alias("late"),
    ).unique(subset="id", keep="first")
    if stored is None:
        return keys.group_by("hour_index", "source_id", "event").agg(
            pl.len().cast(pl.Int64).alias("events"), pl.col("late").any().alias("late"))
    # Counted by the database: only the (few) groups come back, not a row per new event.
    condition, params = stored
    with staged("_tidegate_hourly_keys", keys) as src:
        groups = rows(f"SELECT b.hour_index, b.source_id, b.event, count(*), bool_or(b.late) FROM {src} b "
                      f"WHERE NOT EXISTS (SELECT 1 FROM {quote(schema)}.tracks s WHERE s.id = b.id AND {condition}) "
                      "GROUP BY b.hour_index, b.source_id, b.event", params)
    return pl.DataFrame(groups, orient="row", schema=_GROUPS)


def apply_hourly_counts(new: pl.DataFrame, schema: str, quote: Callable[[str], str], param: str,
                        rows: Rows, staged: Staged, now_us: int) -> None:
    """Add the new counts, in one statement: in place for open hours (the current version's
    count grows), as a new restated version for late ones (the newest count plus the late
    events), and as version 1 for hours not counted yet."""
    if new.is_empty():
        return
    table = f"{quote(schema)}.{HOURLY_TABLE}"
    counts = new.select((pl.col("hour_index") * 3600).cast(pl.Int64).alias("hour_epoch"), "source_id", "event",
                        pl.col("events").cast(pl.Int64), "late")
    with staged("_tidegate_hourly_counts", counts) as src:
        rows(f"""INSERT INTO {table} AS h (hour_start, source_id, event, version, event_count, restated, updated_at)
            SELECT to_timestamp(n.hour_epoch), n.source_id, n.event,
                   CASE WHEN c.version IS NULL THEN 1 WHEN n.late THEN c.version + 1 ELSE c.version END,
                   CASE WHEN c.version IS NOT NULL AND n.late THEN c.event_count + n.events ELSE n.events END,
                   c.version IS NOT NULL AND n.late,
                   to_timestamp({param})
            FROM {src} n LEFT JOIN (
                SELECT DISTINCT ON (t.hour_start, t.source_id, t.event) t.hour_start, t.source_id, t.event,
                       t.version, t.event_count
                FROM {table} t JOIN {src} k ON t.hour_start = to_timestamp(k.hour_epoch)
                     AND t.source_id = k.source_id AND t.event = k.event
                ORDER BY t.hour_start, t.source_id, t.event, t.version DESC) c
              ON c.hour_start = to_timestamp(n.hour_epoch) AND c.source_id = n.source_id AND c.event = n.event
            ON CONFLICT (hour_start, source_id, event, version) DO UPDATE
              SET event_count = h.event_count + excluded.event_count, updated_at = excluded.updated_at""",
             [now_us / 1e6])
