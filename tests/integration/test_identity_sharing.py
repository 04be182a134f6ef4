"""Identity merges shared between replicas through the identity topic, on a real broker."""

from __future__ import annotations

import time
import uuid

import polars as pl

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
