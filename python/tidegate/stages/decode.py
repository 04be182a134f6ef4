"""Stage `decode`: raw-topic Kafka messages -> (source, kafka time, events JSON) per message.

Collector envelopes are decoded with msgspec, the ``events`` array kept as raw JSON
(``msgspec.Raw``), so no Python object is made per event. A message that is not an envelope
is taken as one event produced straight to the topic by another producer; its source is the
``tidegate-source`` header when present, else ``direct``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import msgspec

from .. import metrics

__all__ = ["Envelope", "DecodedBatch", "decode_messages", "DIRECT_SOURCE"]

DIRECT_SOURCE = "direct"
SOURCE_HEADER = "tidegate-source"


class Envelope(msgspec.Struct, frozen=True):
    """What the collector writes to the raw topic: the events of one request for one partition."""

    v: int
    source: str
    receivedAt: str
    events: msgspec.Raw


_decoder = msgspec.json.Decoder(Envelope)


@dataclass
class DecodedBatch:
    """Messages ready for the Rust core: ``(source, kafka_time_us, events_json)``."""

    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    envelopes: int = 0
    singles: int = 0


def _header_source(headers: Sequence[tuple[str, bytes]] | None) -> str:
    for name, value in headers or ():
        if name == SOURCE_HEADER and value:
            return value.decode("utf-8", "replace")
    return DIRECT_SOURCE


def decode_messages(items: Iterable[tuple[bytes, int, Sequence[tuple[str, bytes]] | None]]) -> DecodedBatch:
    """Decode ``(value, kafka_timestamp_ms, headers)`` triples; one loop step per Kafka message
    (an envelope carries many events)."""
    started = time.perf_counter()
    out = DecodedBatch()
    for value, timestamp_ms, headers in items:
        ts_us = int(timestamp_ms) * 1000
        # Cheap pre-check: only objects that name a version field can be envelopes.
        if b'"v"' in value[:16]:
            try:
                env = _decoder.decode(value)
            except msgspec.DecodeError:  # includes ValidationError: an event, not an envelope
                pass
            else:
                out.messages.append((env.source, ts_us, bytes(env.events)))
                out.envelopes += 1
                continue
        out.messages.append((_header_source(headers), ts_us, value))
        out.singles += 1
    metrics.pipeline.messages.labels("envelope").inc(out.envelopes)
    metrics.pipeline.messages.labels("single").inc(out.singles)
    metrics.pipeline.stage_seconds.labels("decode").observe(time.perf_counter() - started)
    return out
