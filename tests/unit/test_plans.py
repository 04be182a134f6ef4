"""Importing tracking plans exported by Segment Protocols and RudderStack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidegate import ConfigError, _core
from tidegate.plans import load_plan, to_native

ORDER_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                "properties": {"properties": {"type": "object", "required": ["total"],
                                              "properties": {"total": {"type": "number"}}}}}


def governance(plan: dict) -> _core.Governance:
    return _core.Governance([("p", json.dumps(to_native(plan)).encode())], [("web", "p", ["Unplanned-Event"])])


def run(g: _core.Governance, event: dict):
    return _core.process_batch([("web", 0, json.dumps(event).encode(), b"", b"")], None, g)


@pytest.mark.parametrize("export", [
    {"name": "workspaces/x/tracking-plans/rs_1", "display_name": "Shop",
     "rules": {"events": [{"name": "Order Completed", "rules": ORDER_SCHEMA, "version": 1}],
               "global": {"type": "object"}, "identify": {"type": "object"}}},
    {"data": {"trackingPlan": {"id": "tp_1"}, "rules": [
        {"type": "TRACK", "key": "Order Completed", "version": 1, "jsonSchema": {"type": "object"}},
        {"type": "TRACK", "key": "Order Completed", "version": 2, "jsonSchema": ORDER_SCHEMA},
        {"type": "COMMON", "key": "", "version": 1, "jsonSchema": {"type": "object"}}]}},
    {"id": "tp_native", "version": 4, "events": {"Order Completed": ORDER_SCHEMA}},
])
def test_exports_validate_like_native_plans(export: dict) -> None:
    g = governance(export)
    good = run(g, {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": 3}})
    bad = run(g, {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": "3"}})
    unplanned = run(g, {"type": "track", "event": "Nope", "userId": "u"})
    assert good.accepted == 1 and not good.violation_counts
    assert [(t, a) for _, t, a, _ in bad.violation_counts] == [("Datatype-Mismatch", "forward")]
    assert unplanned.accepted == 0 and unplanned.rejected_reasons == {"tracking_plan": 1}


def test_public_api_keeps_highest_version_and_maps_types() -> None:
    native = to_native({"rules": [
        {"type": "TRACK", "key": "A", "version": 3, "jsonSchema": {"title": "v3"}},
        {"type": "TRACK", "key": "A", "version": 2, "jsonSchema": {"title": "v2"}},
        {"type": "IDENTIFY", "key": "", "version": 1, "jsonSchema": {"title": "traits"}}]})
    assert native["events"]["A"] == {"title": "v3"}
    assert native["identify"] == {"title": "traits"}


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "plan.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_plan(p, "web")
    p.write_text(json.dumps({"rules": [{"type": "BOGUS"}]}))
    with pytest.raises(ConfigError, match="expected one of TRACK"):
        load_plan(p, "web")
    with pytest.raises(ConfigError, match="cannot read"):
        load_plan(tmp_path / "missing.json", "web")
