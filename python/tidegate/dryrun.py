"""``tidegate dry-run``: the streaming policy over a file, without Kafka or sinks.

The events of an NDJSON file (one event object per line) go through exactly the code the stream
runs: the collector's normalisation (``_core.ingest``, as a ``/v1/batch`` request of the chosen
source: messageId, receivedAt, timestamp), dedupe by the same idempotency keys (within the file),
``govern`` with the compiled policy (tracking plans, PII, identity), the suppression list, and
per destination its consent requirements (:class:`tidegate.stages.PolicyPath`, as the stream).
Nothing is written anywhere but ``--out``:

* ``<destination>.ndjson`` — one object per event row the destination would receive (``_table``
  names the table: the per-event table for a track, else identifies, pages, ...);
* ``discards.ndjson`` — refused events (``kind: "event"`` with reason and detail; a request the
  collector would answer 4xx to is ``kind: "request"``) and values that cannot be stored
  (``kind: "value"``);
* ``summary.json`` — lines of the file (and how many were blank, skipped), counts per destination,
  refusals by reason, violations by type, PII actions by class, consent drops and suppressions.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import msgspec
import numpy as np
import polars as pl

from . import _core, metrics
from .config import Config
from .errors import ConfigError, RequestRejected, TidegateError
from .stages import PolicyPath, decode_messages
from .sinks.outbound import event_frames
from .stages.decode import Admitted, split_message

__all__ = ["dry_run", "DryRunSummary", "delivered_rows"]

CHUNK_EVENTS = 500

# Decoding to Raw only checks that a line is one JSON value (no trailing data), without building objects.
_ONE_VALUE = msgspec.json.Decoder(msgspec.Raw)


@dataclass
class DryRunSummary:
    config_version: str = ""
    input_lines: int = 0
    blank_lines: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    pii_actions: dict[str, dict[str, int]] = field(default_factory=dict)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    value_discards: int = 0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def render(self) -> str:
        blank = f", {self.blank_lines} blank skipped" if self.blank_lines else ""
        lines = [f"dry run under config version {self.config_version}: {self.events} events read "
                 f"({self.input_lines} lines{blank}), {self.accepted} accepted, {self.duplicates} duplicates, "
                 f"{self.suppressed} of suppressed users"]
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"
        lines.append(f"  refused: {refused}")
        lines.append("  violations: " + (", ".join(f"{k} {v}" for k, v in sorted(self.violations.items())) or "none"))
        pii = ", ".join(f"{c}:{a} {n}" for c, acts in sorted(self.pii_actions.items()) for a, n in sorted(acts.items()))
        lines.append(f"  PII actions: {pii or 'none'}")
        for name, d in self.destinations.items():
            lines.append(f"  destination {name!r}: {d['events']} events ({d['consent_dropped']} dropped for consent)")
        return "\n".join(lines)


def _counter_values(name: str, *labels: str) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for metric in metrics.REGISTRY.collect():
        if metric.name != name:
            continue
        for s in metric.samples:
            if s.name.endswith("_total"):
                out[tuple(s.labels[label] for label in labels)] += s.value
    return out


def _read_lines(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The non-blank lines with their line numbers in the file, so a refusal names the line an
    editor shows (blank lines count), and the number of lines in the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TidegateError(f"cannot read --input {path}: {e.strerror or e}") from None
    all_lines = data.splitlines()
    return [(n, line) for n, line in enumerate((raw.strip() for raw in all_lines), start=1) if line], len(all_lines)


def _refusal(n: int, line: bytes, reason: str, status: int, detail: str) -> dict[str, Any]:
    return {"kind": "request", "line": n, "reason": reason, "status": status, "detail": detail,
            "event": line.decode("utf-8", "replace")}


def _ingest(lines: list[tuple[int, bytes]], source: str, received_us: int, cfg: Config,
            refused_requests: list[dict[str, Any]]) -> Iterator[bytes]:
    """Envelopes, as the collector makes them from ``/v1/batch`` requests of CHUNK_EVENTS lines. A
    chunk the collector would refuse is retried line by line, so each refusal names its line.

    A line joins a batch body only if it is one JSON value: joined with commas, ``{...},{...}``
    would pass as two events (and ``{...}],"x":[{...}`` would swallow the lines after it). Any
    other line is refused alone as a malformed body (``malformed_json``, 400), in the collector's
    words when it finds the line malformed by itself."""
    limits = cfg.collector

    def one(chunk: list[bytes]) -> list[bytes]:
        body = b'{"batch":[' + b",".join(chunk) + b"]}"
        return [payload for _p, _n, payload in _core.ingest(body, "batch", source, received_us, 1, limits.max_event_bytes,
                                                              limits.max_request_bytes, limits.max_batch_events)]

    for start in range(0, len(lines), CHUNK_EVENTS):
        numbered: list[tuple[int, bytes]] = []
        refused: list[dict[str, Any]] = []
        for n, line in lines[start:start + CHUNK_EVENTS]:
            try:
                _ONE_VALUE.decode(line)
            except (msgspec.DecodeError, RecursionError) as e:
                detail = f"the line is not one JSON value ({e}); write one event object per line"
                try:
                    one([line])
                except RequestRejected as r:
                    if r.code == "malformed_json":
                        detail = r.message
                refused.append(_refusal(n, line, "malformed_json", 400, detail))
                continue
            numbered.append((n, line))
        try:
            if numbered:
                yield from one([line for _n, line in numbered])
        except RequestRejected:
            for n, line in numbered:
                try:
                    yield from one([line])
                except RequestRejected as e:
                    refused.append(_refusal(n, line, e.code, e.status, e.message))
        refused_requests.extend(sorted(refused, key=lambda r: r["line"]))


def _duplicate_flags(items: list[tuple[bytes, int, None]]) -> list[tuple[Admitted, int, None]]:
    """Flag repeats of an idempotency key within the file (the stream's dedupe, window = file)."""
    keys: list[bytes] = []
    counts: list[int] = []
    splits = []
    for value, ts, headers in items:
        source, events, is_envelope = split = split_message(value, headers)
        splits.append(split)
        k, _times = _core.message_index(source, events, ts * 1000)
        keys.append(k)
        counts.append(len(k) // 16)
    all_keys = np.frombuffer(b"".join(keys), dtype="V16")
    flags = np.ones(len(all_keys), dtype=np.uint8)
    if len(all_keys):
        _, first = np.unique(all_keys, return_index=True)
        flags[first] = 0
    out = []
    offset = 0
    for (value, ts, headers), n, split in zip(items, counts, splits):
        out.append((Admitted(value, flags[offset:offset + n].tobytes(), b"", *split), ts, headers))
        offset += n
    return out


def delivered_rows(batch: Any) -> list[tuple[str, pl.DataFrame]]:
    """The event rows a destination receives, one per event, as the outbound sinks send them."""
    return event_frames(batch)


def _ndjson(frames: list[tuple[str, pl.DataFrame]]) -> bytes:
    buf = io.BytesIO()
    for table, df in frames:
        if df.height:
            df.select(pl.lit(table).alias("_table"), pl.all()).write_ndjson(buf)
    return buf.getvalue()


def dry_run(cfg: Config, input_path: str | Path, out_dir: str | Path, *, source: str | None = None,
            received_at: datetime | None = None) -> DryRunSummary:
    """Run the policy over the file; write the outputs; return the summary (see module docstring)."""
    if source is None:
        enabled = [n for n, s in cfg.sources.items() if s.enabled]
        if not enabled:
            raise ConfigError("no enabled source to attribute the events to", file=cfg.path, key="sources")
        source = enabled[0]
    elif source not in cfg.sources:
        raise ConfigError(f"unknown source {source!r}; configured: {', '.join(cfg.sources)}", file=cfg.path, key="sources")
    elif not cfg.sources[source].enabled:
        # The collector answers 404 (source_disabled) to its write key: no event of it gets in.
        raise ConfigError(f"source {source!r} is disabled (enabled = false): the collector refuses its events; "
                          "enable it or choose another --source", file=cfg.path, key=f"sources.{source}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TidegateError(f"cannot create --out directory {out}: {e.strerror or e}") from None
    path = PolicyPath(cfg)
    received = received_at or datetime.now(timezone.utc)
    received_us = int(received.timestamp() * 1_000_000)
    lines, input_lines = _read_lines(Path(input_path))
    summary = DryRunSummary(config_version=cfg.version, input_lines=input_lines, blank_lines=input_lines - len(lines))

    before_v = _counter_values("tidegate_policy_violations", "type")
    before_p = _counter_values("tidegate_pii_actions", "class", "action")
    before_c = _counter_values("tidegate_consent_drops", "destination")
    before_s = _counter_values("tidegate_suppressed_events")

    refused_requests: list[dict[str, Any]] = []
    items = [(payload, received_us // 1000, None) for payload in _ingest(lines, source, received_us, cfg, refused_requests)]
    governed = path.govern(decode_messages(_duplicate_flags(items)))
    shares = path.shares(governed, list(cfg.destinations))

    summary.events = governed.events_in + len(refused_requests)
    summary.accepted = governed.accepted
    summary.duplicates = governed.duplicates
    refused = Counter(r["reason"] for r in refused_requests)
    for reason, n in governed.rejected.group_by("reason").len().iter_rows():
        refused[reason] += n
    summary.refused = dict(refused)
    summary.value_discards = governed.discards.height

    for name, share in shares.items():
        frames = list(delivered_rows(share))
        (out / f"{name}.ndjson").write_bytes(_ndjson(frames))
        summary.destinations[name] = {"type": cfg.destinations[name].__struct_config__.tag,
                                      "events": sum(df.height for _, df in frames),
                                      "rows": {t: df.height for t, df in share.tables.items()},
                                      "consent_dropped": 0}

    with open(out / "discards.ndjson", "wb") as f:
        for r in refused_requests:
            f.write(json.dumps(r).encode() + b"\n")
        if governed.rejected.height:
            governed.rejected.select(pl.lit("event").alias("kind"), pl.all()).write_ndjson(f)
        if governed.discards.height:
            governed.discards.select(pl.lit("value").alias("kind"), pl.all()).write_ndjson(f)

    after_v = _counter_values("tidegate_policy_violations", "type")
    for (kind,), n in (after_v - before_v).items():
        summary.violations[kind] = int(n)
    for (cls, action), n in (_counter_values("tidegate_pii_actions", "class", "action") - before_p).items():
        summary.pii_actions.setdefault(cls, {})[action] = int(n)
    for (name,), n in (_counter_values("tidegate_consent_drops", "destination") - before_c).items():
        if name in summary.destinations:
            summary.destinations[name]["consent_dropped"] = int(n)
    summary.suppressed = int(sum((_counter_values("tidegate_suppressed_events") - before_s).values()))
    (out / "summary.json").write_text(json.dumps(summary.as_json(), indent=2, sort_keys=True) + "\n")
    return summary
