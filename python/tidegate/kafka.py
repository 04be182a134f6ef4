"""Kafka plumbing shared by the collector and the pipeline: client settings, topic creation,
and an asyncio-friendly producer whose futures resolve when the broker has acknowledged."""

from __future__ import annotations

import warnings
import asyncio
import threading
import time
from typing import Any

# confluent-kafka pulls in authlib, whose import forces a deprecation warning on every run.
with warnings.catch_warnings(record=True):
    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

from . import threads
from .config import Config
from .errors import DeliveryError, TidegateError

__all__ = ["client_settings", "ensure_raw_topic", "ensure_topic", "partition_count", "AsyncProducer"]


def client_settings(cfg: Config) -> dict[str, Any]:
    return {"bootstrap.servers": cfg.kafka.bootstrap_servers, **cfg.kafka.settings}


def ensure_raw_topic(cfg: Config, timeout: float = 30.0) -> int:
    """Create the raw topic if it does not exist; return its partition count."""
    return ensure_topic(client_settings(cfg), cfg.kafka.raw_topic, cfg.kafka.partitions,
                        cfg.kafka.replication_factor, timeout)


def ensure_topic(settings: dict[str, Any], topic: str, partitions: int, replication_factor: int = 1,
                 timeout: float = 30.0) -> int:
    """Create ``topic`` if it does not exist (a concurrent creator is fine); return its partition
    count."""
    admin = AdminClient(settings)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as e:
        raise TidegateError(
            f"cannot reach Kafka at {settings.get('bootstrap.servers')} ({e.args[0]}); "
            "start one with `scripts/kafka-local start` or set kafka.bootstrap_servers"
        ) from None
    if topic not in meta.topics:
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)])
        try:
            futures[topic].result(timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TidegateError(f"cannot create topic {topic!r}: {e.args[0]}") from None
    return partition_count(admin, topic, timeout)


def partition_count(client: AdminClient | Producer, topic: str, timeout: float = 10.0) -> int:
    """Partitions of ``topic``; waits up to ``timeout`` for a just-created topic's metadata."""
    deadline = time.monotonic() + timeout
    while True:
        meta = client.list_topics(topic, timeout=timeout)
        t = meta.topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            return len(t.partitions)
        if time.monotonic() > deadline:
            raise TidegateError(f"topic {topic!r} has no partitions yet ({getattr(t, 'error', None)}); is the broker healthy?")
        time.sleep(0.2)


class AsyncProducer:
    """A confluent-kafka producer for asyncio code: ``await produce(...)`` returns once Kafka has
    acknowledged the write with ``acks=all`` (the producer is idempotent, so retries inside
    librdkafka never duplicate)."""

    def __init__(self, cfg: Config, **overrides: Any):
        settings = {
            **client_settings(cfg),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": max(cfg.collector.max_request_bytes * 2, 1_000_000),
            **overrides,
        }
        self._producer = Producer(settings)
        self._closed = threading.Event()
        self._poller = threads.Thread(target=self._poll, name="tidegate-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def produce(self, topic: str, value: bytes, partition: int, key: bytes | None = None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                loop.call_soon_threadsafe(_resolve, fut, None)
            else:
                loop.call_soon_threadsafe(_resolve, fut, DeliveryError(f"Kafka refused the write: {err.str()}"))

        self._producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
        return fut

    def partitions(self, topic: str) -> int:
        return partition_count(self._producer, topic)

    def ready(self, timeout: float = 2.0) -> bool:
        try:
            self._producer.list_topics(timeout=timeout)
            return True
        except KafkaException:
            return False

    def close(self, timeout: float = 10.0) -> int:
        """Flush and stop; return the number of messages still undelivered."""
        remaining = self._producer.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=1)
        return remaining


def _resolve(fut: asyncio.Future[None], result: Exception | None) -> None:
    if fut.done():
        return
    if result is None:
        fut.set_result(None)
    else:
        fut.set_exception(result)
