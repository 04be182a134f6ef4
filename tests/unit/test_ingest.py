"""Collector normalisation (the Rust `_core.ingest`) through its Python binding."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from tidegate import RequestRejected, _core

NOW_US = int(datetime(2026, 11, 26, 5, 30, 44, tzinfo=timezone.utc).timestamp() * 1_000_000)
LIMITS = (32 * 1024, 4 * 1024 * 1024, 10_000)


def ingest(body: object, endpoint: str | None = "batch", partitions: int = 4, limits: tuple[int, int, int] = LIMITS):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _core.ingest(raw, endpoint, "web", NOW_US, partitions, *limits)


def events_of(envelopes) -> list[dict]:
    out = []
    for _partition, count, payload in envelopes:
        env = json.loads(payload)
        assert env["v"] == 1 and env["source"] == "web"
        assert len(env["events"]) == count
        out.extend(env["events"])
    return out


def test_envelope_per_partition_and_user_order() -> None:
    batch = [{"type": "track", "event": f"e{i}", "anonymousId": f"a{i % 5}", "messageId": f"m{i}"} for i in range(50)]
    envs = ingest({"batch": batch})
    assert len({p for p, _, _ in envs}) == len(envs) <= 4
    assert sum(n for _, n, _ in envs) == 50
    for _p, _n, payload in envs:
        evs = json.loads(payload)["events"]
        for anon in {e["anonymousId"] for e in evs}:
            seq = [int(e["messageId"][1:]) for e in evs if e["anonymousId"] == anon]
            assert seq == sorted(seq)
    # one user, one partition
    part_of = {}
    for p, _, payload in envs:
        for e in json.loads(payload)["events"]:
            assert part_of.setdefault(e["anonymousId"], p) == p


def test_stamps_received_at_message_id_and_timestamp() -> None:
    (ev,) = events_of(ingest({"userId": "u1", "event": "Signed Up"}, "track"))
    assert ev["type"] == "track"
    assert ev["receivedAt"] == "2026-11-26T05:30:44.000Z"
    assert ev["timestamp"] == "2026-11-26T05:30:44.000Z"
    uuid.UUID(ev["messageId"])


def test_clock_skew_correction_from_sent_at() -> None:
    # Device clock 1 h ahead: the event happened 3 s before the SDK sent it.
    body = {"batch": [{"type": "page", "anonymousId": "a", "originalTimestamp": "2026-11-26T06:30:41.000Z"}],
            "sentAt": "2026-11-26T06:30:44.000Z"}
    (ev,) = events_of(ingest(body))
    assert ev["timestamp"] == "2026-11-26T05:30:41.000Z"
    assert ev["sentAt"] == "2026-11-26T06:30:44.000Z"
    assert ev["originalTimestamp"] == "2026-11-26T06:30:41.000Z"


def test_message_ids_are_unique_when_generated() -> None:
    envs = ingest({"batch": [{"type": "track", "userId": "u", "event": "x"}] * 100})
    ids = [e["messageId"] for e in events_of(envs)]
    assert len(set(ids)) == 100


@pytest.mark.parametrize(
    ("body", "endpoint", "status", "code", "fragment"),
    [
        (b"{not json", "track", 400, "malformed_json", "not valid JSON"),
        ({"event": "x"}, "track", 400, "missing_identity", "neither anonymousId nor userId"),
        ({"batch": [{"type": "track", "userId": "u"}, {"type": "track", "messageId": "m7"}]}, "batch", 400,
         "missing_identity", 'event 1 of the batch (messageId "m7")'),
        ({"batch": []}, "batch", 400, "empty_batch", "batch"),
        ({"batch": [{"type": "purchase", "userId": "u"}]}, "batch", 400, "unknown_type", '"purchase"'),
        ([1, 2], "track", 400, "not_an_object", "not a JSON object"),
    ],
)
def test_bad_requests_are_refused_with_reasons(body, endpoint, status, code, fragment) -> None:
    with pytest.raises(RequestRejected) as e:
        ingest(body, endpoint)
    assert (e.value.status, e.value.code) == (status, code)
    assert fragment in e.value.message


def test_size_limits_are_413() -> None:
    small = (1024, 8192, 3)
    big_event = {"userId": "u", "properties": {"blob": "x" * 2000}}
    with pytest.raises(RequestRejected) as e:
        ingest(big_event, "track", limits=small)
    assert e.value.status == 413 and "per-event limit of 1024" in e.value.message
    with pytest.raises(RequestRejected) as e:
        ingest({"batch": [{"type": "track", "userId": "u"}, {"type": "track", **big_event}]}, limits=small)
    assert e.value.status == 413 and "event 1" in e.value.message
    with pytest.raises(RequestRejected) as e:
        ingest({"batch": [{"type": "track", "userId": "u"}] * 4}, limits=small)
    assert e.value.code == "too_many_events"
    with pytest.raises(RequestRejected) as e:
        ingest({"batch": [{"type": "track", "userId": "u", "p": "y" * 900}] * 3}, limits=(1024, 2048, 10))
    assert e.value.code == "request_too_large"


def test_unknown_endpoint() -> None:
    with pytest.raises(RequestRejected) as e:
        ingest({"userId": "u"}, "purchase")
    assert e.value.status == 404


def test_rejection_is_a_tidegate_error() -> None:
    from tidegate import TidegateError

    assert issubclass(RequestRejected, TidegateError)
