"""Kafka topic sink: governed events out, for downstream consumers.

One JSON message per event (see :mod:`.outbound` for its shape), keyed by the event id so one
event always lands in the same partition, with a ``tidegate-table`` header naming its warehouse
table. The producer is idempotent with ``acks=all``, and ``write()`` returns only when the broker
has acknowledged every message. A batch that fails is retried whole by the pipeline, so a
consumer can see an event twice (at-least-once); the key is what it deduplicates by.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..config import KafkaDestination
from ..errors import DeliveryError, TidegateError
from ..kafka import ensure_topic
from ..stages.govern import GovernedBatch
from .base import Sink
from .outbound import outbound_events

# confluent-kafka pulls in authlib, whose import forces a deprecation warning on every run.
with warnings.catch_warnings(record=True):
    from confluent_kafka import KafkaError, KafkaException, Producer

__all__ = ["KafkaSink"]


class KafkaSink(Sink):
    def __init__(self, name: str, cfg: KafkaDestination):
        super().__init__(name)
        self.cfg = cfg
        self._producer: Producer | None = None
        self._topic_ready = False

    def setup(self) -> None:
        self._producer = Producer({
            "bootstrap.servers": self.cfg.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "client.id": f"tidegate-{self.name}",
            **self.cfg.settings,
        })

    def ready(self) -> bool:
        return self._producer is not None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.cfg.delivery_timeout_s)
            self._producer = None

    def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        try:
            ensure_topic({"bootstrap.servers": self.cfg.bootstrap_servers, **self.cfg.settings}, self.cfg.topic,
                         self.cfg.partitions, self.cfg.replication_factor, timeout=self.cfg.delivery_timeout_s)
        except TidegateError as e:
            raise DeliveryError(f"destination {self.name!r}: {e}") from None
        self._topic_ready = True

    def write(self, batch: GovernedBatch) -> None:
        if self._producer is None:
            self.setup()
        producer = self._producer
        assert producer is not None
        events = outbound_events(batch)
        if not events:
            return
        self._ensure_topic()
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        for e in events:
            headers = [("tidegate-table", e.table.encode())]
            while True:
                try:
                    producer.produce(self.cfg.topic, e.json, e.id.encode(), headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let acknowledgements drain it
                    producer.poll(0.05)
                except KafkaException as err:
                    raise DeliveryError(f"destination {self.name!r}: cannot produce to {self.cfg.topic!r}: {err.args[0]}") from None
        pending = producer.flush(self.cfg.delivery_timeout_s)
        if failures or pending:
            # A fresh producer for the retry: after a fatal error an idempotent one is unusable,
            # and whatever is still queued here is sent again with the retried batch anyway.
            self._producer = None
            first = f"; first error: {failures[0]}" if failures else ""
            raise DeliveryError(
                f"destination {self.name!r}: Kafka did not acknowledge {len(failures) + pending} of {len(events)} "
                f"messages to {self.cfg.topic!r} within {self.cfg.delivery_timeout_s}s{first}"
            )
