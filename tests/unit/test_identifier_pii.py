"""Identifiers under the workspace's PII actions: `redact` and `drop_field` leave userId,
anonymousId, previousId and groupId as they are (they are the keys people are told apart and
joined by), `hash` hashes them, and suppression and deletion find a user under the hashed id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sink_support import HASH_KEY, envelope_message, policy_path
from tidegate import _core
from tidegate.regulations import delete, suppress
from tidegate.sinks import DuckDBSink, deliver
from tidegate.stages import PolicyPath, decode_messages

TOML = """
[sources.web]
write_key = "k"
[regulations]
path = "regs"
[pii.actions]
email = "{action}"
[destinations.wh]
type = "duckdb"
path = "w.duckdb"
"""


def _path(tmp_path: Path, action: str, monkeypatch: pytest.MonkeyPatch) -> PolicyPath:
    return policy_path(tmp_path, TOML.format(action=action), monkeypatch)


def _people() -> list[dict[str, object]]:
    return [
        {"type": "identify", "userId": "Alice@Example.com", "anonymousId": "anon-a", "messageId": "m1",
         "traits": {"email": "alice@example.com", "plan": "pro"}},
        {"type": "identify", "userId": "bob@example.com", "anonymousId": "anon-b", "messageId": "m2",
         "traits": {"email": "bob@example.com", "plan": "free"}},
        {"type": "track", "event": "Viewed", "userId": "carol-7", "anonymousId": "anon-c", "messageId": "m3",
         "properties": {"note": "mail me at carol@example.com"}},
    ]


@pytest.mark.parametrize("action", ["redact", "drop_field"])
def test_redacting_emails_keeps_email_identifiers_and_people_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   action: str) -> None:
    path = _path(tmp_path, action, monkeypatch)
    b = path.govern(decode_messages([envelope_message("web", _people())]))
    ids = b.tables["identifies"]
    assert ids["user_id"].to_list() == ["alice@example.com", "bob@example.com"]
    assert ids["canonical_id"].to_list() == ["alice@example.com", "bob@example.com"]  # two people, not one
    assert sorted(b.tables["users"]["id"].to_list()) == ["alice@example.com", "bob@example.com"]
    # the policy still holds everywhere else: traits and free text
    stored = json.dumps(b.tables["users"].drop("id").rows(), default=str) + json.dumps(b.tables["tracks"].rows(), default=str)
    assert "alice@example.com" not in stored and "carol@example.com" not in stored
    assert len(path.identity.graph) == 6  # three people, two ids each


def test_hashing_emails_hashes_identifiers_and_regulations_find_them(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path(tmp_path, "hash", monkeypatch)
    alice, bob = _core.hmac_column(["alice@example.com", "bob@example.com"], HASH_KEY.encode())
    b = path.govern(decode_messages([envelope_message("web", _people())]))
    assert b.tables["identifies"]["user_id"].to_list() == [alice, bob]
    sink = DuckDBSink("wh", path.cfg.destinations["wh"])
    sink.setup()
    try:
        deliver(sink, path.shares(b, ["wh"])["wh"])
        sink.checkpoint()
        assert sink.con.execute("select count(*) from identifies where user_id = ?", [alice]).fetchone() == (1,)
    finally:
        sink.close()

    # suppression typed as a person would type it: her later events are dropped under the hashed id
    assert suppress(path.cfg, " Alice@EXAMPLE.com ")
    time.sleep(0.01)
    later = path.govern(decode_messages([envelope_message("web", [
        {"type": "track", "event": "Viewed", "userId": "alice@example.com", "messageId": "m4"},
        {"type": "track", "event": "Viewed", "userId": "bob@example.com", "messageId": "m5"}])]))
    assert path.shares(later, ["wh"])["wh"].tables["tracks"]["user_id"].to_list() == [bob]

    # deletion removes her rows stored under the hashed id
    result = delete(path.cfg, "alice@example.com")
    assert result.deleted["wh"].get("identifies") == 1 and result.deleted["wh"].get("users") == 1, result
    sink = DuckDBSink("wh", path.cfg.destinations["wh"])
    sink.setup()
    try:
        left = sink.con.execute("select user_id from identifies").fetchall()
        assert left == [(bob,)]
        assert sink.con.execute("select count(*) from identity_map where canonical_id = ?", [alice]).fetchone() == (0,)
    finally:
        sink.close()


@pytest.mark.parametrize("workspace", ["allow", "redact"])
def test_a_pending_deletion_finds_ids_a_destinations_own_policy_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      workspace: str) -> None:
    """The pipeline carries out a deletion left pending for a destination whose own `pii` hashes
    identifiers (the workspace's does not): it looks for the id that destination stored."""
    from tidegate.regulations import RegulationStore

    path = policy_path(tmp_path, TOML.format(action=workspace) + '[destinations.wh.pii.actions]\nemail = "hash"\n',
                       monkeypatch)
    b = path.govern(decode_messages([envelope_message("web", [
        {"type": "identify", "userId": "alice@example.com", "anonymousId": "anon-a", "messageId": "m1"},
        {"type": "track", "event": "Viewed", "userId": "alice@example.com", "messageId": "m2"}])]))
    sink = DuckDBSink("wh", path.cfg.destinations["wh"])
    sink.setup()
    try:
        deliver(sink, path.shares(b, ["wh"])["wh"])
        sink.checkpoint()
        assert sink.con.execute("select user_id from identifies").fetchone()[0].startswith("hmac-sha256:")
        # `regulate delete` while the warehouse was busy: left pending for the pipeline
        store = RegulationStore(path.cfg.regulations.path)
        store.update("alice@example.com", {"regulation": "delete", "at": "t", "by": "test", "pending": ["wh"]})
        assert path.suppression.refresh()
        path.suppression.run_pending({"wh": sink})
        left = {t: sink.con.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("identifies", "tracks", "users", "identity_map")}
        assert not any(left.values()), left
        assert store.users()["alice@example.com"]["pending"] == []
    finally:
        sink.close()
