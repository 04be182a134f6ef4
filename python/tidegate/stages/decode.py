"""Stage `decode`: raw-topic Kafka messages -> (source, kafka time, events JSON) per message.

Collector envelopes are decoded with msgspec, the ``events`` array kept as raw JSON
(``msgspec.Raw``: a view of the Kafka message, which the Rust core reads through the buffer
protocol), so no Python object is made per event and the events are never copied. A message that is not an envelope
is taken as one event produced straight to the topic by another producer; its source is the
``tidegate-source`` header when present, else ``direct``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

import msgspec

from .. import metrics

__all__ = ["Envelope", "Admitted", "DecodedBatch", "decode_messages", "split_message", "DIRECT_SOURCE"]

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
    """Messages ready for the Rust core:
    ``(source, kafka_time_us, events_json, duplicate_flags, late_by_ms)``; ``events_json`` is
    bytes-like (``bytes``, or the ``msgspec.Raw`` view into an envelope)."""

    messages: list[tuple[str, int, bytes | msgspec.Raw, bytes, bytes]] = field(default_factory=list)
    envelopes: int = 0
    singles: int = 0


def _header_source(headers: Sequence[tuple[str, bytes]] | None) -> str:
    for name, value in headers or ():
        if name == SOURCE_HEADER and value:
            return value.decode("utf-8", "replace")
    return DIRECT_SOURCE


def split_message(value: bytes, headers: Sequence[tuple[str, bytes]] | None) -> tuple[str, bytes | msgspec.Raw, bool]:
    """``(source, events_json, is_envelope)`` of one raw-topic message; an envelope's
    ``events_json`` is a ``msgspec.Raw`` view into ``value`` (no copy)."""
    # Cheap pre-check: only objects that name a version field can be envelopes.
    if b'"v"' in value[:16]:
        try:
            env = _decoder.decode(value)
        except msgspec.DecodeError:  # includes ValidationError: an event, not an envelope
            pass
        else:
            return env.source, env.events, True
    return _header_source(headers), value, False


class Admitted(NamedTuple):
    """A raw-topic message after the pipeline's admission step (dedupe flags and lateness), with
    its envelope already split, so that nothing decodes it twice."""

    message: bytes
    duplicates: bytes
    late_by_ms: bytes
    source: str
    events: bytes | msgspec.Raw
    is_envelope: bool

    @classmethod
    def of(cls, message: bytes, headers: Sequence[tuple[str, bytes]] | None = None, duplicates: bytes = b"",
           late_by_ms: bytes = b"") -> Admitted:
        """``message`` split, with the duplicate flags and lateness the admission step gave it."""
        return cls(message, duplicates, late_by_ms, *split_message(message, headers))


def decode_messages(items: Iterable[tuple[bytes | Admitted, int, Sequence[tuple[str, bytes]] | None]]) -> DecodedBatch:
    """Decode ``(value, kafka_timestamp_ms, headers)`` triples; one loop step per Kafka message
    (an envelope carries many events). ``value`` is the message, or an :class:`Admitted` (split
    already, with its duplicate flags and lateness)."""
    started = time.perf_counter()
    out = DecodedBatch()
    for value, timestamp_ms, headers in items:
        if isinstance(value, Admitted):
            _, duplicates, late, source, events, is_envelope = value
        else:
            duplicates, late = b"", b""
            source, events, is_envelope = split_message(value, headers)
        out.messages.append((source, int(timestamp_ms) * 1000, events, duplicates, late))
        if is_envelope:
            out.envelopes += 1
        else:
            out.singles += 1
    metrics.pipeline.messages.labels("envelope").inc(out.envelopes)
    metrics.pipeline.messages.labels("single").inc(out.singles)
    metrics.pipeline.stage_seconds.labels("decode").observe(time.perf_counter() - started)
    return out
