"""Tracking-plan files: Tidegate's own form, and the JSON that Segment Protocols and RudderStack
export, converted to it.

Tidegate's form::

    {"id": "tp_web", "version": 3,
     "events": {"Order Completed": <JSON Schema of the whole event>, ...},
     "identify": <schema>, "page": <schema>, "screen": <schema>, "group": <schema>,
     "common": <schema applied to every event>}

Imported forms:

- Segment Config API / RudderStack tracking plans: ``{"name"|"id", "version"?, "rules":
  {"events": [{"name", "rules": <schema>, "version"?}], "global"?, "identify"?, "group"?}}``
  (``global`` becomes ``common``).
- Segment Public API: ``{"rules": [{"type": "TRACK"|"IDENTIFY"|"GROUP"|"PAGE"|"SCREEN"|"COMMON",
  "key", "version", "jsonSchema"}]}``, possibly wrapped in ``{"data": {...}}`` or
  ``{"trackingPlan": {...}}``. Of several versions of one event the highest wins.

>>> to_native({"name": "shop", "rules": {"events": [{"name": "Signed Up", "rules": {"type": "object"}}],
...                                     "global": {"type": "object"}}})["events"]
{'Signed Up': {'type': 'object'}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["load_plan", "to_native"]

_PUBLIC_TYPES = {"TRACK": "events", "IDENTIFY": "identify", "GROUP": "group", "PAGE": "page",
                 "SCREEN": "screen", "COMMON": "common"}


def load_plan(path: str | Path, plan_id: str) -> bytes:
    """Read a plan file in any supported form; return it as Tidegate's form (JSON bytes)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read tracking plan file {path}: {e.strerror}; fix plans.{plan_id}.path",
                          key=f"plans.{plan_id}.path") from None
    except ValueError as e:
        raise ConfigError(f"tracking plan file {path} is not valid JSON: {e}", key=f"plans.{plan_id}.path") from None
    try:
        native = to_native(raw, default_id=plan_id)
    except ValueError as e:
        raise ConfigError(f"tracking plan file {path}: {e}", key=f"plans.{plan_id}.path") from None
    return json.dumps(native).encode()


def to_native(raw: Any, *, default_id: str = "tracking_plan") -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("a tracking plan is a JSON object")
    meta: dict[str, Any] = {}
    for wrapper in ("data", "trackingPlan", "tracking_plan"):
        inner = raw.get(wrapper)
        if isinstance(inner, dict):
            if "rules" in raw or "events" in raw:
                meta = inner  # a sibling holds the plan's id and name
            else:
                raw = inner
    if "events" in raw and isinstance(raw["events"], dict):
        return raw
    rules = raw.get("rules")
    named = {**meta, **{k: v for k, v in raw.items() if k in ("id", "name", "slug", "version")}}
    plan_id = str(named.get("id") or named.get("name") or named.get("slug") or default_id)
    raw = {**raw, "version": named.get("version", raw.get("version", 1))}
    version = raw.get("version", 1)
    if isinstance(rules, dict):
        out: dict[str, Any] = {"id": plan_id, "version": version, "events": {}}
        for i, ev in enumerate(rules.get("events") or []):
            if not isinstance(ev, dict) or "name" not in ev:
                raise ValueError(f"rules.events[{i}] needs a name")
            out["events"][ev["name"]] = ev.get("rules", True)
        for src, dst in (("global", "common"), ("identify", "identify"), ("group", "group"),
                         ("page", "page"), ("screen", "screen")):
            if rules.get(src) is not None:
                out[dst] = rules[src]
        return out
    if isinstance(rules, list):
        out = {"id": plan_id, "version": version, "events": {}}
        best: dict[tuple[str, str], int] = {}
        for i, rule in enumerate(rules):
            kind = _PUBLIC_TYPES.get(str(rule.get("type", "")).upper()) if isinstance(rule, dict) else None
            if kind is None:
                raise ValueError(f"rules[{i}] has type {rule.get('type') if isinstance(rule, dict) else rule!r}; "
                                 f"expected one of {', '.join(_PUBLIC_TYPES)}")
            key = str(rule.get("key") or "")
            v = int(rule.get("version") or 1)
            if best.get((kind, key), -1) > v:
                continue
            best[(kind, key)] = v
            schema = rule.get("jsonSchema", True)
            if kind == "events":
                if not key:
                    raise ValueError(f"rules[{i}] is a TRACK rule without a key (the event name)")
                out["events"][key] = schema
            else:
                out[kind] = schema
        return out
    raise ValueError("not a tracking plan: expected `events` (Tidegate), `rules.events` (Segment Config API, "
                     "RudderStack) or a `rules` list (Segment Public API)")
