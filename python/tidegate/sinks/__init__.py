"""Sinks, one file each. ``build_sink`` picks the class for a destination's config type; a new
sink is one file here plus one member of ``config.Destination``."""

from __future__ import annotations

from ..config import Destination, DuckDBDestination
from .base import Sink, deliver
from .duckdb import DuckDBSink

__all__ = ["Sink", "deliver", "build_sink", "DuckDBSink", "SINK_TYPES"]

SINK_TYPES: dict[type, type[Sink]] = {
    DuckDBDestination: DuckDBSink,
}


def build_sink(name: str, cfg: Destination) -> Sink:
    return SINK_TYPES[type(cfg)](name, cfg)  # type: ignore[call-arg]
