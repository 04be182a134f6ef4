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


def hourly_ddl(schema: str, quote: Callable[[str], str]) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{HOURLY_TABLE} ("
            "hour_start TIMESTAMPTZ NOT NULL, source_id VARCHAR NOT NULL, event VARCHAR NOT NULL, "
            "version INTEGER NOT NULL, event_count BIGINT NOT NULL, restated BOOLEAN NOT NULL, "
            "updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (hour_start, source_id, event, version))")


def count_new_tracks(tracks: pl.DataFrame, table_exists: bool, schema: str, quote: Callable[[str], str],
                     rows: Rows, staged: Staged) -> pl.DataFrame:
    """Per (hour, source, event): how many of ``tracks`` are new to the warehouse, and whether
    any new one is late. Run before the batch's rows are inserted."""
    keys = tracks.select(
        "id",
        (pl.col("timestamp").dt.epoch("s") // 3600).alias("hour_index"),
        pl.col("context_source_id").fill_null("").alias("source_id"),
        pl.col("event_text").fill_null("").alias("event"),
        (pl.col("late") if "late" in tracks.columns else pl.lit(False)).fill_null(False).alias("late"),
    ).unique(subset="id", keep="first")
    if not table_exists:
        new = keys
    else:
        with staged("_tidegate_hourly_keys", keys) as src:
            ids = rows(f"SELECT s.id FROM {src} s WHERE NOT EXISTS "
                       f"(SELECT 1 FROM {quote(schema)}.tracks t WHERE t.id = s.id)")
        new = keys.filter(pl.col("id").is_in([r[0] for r in ids]))
    return new.group_by("hour_index", "source_id", "event").agg(
        pl.len().alias("events"), pl.col("late").any().alias("late"))


def apply_hourly_counts(new: pl.DataFrame, schema: str, quote: Callable[[str], str], param: str,
                        rows: Rows, now_us: int) -> None:
    """Add the new counts: in place for open hours, as a restated version for late ones."""
    if new.is_empty():
        return
    table = f"{quote(schema)}.{HOURLY_TABLE}"
    for hour_index, source, event, n, late in new.iter_rows():
        # One statement pair per touched (hour, source, event): a batch touches few of them.
        current = rows(
            f"SELECT version, event_count FROM {table} WHERE hour_start = to_timestamp({param}) "
            f"AND source_id = {param} AND event = {param} ORDER BY version DESC LIMIT 1",
            [hour_index * 3600, source, event])
        if current and not late:
            rows(f"UPDATE {table} SET event_count = event_count + {param}, updated_at = to_timestamp({param}) "
                 f"WHERE hour_start = to_timestamp({param}) AND source_id = {param} AND event = {param} "
                 f"AND version = {param}",
                 [n, now_us / 1e6, hour_index * 3600, source, event, current[0][0]])
        else:
            version, base = (current[0][0] + 1, current[0][1]) if current else (1, 0)
            rows(f"INSERT INTO {table} VALUES (to_timestamp({param}), {param}, {param}, {param}, {param}, {param}, "
                 f"to_timestamp({param}))",
                 [hour_index * 3600, source, event, version, base + n, bool(current), now_us / 1e6])


