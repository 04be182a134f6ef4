"""The identity stage: canonical ids on every row, identity_map rows, merges across batches."""

from __future__ import annotations

import json

from tidegate.stages import decode_messages, govern
from tidegate.stages.identity import IDENTITY_TABLE, IdentityResolver


def batch(events: list[dict]):
    env = json.dumps({"v": 1, "source": "web", "receivedAt": "2026-11-26T05:30:44.000Z", "events": events}).encode()
    return govern(decode_messages([(env, 0, None)]))


def ev(kind: str, mid: str, **ids) -> dict:
    return {"type": kind, "event": "Viewed", "messageId": mid, "receivedAt": "2026-11-26T05:30:44.000Z", **ids}


def test_anonymous_events_resolve_to_the_user_after_identify() -> None:
    r = IdentityResolver()
    out = r.process(batch([
        ev("track", "m1", anonymousId="a1"),
        ev("identify", "m2", anonymousId="a1", userId="bob"),
        ev("page", "m3", anonymousId="a2"),
    ]))
    assert out.tables["tracks"]["canonical_id"].to_list() == ["bob"]
    assert out.tables["pages"]["canonical_id"].to_list() == ["a2"]
    ids = dict(zip(out.tables[IDENTITY_TABLE]["id"].to_list(), out.tables[IDENTITY_TABLE]["canonical_id"].to_list()))
    assert ids["a:a1"] == "bob" and ids["u:bob"] == "bob" and ids["a:a2"] == "a2"


def test_merges_are_transitive_across_batches_and_deterministic() -> None:
    r = IdentityResolver()
    r.process(batch([ev("identify", "m1", anonymousId="phone", userId="zed")]))
    r.process(batch([ev("identify", "m2", anonymousId="laptop", userId="amy")]))
    # the same person logs in as amy on the phone: zed and amy merge; amy < zed wins everywhere
    out = r.process(batch([ev("track", "m3", anonymousId="phone", userId="amy"),
                           ev("alias", "m4", userId="amy", previousId="zed")]))
    assert set(out.tables["tracks"]["canonical_id"].to_list()) == {"amy"}
    later = r.process(batch([ev("track", "m5", anonymousId="laptop"), ev("track", "m6", userId="zed")]))
    assert later.tables["tracks"]["canonical_id"].to_list() == ["amy", "amy"]
    relabelled = dict(zip(out.tables[IDENTITY_TABLE]["id"].to_list(), out.tables[IDENTITY_TABLE]["canonical_id"].to_list()))
    assert relabelled["u:zed"] == "amy" and relabelled["a:phone"] == "amy"
