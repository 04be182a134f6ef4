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


def test_every_table_gets_its_own_rows_ids_in_row_order() -> None:
    """The tables are resolved together (one join for the batch); each must get back exactly
    its own rows' ids, in its row order, whatever ids its rows carry."""
    r = IdentityResolver()
    out = r.process(batch([
        ev("page", "p1", anonymousId="a9"),
        ev("track", "t1", userId="u1"),
        ev("identify", "i1", anonymousId="a1", userId="u1"),
        ev("track", "t2", anonymousId="a1"),
        ev("page", "p2", anonymousId="a1", userId=""),  # an empty user id is no id: the anonymous one stands
        ev("screen", "s1", anonymousId="a7"),
        ev("track", "t3", anonymousId="a8"),
    ]))
    by_id = {t: dict(zip(df["id"].to_list(), df["canonical_id"].to_list()))
             for t, df in out.tables.items() if t in ("tracks", "pages", "screens", "identifies")}
    assert by_id["tracks"] == {"t1": "u1", "t2": "u1", "t3": "a8"}
    assert by_id["pages"] == {"p1": "a9", "p2": "u1"}
    assert by_id["screens"] == {"s1": "a7"} and by_id["identifies"] == {"i1": "u1"}
    assert out.tables["tracks"].columns[-1] == "canonical_id"
    # A second pass over the same tables replaces the column.
    again = r.process(out)
    assert again.tables["tracks"].columns.count("canonical_id") == 1
    assert again.tables["tracks"]["canonical_id"].to_list() == out.tables["tracks"]["canonical_id"].to_list()


def test_identity_map_gets_only_mappings_that_are_news() -> None:
    """Ids already written with their current canonical id are not written again; a merge
    re-writes every id it re-labelled, also ids the batch does not mention."""
    r = IdentityResolver()
    first = r.process(batch([ev("identify", "m1", anonymousId="a1", userId="zed"), ev("page", "m2", anonymousId="a5")]))
    assert sorted(first.tables[IDENTITY_TABLE]["id"].to_list()) == ["a:a1", "a:a5", "u:zed"]
    same = r.process(batch([ev("track", "m3", anonymousId="a1", userId="zed"), ev("page", "m4", anonymousId="a5")]))
    assert IDENTITY_TABLE not in same.tables
    assert same.tables["tracks"]["canonical_id"].to_list() == ["zed"]
    merged = r.process(batch([ev("alias", "m5", userId="amy", previousId="zed"), ev("page", "m6", anonymousId="a6")]))
    rows = dict(zip(merged.tables[IDENTITY_TABLE]["id"].to_list(), merged.tables[IDENTITY_TABLE]["canonical_id"].to_list()))
    assert rows == {"a:a1": "amy", "u:zed": "amy", "u:amy": "amy", "a:a6": "a6"}


def test_properties_and_traits_named_like_pipeline_columns_are_kept_beside_them() -> None:
    """A property or trait named like a column the pipeline sets (lateness, lineage, config
    version, canonical id) is stored as `_<name>`: neither value overwrites the other."""
    own = {"late": "yes", "late_by_ms": 5, "tidegate_pii_actions": "x", "tidegate_config_version": "v9", "canonical_id": "mine"}
    out = IdentityResolver().process(govern(decode_messages([(json.dumps({
        "v": 1, "source": "web", "receivedAt": "2026-11-26T05:30:44.000Z",
        "events": [{**ev("track", "m1", userId="bob"), "properties": own},
                   {**ev("identify", "m2", userId="bob"), "traits": own}]}).encode(), 0, None)]), config_version="cfg1"))
    for table in ("viewed", "identifies"):
        row = out.tables[table].row(0, named=True)
        assert {k: row[f"_{k}"] for k in own} == own, table
        assert (row["late"], row.get("late_by_ms"), row["tidegate_config_version"], row["canonical_id"]) == (False, None, "cfg1", "bob")
    assert out.tables["users"].row(0, named=True)["_late"] == "yes"
