"""Identity merges shared between replicas through the identity topic, on a real broker."""

from __future__ import annotations

import json
import time
import uuid

import polars as pl
import pytest
from confluent_kafka import Producer

from tidegate.kafka import ensure_topic
from tidegate.stages.identity import PUBLISH_BYTES, IdentityResolver


def test_a_batch_of_merges_bigger_than_a_kafka_message_reaches_the_other_replica(kafka: str) -> None:
    topic = f"test.identity.{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap.servers": kafka}
    ensure_topic(settings, topic, 1, 1)
    n = 30_000  # ≈2 MB of pairs as JSON: over the broker's 1 MB default message limit
    edges = pl.DataFrame({"left": [f"a:anon-{i:06d}-{'x' * 20}" for i in range(n)],
                          "right": [f"u:user-{i:06d}" for i in range(n)]})
    assert edges.estimated_size() > 4 * PUBLISH_BYTES
    writer, reader = IdentityResolver(settings, topic), IdentityResolver(settings, topic)
    try:
        writer._publish(edges)
        writer._producer.flush(30)
        probe = [f"a:anon-{i:06d}-{'x' * 20}" for i in (0, n // 2, n - 1)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with reader._lock:
                resolved = reader.graph.resolve(probe)
            if resolved == ["u:user-000000", f"u:user-{n // 2:06d}", f"u:user-{n - 1:06d}"]:
                break
            time.sleep(0.2)
        assert resolved == ["u:user-000000", f"u:user-{n // 2:06d}", f"u:user-{n - 1:06d}"]
        # The writer skips its own messages (it linked those edges when it published them; here
        # `_publish` alone was called, so its graph shows whether it read them back).
        with writer._lock:
            assert writer.graph.resolve(probe) == probe
    finally:
        writer.close()
        reader.close()


def test_a_message_that_is_not_id_pairs_is_skipped_and_sharing_goes_on(kafka: str, caplog: pytest.LogCaptureFixture) -> None:
    topic = f"test.identity.{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap.servers": kafka}
    ensure_topic(settings, topic, 1, 1)
    producer = Producer(settings)
    for junk in (b"{not json", b'{"a": 1}', b'[["a:only-one"]]', b"[[1, 2]]"):
        producer.produce(topic, junk)
    producer.produce(topic, json.dumps([["a:anon-after-junk", "u:user-after-junk"]]).encode())
    producer.flush(30)
    reader = IdentityResolver(settings, topic)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with reader._lock:
                resolved = reader.graph.resolve(["a:anon-after-junk"])
            if resolved == ["u:user-after-junk"]:
                break
            time.sleep(0.2)
        assert resolved == ["u:user-after-junk"]
        assert reader._thread is not None and reader._thread.is_alive()
        skipped = [r.getMessage() for r in caplog.records if "not a JSON list of [id, id] pairs" in r.getMessage()]
        assert [m.split(" offset ")[1].split(":")[0] for m in skipped] == ["0", "1", "2", "3"]
    finally:
        reader.close()
