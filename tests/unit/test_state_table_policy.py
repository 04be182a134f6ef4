"""A destination's routing, filters, consent and data-protecting transforms reach the state
tables (``users``, ``identity_map``) too: a person whose events a destination must not receive
does not arrive there through them, and a hashed or dropped field is hashed or dropped there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidegate import _core
from tidegate.stages import PolicyPath, decode_messages

from sink_support import HASH_KEY, envelope_message, policy_path

KEY = HASH_KEY


def _path(tmp_path: Path, destination: str, monkeypatch: pytest.MonkeyPatch) -> PolicyPath:
    return policy_path(tmp_path, f"""
[sources.web]
write_key = "k1"
[sources.ios]
write_key = "k2"
[pii]
default_action = "allow"
[regulations]
path = "regs"
[destinations.d]
type = "duckdb"
path = "w.duckdb"
{destination}
""", monkeypatch)


def _identify(user: str, anon: str, mid: str, **traits: object) -> dict[str, object]:
    return {"type": "identify", "userId": user, "anonymousId": anon, "messageId": mid, "traits": traits}


def test_routing_keeps_another_sources_users_and_mappings_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path(tmp_path, 'sources = ["web"]', monkeypatch)
    b = path.govern(decode_messages([envelope_message("web", [_identify("alice", "a1", "w1", plan="pro")]),
                                     envelope_message("ios", [_identify("bob", "b1", "i1", plan="free")])]))
    share = path.shares(b, ["d"])["d"]
    assert share.tables["identifies"]["id"].to_list() == ["w1"]
    assert share.tables["users"]["id"].to_list() == ["alice"]
    assert sorted(share.tables["identity_map"]["id"].to_list()) == ["a:a1", "u:alice"]
    assert share.accepted == 1


def test_drop_field_and_hash_reach_the_state_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path(tmp_path, 'transforms = [{type = "hash", column = "user_id"}, {type = "drop_field", column = "email"}]',
                 monkeypatch)
    b = path.govern(decode_messages([envelope_message("web", [_identify("alice", "a1", "w1", email="alice@x.com")])]))
    share = path.shares(b, ["d"])["d"]
    [alice] = _core.hmac_column(["alice"], KEY.encode())
    assert share.tables["identifies"]["user_id"].to_list() == [alice]
    assert share.tables["identifies"]["canonical_id"].to_list() == [alice]  # still joins user_id
    users = share.tables["users"]
    assert users["id"].to_list() == [alice] and "email" not in users.columns
    mapping = dict(share.tables["identity_map"].select("id", "canonical_id").iter_rows())
    assert mapping == {f"u:{alice}": alice, "a:a1": alice}
    assert "alice" not in json.dumps([df.rows() for df in share.tables.values()], default=str).replace(alice, "")


def test_a_mapping_goes_where_its_persons_events_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent: carol denied what the destination needs, so neither her event nor her mappings
    reach it; dave's event stays, and so does the mapping his kept event names."""
    path = _path(tmp_path, 'consent = {consents = ["marketing"]}', monkeypatch)
    denied = {"consentManagement": {"deniedConsentIds": ["marketing"]}}
    events = [{"type": "track", "event": "E", "userId": "carol", "anonymousId": "anon-c", "messageId": "m1", "context": denied},
              {"type": "track", "event": "E", "userId": "dave", "anonymousId": "anon-d", "messageId": "m2"}]
    b = path.govern(decode_messages([envelope_message("web", events)]))
    assert sorted(b.tables["identity_map"]["id"].to_list()) == ["a:anon-c", "a:anon-d", "u:carol", "u:dave"]
    share = path.shares(b, ["d"])["d"]
    assert share.tables["tracks"]["id"].to_list() == ["m2"]
    assert sorted(share.tables["identity_map"]["id"].to_list()) == ["a:anon-d", "u:dave"]
