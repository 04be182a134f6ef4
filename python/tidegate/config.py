"""Configuration as data: one TOML file decoded into frozen msgspec Structs.

``load_config(path)`` decodes and validates without I/O beyond reading the file; components
build their runtime objects from these Structs. Every field carries a one-line description,
from which ``python -m tidegate.config`` prints the configuration reference.

Environment variables override file values: ``TIDEGATE__<SECTION>__<KEY>`` (double
underscores between levels), e.g. ``TIDEGATE__KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``TIDEGATE__SOURCES__WEB__WRITE_KEY=...``. Values are read as TOML literals when they parse as
one (``8080``, ``true``), as plain strings otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta, Struct

from .errors import ConfigError

__all__ = [
    "Config",
    "KafkaConfig",
    "CollectorConfig",
    "PipelineConfig",
    "SourceConfig",
    "DuckDBDestination",
    "Destination",
    "load_config",
    "config_reference",
]

ENV_PREFIX = "TIDEGATE__"


def _doc(text: str) -> Meta:
    return Meta(description=text)


class KafkaConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    bootstrap_servers: Annotated[str, _doc("Kafka bootstrap servers, comma separated.")] = "127.0.0.1:9092"
    raw_topic: Annotated[str, _doc("Topic the collector writes accepted events to (batched envelopes).")] = "tidegate.raw"
    partitions: Annotated[int, _doc("Partitions of the raw topic when Tidegate creates it; the ceiling on pipeline replicas."), Meta(ge=1)] = 4
    replication_factor: Annotated[int, _doc("Replication factor of topics Tidegate creates."), Meta(ge=1)] = 1
    consumer_group: Annotated[str, _doc("Consumer group of the pipeline; replicas with the same group share the partitions.")] = "tidegate-pipeline"
    auto_offset_reset: Annotated[Literal["earliest", "latest"], _doc("Where a new consumer group starts reading the raw topic.")] = "earliest"
    settings: Annotated[dict[str, str], _doc("Extra librdkafka settings for every client (security.protocol, sasl.*, ...).")] = {}


class CollectorConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: Annotated[str, _doc("Address the HTTP collector listens on.")] = "127.0.0.1"
    port: Annotated[int, _doc("Port of the HTTP collector."), Meta(ge=0, le=65535)] = 8080
    max_event_bytes: Annotated[int, _doc("Largest accepted event in bytes (413 beyond)."), Meta(ge=1024)] = 32 * 1024
    max_request_bytes: Annotated[int, _doc("Largest accepted request body in bytes, after gzip decoding (413 beyond)."), Meta(ge=1024)] = 4 * 1024 * 1024
    max_batch_events: Annotated[int, _doc("Most events in one /v1/batch request (413 beyond)."), Meta(ge=1)] = 10_000
    ack_timeout_s: Annotated[float, _doc("How long a request waits for Kafka to acknowledge before answering 503."), Meta(gt=0)] = 30.0
    max_in_flight_requests: Annotated[int, _doc("Concurrent requests waiting for Kafka before new ones get 429."), Meta(ge=1)] = 2048


class PipelineConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    processing_guarantee: Annotated[Literal["at-least-once", "exactly-once"], _doc("Kafka processing guarantee of the pipeline's consumer.")] = "at-least-once"
    commit_interval_s: Annotated[float, _doc("Seconds between checkpoints: sinks flush and offsets commit at each."), Meta(gt=0)] = 1.0
    state_dir: Annotated[str, _doc("Directory of the pipeline's local state (Quix Streams state stores).")] = "data/state"
    metrics_port: Annotated[int, _doc("Port of the pipeline's /metrics, /healthz and /readyz (0: off)."), Meta(ge=0, le=65535)] = 9108
    metrics_host: Annotated[str, _doc("Address the pipeline's metrics server listens on.")] = "127.0.0.1"


class SourceConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    write_key: Annotated[str, _doc("Write key SDKs send as the HTTP Basic username."), Meta(min_length=1)]
    enabled: Annotated[bool, _doc("A disabled source's requests get 404, as RudderStack does.")] = True


class DuckDBDestination(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="duckdb", tag_field="type"):
    """The embedded DuckDB warehouse (the default destination)."""

    path: Annotated[str, _doc("DuckDB database file; created with its directory if missing.")] = "data/tidegate.duckdb"
    schema: Annotated[str, _doc("Schema the tables are written to."), Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "main"


# A new sink is one file plus one member here; `type = "..."` in TOML picks it.
Destination = Union[DuckDBDestination]


class Config(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kafka: Annotated[KafkaConfig, _doc("Connection to Kafka and the raw topic.")] = KafkaConfig()
    collector: Annotated[CollectorConfig, _doc("The HTTP collector.")] = CollectorConfig()
    pipeline: Annotated[PipelineConfig, _doc("The consumer service.")] = PipelineConfig()
    sources: Annotated[dict[str, SourceConfig], _doc("Sources by id, each with its write key.")] = {}
    destinations: Annotated[dict[str, Destination], _doc("Destinations by name; `type` picks the sink.")] = {}
    # Set by load_config, not read from the file.
    path: str = ""
    version: str = ""

    def source_by_write_key(self) -> dict[str, str]:
        """Map write key -> source id, enabled sources only."""
        return {s.write_key: name for name, s in self.sources.items() if s.enabled}


_NAMED_TABLES: dict[str, Any] = {"sources": SourceConfig, "destinations": Destination}


def _resolve_relative(cfg: Config, base: Path) -> Config:
    def fix(p: str) -> str:
        return p if os.path.isabs(p) else str((base / p).resolve())

    dests = {
        name: msgspec.structs.replace(d, path=fix(d.path)) if hasattr(d, "path") else d
        for name, d in cfg.destinations.items()
    }
    pipeline = msgspec.structs.replace(cfg.pipeline, state_dir=fix(cfg.pipeline.state_dir))
    return msgspec.structs.replace(cfg, destinations=dests, pipeline=pipeline)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, decode and validate a TOML config; raise :class:`ConfigError` naming file, line, key.

    Relative paths inside the file are resolved against the file's directory.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.toml"
    >>> _ = p.write_text('[sources.web]\\nwrite_key = "k1"\\n[destinations.wh]\\ntype = "duckdb"\\n')
    >>> load_config(p, env={}).sources["web"].write_key
    'k1'
    >>> _ = p.write_text('[collector]\\nport = "eighty"\\n[sources.web]\\nwrite_key = "k"\\n')
    >>> load_config(p, env={})
    Traceback (most recent call last):
    ...
    tidegate.errors.ConfigError: ...t.toml:2: [collector.port] expected `int`, got `str`
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found; pass an existing TOML file (the example is config/tidegate.toml)", file=str(file)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file: {e}", file=str(file)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else None
        raise ConfigError(f"not valid TOML: {str(e).split(' (at line')[0]}", file=str(file), line=line) from None
    _apply_env(raw, os.environ if env is None else env)
    # Entries of named tables are checked one by one first: msgspec's error path for a dict value
    # does not say which entry failed, and the user needs to know.
    for section, entry_type in _NAMED_TABLES.items():
        entries = raw.get(section)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            try:
                msgspec.convert(entry, entry_type)
            except msgspec.ValidationError as e:
                message, key = _split_msgspec_error(str(e))
                key = f"{section}.{name}" + (f".{key}" if key else "")
                raise ConfigError(message, file=str(file), line=_locate(text, key), key=key) from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        message, key = _split_msgspec_error(str(e))
        raise ConfigError(message, file=str(file), line=_locate(text, key), key=key or None) from None
    cfg = _resolve_relative(cfg, file.resolve().parent)
    version = hashlib.sha256(msgspec.json.encode(raw, order="sorted")).hexdigest()[:12]
    cfg = msgspec.structs.replace(cfg, path=str(file), version=version)
    _check(cfg, text)
    return cfg


def _check(cfg: Config, text: str) -> None:
    """Rules that span fields."""
    file = cfg.path
    if not cfg.sources:
        raise ConfigError("no sources configured; add a [sources.<id>] table with a write_key", file=file, key="sources")
    seen: dict[str, str] = {}
    for name, src in cfg.sources.items():
        if src.write_key in seen:
            key = f"sources.{name}.write_key"
            raise ConfigError(
                f"write key is also used by source {seen[src.write_key]!r}; every source needs its own write key",
                file=file, line=_locate(text, key), key=key,
            )
        seen[src.write_key] = name
    if not cfg.destinations:
        raise ConfigError(
            'no destinations configured; add e.g. [destinations.warehouse] with type = "duckdb"',
            file=file, key="destinations",
        )


def _split_msgspec_error(text: str) -> tuple[str, str]:
    """msgspec says "Expected `int`, got `str` - at `$.collector.port`"; split message and key."""
    m = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", text, re.S)
    assert m is not None
    message, at = m.group(1), m.group(2) or ""
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]|\[['\"](.+?)['\"]\]", at)
    key = ".".join(a or b or c for a, b, c in parts)
    message = message[0].lower() + message[1:] if message else message
    if message.startswith("object contains unknown field"):
        field = re.search(r"`(.+?)`", message)
        if field:
            key = f"{key}.{field.group(1)}" if key else field.group(1)
            message += "; check the spelling against the configuration reference (python -m tidegate.config)"
    if message.startswith("invalid value ") or "tag" in message:
        message += '; valid destination types: ' + ", ".join(repr(t) for t in destination_types())
    return message, key


def destination_types() -> list[str]:
    return [m.__struct_config__.tag for m in get_args(Destination) or (Destination,)]  # type: ignore[union-attr]


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _norm_key(k: str) -> str:
    return ".".join(p.strip().strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', k))


def _locate(text: str, key: str) -> int | None:
    """Best line of ``key`` (dotted) in the TOML text: the key's own line, else its table's."""
    if not key:
        return None
    parts = key.split(".")
    table, leaf = ".".join(parts[:-1]), parts[-1]
    current = ""
    table_line = None
    for n, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h:
            current = _norm_key(h.group(1))
            if current == key:
                return n
            if current == table:
                table_line = n
            continue
        m = re.match(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=", line)
        if m:
            full = _norm_key(m.group(1))
            qualified = f"{current}.{full}" if current else full
            if qualified == key or (current == table and full == leaf):
                return n
    return table_line


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} sets a key inside a value that is not a table", key=".".join(path))
        try:
            node[path[-1]] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            node[path[-1]] = value


def _describe(tp: Any) -> tuple[Any, str, list[Any]]:
    """(base type, description, metas) of an annotation."""
    desc = ""
    metas: list[Any] = []
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        for m in extra:
            if isinstance(m, Meta):
                metas.append(m)
                desc = m.description or desc
        return base, desc, metas
    return tp, desc, metas


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in get_args(tp))
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, Struct):
        return "table"
    if origin is Union:
        return "table (tagged by `type`)"
    return getattr(tp, "__name__", str(tp))


def config_reference() -> str:
    """The configuration reference in Markdown, generated from the Structs' field docs."""
    out: list[str] = []

    def walk(struct: type[Struct], prefix: str) -> None:
        hints = get_type_hints(struct, include_extras=True)
        rows = []
        nested: list[tuple[str, Any]] = []
        defaults = dict(zip(struct.__struct_fields__, (None,) * len(struct.__struct_fields__)))
        for f, d in zip(struct.__struct_fields__[-len(struct.__struct_defaults__):] if struct.__struct_defaults__ else [], struct.__struct_defaults__):
            defaults[f] = d
        for field in struct.__struct_fields__:
            if field in ("path", "version") and struct is Config:
                continue
            base, desc, _ = _describe(hints[field])
            default = defaults.get(field)
            if isinstance(default, msgspec._core.Factory):  # noqa: SLF001 - dict/list defaults
                default = default.factory()
            shown = "required" if default is None or default is msgspec.NODEFAULT else f"`{default!r}`"
            if isinstance(default, str):
                shown = f'`"{default}"`'
            if isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            if isinstance(default, Struct) or isinstance(default, dict) and not default:
                shown = "—"
            rows.append(f"| `{field}` | {_type_name(base)} | {shown} | {desc} |")
            if isinstance(base, type) and issubclass(base, Struct):
                nested.append((f"{prefix}{field}", base))
            elif get_origin(base) is dict:
                val = get_args(base)[1]
                members = get_args(val) if get_origin(val) is Union else (val,)
                for m in members:
                    if isinstance(m, type) and issubclass(m, Struct):
                        tag = m.__struct_config__.tag
                        label = f"{prefix}{field}.<name>" + (f' (type = "{tag}")' if isinstance(tag, str) else "")
                        nested.append((label, m))
        out.append(f"### `[{prefix.rstrip('.') or 'top level'}]`\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        out.extend(rows)
        out.append("")
        for name, sub in nested:
            walk_named(sub, name)

    def walk_named(struct: type[Struct], name: str) -> None:
        doc = (struct.__doc__ or "").strip().splitlines()
        start = len(out)
        walk(struct, name + ".")
        out[start] = f"### `[{name}]`\n" + (f"\n{doc[0]}\n" if doc and struct.__doc__ else "")

    walk(Config, "")
    return "\n".join(out)


if __name__ == "__main__":
    print(config_reference())
