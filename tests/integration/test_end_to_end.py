"""The first governed path end to end on a real Kafka: HTTP -> collector -> Kafka (envelopes)
-> Quix Streams pipeline -> Rust core -> DuckDB."""

from __future__ import annotations

import gzip
import json
import signal
import uuid
import zlib

import pytest
from confluent_kafka import Consumer, Producer

from support import Stack, http_get


def track(i: int, **kw) -> dict:
    ev = {"type": "track", "event": "Order Completed", "userId": f"user-{i % 7}", "messageId": f"msg-{i}",
          "context": {"library": {"name": "analytics-python", "version": "2.3.0"}, "ip": "203.0.113.9"},
          "properties": {"order_id": f"o{i}", "total": 19.5 + i, "currency": "EUR", "items": [{"sku": "a"}]}}
    ev.update(kw)
    return ev


def test_events_land_exactly_once_with_their_columns(stack: Stack) -> None:
    stack.start_collector()
    stack.start_pipeline()
    # single calls, gzip and plain batches, every event type
    assert stack.post("/v1/track", {k: v for k, v in track(0).items() if k != "type"})[0] == 200
    assert stack.post("/v1/identify", {"userId": "user-1", "anonymousId": "anon-1", "messageId": "msg-id-1",
                                       "traits": {"email": "x@example.com", "plan": "pro"}}, gzip_body=True)[0] == 200
    assert stack.post("/v1/page", {"anonymousId": "anon-1", "name": "Home", "messageId": "msg-page-1",
                                   "properties": {"path": "/"}})[0] == 200
    assert stack.post("/v1/screen", {"userId": "user-1", "name": "Cart", "messageId": "msg-screen-1"})[0] == 200
    assert stack.post("/v1/group", {"userId": "user-1", "groupId": "g1", "messageId": "msg-group-1",
                                    "traits": {"name": "Club"}})[0] == 200
    assert stack.post("/v1/alias", {"userId": "user-1", "previousId": "anon-1", "messageId": "msg-alias-1"})[0] == 200
    batch = [track(i) for i in range(1, 101)]
    assert stack.post("/v1/batch", {"batch": batch[:50], "sentAt": "2026-11-26T05:30:44.000Z"})[0] == 200
    assert stack.post("/v1/batch", {"batch": batch[50:]}, gzip_body=True)[0] == 200
    # a client retry of the same batch must not add rows
    assert stack.post("/v1/batch", {"batch": batch[:50]})[0] == 200
    stack.wait_processed(6 + 150)
    assert stack.metric("tidegate_pipeline_events_total", stage="dedupe", outcome="duplicate") == 50
    assert stack.stop_pipeline() == 0

    counts = dict(stack.query("""
        select 'tracks', count(*) from tracks union all select 'order_completed', count(*) from order_completed
        union all select 'identifies', count(*) from identifies union all select 'users', count(*) from users
        union all select 'pages', count(*) from pages union all select 'screens', count(*) from screens
        union all select 'groups', count(*) from groups union all select 'aliases', count(*) from aliases"""))
    assert counts == {"tracks": 101, "order_completed": 101, "identifies": 1, "users": 1, "pages": 1,
                      "screens": 1, "groups": 1, "aliases": 1}
    row = stack.query("""select id, user_id, event, event_text, total, currency, items, context_library_name,
                                context_ip, context_source_id, received_at is not null, timestamp is not null,
                                sent_at from order_completed where id = 'msg-42'""")[0]
    assert row[:10] == ("msg-42", "user-0", "order_completed", "Order Completed", 61.5, "EUR", '[{"sku":"a"}]',
                        "analytics-python", "203.0.113.9", "web")
    assert row[10] and row[11]
    assert str(row[12]).startswith("2026-11-26 05:30:44")
    assert stack.query("select plan, email from users where id = 'user-1'") == [("pro", "x@example.com")]
    assert stack.query("select count(distinct id) = count(*) from tracks") == [(True,)]


def test_bad_input_gets_status_and_nothing_lands(stack: Stack) -> None:
    stack.start_collector()
    stack.start_pipeline()
    cases = [
        (stack.post("/v1/track", None, raw=b'{"userId": "u", "event": '), 400, "malformed_json"),
        (stack.post("/v1/track", {"event": "No Identity", "messageId": "bad-1"}), 400, "missing_identity"),
        (stack.post("/v1/batch", {"batch": [track(900), {"type": "track", "event": "x", "messageId": "bad-2"}]}),
         400, "missing_identity"),
        (stack.post("/v1/track", track(901), write_key=""), 401, "missing_write_key"),
        (stack.post("/v1/track", track(902), write_key="nope"), 401, "invalid_write_key"),
        (stack.post("/v1/track", track(903, properties={"blob": "x" * 40_000})), 413, "event_too_large"),
        (stack.post("/v1/batch", {"batch": [track(i, properties={"b": "y" * 20_000}) for i in range(1000, 1220)]}),
         413, "request_too_large"),
        (stack.post("/v1/purchase", track(904)), 404, "unknown_endpoint"),
        (stack.post("/v1/batch", None, raw=b"\x1f\x8bnot really gzip", gzip_body=False), 400, "malformed_json"),
        # bodies the header says are encoded: decoded by the collector, or refused with a JSON error
        (stack.post("/v1/batch", None, raw=b"notgzip", encoding="gzip"), 400, "malformed_gzip"),
        (stack.post("/v1/batch", None, raw=gzip.compress(json.dumps({"batch": [track(905)]}).encode())[:-6],
                    encoding="gzip"), 400, "malformed_gzip"),
        (stack.post("/v1/track", None, raw=zlib.compress(b'{"event": "x", "messageId": "bad-3"}'), encoding="deflate"),
         400, "missing_identity"),
        (stack.post("/v1/track", None, raw=b"\x0b\x02\x80", encoding="br"), 415, "unsupported_encoding"),
    ]
    for (status, body), want_status, want_code in cases:
        assert status == want_status, body
        assert isinstance(body, dict) and body["error"] == want_code, body
        assert body["message"]
    assert "event 1 of the batch" in cases[2][0][1]["message"] and "bad-2" in cases[2][0][1]["message"]
    # a good event after all that, as a marker that the pipeline has caught up
    assert stack.post("/v1/track", track(1)) [0] == 200
    stack.wait_processed(1)
    stack.stop_pipeline()
    assert stack.query("select id from tracks") == [("msg-1",)]
    assert stack.query("select count(*) from discarded_events") == [(0,)]


def test_restarted_pipeline_resumes_without_loss_or_duplicates(stack: Stack) -> None:
    stack.start_collector()
    stack.start_pipeline()
    first = [track(i) for i in range(0, 300)]
    for i in range(0, 300, 100):
        assert stack.post("/v1/batch", {"batch": first[i:i + 100]})[0] == 200
    stack.wait_processed(300)
    assert stack.stop_pipeline(signal.SIGTERM) == 0
    # while the pipeline is down the collector keeps accepting; a replayed batch overlaps
    second = [track(i) for i in range(200, 600)]
    for i in range(0, 400, 100):
        assert stack.post("/v1/batch", {"batch": second[i:i + 100]})[0] == 200
    stack.start_pipeline()
    stack.wait_processed(400)
    # hard kill mid-stream, then resume
    third = [track(i) for i in range(600, 800)]
    assert stack.post("/v1/batch", {"batch": third[:100]})[0] == 200
    stack.stop_pipeline(signal.SIGKILL)
    assert stack.post("/v1/batch", {"batch": third[100:]})[0] == 200
    stack.start_pipeline()
    stack.wait_processed(100)  # at least the new ones since restart
    # wait for everything: all 800 ids must be there
    import time

    deadline = time.monotonic() + 60
    while True:
        stack.stop_pipeline()
        n = stack.query("select count(*) from order_completed")[0][0]
        if n >= 800 or time.monotonic() > deadline:
            break
        stack.start_pipeline()
        time.sleep(2)
    assert stack.query("select count(*), count(distinct id) from order_completed") == [(800, 800)]
    assert stack.query("select count(*) from tracks") == [(800,)]


def test_single_event_messages_from_other_producers(stack: Stack, kafka: str) -> None:
    stack.start_collector()  # creates the topic
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    ids = []
    for i in range(20):
        ev = {"type": "track", "event": "Direct Event", "anonymousId": f"a{i}", "properties": {"n": i}}
        if i % 2 == 0:
            ev["messageId"] = f"direct-{i}"
            ids.append(f"direct-{i}")
        producer.produce(stack.topic, json.dumps(ev).encode(), headers=[("tidegate-source", b"backend")])
    # the same content again without an id (a producer retry): its content hash is its id
    producer.produce(stack.topic, json.dumps({"type": "track", "event": "Direct Event", "anonymousId": "a1",
                                              "properties": {"n": 1}}).encode(), headers=[("tidegate-source", b"backend")])
    producer.produce(stack.topic, b'{"type": "track", "event": "x"}')  # no identity
    producer.produce(stack.topic, b"\x00not json")
    assert producer.flush(10) == 0
    stack.start_pipeline()
    stack.wait_processed(21 + 2)
    stack.stop_pipeline()
    assert stack.query("select count(*), count(distinct id) from direct_event") == [(20, 20)]
    assert stack.query("select count(*) from direct_event where id like 'direct-%'") == [(10,)]
    assert stack.query("select distinct context_source_id from direct_event") == [("backend",)]
    reasons = sorted(r[0] for r in stack.query("select reason from discarded_events"))
    assert reasons == ["invalid_json", "missing_identity"]


def test_health_and_metrics_endpoints(stack: Stack) -> None:
    stack.start_collector()
    stack.start_pipeline()
    assert http_get(f"{stack.url}/healthz")[0] == 200
    assert http_get(f"{stack.url}/readyz")[0] == 200
    assert stack.post("/v1/track", track(5))[0] == 200
    status, text = http_get(f"{stack.url}/metrics")
    assert status == 200 and 'tidegate_collector_events_total{outcome="accepted",source="web"}' in text.replace(
        'source="web",outcome="accepted"', 'outcome="accepted",source="web"')
    stack.wait_processed(1)
    metrics_url = f"http://127.0.0.1:{stack.metrics_port}"
    assert http_get(metrics_url + "/healthz")[0] == 200
    assert http_get(metrics_url + "/readyz")[0] == 200
    assert stack.metric("tidegate_pipeline_messages_total", kind="envelope") >= 1
