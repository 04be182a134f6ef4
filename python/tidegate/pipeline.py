"""The consumer service: a Quix Streams application over the raw topic.

Quix Streams drives consumption, checkpoints and offset commits; Tidegate plugs in as one
batching sink (`GovernedSink`). The messages of all assigned partitions go through the stages in
writes of `pipeline.max_write_mb` — decode (msgspec) -> govern (one Rust call) -> every
destination — while consumption goes on, and a checkpoint commits its offsets only once all its
writes are done. A destination that fails makes Quix Streams pause the partitions and re-read
from the last committed offset after a backoff, so nothing is lost; idempotent writes make the
re-read harmless.
"""

from __future__ import annotations

import warnings
import logging
import os
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Container

# confluent-kafka pulls in authlib, whose import forces a deprecation warning on every run.
with warnings.catch_warnings(record=True):
    from quixstreams import Application, message_context
    from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch
    from quixstreams.state import State
    from quixstreams.state.rocksdb import RocksDBOptions

from . import _core, archive, metrics, threads
from .config import Config
from .dlq import Fanout, RawItem
from .errors import DeliveryError
from .health import serve_health
from .kafka import client_settings, ensure_raw_topic, ensure_topic
from .sinks import Sink, build_sink
from .stages import PolicyPath, decode_messages
from .stages.decode import Admitted, split_message
from .stages.dedupe import Dedupe
from .stages.identity import IdentityResolver, identity_topic
from .stages.reconcile import Reconcile

__all__ = ["GovernedSink", "Pipeline"]

log = logging.getLogger("tidegate.pipeline")

# The state stores hold only dedupe segments, watermarks and counters (a few MB), so RocksDB gets
# small memtables and block cache instead of Quix Streams' defaults (64 MB memtables, up to three
# per partition, and a shared 1 GiB block cache), which a long run would slowly fill.
STATE_STORE_OPTIONS = RocksDBOptions(write_buffer_size=8 * 2**20, max_write_buffer_number=2,
                                     block_cache_size=32 * 2**20)


@dataclass(frozen=True)
class Write:
    """One write of a checkpoint: a run of its messages, on their way through the stages on the
    sink's threads (archive, govern, deliver)."""

    partitions: list[tuple[str, int]]
    archived: Future[None]
    delivered: Future[None]


class GovernedSink(BatchingSink):
    """The Quix Streams sink that runs Tidegate's stages over each checkpoint's messages.

    Messages are not held until the checkpoint: every `max_write_mb` of them (across
    partitions) becomes a write at once, which is decoded here and then archived, governed and
    delivered on three threads of its own (each in write order), while consumption goes on. A
    destination write is idempotent, so delivering before the offsets commit is what a re-read
    would do anyway. The checkpoint's `flush` makes a write of what is left and waits for all of
    them: offsets commit only when every write was archived and delivered. A failed delivery
    stops the writes after it (they are re-read with it) and makes `flush` back off; Quix Streams
    then re-reads every partition from the last commit."""

    # Writes staged beyond the one being delivered; adding waits for the oldest beyond this,
    # which bounds memory when destinations are slower than consumption.
    WRITES_AHEAD = 2

    def __init__(self, cfg: Config, destinations: dict[str, Sink], *, max_backoff_s: float = 30.0):
        super().__init__()
        self.cfg = cfg
        self.destinations = destinations
        self.identity = IdentityResolver(
            client_settings(cfg) if cfg.identity.share_across_replicas else None, identity_topic(cfg.kafka.raw_topic))
        self.path = PolicyPath(cfg, self.identity)
        self.fanout = Fanout(cfg, destinations, self.path)
        # Called before a checkpoint's first write is governed (see `audit.reload_on_apply`).
        self.before_checkpoint: Callable[[], None] | None = None
        # Called when every write of a checkpoint is done, before its offsets and state commit
        # (the admission step persists its dedupe keys), and when a checkpoint backs off instead.
        self.before_commit: list[Callable[[], None]] = []
        # Called once a checkpoint's writes are done: was it behind (its newest message older
        # than `max_commit_interval_s`)? The pipeline lengthens the next checkpoint then.
        self.after_checkpoint: Callable[[bool], None] | None = None
        self._newest_ms = 0  # Kafka timestamp of the checkpoint's newest message
        self.after_backoff: list[Callable[[], None]] = []
        # The identity mappings a checkpoint made are news once (`IdentityResolver`): kept until
        # its commit, and given again to the re-read of a checkpoint that backed off.
        self.identity.keeps_until_commit = True
        self.before_commit.append(self.identity.confirm)
        self.after_backoff.append(self.identity.forget)
        self._failures = 0
        self._max_backoff_s = max_backoff_s
        self._archiver = threads.executor("tidegate-archive-batch")
        self._governor = threads.executor("tidegate-govern")
        self._deliverer = threads.executor("tidegate-deliver")
        self._pending: list[RawItem] = []
        self._pending_partitions: list[tuple[str, int]] = []
        self._pending_bytes = 0
        self._writes: list[Write] = []
        self._skipped: list[tuple[str, int]] = []  # partitions of writes not staged after a failure
        self._failed: BaseException | None = None  # set by the deliver thread
        # Writes staged / whose delivery started (each counted by one thread): none waiting when equal.
        self._staged_n = 0
        self._started_n = 0
        self._upkeep: Future[None] | None = None  # the last upkeep task (tests wait for it)

    def setup(self) -> None:
        for sink in self.destinations.values():
            sink.setup()
            sink.hold_state()  # state-table rows wait for the checkpoint (see `flush`)

    def add(self, value: Any, key: Any, timestamp: int, headers: Any, topic: str, partition: int, offset: int) -> None:
        if not self._pending_partitions or self._pending_partitions[-1] != (topic, partition):
            self._pending_partitions.append((topic, partition))
        self._pending.append((value, timestamp, headers))
        if timestamp > self._newest_ms:
            self._newest_ms = timestamp
        # After the admission step a value is an `Admitted` (message, duplicate flags, lateness, split).
        self._pending_bytes += len(value.message if isinstance(value, Admitted) else value)
        if self._pending_bytes >= self.cfg.pipeline.max_write_mb * 1024 * 1024:
            self._stage()

    def write(self, batch: SinkBatch) -> None:
        """One partition's batch through the stages at once (the checkpoint path is `add` +
        `flush`)."""
        for item in batch:
            self.add(item.value, item.key, item.timestamp, item.headers, batch.topic, batch.partition, item.offset)
        self.flush()

    def flush(self) -> None:
        """Stage what is left of the checkpoint and wait for every write of it."""
        try:
            self._stage()
            # What the writes kept back for the checkpoint (`Sink.hold_state`), stored before the
            # offsets commit: on the deliver thread after the last write, before the upkeep that
            # write queues.
            held = self._deliverer.submit(self._checkpoint_destinations)
            writes, skipped = self._writes, self._skipped
            wait([f for w in writes for f in (w.archived, w.delivered)] + [held])
            failed, self._failed = self._failed, None
            failed = failed or held.result()
        finally:
            self._writes, self._skipped = [], []
        if failed is not None:
            for hook in self.after_backoff:
                hook()
        if isinstance(failed, DeliveryError):
            self._failures += 1
            backoff = min(self._max_backoff_s, 0.5 * 2 ** min(self._failures, 10))
            where = ",".join(dict.fromkeys(f"{t}[{p}]" for w in writes for t, p in w.partitions + skipped))
            log.warning("%s; %s re-read from the last commit in %.1fs", failed, where, backoff)
            raise SinkBackpressureError(retry_after=backoff) from failed
        if failed is not None:
            raise failed
        for w in writes:
            w.archived.result()  # raises the archive's error, if any: no commit without the archive
        for hook in self.before_commit:
            hook()
        for sink in self.destinations.values():
            sink.hold_state()  # again, if a failed checkpoint stopped it (see `_checkpoint_destinations`)
        self._failures = 0
        newest, self._newest_ms = self._newest_ms, 0
        if self.after_checkpoint is not None:
            self.after_checkpoint(bool(newest) and time.time() * 1000 - newest > self.cfg.pipeline.max_commit_interval_s * 1000)

    def on_paused(self) -> None:
        """Backpressure: whatever was gathered is re-read."""
        wait([f for w in self._writes for f in (w.archived, w.delivered)])
        self._pending, self._pending_partitions, self._pending_bytes = [], [], 0
        self._writes, self._skipped, self._failed = [], [], None
        self._newest_ms = 0
        for hook in self.after_backoff:
            hook()

    def _stage(self) -> None:
        """Make the pending messages a write: decode them, then archive (durable, spooled,
        before the commit), govern and deliver them on their threads."""
        items, partitions = self._pending, self._pending_partitions
        if not items:
            return
        self._pending, self._pending_partitions, self._pending_bytes = [], [], 0
        if self._failed is not None:
            self._skipped.extend(partitions)  # re-read after the backoff anyway
            return
        if not self._writes and self.before_checkpoint is not None:
            self.before_checkpoint()
        ahead = [w.delivered for w in self._writes if not w.delivered.done()]
        if len(ahead) > self.WRITES_AHEAD:
            wait(ahead[:len(ahead) - self.WRITES_AHEAD])
        decoded = decode_messages(items)
        archived = self._archiver.submit(archive.record, self.cfg, decoded)
        governed = self._governor.submit(self.path.govern, decoded)
        self._staged_n += 1
        delivered = self._deliverer.submit(self._deliver, items, governed)
        self._writes.append(Write(partitions, archived, delivered))

    def _deliver(self, items: list[RawItem], governed: Future[Any]) -> None:
        """On the deliver thread, in write order."""
        self._started_n += 1
        try:
            batch = governed.result()
            if self._failed is None:
                metrics.pipeline.batches.inc()
                # Per destination: suppression, consent, retries; what still fails is dead-lettered.
                self.fanout.deliver(self.cfg, batch, items)
        except BaseException as e:
            if self._failed is None:
                self._failed = e
            raise
        if self._started_n == self._staged_n:
            # A task of its own, after this write's future resolves: a checkpoint waits for its
            # writes, not for upkeep. DuckDB's idle checkpoint (0.25-0.55 s per 64 MB of WAL,
            # measured) used to hold the commit while consumption stood still; now it runs while
            # the next checkpoint's first write is consumed and governed.
            self._upkeep = self._deliverer.submit(self._idle)

    def _checkpoint_destinations(self) -> DeliveryError | None:
        """Every destination's `checkpoint`; the first failure, if any (all are tried).

        A destination that failed keeps nothing back until the next commit: the checkpoint's
        messages are read again, and their writes then store the rows themselves, so that rows
        it never takes fail their own write, which is retried and dead-lettered as any write is.
        Kept back, they failed every checkpoint, and piled up once more with each re-read."""
        first: DeliveryError | None = None
        for sink in self.destinations.values():
            try:
                sink.checkpoint()
            except Exception as e:  # noqa: BLE001 - reported as the checkpoint's delivery failure
                sink.stop_holding()
                error = e if isinstance(e, DeliveryError) else DeliveryError(
                    f"destination {sink.name!r} could not store the rows its writes kept for the checkpoint: {e}; "
                    "the re-read stores them write by write")
                first = first or error
        return first

    def check_regulations(self, skip: Container[str] = ()) -> Future[None]:
        """Carry out the deletions left pending for this process's warehouses (`regulate delete`
        while one was busy or unreachable) once the suppression list changed, without waiting for
        a write: on the deliver thread, after the writes queued before, so never during one.
        ``skip``: destinations not to touch (still writing at a shutdown)."""
        return self._deliverer.submit(self._run_pending_deletions, skip)

    def _run_pending_deletions(self, skip: Container[str]) -> None:
        suppression = self.path.suppression
        if suppression.refresh():
            suppression.run_pending({n: s for n, s in self.destinations.items()
                                     if hasattr(s, "dialect") and n not in skip})

    def _idle(self) -> None:
        """On the deliver thread, when no write was waiting: each destination's upkeep, unless a
        write was staged meanwhile (it goes first; the upkeep waits for the next quiet moment)."""
        if self._started_n != self._staged_n:
            return
        for sink in self.destinations.values():
            try:
                sink.idle()
            except Exception as e:  # noqa: BLE001 - upkeep; the next write reports a real failure
                log.warning("destination %r: upkeep between writes failed: %s", sink.name, e)


class Admission:
    """The stateful step on each raw-topic message, before the batch stages: one Rust call
    indexes its events (idempotency keys, event times); `dedupe` flags repeats and `reconcile`
    measures lateness against the partition's watermark, both in the partition's state store."""

    def __init__(self, cfg: Config):
        window = cfg.pipeline.dedupe_window_s
        self.dedupe = Dedupe(window) if window > 0 else None
        self.reconcile = Reconcile(cfg.pipeline.allowed_lateness_s)

    def __call__(self, value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> Admitted:
        source, events, is_envelope = split_message(value, headers)
        kafka_us = int(timestamp) * 1000
        keys, times = _core.message_index(source, events, kafka_us)
        duplicates = b""
        if self.dedupe is not None:
            ctx = message_context()
            duplicates = self.dedupe.flags(keys, kafka_us, state, (ctx.partition, key or b""))
        return Admitted(value, duplicates, self.reconcile.lateness(times, kafka_us, state), source, events, is_envelope)

    def persist(self) -> None:
        """At a checkpoint, before its state commits: the dedupe keys it learned."""
        if self.dedupe is not None:
            self.dedupe.persist()

    def forget(self) -> None:
        """The checkpoint backed off: its state is discarded, and so are the in-memory indexes."""
        if self.dedupe is not None:
            self.dedupe.forget()


class Pipeline:
    """Build and run the consumer service for one config."""

    def __init__(self, cfg: Config, *, on_ready: Callable[[], Any] | None = None):
        self.cfg = cfg
        self.destinations: dict[str, Sink] = {name: build_sink(name, d) for name, d in cfg.destinations.items()}
        self.sink = GovernedSink(cfg, self.destinations)
        self._on_ready = on_ready
        self.app: Application | None = None
        self._metrics_server: Any = None
        self._said_stalled = False  # `stalled` logged its reason (once per stall)
        self.abandoned: list[str] = []  # destinations still writing when `run` ended (see there)

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
                                   "queued.max.messages.kbytes": self.cfg.pipeline.fetch_queue_mb * 1024,
                                   "session.timeout.ms": int(self.cfg.pipeline.session_timeout_s * 1000)},
            producer_extra_config=extra,
            loglevel="WARNING",
            on_processing_error=None,
            rocksdb_options=STATE_STORE_OPTIONS,
        )
        topic = app.topic(self.cfg.kafka.raw_topic, value_deserializer="bytes", key_deserializer="bytes")
        sdf = app.dataframe(topic)
        admission = Admission(self.cfg)
        self.sink.before_commit.append(admission.persist)
        self.sink.after_backoff.append(admission.forget)
        sdf = sdf.apply(admission, stateful=True, metadata=True)
        sdf.sink(self.sink)
        adapt = self._checkpoint_interval(app)
        self.sink.after_checkpoint = adapt
        self.sink.after_backoff.append(lambda: adapt(False))
        self.app = app
        return app

    def _checkpoint_interval(self, app: Application) -> Callable[[bool], None]:
        """Adapt the next checkpoint's length: twice as long while behind, up to
        `max_commit_interval_s`, else `commit_interval_s` (see the config reference)."""
        base, most = self.cfg.pipeline.commit_interval_s, self.cfg.pipeline.max_commit_interval_s
        # Quix Streams starts each checkpoint with its processing context's interval; there is
        # no public setter, so without that attribute the interval stays fixed.
        context = getattr(app, "_processing_context", None)
        metrics.pipeline.commit_interval.set(base)
        if context is None or not hasattr(context, "commit_interval"):
            log.warning("this Quix Streams version has no processing context to lengthen checkpoints "
                        "with; pipeline.max_commit_interval_s has no effect")
            return lambda behind: None

        def adapt(behind: bool) -> None:
            context.commit_interval = min(context.commit_interval * 2, most) if behind else base
            metrics.pipeline.commit_interval.set(context.commit_interval)
        return adapt

    def serve_metrics(self) -> None:
        port = self.cfg.pipeline.metrics_port
        if port and self._metrics_server is None:
            self._metrics_server = serve_health(self.cfg.pipeline.metrics_host, port, self.ready, stalled=self.stalled)

    def ready(self) -> bool:
        return self.app is not None and all(s.ready() for s in self.destinations.values())

    def stalled(self) -> str | None:
        """Why the pipeline is stuck, if a task of its threads (a write, a checkpoint, an
        upkeep) has run longer than `stall_timeout_s`; else ``None``. Said once in the log too."""
        limit = self.cfg.pipeline.stall_timeout_s
        longest = threads.longest_task()
        if not limit or longest is None or longest[1] <= limit:
            self._said_stalled = False
            return None
        name, seconds = longest
        why = (f"stalled: a task on thread {name} has run for {seconds:.0f}s, more than pipeline.stall_timeout_s "
               f"({limit:g}s); a destination may have stopped answering (see the log and tidegate_sink_* metrics)")
        if not self._said_stalled:
            self._said_stalled = True
            log.error("%s", why)
        return why

    def _watch_lag(self, every_s: float = 15.0) -> None:
        """Export the group's lag per partition (committed offset vs. the log end)."""
        from .status import consumer_lag

        while not self._stopping.wait(every_s):
            try:
                for partition, lag in consumer_lag(self.cfg).items():
                    metrics.pipeline.consumer_lag.labels(str(partition)).set(lag)
            except Exception as e:  # noqa: BLE001 - a missed sample is not worth stopping for
                log.debug("consumer lag not measured: %s", e)

    def _watch_regulations(self, every_s: float = 2.0) -> None:
        """A deletion left pending for this process (`regulate delete` while a warehouse was busy
        or unreachable) is carried out within ``every_s`` of the list's change, not only when
        the next events arrive: an idle pipeline has no checkpoint to do it at."""
        checked: Future[None] | None = None
        while not self._stopping.wait(every_s):
            if checked is not None and not checked.done():
                continue  # a write or the previous check is still running
            try:
                checked = self.sink.check_regulations()
            except RuntimeError:  # the deliver thread is shut down: the pipeline is stopping
                return

    def run(self) -> None:
        app = self.app or self.build()
        self.serve_metrics()
        self._stopping = threading.Event()
        threads.Thread(target=self._watch_lag, name="tidegate-lag", daemon=True).start()
        threads.Thread(target=self._watch_regulations, name="tidegate-regulations", daemon=True).start()
        if self._on_ready is not None:
            threads.Thread(target=self._on_ready, name="tidegate-on-ready", daemon=True).start()
        try:
            app.run()
        finally:
            self._stopping.set()
            self.sink.identity.close()
            # Destinations whose write is still running after `delivery.write_timeout_s` are left
            # to it (their batch was not committed: it is read again after a restart), and
            # `abandoned` names them so that the process can exit without waiting for them.
            self.abandoned = self.sink.fanout.close()
            try:  # a deletion that became pending during the shutdown is not left to the next start
                self.sink.check_regulations(skip=self.abandoned).result(timeout=self.cfg.delivery.write_timeout_s)
            except Exception as e:  # noqa: BLE001 - it stays pending; the next start carries it out
                log.warning("pending deletions not carried out at shutdown: %s", e)
            for name, sink in self.destinations.items():
                if name not in self.abandoned:
                    sink.close()
            if self.abandoned:
                log.error("destination(s) %s still writing %gs after the shutdown began; not waiting for them "
                          "(their last batch was not committed and is read again after a restart)",
                          ", ".join(self.abandoned), self.cfg.delivery.write_timeout_s)

    def stop(self) -> None:
        if getattr(self, "_stopping", None) is not None:
            self._stopping.set()
        if self.app is not None:
            self.app.stop()
