"""The consumer service: a Quix Streams application over the raw topic.

Quix Streams drives consumption, checkpoints and offset commits; Tidegate plugs in as one
batching sink (`GovernedSink`). At each checkpoint the messages gathered on all assigned
partitions go through the stages as one batch — decode (msgspec) -> govern (one Rust call) -> every
destination — and only then are the offsets committed. A destination that fails makes Quix
Streams pause the partition and re-read from the last committed offset after a backoff, so
nothing is lost; idempotent writes make the re-read harmless.
"""

from __future__ import annotations

import warnings
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

# confluent-kafka pulls in authlib, whose import forces a deprecation warning on every run.
with warnings.catch_warnings(record=True):
    from quixstreams import Application, message_context
    from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch
    from quixstreams.state import State

from . import _core, archive, metrics
from .config import Config
from .dlq import Fanout
from .errors import DeliveryError
from .health import serve_health
from .kafka import client_settings, ensure_raw_topic, ensure_topic
from .sinks import Sink, build_sink
from .stages import PolicyPath, decode_messages
from .stages.decode import split_message
from .stages.dedupe import Dedupe
from .stages.identity import IdentityResolver, identity_topic
from .stages.reconcile import Reconcile

__all__ = ["GovernedSink", "Pipeline"]

log = logging.getLogger("tidegate.pipeline")


class CheckpointBatch:
    """Messages of one checkpoint, over every partition it covers, in partition order: what
    `GovernedSink.write` takes. `split` cuts a checkpoint into writes of bounded size."""

    def __init__(self, items: list[Any], partitions: list[tuple[str, int]]):
        self.items = items
        self.partitions = partitions

    @classmethod
    def split(cls, batches: list[SinkBatch], max_bytes: int) -> list[CheckpointBatch]:
        writes: list[CheckpointBatch] = []
        items: list[Any] = []
        parts: list[tuple[str, int]] = []
        size = 0
        for batch in batches:
            for item in batch:
                # After the admission step a value is (message, duplicate flags, lateness).
                n = len(item.value[0] if isinstance(item.value, tuple) else item.value)
                if items and size + n > max_bytes:
                    writes.append(cls(items, parts))
                    items, parts, size = [], [], 0
                if not parts or parts[-1] != (batch.topic, batch.partition):
                    parts.append((batch.topic, batch.partition))
                items.append(item)
                size += n
        if items:
            writes.append(cls(items, parts))
        return writes

    @staticmethod
    def partitions_of(batch: SinkBatch | CheckpointBatch) -> list[tuple[str, int]]:
        return batch.partitions if isinstance(batch, CheckpointBatch) else [(batch.topic, batch.partition)]

    @property
    def partition(self) -> str:
        return ",".join(f"{t}[{p}]" for t, p in self.partitions)

    @property
    def size(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


class GovernedSink(BatchingSink):
    """The Quix Streams sink that runs Tidegate's stages over each checkpoint's batch."""

    def __init__(self, cfg: Config, destinations: dict[str, Sink], *, max_backoff_s: float = 30.0):
        super().__init__()
        self.cfg = cfg
        self.destinations = destinations
        self.identity = IdentityResolver(
            client_settings(cfg) if cfg.identity.share_across_replicas else None, identity_topic(cfg.kafka.raw_topic))
        self.path = PolicyPath(cfg, self.identity)
        self.fanout = Fanout(cfg, destinations, self.path)
        self._failures = 0
        self._max_backoff_s = max_backoff_s
        # The raw archive is written while the batch is governed and delivered (both release the
        # GIL for most of their time); the checkpoint still waits for it before committing.
        self._archiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidegate-archive-batch")
        self._governor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidegate-govern")

    def setup(self) -> None:
        for sink in self.destinations.values():
            sink.setup()

    def flush(self) -> None:
        """Writes span partitions: one per checkpoint, or per `max_write_mb` of it. Every
        destination statement and transaction has a fixed cost (a DuckDB insert ≈2-6 ms per
        table whatever its row count), which per-partition writes paid once per partition: at
        low rates checkpoints spent most of their time on it. A failed write backs off and
        re-reads every partition from the checkpoint's start (Quix Streams pauses the whole
        assignment), so a checkpoint commits only when all its writes succeeded."""
        try:
            max_bytes = int(self.cfg.pipeline.max_write_mb * 1024 * 1024)
            writes = CheckpointBatch.split(list(self._batches.values()), max_bytes)
            if writes:
                self.write(writes)
        finally:
            self._batches.clear()

    def write(self, batch: SinkBatch | CheckpointBatch | list[CheckpointBatch]) -> None:
        """Run the stages over one batch, or over a checkpoint's writes in order. Writes overlap:
        while one is delivered, the next is governed on another thread (both release the GIL for
        most of their time) and the raw archive of each is written on a third. Governing stays in
        order, so identity state evolves as if sequential; every thread is waited for before
        this returns, so nothing of a failed checkpoint runs on after its backoff began."""
        writes = batch if isinstance(batch, list) else [batch]
        staged: list[tuple[list[Any], Future[None], Future[Any]]] = []
        try:
            staged.append(self._stage(writes[0]))
            for i in range(len(writes)):
                if i + 1 < len(writes):
                    staged.append(self._stage(writes[i + 1]))
                items, _, governed = staged[i]
                metrics.pipeline.batches.inc()
                # Per destination: suppression, consent, retries; what still fails is dead-lettered.
                self.fanout.deliver(self.cfg, governed.result(), items)
        except DeliveryError as e:
            self._failures += 1
            backoff = min(self._max_backoff_s, 0.5 * 2 ** min(self._failures, 10))
            where = ",".join(dict.fromkeys(f"{t}[{p}]" for w in writes for t, p in CheckpointBatch.partitions_of(w)))
            log.warning("%s; %s re-read from the last commit in %.1fs", e, where, backoff)
            raise SinkBackpressureError(retry_after=backoff) from e
        finally:
            for _, archived, governed in staged:
                wait([archived, governed])
        for _, archived, _ in staged:
            archived.result()  # raises the archive's error, if any: no commit without the archive
        self._failures = 0

    def _stage(self, write: Iterable[Any]) -> tuple[list[Any], Future[None], Future[Any]]:
        """Decode one write and start its archive (durable, spooled, before the commit) and its
        governing on their threads."""
        items = [(item.value, item.timestamp, item.headers) for item in write]
        decoded = decode_messages(items)
        return items, self._archiver.submit(archive.record, self.cfg, decoded), self._governor.submit(self.path.govern, decoded)


class Admission:
    """The stateful step on each raw-topic message, before the batch stages: one Rust call
    indexes its events (idempotency keys, event times); `dedupe` flags repeats and `reconcile`
    measures lateness against the partition's watermark, both in the partition's state store."""

    def __init__(self, cfg: Config):
        window = cfg.pipeline.dedupe_window_s
        self.dedupe = Dedupe(window) if window > 0 else None
        self.reconcile = Reconcile(cfg.pipeline.allowed_lateness_s)

    def __call__(self, value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> tuple[bytes, bytes, bytes]:
        source, events, _ = split_message(value, headers)
        kafka_us = int(timestamp) * 1000
        keys, times = _core.message_index(source, events, kafka_us)
        duplicates = b""
        if self.dedupe is not None:
            ctx = message_context()
            duplicates = self.dedupe.flags(keys, kafka_us, state, (ctx.partition, key or b""))
        return value, duplicates, self.reconcile.lateness(times, kafka_us, state)


class Pipeline:
    """Build and run the consumer service for one config."""

    def __init__(self, cfg: Config, *, on_ready: Callable[[], Any] | None = None):
        self.cfg = cfg
        self.destinations: dict[str, Sink] = {name: build_sink(name, d) for name, d in cfg.destinations.items()}
        self.sink = GovernedSink(cfg, self.destinations)
        self._on_ready = on_ready
        self.app: Application | None = None
        self._metrics_server: Any = None

    def build(self) -> Application:
        ensure_raw_topic(self.cfg)
        if self.cfg.identity.share_across_replicas:
            ensure_topic(client_settings(self.cfg), identity_topic(self.cfg.kafka.raw_topic), 1,
                         self.cfg.kafka.replication_factor)
        os.makedirs(self.cfg.pipeline.state_dir, exist_ok=True)
        settings = client_settings(self.cfg)
        extra = {k: v for k, v in settings.items() if k != "bootstrap.servers"}
        app = Application(
            broker_address=self.cfg.kafka.bootstrap_servers,
            consumer_group=self.cfg.kafka.consumer_group,
            auto_offset_reset=self.cfg.kafka.auto_offset_reset,
            commit_interval=self.cfg.pipeline.commit_interval_s,
            commit_every=self.cfg.pipeline.max_batch_messages,
            processing_guarantee=self.cfg.pipeline.processing_guarantee,
            state_dir=self.cfg.pipeline.state_dir,
            consumer_extra_config={**extra, "fetch.max.bytes": 64 * 1024 * 1024,
                                   "session.timeout.ms": int(self.cfg.pipeline.session_timeout_s * 1000)},
            producer_extra_config=extra,
            loglevel="WARNING",
            on_processing_error=None,
        )
        topic = app.topic(self.cfg.kafka.raw_topic, value_deserializer="bytes", key_deserializer="bytes")
        sdf = app.dataframe(topic)
        sdf = sdf.apply(Admission(self.cfg), stateful=True, metadata=True)
        sdf.sink(self.sink)
        self.app = app
        return app

    def serve_metrics(self) -> None:
        port = self.cfg.pipeline.metrics_port
        if port and self._metrics_server is None:
            self._metrics_server = serve_health(self.cfg.pipeline.metrics_host, port, self.ready)

    def ready(self) -> bool:
        return self.app is not None and all(s.ready() for s in self.destinations.values())

    def _watch_lag(self, every_s: float = 15.0) -> None:
        """Export the group's lag per partition (committed offset vs. the log end)."""
        from .status import consumer_lag

        while not self._stopping.wait(every_s):
            try:
                for partition, lag in consumer_lag(self.cfg).items():
                    metrics.pipeline.consumer_lag.labels(str(partition)).set(lag)
            except Exception as e:  # noqa: BLE001 - a missed sample is not worth stopping for
                log.debug("consumer lag not measured: %s", e)

    def run(self) -> None:
        app = self.app or self.build()
        self.serve_metrics()
        self._stopping = threading.Event()
        threading.Thread(target=self._watch_lag, name="tidegate-lag", daemon=True).start()
        if self._on_ready is not None:
            threading.Thread(target=self._on_ready, name="tidegate-on-ready", daemon=True).start()
        try:
            app.run()
        finally:
            self._stopping.set()
            self.sink.identity.close()
            self.sink.fanout.close()
            for sink in self.destinations.values():
                sink.close()

    def stop(self) -> None:
        if getattr(self, "_stopping", None) is not None:
            self._stopping.set()
        if self.app is not None:
            self.app.stop()
