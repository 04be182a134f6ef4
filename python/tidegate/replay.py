"""``tidegate replay``: re-run archived events through the *current* policy into destinations.

The archived events received in ``[from, to)`` are read (one copy per ``(source, messageId)``),
grouped back into envelopes and sent through the same stages as the stream — decode, govern with
the config's policy (rows carry *this* config's version), ``deliver`` to each chosen destination —
in batches. ``tidegate replay`` passes the applied config (``audit.applied_config``: the one
``tidegate run`` and ``tidegate dlq replay`` govern by), not the file on disk. Replay is how a new
destination is backfilled and how a gap is filled after an outage.

**Never newer data overwritten with older data.** Every write is keyed by the event id: event
tables insert an id only if it is not there yet (a row already stored — by the stream or an
earlier replay — is kept as it is, so repeating a replay adds nothing), and ``users`` merges by
``received_at``: a replayed, older trait value only fills a column that is still empty and never
replaces a value received later. Kafka and webhook destinations receive the events again, keyed
by id (Kafka message key, webhook ``Idempotency-Key``), for their consumers to de-duplicate.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence, TextIO

import msgspec
import polars as pl

from .archive import read_archive
from .config import Config
from .errors import ConfigError, TidegateError
from .stages import PolicyPath, decode_messages
from .regulations import REFUSED_TABLE
from .sinks.base import EVENT_TABLES
from .stages.decode import SOURCE_HEADER
from .wording import counted

__all__ = ["check_arguments", "parse_time", "replay", "ReplaySummary", "to_raw_messages", "Progress"]

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time from the command line: ISO 8601 (naive = UTC), a date, ``now``, or a
    duration back from now (``90m``, ``-2h``, ``3d ago``).

    >>> parse_time("2026-11-26T05:30:00Z")
    datetime.datetime(2026, 11, 26, 5, 30, tzinfo=datetime.timezone.utc)
    >>> parse_time("2026-11-26")
    datetime.datetime(2026, 11, 26, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_time("2h", now=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
    datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    """
    now = now or datetime.now(timezone.utc)
    t = text.strip()
    if t.lower() == "now":
        return now
    m = _RELATIVE.match(t.lower())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        parsed = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            d = date.fromisoformat(t)
        except ValueError:
            raise TidegateError(
                f"cannot read time {text!r}; use ISO 8601 (2026-11-26T05:00:00Z, 2026-11-26), "
                "`now`, or a duration back from now (90m, 2h, 3d)") from None
        parsed = datetime(d.year, d.month, d.day)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def to_raw_messages(rows: pl.DataFrame) -> list[tuple[bytes, int, list[tuple[str, bytes]] | None]]:
    """Archive rows back into raw-topic messages ``(value, kafka_timestamp_ms, headers)``: one
    envelope per (source, receivedAt) — the shape the collector wrote — and events without an id
    (produced straight to Kafka, possibly not JSON) one message each, as they came."""
    out: list[tuple[bytes, int, list[tuple[str, bytes]] | None]] = []
    with_id = rows.filter(pl.col("message_id").is_not_null())
    groups = (with_id.group_by("source", "received_at", maintain_order=True)
              .agg(pl.col("event_json").str.join(","))
              .with_columns(pl.col("received_at").dt.epoch("ms").alias("ms"),
                            pl.col("received_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").alias("iso")))
    for source, events, ms, iso in groups.select("source", "event_json", "ms", "iso").iter_rows():
        value = msgspec.json.encode({"v": 1, "source": source, "receivedAt": iso,
                                     "events": msgspec.Raw(b"[" + events.encode() + b"]")})
        out.append((value, int(ms), None))
    singles = rows.filter(pl.col("message_id").is_null())
    for source, event, received in singles.select(
            "source", "event_json", pl.col("received_at").dt.epoch("ms")).iter_rows():
        out.append((event.encode(), int(received), [(SOURCE_HEADER, source.encode())]))
    return out


class Progress:
    """A one-line progress bar on a terminal (nothing when the output is not one)."""

    def __init__(self, total: int, *, stream: TextIO | None = None, label: str = "replay", enabled: bool | None = None):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        frac = min(self.done / self.total, 1.0)
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {self.done}/{self.total} events {rate:,.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ReplaySummary:
    """What a replay did. Every event read is accounted for per destination: ``read`` =
    ``delivered`` + ``suppressed`` + ``not_for`` (consent, transform filters) + refused by policy."""

    read: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    not_for: dict[str, int] = field(default_factory=dict)
    """Accepted events a destination does not receive: its consent requirements, its filters."""
    refused_kept: dict[str, int] = field(default_factory=dict)
    """Refused events handed to a warehouse destination for its ``discarded_events``."""
    new_rows: dict[str, dict[str, int] | None] = field(default_factory=dict)
    """Per warehouse destination, rows added per table (None: not countable)."""
    seconds: float = 0.0
    config_version: str = ""

    def render(self) -> str:
        refused_n = sum(self.refused.values())
        lines = [f"replayed {counted(self.read, 'archived event')} in {self.seconds:.1f}s under config version {self.config_version}",
                 f"  accepted by policy: {self.accepted}"]
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"
        lines.append(f"  refused by policy (to discarded_events): {refused}")
        for name, n in self.delivered.items():
            parts = [f"{n} delivered"]
            if self.suppressed.get(name):
                parts.append(f"{self.suppressed[name]} suppressed (`tidegate regulate list`)")
            if self.not_for.get(name):
                parts.append(f"{self.not_for[name]} not for it (consent or its filters)")
            if refused_n:
                parts.append(f"{refused_n} refused by policy")
            lines.append(f"  destination {name!r}: of {counted(self.read, 'event')}, {', '.join(parts)}")
            new = self.new_rows.get(name)
            if new is None:
                continue
            total = sum(new.values())
            tables = ", ".join(f"{t} {k}" for t, k in sorted(new.items(), key=lambda tk: (-tk[1], tk[0])) if k)
            kept = max(n - sum(k for t, k in new.items() if t in EVENT_TABLES), 0)
            kept_refused = max(self.refused_kept.get(name, 0) - new.get(REFUSED_TABLE, 0), 0)
            already = [f"{counted(kept, 'event')}"] + ([f"{counted(kept_refused, 'refused event')}"] if kept_refused else [])
            lines.append(f"    {counted(total, 'new row')}{f' ({tables})' if tables else ''}; already stored and kept "
                         f"as they were: {' and '.join(already)}")
        return "\n".join(lines)


def _table_rows(sink: Any) -> dict[str, int] | None:
    counts = getattr(sink, "row_counts", None)
    if counts is None:
        return None
    try:
        return dict(counts())
    except Exception:  # noqa: BLE001 - the count is informative only
        return None


def check_arguments(cfg: Config, start: datetime, end: datetime, *, sources: Sequence[str] | None = None,
                    destinations: Sequence[str] | None = None, on_disk: Config | None = None) -> None:
    """Raise unless ``[start, end)`` is a time range and every named source and destination is one
    of ``cfg``, the config that governs the replay. ``on_disk`` is the user's config file when
    ``cfg`` is the applied copy of it (``audit.applied_config``): errors name the user's file, not
    the stored copy, and say that the applied config is the one that counts."""
    if end <= start:
        raise TidegateError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")
    user = on_disk or cfg
    applied = on_disk is not None and on_disk.path != cfg.path
    for kind, named, configured in (("destination", destinations, cfg.destinations), ("source", sources, cfg.sources)):
        unknown = [n for n in named or () if n not in configured]
        if not unknown:
            continue
        listed = ", ".join(configured) or "none"
        if not applied:
            message = f"unknown {kind} {', '.join(map(repr, unknown))}; configured: {listed}"
        else:
            governs = f"replay governs by the applied config (version {cfg.version}), which has: {listed}"
            in_file = [n for n in unknown if n in getattr(user, f"{kind}s")]
            message = (f"{kind} {', '.join(map(repr, in_file))} is in this file but not applied yet: {governs}; "
                       f"run `tidegate apply -c {user.path}` first" if in_file else
                       f"unknown {kind} {', '.join(map(repr, unknown))}; {governs}")
        raise ConfigError(message, file=user.path or None, key=f"{kind}s")


def replay(cfg: Config, start: datetime, end: datetime, *, sources: Sequence[str] | None = None,
           destinations: Sequence[str] | None = None, batch_events: int = 20_000,
           progress: Callable[[int], Progress] | None = None) -> ReplaySummary:
    """Replay archived events received in ``[start, end)``; see the module docstring."""
    from .sinks import build_sink, deliver

    check_arguments(cfg, start, end, sources=sources, destinations=destinations)
    names = list(destinations) if destinations else list(cfg.destinations)
    started = time.monotonic()
    path = PolicyPath(cfg)
    rows = read_archive(cfg.archive.path, start, end, sources)
    summary = ReplaySummary(read=rows.height, config_version=cfg.version)
    sinks = {name: build_sink(name, cfg.destinations[name]) for name in names}
    bar = progress(rows.height) if progress else None
    try:
        for sink in sinks.values():
            sink.setup()
        before = {name: _table_rows(s) for name, s in sinks.items()}
        for chunk in _chunks(rows, batch_events):
            governed = path.govern(decode_messages(to_raw_messages(chunk)))
            # The same per-destination policy as the stream: suppression, then consent.
            warehouses = {n: s for n, s in sinks.items() if hasattr(s, "dialect")}
            shares = path.shares(governed, list(sinks), warehouses)
            suppressed = path.suppression.last_suppressed
            for name, share in shares.items():
                deliver(sinks[name], share)
                summary.delivered[name] = summary.delivered.get(name, 0) + share.accepted
                summary.suppressed[name] = summary.suppressed.get(name, 0) + suppressed
                summary.not_for[name] = summary.not_for.get(name, 0) + governed.accepted - suppressed - share.accepted
                if name in warehouses:
                    summary.refused_kept[name] = summary.refused_kept.get(name, 0) + share.rejected.height
            summary.accepted += governed.accepted
            for reason, n in governed.rejected.group_by("reason").len().iter_rows():
                summary.refused[reason] = summary.refused.get(reason, 0) + n
            if bar:
                bar.update(chunk.height)
        for name, s in sinks.items():
            after = _table_rows(s)
            summary.delivered.setdefault(name, 0)
            b = before[name]
            summary.new_rows[name] = None if after is None or b is None else \
                {t: n - b.get(t, 0) for t, n in after.items() if n != b.get(t, 0)}
    finally:
        if bar:
            bar.close()
        for sink in sinks.values():
            sink.close()
    summary.seconds = time.monotonic() - started
    return summary


def _chunks(rows: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    # A slice may split an envelope in two: harmless, every event is keyed by its own id.
    for offset in range(0, rows.height, size):
        yield rows.slice(offset, size)
