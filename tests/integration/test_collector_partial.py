"""The collector on a real Kafka when Kafka takes a request only in part: a full producer queue in
the middle of a request is waited out, and a request part of which is (or may still be) in Kafka
is never answered 503 "nothing was written", so that a client's retry is not taken for the only
copy while the first one is delivered too."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tidegate import _core, load_config
from tidegate.collector import Collector
from tidegate.config import Config

PARTITIONS = 4


def config(tmp_path: Path, kafka: str, *, settings: str = "{}", collector: str = "") -> Config:
    topic = f"tidegate.test.partial.{uuid.uuid4().hex[:10]}"
    (tmp_path / "tidegate.toml").write_text(f"""
[kafka]
bootstrap_servers = "{kafka}"
raw_topic = "{topic}"
partitions = {PARTITIONS}
settings = {settings}

[collector]
{collector}

[sources.web]
write_key = "k"

[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
""")
    return load_config(tmp_path / "tidegate.toml", env={})


def post(cfg: Config, body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
    """POST /v1/batch to a real collector (aiohttp on a local port, producing to Kafka)."""
    async def main() -> tuple[int, dict[str, Any] | str]:
        async with TestClient(TestServer(Collector(cfg).app)) as client:
            r = await client.post("/v1/batch", json=body,
                                  headers={"Authorization": "Basic " + base64.b64encode(b"k:").decode()})
            return r.status, (await r.json() if r.status != 200 else await r.text())
    return asyncio.run(main())


def envelopes(cfg: Config, body: dict[str, Any]) -> list[tuple[int, int, bytes]]:
    """The Kafka messages the collector makes of ``body`` (one per partition)."""
    return _core.ingest(json.dumps(body).encode(), "batch", "web", 0, PARTITIONS, 32768, 4 << 20, 10_000)


def raw_events(cfg: Config, kafka: str, at_least: int = 0, timeout: float = 20.0) -> list[str]:
    """The messageIds of every event in the raw topic (waiting until it holds ``at_least`` messages)."""
    con = Consumer({"bootstrap.servers": kafka, "group.id": f"tidegate-test-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False})
    try:
        tps = [TopicPartition(cfg.kafka.raw_topic, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + timeout
        while True:
            marks = [con.get_watermark_offsets(tp, timeout=10) for tp in tps]
            if sum(hi - lo for lo, hi in marks) >= at_least or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        con.assign([TopicPartition(tp.topic, tp.partition, lo) for tp, (lo, _) in zip(tps, marks)])
        ids: list[str] = []
        left = sum(hi - lo for lo, hi in marks)
        while left and time.monotonic() < deadline + 10:
            msg = con.poll(1.0)
            if msg is None or msg.error():
                continue
            left -= 1
            ids.extend(e["messageId"] for e in json.loads(msg.value())["events"])
        assert not left, f"{left} messages of the raw topic were not read"
        return sorted(ids)
    finally:
        con.close()


def batch(*anonymous_ids: str, **props: Any) -> dict[str, Any]:
    return {"batch": [{"type": "track", "event": "E", "anonymousId": a, "messageId": f"m-{a}",
                       "properties": props.get(a, {})} for a in anonymous_ids]}


def test_a_full_producer_queue_mid_request_is_waited_out_not_half_written(tmp_path: Path, kafka: str) -> None:
    # A producer queue of one message: every envelope after the first finds it full until Kafka
    # acknowledges the one before. The old collector answered 503 "retry" with the first envelope
    # already produced (and then delivered): the retry delivered those events twice.
    cfg = config(tmp_path, kafka, settings='{"queue.buffering.max.messages" = "1"}')
    body = batch(*(f"anon-{i}" for i in range(8)))
    assert len(envelopes(cfg, body)) > 1  # the request is several Kafka messages
    status, answer = post(cfg, body)
    assert (status, answer) == (200, "OK")
    assert raw_events(cfg, kafka, len(envelopes(cfg, body))) == sorted(f"m-anon-{i}" for i in range(8))


def test_a_request_kafka_took_in_part_is_answered_502_saying_so(tmp_path: Path, kafka: str) -> None:
    # The topic takes messages of at most 3000 bytes: the envelope carrying the big event is
    # refused by the broker, the others are written. Before, the answer was 503 "nothing is
    # confirmed, retry" while the others were in Kafka.
    cfg = config(tmp_path, kafka)
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(cfg.kafka.raw_topic, PARTITIONS, 1, config={"max.message.bytes": "3000"})])[
        cfg.kafka.raw_topic].result(30)
    big = {"anon-big": {"blob": os.urandom(6000).hex()}}  # incompressible: over 3000 bytes after lz4
    ids = [f"anon-{i}" for i in range(8)]
    body = batch("anon-big", *ids, **big)
    layout = envelopes(cfg, body)
    big_envelope = next(env for _, _, env in layout if b'"m-anon-big"' in env)
    small = sorted(f"m-{a}" for a in ids if f'"m-{a}"'.encode() not in big_envelope)
    assert small and len(layout) > 1  # some envelopes hold no big event

    status, answer = post(cfg, body)
    assert status == 502 and isinstance(answer, dict), (status, answer)
    assert answer["code"] == "partially_written"
    assert f"Kafka acknowledged {len(layout) - 1} of the {len(layout)} messages of this request" in answer["message"]
    assert f"({len(small)} of 9 events)" in answer["message"] and "1 refused" in answer["message"]
    assert raw_events(cfg, kafka, len(layout) - 1) == small

    # Refused whole where it is true: a request whose every envelope Kafka refused wrote nothing.
    status, answer = post(cfg, batch("anon-big", **big))
    assert status == 503 and isinstance(answer, dict) and answer["code"] == "kafka_unavailable", (status, answer)
    assert "nothing was written" in answer["message"]
    assert raw_events(cfg, kafka) == small


def test_an_ack_timeout_is_not_answered_nothing_was_written(tmp_path: Path, kafka: str) -> None:
    # An acknowledgement timeout shorter than the producer's linger: nothing is acknowledged in
    # time, yet every envelope is queued and then written. Before, the answer was 503 "nothing is
    # confirmed, retry" and the retry delivered the request twice.
    cfg = config(tmp_path, kafka, collector="ack_timeout_s = 0.001")
    body = batch(*(f"anon-{i}" for i in range(8)))
    status, answer = post(cfg, body)
    assert status == 502 and isinstance(answer, dict) and answer["code"] == "partially_written", (status, answer)
    assert "not acknowledged within 0.001s, which may still be written" in answer["message"]
    assert raw_events(cfg, kafka, len(envelopes(cfg, body))) == sorted(f"m-anon-{i}" for i in range(8))
