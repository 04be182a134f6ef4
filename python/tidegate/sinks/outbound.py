"""Governed events as JSON, for the sinks that pass events on (Kafka topic, webhook).

Each event goes out once, as its warehouse row: a track event as the row of its per-event table
(``order_completed``: the ``tracks`` columns plus its properties), other events as their
``identifies``/``pages``/``screens``/``groups``/``aliases`` row. ``users`` and ``accounts`` hold
state merged from events, not events, and are not sent. Every object carries ``tidegate_table``
(the table the row belongs to); timestamps are ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from ..stages.govern import STATE_TABLES, GovernedBatch
from .base import EVENT_TABLES

__all__ = ["OutboundEvent", "outbound_events"]



class OutboundEvent(NamedTuple):
    table: str
    id: str
    json: bytes


def event_frames(batch: GovernedBatch) -> list[tuple[str, pl.DataFrame]]:
    """The batch's rows one per event: a track's per-event table row (tracks columns plus
    properties), else its type's table row; state tables (``users``, ``identity_map``) left out."""
    per_event = {t: df for t, df in batch.tables.items() if t not in EVENT_TABLES and t not in STATE_TABLES}
    frames = list(per_event.items())
    tracks = batch.tables.get("tracks")
    if tracks is not None and tracks.height:
        # A track without an event name has no per-event table; it goes out as its tracks row.
        covered = pl.concat([df.select("id") for df in per_event.values()]) if per_event else pl.DataFrame({"id": []}, schema={"id": pl.String})
        rest = tracks.join(covered, on="id", how="anti")
        if rest.height:
            frames.append(("tracks", rest))
    frames.extend((t, df) for t, df in batch.tables.items() if t in EVENT_TABLES and t != "tracks")
    return [(t, df) for t, df in frames if df.height]


def outbound_events(batch: GovernedBatch) -> list[OutboundEvent]:
    """The batch's events as JSON objects, one per event, in table order.

    >>> import json
    >>> from tidegate.stages import decode_messages, govern
    >>> at = "2026-11-26T05:30:44.000Z"
    >>> env = {"v": 1, "source": "web", "receivedAt": at, "events": [
    ...     {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1", "receivedAt": at, "properties": {"plan": "pro"}},
    ...     {"type": "identify", "userId": "u1", "messageId": "m2", "receivedAt": at, "traits": {"plan": "pro"}}]}
    >>> out = outbound_events(govern(decode_messages([(json.dumps(env).encode(), 0, None)])))
    >>> [(e.table, e.id) for e in out]
    [('signed_up', 'm1'), ('identifies', 'm2')]
    >>> row = json.loads(out[0].json)
    >>> row["plan"], row["event_text"], row["tidegate_table"], row["received_at"]
    ('pro', 'Signed Up', 'signed_up', '2026-11-26T05:30:44.000000Z')
    """
    out: list[OutboundEvent] = []
    for table, df in event_frames(batch):
        df = df.with_columns(
            pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
            pl.lit(table).alias("tidegate_table"),
        )
        lines = df.write_ndjson().encode().splitlines()
        out.extend(OutboundEvent(table, i, line) for i, line in zip(df["id"].to_list(), lines))
    return out
