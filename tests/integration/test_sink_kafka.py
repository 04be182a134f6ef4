"""The Kafka topic sink against the real broker: consume what it produced."""

from __future__ import annotations

import json
import uuid

import pytest

from sink_support import assert_standard_metrics, batch, consume_all, mixed
from support import free_port
from tidegate.config import KafkaDestination
from tidegate.errors import DeliveryError
from tidegate.sinks import KafkaSink, deliver


def test_events_arrive_once_keyed_by_id_with_table_header(kafka: str) -> None:
    topic = f"tidegate.test.out.{uuid.uuid4().hex[:8]}"
    s = KafkaSink("downstream", KafkaDestination(topic=topic, bootstrap_servers=kafka, partitions=3))
    s.setup()
    b = batch(mixed(40))
    deliver(s, b)
    s.close()
    msgs = consume_all(kafka, topic, 40)
    assert len(msgs) == 40
    by_id = {m.key().decode(): m for m in msgs}
    assert set(by_id) == {f"msg-{i}" for i in range(40)}
    order = by_id["msg-0"]
    row = json.loads(order.value())
    assert dict(order.headers()) == {"tidegate-table": b"order_completed"}
    assert row["id"] == "msg-0" and row["total"] == 0.5 and row["tidegate_table"] == "order_completed"
    ident = by_id["msg-3"]
    assert dict(ident.headers())["tidegate-table"] == b"identifies" and json.loads(ident.value())["plan"] == "free"
    assert_standard_metrics("downstream")
    # same key, same partition: a consumer can deduplicate a redelivered batch per partition
    s2 = KafkaSink("downstream", KafkaDestination(topic=topic, bootstrap_servers=kafka))
    s2.setup()
    deliver(s2, b)
    s2.close()
    again = consume_all(kafka, topic, 80)
    parts: dict[bytes, set[int]] = {}
    for m in again:
        parts.setdefault(m.key(), set()).add(m.partition())
    assert len(again) == 80 and all(len(p) == 1 for p in parts.values())


def test_unreachable_broker_fails_the_batch() -> None:
    s = KafkaSink("down", KafkaDestination(topic="t", bootstrap_servers=f"127.0.0.1:{free_port()}", delivery_timeout_s=2))
    s.setup()
    with pytest.raises(DeliveryError, match="down"):
        deliver(s, batch(mixed(3)))
    s.close()
