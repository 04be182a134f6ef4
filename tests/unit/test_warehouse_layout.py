"""The warehouse layout the core writes: which tables an event may land in, which property and
trait names it keeps, and what a value it cannot store leaves in ``discards``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tidegate import _core
from tidegate.config import DuckDBDestination
from tidegate.errors import RequestRejected
from tidegate.sinks import DuckDBSink, aggregates, deliver
from tidegate.stages import decode_messages, govern
from tidegate.stages.govern import EVENT_TYPE_TABLES, STATE_TABLES
from tidegate.stages.identity import IDENTITY_TABLE

KAFKA_MS = 1_764_000_000_000
RECEIVED = "2026-11-26T05:30:44.000Z"
SINKS = Path(__file__).parents[2] / "python" / "tidegate" / "sinks"


def envelope(events: list[dict], source: str = "web") -> bytes:
    return json.dumps({"v": 1, "source": source, "receivedAt": RECEIVED, "events": events}).encode()


def governed(events: list[dict]):
    return govern(decode_messages([(envelope(events), KAFKA_MS, None)]))


def ev(mid: str, **kw) -> dict:
    base = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": mid,
            "receivedAt": RECEIVED, "timestamp": "2026-11-26T05:30:40.000Z"}
    base.update(kw)
    return base


# Reserved tables --------------------------------------------------------------------------------

def test_every_table_the_pipeline_writes_is_reserved() -> None:
    """A track event named like one of the pipeline's own tables must not land in it: every table
    the stages and sinks write is in the core's list, including any a sink creates by name."""
    reserved = set(_core.RESERVED_TABLES)
    own = {*STATE_TABLES, *EVENT_TYPE_TABLES.values(), IDENTITY_TABLE, aggregates.HOURLY_TABLE,
           "discards", "discarded_events"}
    assert own <= reserved, f"not reserved: {sorted(own - reserved)}"
    created = set()
    for path in SINKS.glob("*.py"):
        text = path.read_text()
        created |= set(re.findall(r"CREATE TABLE IF NOT EXISTS \{[^}]*\}\.(\w+)", text))
        created |= {name for name in re.findall(r"\b[A-Z_]*TABLES?\s*=\s*\"(\w+)\"", text)}
    assert created, "the DDL pattern no longer matches the sinks: update this test"
    assert created <= reserved, f"tables the sinks create that are not reserved: {sorted(created - reserved)}"
    for table in reserved:
        assert _core.event_table(table.replace("_", " ").title()) == f"_{table}"


def test_events_named_like_internal_tables_get_their_own_tables(tmp_path: Path) -> None:
    sink = DuckDBSink("warehouse", DuckDBDestination(path=str(tmp_path / "w.duckdb")))
    sink.setup()
    try:
        deliver(sink, governed([ev("m1", event="Event Counts Hourly", properties={"n": 1}),
                                ev("m2"),
                                ev("m3", event="Identity Map", properties={"node_id": "x", "canonical_id": "y"})]))
        counts = sink.row_counts()
        assert (counts["_event_counts_hourly"], counts["_identity_map"], counts["order_completed"]) == (1, 1, 1)
        assert counts.get("identity_map", 0) == 0
        assert sink.con.execute("select sum(event_count) from event_counts_hourly").fetchone() == (3,)
    finally:
        sink.close()


# Property and trait names ---------------------------------------------------------------------

def test_name_and_other_layout_columns_are_reserved_only_where_the_layout_sets_them() -> None:
    g = governed([
        ev("m1", type="identify", traits={"name": "Ana Lima", "plan": "pro", "user_id": "spoof"}),
        ev("m2", properties={"name": "Trail shoe", "event": "mine", "event_text": "also mine", "group_id": "g"}),
        ev("m3", type="page", name="Home", properties={"name": "mine", "event": "e"}),
        ev("m4", type="group", groupId="g1", traits={"name": "Running Club", "group_id": "mine"}),
    ])
    t = g.tables
    assert t["users"]["name"].to_list() == ["Ana Lima"]
    assert t["identifies"]["name"].to_list() == ["Ana Lima"]
    assert t["identifies"]["_user_id"].to_list() == ["spoof"], "pipeline columns stay reserved everywhere"
    oc = t["order_completed"]
    assert (oc["name"].to_list(), oc["group_id"].to_list()) == (["Trail shoe"], ["g"])
    assert (oc["event"].to_list(), oc["_event"].to_list(), oc["_event_text"].to_list()) == (
        ["order_completed"], ["mine"], ["also mine"])
    pages = t["pages"]
    assert (pages["name"].to_list(), pages["_name"].to_list(), pages["event"].to_list()) == (["Home"], ["mine"], ["e"])
    groups = t["groups"]
    assert (groups["name"].to_list(), groups["group_id"].to_list(), groups["_group_id"].to_list()) == (
        ["Running Club"], ["g1"], ["mine"])
    assert g.discards.height == 0


# Refused messages and PII ---------------------------------------------------------------------

def test_a_message_refused_as_invalid_json_is_kept_with_its_pii_redacted() -> None:
    card, mail = "4111 1111 1111 1111", "ana.lima@example.com"
    raw = json.dumps({"type": "track", "event": "Checkout", "userId": "u1", "messageId": "m-nan",
                      "properties": {"score": math.nan, "email": mail, "card": card, "password": "hunter2",
                                     "api_key": 12345}}).encode()
    pii = (list(_core.DEFAULT_SENSITIVE_KEYS), [], "redact", b"k" * 32)
    result = _core.process_batch([("direct", KAFKA_MS * 1000, raw, b"", b"")], None, _core.Governance([], [], pii))
    (refused,) = [json.loads(line) for line in result.rejected.decode().splitlines()]
    assert refused["reason"] == "invalid_json"
    kept = refused["event"]
    for secret in (mail, card, "hunter2", "12345"):
        assert secret not in kept, kept
    assert "[REDACTED:email]" in kept and "[REDACTED:credit_card]" in kept and "NaN" in kept
    assert '"messageId": "m-nan"' in kept, "what is not PII stays readable"
    # Without a PII policy the text is kept as it came.
    plain = _core.process_batch([("direct", KAFKA_MS * 1000, raw, b"", b"")], None)
    assert mail in json.loads(plain.rejected.decode())["event"]


# Client timestamps ----------------------------------------------------------------------------

@pytest.mark.parametrize("ts", ["2026-11-26T05:30:40.123", "2026-11-26T06:30:40+0100", 1764135040123])
def test_an_unreadable_client_timestamp_is_replaced_and_kept_in_discards(ts: str | int) -> None:
    g = governed([ev("m1", timestamp=ts, sentAt="not a time either")])
    row = g.tables["tracks"].row(0, named=True)
    assert row["timestamp"] == row["received_at"], "derived by the clock-skew rule: here receivedAt"
    found = {(d["table_name"], d["column_name"]): d for d in g.discards.iter_rows(named=True)}
    assert set(found) == {(t, c) for t in ("tracks", "order_completed") for c in ("timestamp", "sent_at")}
    kept = found["tracks", "timestamp"]
    assert (kept["row_id"], kept["column_value"]) == ("m1", ts if isinstance(ts, str) else str(ts))
    assert "derived" in kept["reason"]


def test_the_collector_forwards_an_unreadable_timestamp_for_the_pipeline_to_record() -> None:
    body = json.dumps({"userId": "u", "event": "x", "messageId": "c1", "timestamp": "2026-11-26T05:30:40.123"}).encode()
    ((_, _, payload),) = _core.ingest(body, "track", "web", 1_764_147_600_000_000, 1, 32768, 4 << 20, 100)
    assert json.loads(payload)["events"][0]["timestamp"] == "2026-11-26T05:30:40.123"
    g = govern(decode_messages([(payload, KAFKA_MS, None)]))
    assert g.tables["tracks"]["timestamp"].to_list() == g.tables["tracks"]["received_at"].to_list()
    assert ("timestamp", "2026-11-26T05:30:40.123") in set(zip(g.discards["column_name"], g.discards["column_value"]))
    # Absent or null: stamped, nothing to record.
    for extra in ({}, {"timestamp": None}):
        body = json.dumps({"userId": "u", "event": "x", **extra}).encode()
        ((_, _, payload),) = _core.ingest(body, "track", "web", 1_764_147_600_000_000, 1, 32768, 4 << 20, 100)
        assert json.loads(payload)["events"][0]["timestamp"] == "2025-11-26T09:00:00.000Z"
        assert govern(decode_messages([(payload, KAFKA_MS, None)])).discards.height == 0


# Nesting depth --------------------------------------------------------------------------------

def nested(levels: int) -> dict:
    """An event nested `levels` deep, the event object itself being the first level."""
    inner: object = 1
    for _ in range(levels - 1):
        inner = {"a": inner}
    return {"userId": "u", "event": "Deep", "messageId": f"deep-{levels}", "properties": inner}


def test_the_collector_refuses_on_single_event_endpoints_what_the_pipeline_cannot_take() -> None:
    def post(endpoint: str | None, body: dict) -> list[tuple[int, int, bytes]]:
        return _core.ingest(json.dumps(body).encode(), endpoint, "web", 1_764_147_600_000_000, 1, 1 << 20, 4 << 20, 100)

    deepest = 125  # envelope object + `events` array + the event: serde_json's 127 levels
    for endpoint, body in (("track", nested(deepest)), (None, {"batch": [dict(nested(deepest), type="track")]})):
        ((_, _, payload),) = post(endpoint, body)
        g = govern(decode_messages([(payload, KAFKA_MS, None)]))
        assert (g.accepted, g.rejected.height) == (1, 0)
    for endpoint, body in (("track", nested(deepest + 1)), (None, {"batch": [dict(nested(deepest + 1), type="track")]})):
        with pytest.raises(RequestRejected) as refused:
            post(endpoint, body)
        assert refused.value.status == 400, refused.value
        if endpoint == "track":
            assert refused.value.code == "too_deeply_nested"
            assert "125" in str(refused.value), refused.value


# Column types ---------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [(5, 18446744073709551615), (18446744073709551615, 5)])
def test_an_integer_above_i64_widens_its_column_to_float_in_either_order(order: tuple[int, int]) -> None:
    g = governed([ev(f"m{i}", properties={"n": n}) for i, n in enumerate(order)])
    assert g.tables["order_completed"]["n"].to_list() == [float(n) for n in order]
    assert g.discards.height == 0
