"""Tracking plans and PII through the pipeline's govern stage (the Rust core's batch call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidegate import ConfigError, load_config
from tidegate.stages import build_policy, decode_messages, govern

ROOT = Path(__file__).resolve().parents[2]


def envelope(events: list[dict], source: str = "web") -> bytes:
    return json.dumps({"v": 1, "source": source, "receivedAt": "2026-11-26T05:30:44.000Z", "events": events}).encode()


def order(i: int, **props) -> dict:
    p = {"order_id": f"o{i}", "total": 10.0, "currency": "EUR"}
    p.update(props)
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": f"m{i}",
            "receivedAt": "2026-11-26T05:30:44.000Z", "properties": p}


@pytest.fixture(scope="module")
def policy():
    cfg = load_config(ROOT / "config" / "tidegate.toml", env={})
    return build_policy(cfg)


def run(policy, events: list[dict], source: str = "web"):
    return govern(decode_messages([(envelope(events, source), 0, None)]), policy=policy)


def test_valid_events_carry_plan_id_and_version(policy) -> None:
    g = run(policy, [order(1)])
    row = g.tables["order_completed"].row(0, named=True)
    assert row["context_tracking_plan_id"] == "tp_shop_web"
    assert row["context_tracking_plan_version"] == "1" or row["context_tracking_plan_version"] == 1
    assert "context_violation_errors" not in g.tables["order_completed"].columns


def test_forwarded_violations_are_attached(policy) -> None:
    g = run(policy, [order(2, total="ten", currency="JPY")])
    errors = json.loads(g.tables["order_completed"]["context_violation_errors"][0])
    types = sorted(e["type"] for e in errors)
    assert types == ["Advance-Rules-Violation", "Datatype-Mismatch"]
    for e in errors:
        assert set(e) == {"type", "message", "property", "meta"}
        assert set(e["meta"]) == {"instancePath", "schemaPath"}


def test_unplanned_events_are_dropped_with_reason(policy) -> None:
    g = run(policy, [{"type": "track", "event": "Mystery", "userId": "u", "messageId": "x1"}, order(3)])
    assert g.accepted == 1
    rej = g.rejected.row(0, named=True)
    assert (rej["id"], rej["reason"]) == ("x1", "tracking_plan")
    assert "Unplanned-Event" in rej["detail"]


def test_sources_without_plan_are_not_checked(policy) -> None:
    g = run(policy, [{"type": "track", "event": "Mystery", "userId": "u", "messageId": "x2"}], source="server")
    assert g.accepted == 1 and g.rejected.is_empty()


def test_pii_redacted_blocked_and_recorded(policy) -> None:
    card = "4111 1111 1111 1111"
    g = run(policy, [
        order(4, note=f"paid with {card} today", contact="ana@example.com"),
        order(5, note="ssn 123-45-6789"),
        {"type": "identify", "userId": "u2", "messageId": "m6", "traits": {"password": "hunter2", "email": "b@example.com"}},
    ])
    oc = g.tables["order_completed"].row(0, named=True)
    assert card not in oc["note"] and "[REDACTED:credit_card]" in oc["note"]
    assert oc["contact"] == "ana@example.com"  # email: allow in the example config
    assert oc["tidegate_pii_actions"] == "credit_card:redact"
    assert g.tables["identifies"]["password"][0] != "hunter2"
    rej = g.rejected.row(0, named=True)
    assert (rej["id"], rej["reason"]) == ("m5", "pii_blocked")
    assert "123-45-6789" not in rej["event"], "a discarded event must not keep PII in clear"


def test_unsupported_keyword_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(json.dumps({"id": "p", "version": 1, "events": {
        "A": {"properties": {"properties": {"$ref": "#/definitions/x"}}}}}))
    (tmp_path / "t.toml").write_text('[sources.web]\nwrite_key = "k"\ntracking_plan = "p"\n[plans.p]\npath = "plan.json"\n'
                                     '[destinations.w]\ntype = "duckdb"\n')
    with pytest.raises(ConfigError) as e:
        build_policy(load_config(tmp_path / "t.toml", env={}))
    assert "$ref" in str(e.value) and "t.toml" in str(e.value)


def test_undefined_plan_and_hash_without_key(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text('[sources.web]\nwrite_key = "k"\ntracking_plan = "nope"\n[destinations.w]\ntype = "duckdb"\n')
    with pytest.raises(ConfigError, match="tracking plan 'nope' is not defined") as e:
        load_config(tmp_path / "t.toml", env={})
    assert e.value.line == 3
    (tmp_path / "t.toml").write_text('[sources.web]\nwrite_key = "k"\n[pii.actions]\nemail = "hash"\n[destinations.w]\ntype = "duckdb"\n')
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        build_policy(load_config(tmp_path / "t.toml", env={}))
