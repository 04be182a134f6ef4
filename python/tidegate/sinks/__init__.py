"""Sinks, one file each. ``build_sink`` picks the class for a destination's config type; a new
sink is one file here plus one member of ``config.Destination``."""

from __future__ import annotations

from ..config import DeltaDestination, Destination, DuckDBDestination, KafkaDestination, PostgresDestination, WebhookDestination
from .base import Sink, deliver
from .delta import DeltaSink
from .duckdb import DuckDBSink
from .kafka import KafkaSink
from .postgres import PostgresSink
from .webhook import WebhookSink

__all__ = ["Sink", "deliver", "build_sink", "DuckDBSink", "PostgresSink", "DeltaSink", "KafkaSink", "WebhookSink", "SINK_TYPES"]

SINK_TYPES: dict[type, type[Sink]] = {
    DuckDBDestination: DuckDBSink,
    PostgresDestination: PostgresSink,
    DeltaDestination: DeltaSink,
    KafkaDestination: KafkaSink,
    WebhookDestination: WebhookSink,
}


def build_sink(name: str, cfg: Destination) -> Sink:
    return SINK_TYPES[type(cfg)](name, cfg)  # type: ignore[call-arg]
