"""What every sink is: ``setup()`` connects, ``write(batch)`` stores a governed batch
idempotently (a repeated batch adds nothing), ``close()`` releases. ``deliver()`` wraps every
write with the standard metrics, so all sinks emit the same ones."""

from __future__ import annotations

import abc
import time

import polars as pl

from .. import metrics
from ..errors import DeliveryError
from ..stages.govern import GovernedBatch

__all__ = ["Sink", "deliver", "EVENT_TABLES"]

EVENT_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")


class Sink(abc.ABC):
    def __init__(self, name: str):
        self.name = name

    def setup(self) -> None:
        """Connect and create what the sink needs; called once before the first write."""

    @abc.abstractmethod
    def write(self, batch: GovernedBatch) -> None:
        """Store the batch; raise :class:`DeliveryError` if the destination refused it."""

    def ready(self) -> bool:
        return True

    def idle(self) -> None:
        """The pipeline has no write waiting for this sink: a moment for upkeep (called on the
        pipeline's deliver thread, between writes)."""

    def hold_state(self) -> None:
        """Called by the pipeline before its first write and at every commit: from now on a
        write may keep back rows it would otherwise upsert write by write, until
        :meth:`checkpoint` stores them all at once. Without this call (replays, tests, tools)
        every write is stored when it returns."""

    def checkpoint(self) -> None:
        """The pipeline is about to commit its offsets: store what the writes since the last
        call kept back (see :meth:`hold_state`). Raise :class:`DeliveryError` if that fails; the
        rows stay kept (until :meth:`stop_holding`)."""

    def stop_holding(self) -> None:
        """Called by the pipeline when :meth:`checkpoint` failed, before it reads the
        checkpoint's messages again: drop what the writes kept back (the re-read's writes bring
        it again) and keep nothing back until :meth:`hold_state`."""

    def close(self) -> None:
        """Flush and release; called on shutdown."""


def deliver(sink: Sink, batch: GovernedBatch, *, last_attempt: bool = True) -> None:
    """Write ``batch`` with the standard metrics. A failure counts the batch's events as failed
    only on the ``last_attempt``: a caller that retries passes False until it gives up, so a batch
    is counted failed once, not once per attempt (those are ``tidegate_sink_retries_total``)."""
    if batch.empty:
        return
    started = time.perf_counter()
    try:
        sink.write(batch)
    except Exception as e:
        if last_attempt:
            metrics.sink.events.labels(sink.name, "failed").inc(batch.accepted)
        if isinstance(e, DeliveryError):
            raise
        raise DeliveryError(f"destination {sink.name!r} failed to write a batch of {batch.accepted} events: {e}") from e
    now = time.time()
    metrics.sink.write_seconds.labels(sink.name).observe(time.perf_counter() - started)
    metrics.sink.events.labels(sink.name, "delivered").inc(batch.accepted)
    metrics.sink.discards.labels(sink.name).inc(batch.discards.height)
    for table, df in batch.tables.items():
        metrics.sink.rows.labels(sink.name, table).inc(df.height)
    # Latency from receipt and freshness from the event's own time, in seconds at commit.
    for column, histogram in (("received_at", metrics.sink.latency_seconds), ("timestamp", metrics.sink.freshness_seconds)):
        ages = _ages(batch, column, now)
        if ages is not None:
            metrics.observe_many(histogram.labels(sink.name), ages)


def _ages(batch: GovernedBatch, column: str, now: float) -> pl.Series | None:
    """Seconds from ``column`` to ``now`` for each event. One row per event lives in its type's
    table (tracks, identifies, ...); per-event tables and `users` repeat those events."""
    frames = [df.select((pl.lit(now) - pl.col(column).dt.epoch("us").cast(pl.Float64) / 1e6).alias("age"))
              for table, df in batch.tables.items() if table in EVENT_TABLES and column in df.columns]
    return pl.concat(frames)["age"] if frames else None
