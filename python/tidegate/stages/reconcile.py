"""Stage `reconcile`: late arrivals against a per-partition event-time watermark.

The watermark is the highest event time seen so far on the partition (per source), kept in the
Quix Streams state store so it survives restarts and moves with the partition. An event whose
time is more than ``allowed_lateness`` behind the watermark is late: it is still delivered, never
dropped, but flagged (`late`, `late_by_ms`) and counted, and the hourly aggregates it touches are
restated with a new version (see the warehouse sinks) instead of silently changing. Events
within the lateness are put in event-time order in the batch stage.

A device whose clock runs ahead must not drag the watermark into the future and make every
honest event late: the watermark never moves past the message's Kafka timestamp (when the
collector accepted it), plus ``max_future`` (default 0).

The arithmetic is one Rust call per message (``_core.lateness``); no Python loop per event.
"""

from __future__ import annotations

from quixstreams.state import State

from .. import _core

__all__ = ["Reconcile"]

_WATERMARK = "watermark_us"


class Reconcile:
    def __init__(self, allowed_lateness_s: float, max_future_s: float = 0.0):
        self.allowed_us = int(allowed_lateness_s * 1_000_000)
        self.max_future_us = int(max_future_s * 1_000_000)

    def lateness(self, times: bytes, kafka_time_us: int, state: State) -> bytes:
        """Per event, milliseconds beyond the allowed lateness (0: in time), as little-endian
        i64; the watermark in ``state`` moves forward."""
        if not times:
            return b""
        watermark = state.get(_WATERMARK)
        late_ms, new_watermark = _core.lateness(times, kafka_time_us, watermark, self.allowed_us, self.max_future_us)
        if new_watermark is not None and (watermark is None or new_watermark > watermark):
            state.set(_WATERMARK, new_watermark)
        return late_ms
