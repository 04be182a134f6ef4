"""Sinks, one file each. ``build_sink`` picks the class for a destination's config type; a new
sink is one file here plus one member of ``config.Destination`` and one entry in ``SINK_TYPES``.

A sink's module is imported only when a destination of its type is built: the PostgreSQL and
Delta Lake clients (psycopg, deltalake) cost ≈30 MB of a pipeline's resident memory, which a
pipeline writing only to DuckDB should not pay. ``from tidegate.sinks import DeltaSink`` still
works (module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..config import DeltaDestination, Destination, DuckDBDestination, KafkaDestination, PostgresDestination, WebhookDestination
from .base import Sink, deliver

if TYPE_CHECKING:
    from .delta import DeltaSink
    from .duckdb import DuckDBSink
    from .kafka import KafkaSink
    from .postgres import PostgresSink
    from .webhook import WebhookSink

__all__ = ["Sink", "deliver", "build_sink", "sink_class", "DuckDBSink", "PostgresSink", "DeltaSink", "KafkaSink",
           "WebhookSink", "SINK_TYPES"]

# destination config type -> (module in this package, sink class name)
SINK_TYPES: dict[type, tuple[str, str]] = {
    DuckDBDestination: ("duckdb", "DuckDBSink"),
    PostgresDestination: ("postgres", "PostgresSink"),
    DeltaDestination: ("delta", "DeltaSink"),
    KafkaDestination: ("kafka", "KafkaSink"),
    WebhookDestination: ("webhook", "WebhookSink"),
}


def sink_class(cfg_type: type) -> type[Sink]:
    """The sink class for a destination config type, importing its module on first use."""
    module, name = SINK_TYPES[cfg_type]
    cls: type[Sink] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return cls


def build_sink(name: str, cfg: Destination) -> Sink:
    return sink_class(type(cfg))(name, cfg)  # type: ignore[call-arg]


def __getattr__(attr: str) -> Any:
    for cfg_type, (_module, name) in SINK_TYPES.items():
        if attr == name:
            return sink_class(cfg_type)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
