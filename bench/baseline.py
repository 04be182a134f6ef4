"""The per-event pure-Python governance a user would write without Tidegate.

``json.loads`` -> ``fastjsonschema`` validation against the tracking plan (common schema plus
the event's own schema) -> PII detection with ``re`` over every string at every depth (card
candidates Luhn-checked) -> ``hashlib.sha256`` idempotency key (``messageId`` scoped by source,
else the canonical event) -> (for the warehouse) the Segment layout flattened in Python.

It follows the same rules as Tidegate so the two can be compared on the same corpus; it is a
reference point for benchmarks, not part of Tidegate.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import fastjsonschema

__all__ = ["PythonGovernance", "Governed", "flatten_rows", "scan_pii", "PII_PATTERNS", "PII_RE"]

PII_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "phone": r"\+\d{1,3}[ .-]?(?:\(\d{3}\)|\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,8}\b|\(\d{3}\) ?\d{3}-\d{4}\b",
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "ipv4": r"(?<![\w/.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])",
}
# One alternation, one pass per string: what a careful user writes (cards need the Luhn check).
PII_RE = re.compile("|".join(f"(?P<{cls}>{rx})" for cls, rx in PII_PATTERNS.items()))
_TRANSPORT = ("sentAt", "receivedAt", "messageId", "requestIp", "writeKey")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def scan_pii(value: Any, path: str, found: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        for m in PII_RE.finditer(value):
            cls = m.lastgroup
            if cls == "card":
                digits = m.group().replace(" ", "").replace("-", "")
                if not (13 <= len(digits) <= 19 and _luhn(digits)):
                    continue
            found.append((cls, path))  # type: ignore[arg-type]
    elif isinstance(value, dict):
        for k, v in value.items():
            scan_pii(v, f"{path}.{k}", found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            scan_pii(v, f"{path}[{i}]", found)


@dataclass
class Governed:
    event: dict[str, Any] | None
    key: str
    violations: list[str] = field(default_factory=list)
    pii: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def schemas_for(plan: Any, event: dict[str, Any]) -> tuple[list[Any], bool]:
    """The compiled schemas ``event`` is checked against — the common one, then its track event's
    or identify's — and whether it is an unplanned track event. ``plan`` has ``common``,
    ``events`` and ``identify`` (any validator type)."""
    checks = [plan.common]
    kind = event.get("type")
    if kind == "track":
        v = plan.events.get(event.get("event", ""))
        if v is None:
            return checks, True
        checks.append(v)
    elif kind == "identify" and plan.identify is not None:
        checks.append(plan.identify)
    return checks, False


class PythonGovernance:
    """Compile the plan once; ``process(raw, source)`` governs one event."""

    def __init__(self, plan: dict[str, Any]):
        self.plan_id = plan.get("id", "")
        self.plan_version = plan.get("version", "")
        self.common = fastjsonschema.compile(plan["common"])
        self.events: dict[str, Callable[[Any], Any]] = {n: fastjsonschema.compile(s) for n, s in plan["events"].items()}
        self.identify = fastjsonschema.compile(plan["identify"]) if plan.get("identify") else None

    def validate(self, event: dict[str, Any]) -> list[str]:
        checks, unplanned = schemas_for(self, event)
        errors = ["Unplanned-Event"] if unplanned else []
        for check in checks:
            try:
                check(event)
            except fastjsonschema.JsonSchemaValueException as e:
                errors.append(f"{e.rule}: {e.message}")
        return errors

    @staticmethod
    def key(source: str, event: dict[str, Any]) -> str:
        mid = event.get("messageId")
        if isinstance(mid, str) and mid:
            return hashlib.sha256(f"m\0{source}\0{mid}".encode()).hexdigest()[:32]
        canon = {k: v for k, v in event.items() if k not in _TRANSPORT}
        return hashlib.sha256(f"c\0{source}\0".encode() + json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]

    def process(self, raw: bytes | str, source: str) -> Governed:
        try:
            event = json.loads(raw)
        except ValueError as e:
            return Governed(None, hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode()).hexdigest()[:32], error=f"invalid_json: {e}")
        return self.process_event(event, source)

    def process_event(self, event: Any, source: str) -> Governed:
        """Govern an already parsed event."""
        if not isinstance(event, dict):
            return Governed(None, "", error="not_an_object")
        violations = self.validate(event)
        pii: list[tuple[str, str]] = []
        scan_pii(event, "$", pii)
        return Governed(event, self.key(source, event), violations, pii)


# -- the warehouse layout, flattened in Python (used by the e2e baseline app) -------------------
_SNAKE_1 = re.compile(r"(.)([A-Z][a-z]+)")
_SNAKE_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_COMMON = {"id", "anonymous_id", "user_id", "sent_at", "timestamp", "received_at", "original_timestamp", "channel",
           "event", "event_text", "name", "group_id", "previous_id", "uuid_ts", "context_source_id"}
_snake_cache: dict[str, str] = {}


def snake(name: str) -> str:
    s = _snake_cache.get(name)
    if s is None:
        s = _NON_WORD.sub("_", _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()).strip("_")
        _snake_cache[name] = s
    return s


def _flatten(row: dict[str, Any], prefix: str, obj: dict[str, Any], guard: bool) -> None:
    for k, v in obj.items():
        col = f"{prefix}_{snake(k)}" if prefix else snake(k)
        if isinstance(v, dict):
            _flatten(row, col, v, guard)
        elif v is None:
            continue
        else:
            if guard and col in _COMMON:
                col = "_" + col
            row[col] = json.dumps(v) if isinstance(v, list) else v


def flatten_rows(g: Governed, source: str, extra: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(table, row)`` pairs of one governed event in the Segment/RudderStack layout."""
    e = g.event
    assert e is not None
    common: dict[str, Any] = {"id": e.get("messageId") or g.key}
    for f, c in (("anonymousId", "anonymous_id"), ("userId", "user_id"), ("sentAt", "sent_at"),
                 ("timestamp", "timestamp"), ("receivedAt", "received_at"),
                 ("originalTimestamp", "original_timestamp"), ("channel", "channel")):
        v = e.get(f)
        if v is not None:
            common[c] = v
    ctx = e.get("context")
    if isinstance(ctx, dict):
        _flatten(common, "context", ctx, False)
    common["context_source_id"] = source
    if g.violations:
        common["context_violation_errors"] = json.dumps(g.violations)
    common.update(extra)
    kind = e.get("type")
    if kind == "track":
        name = str(e.get("event", ""))
        table = snake(name)
        row = {**common, "event": table, "event_text": name}
        out = [("tracks", row)]
        props = e.get("properties")
        per_event = dict(row)
        if isinstance(props, dict):
            _flatten(per_event, "", props, True)
        out.append((table, per_event))
        return out
    if kind == "identify":
        traits = e.get("traits") or {}
        row = dict(common)
        _flatten(row, "", traits, True)
        out = [("identifies", row)]
        if e.get("userId"):
            user = {"id": str(e["userId"]), "received_at": e.get("receivedAt")}
            _flatten(user, "", traits, True)
            out.append(("users", user))
        return out
    if kind in ("page", "screen"):
        row = dict(common)
        if e.get("name") is not None:
            row["name"] = e["name"]
        if isinstance(e.get("properties"), dict):
            _flatten(row, "", e["properties"], True)
        return [("pages" if kind == "page" else "screens", row)]
    if kind == "group":
        row = {**common, "group_id": str(e.get("groupId", ""))}
        if isinstance(e.get("traits"), dict):
            _flatten(row, "", e["traits"], True)
        return [("groups", row)]
    if kind == "alias":
        return [("aliases", {**common, "previous_id": str(e.get("previousId", ""))})]
    return []
