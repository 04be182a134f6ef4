"""A destination's own PII pass (`[destinations.<n>.pii]`): who a row's person is, and which users
are suppressed, is decided on the main pass; the own pass's redacted or hashed ids never reach
the shared identity graph."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tidegate import _core
from tidegate.regulations import suppress
from tidegate.stages import PolicyPath, decode_messages

from sink_support import HASH_KEY, envelope_message, policy_path

KEY = HASH_KEY


def _path(tmp_path: Path, action: str, monkeypatch: pytest.MonkeyPatch) -> PolicyPath:
    return policy_path(tmp_path, f"""
[sources.web]
write_key = "k"
[regulations]
path = "regs"
[destinations.wh]
type = "duckdb"
path = "w.duckdb"
[destinations.hook]
type = "webhook"
url = "http://127.0.0.1:9/x"
pii = {{actions = {{email = "{action}"}}}}
""", monkeypatch)


def _batch(path: PolicyPath, events: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    return path.govern(decode_messages([envelope_message("web", events)]))


def _identifies(n: int) -> list[dict[str, object]]:
    return [{"type": "identify", "userId": f"user{i}@x.com", "anonymousId": f"anon-{i}", "messageId": f"m{i}"} for i in range(n)]


def test_a_redacting_destination_does_not_merge_people_in_the_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path(tmp_path, "redact", monkeypatch)
    b = _batch(path, _identifies(3))
    shares = path.shares(b, ["wh", "hook"])
    hook = shares["hook"].tables["identifies"]
    assert hook["user_id"].to_list() == ["[REDACTED:email]"] * 3
    assert hook["canonical_id"].to_list() == ["[REDACTED:email]"] * 3  # never the clear email
    assert "identity_map" not in shares["hook"].tables  # a redacted mapping says nothing
    assert shares["wh"].tables["identifies"]["canonical_id"].to_list() == ["user0@x.com", "user1@x.com", "user2@x.com"]
    # later events of the three people still resolve to three people, on the main pass
    later = _batch(path, [{"type": "track", "event": "E", "anonymousId": f"anon-{i}", "messageId": f"t{i}"} for i in range(3)])
    assert later.tables["tracks"]["canonical_id"].to_list() == ["user0@x.com", "user1@x.com", "user2@x.com"]
    assert len(path.identity.graph) == 6


def test_a_hashing_destination_gets_hashed_canonical_ids_and_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path(tmp_path, "hash", monkeypatch)
    hashed = _core.hmac_column(["user0@x.com", "user1@x.com"], KEY.encode())
    shares = path.shares(_batch(path, _identifies(2)), ["hook"])
    ids = shares["hook"].tables["identifies"]
    assert ids["user_id"].to_list() == hashed
    assert ids["canonical_id"].to_list() == hashed
    mapping = shares["hook"].tables["identity_map"].sort("id")
    assert sorted(mapping["canonical_id"].to_list()) == sorted(hashed * 2)
    assert "user0@x.com" not in json.dumps(mapping.rows(), default=str)
    # an anonymous-only event later: the canonical id its destination sees is the hashed one
    later = path.shares(_batch(path, [{"type": "track", "event": "E", "anonymousId": "anon-1", "messageId": "t1"}]), ["hook"])
    assert later["hook"].tables["tracks"]["canonical_id"].to_list() == [hashed[1]]


@pytest.mark.parametrize("action", ["redact", "hash"])
def test_a_suppressed_user_is_removed_from_the_own_pass_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    path = _path(tmp_path, action, monkeypatch)
    assert suppress(path.cfg, "user1@x.com")
    time.sleep(0.01)
    shares = path.shares(_batch(path, _identifies(3)), ["wh", "hook"])
    hashed = _core.hmac_column(["user0@x.com", "user2@x.com"], KEY.encode())
    for name in ("wh", "hook"):
        assert shares[name].tables["identifies"]["id"].to_list() == ["m0", "m2"], name
    assert sorted(shares["wh"].tables["users"]["id"].to_list()) == ["user0@x.com", "user2@x.com"]
    if action == "hash":
        assert sorted(shares["hook"].tables["users"]["id"].to_list()) == sorted(hashed)
    else:  # users keyed by a redacted id would be one row for all of them
        assert "users" not in shares["hook"].tables


def test_the_own_pass_keeps_only_what_the_main_pass_kept_and_records_no_stage_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suppressed user's identity mappings and refused events are left out of the own pass as
    they are of the main pass; and its id treatment is no extra decoded envelope in the metrics."""
    from tidegate.metrics import REGISTRY

    path = _path(tmp_path, "hash", monkeypatch)
    assert suppress(path.cfg, "bob-7")
    time.sleep(0.01)
    events = [{"type": "identify", "userId": "bob-7", "anonymousId": "a9", "messageId": "m1"},
              {"type": "track", "event": "E", "anonymousId": "a9", "messageId": "m2"},
              {"type": "bogus", "userId": "bob-7", "messageId": "m3"},
              {"type": "track", "event": "E", "userId": "ann@x.com", "messageId": "m4"}]
    b = _batch(path, events)
    assert b.rejected.height == 1
    envelopes = REGISTRY.get_sample_value("tidegate_pipeline_messages_total", {"kind": "envelope"})
    shares = path.shares(b, ["wh", "hook"])
    assert REGISTRY.get_sample_value("tidegate_pipeline_messages_total", {"kind": "envelope"}) == envelopes
    [ann] = _core.hmac_column(["ann@x.com"], KEY.encode())
    for name in ("wh", "hook"):
        s = shares[name]
        assert s.rejected.height == 0, name
        assert [i for t in ("tracks", "identifies") if t in s.tables for i in s.tables[t]["id"].to_list()] == ["m2", "m4"], name
        assert "bob-7" not in json.dumps(s.tables["identity_map"].rows(), default=str), name
    assert set(shares["hook"].tables["identity_map"]["canonical_id"].to_list()) == {ann}
