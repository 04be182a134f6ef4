"""Per-destination delivery: isolation, retries with backoff, dead letters, and their replay.

At each checkpoint the pipeline hands the governed batch to :class:`Fanout`, which, for every
destination at once (one thread each, so a slow destination does not add its time to the
others'), takes the destination's share (suppression list, then its consent requirements) and
writes it, retrying a failed write up to ``delivery.max_attempts`` times with exponential backoff
and full jitter. A destination still failing after that gets the batch *parked* in its
dead-letter topic ``<raw_topic>.dlq.<destination>`` and the checkpoint commits for everybody.
A destination that failed its previous batch gets one attempt per batch until it recovers, so a
dead destination costs the others no more than one timeout per checkpoint.

What is parked is the raw messages of the batch — source, Kafka time and the events JSON as they
came, plus the admission step's duplicate and lateness flags — so re-delivery re-runs the
*current* policy. Each parked message carries headers: destination, reason, when, how many of
its events were bound for the destination, and the config version that failed.

``tidegate dlq list DESTINATION`` shows what waits (messages, events, oldest/newest, reasons);
``tidegate dlq replay DESTINATION`` re-delivers it through the current policy to that destination
only and commits its own consumer group's offsets (``<consumer_group>.dlq.<destination>``) after
each delivered batch. Warehouse writes are keyed by event id, so a replay repeated (or cut short
and run again) adds nothing twice. A message the destination refuses on its own while it takes
the rest is parked again at the end of the topic (see :func:`replay_dlq`).
"""

from __future__ import annotations

import collections
import logging
import random
import time
import warnings
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

with warnings.catch_warnings(record=True):
    from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

import msgspec
import polars as pl

from . import metrics, threads
from .config import Config, DeliveryConfig
from .errors import ConfigError, DeliveryError, TidegateError
from .kafka import client_settings
from .stages import PolicyPath
from .stages.decode import Admitted, split_message
from .stages.govern import GovernedBatch
from .sinks.base import EVENT_TABLES
from .wording import counted

__all__ = ["Fanout", "dlq_topic", "deliver_with_retries", "DeadLetters", "list_dlq", "replay_dlq", "DlqSummary",
           "RawItem"]

log = logging.getLogger("tidegate.dlq")

RawItem = tuple[Any, int, Any]
"""``(value, kafka_timestamp_ms, headers)`` as the pipeline's sink receives it; ``value`` is the
message, or an `Admitted` (see `stages.decode`) after the admission step."""

H = "tidegate-dlq-"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def dlq_topic(cfg: Config, destination: str) -> str:
    return f"{cfg.kafka.raw_topic}.dlq.{destination}"


def replay_group(cfg: Config, destination: str) -> str:
    return f"{cfg.kafka.consumer_group}.dlq.{destination}"


def backoff_delays(cfg: DeliveryConfig, attempts: int, rng: random.Random | None = None) -> list[float]:
    """The jittered sleeps between ``attempts`` attempts (full jitter, doubling, capped)."""
    r = rng or random
    return [r.uniform(0, min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** i)) for i in range(attempts - 1)]


def deliver_with_retries(sink: Any, batch: GovernedBatch, cfg: DeliveryConfig, *, attempts: int | None = None,
                         sleep: Callable[[float], None] = time.sleep) -> DeliveryError | None:
    """Write ``batch`` to ``sink``, retrying; None on success, else the last error."""
    from .sinks import deliver

    attempts = attempts or cfg.max_attempts
    delays = backoff_delays(cfg, attempts)
    for attempt in range(attempts):
        try:
            deliver(sink, batch, last_attempt=attempt + 1 == attempts)
            return None
        except DeliveryError as e:
            last = e
            if attempt + 1 < attempts:
                metrics.sink.retries.labels(sink.name).inc()
                log.warning("%s (attempt %d of %d); retrying in %.2fs", e, attempt + 1, attempts, delays[attempt])
                sleep(delays[attempt])
    return last


class _EventId(msgspec.Struct):
    messageId: Any = None


def event_ids(batch: GovernedBatch) -> pl.Series:
    """The ids of ``batch``'s events (one row per event in its type's table)."""
    ids = [df["id"].cast(pl.String) for t, df in batch.tables.items() if t in EVENT_TABLES and "id" in df.columns]
    return pl.concat(ids) if ids else pl.Series([], dtype=pl.String)


def events_per_message(items: Sequence[RawItem], events: int, ids: pl.Series | None) -> list[int]:
    """How many of ``events`` (bound for a destination: those whose id is in ``ids``) each
    message holds, so that a parked batch's messages each carry their own count and any run of
    them adds up (`dlq replay` can commit part of a batch). An event is found by its
    ``messageId``; events without one (their id is a content hash) are counted on the first
    message, so that the sum is ``events`` whatever happens.

    >>> items = [(b'{"v":1,"source":"web","receivedAt":"x","events":[{"messageId":"a"},{"messageId":"b"}]}', 0, None),
    ...          (b'{"messageId":"c"}', 0, None), (b'{"messageId":"d"}', 0, None)]
    >>> events_per_message(items, 3, pl.Series(["a", "c", "d"]))
    [1, 1, 1]
    >>> events_per_message(items, 3, None)
    [3, 0, 0]
    """
    if not items:
        return []
    if ids is None:
        return [events] + [0] * (len(items) - 1)
    bound = set(ids.to_list())
    counts = []
    for value, _ts, headers in items:
        text = value.events if isinstance(value, Admitted) else split_message(value, headers)[1]
        try:
            decoded = msgspec.json.decode(text, type=list[_EventId] | _EventId)
        except msgspec.DecodeError:  # not JSON, or not events: refused by the policy anyway
            decoded = []
        n = 0
        for e in decoded if isinstance(decoded, list) else [decoded]:
            if isinstance(e.messageId, str) and e.messageId in bound:
                bound.discard(e.messageId)  # a repeated id is one event (the dedupe stage keeps one)
                n += 1
        counts.append(n)
    counts[0] += max(events - sum(counts), 0)
    return counts


class DeadLetters:
    """Parks raw messages in per-destination dead-letter topics (created on first use)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._producer: Producer | None = None
        self._topics: set[str] = set()

    def _ensure(self, topic: str) -> None:
        if topic in self._topics:
            return
        admin = AdminClient(client_settings(self.cfg))
        fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=self.cfg.kafka.replication_factor,
                                            config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})])[topic]
        try:
            fut.result(30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise DeliveryError(f"cannot create dead-letter topic {topic!r}: {e.args[0]}") from None
        self._topics.add(topic)

    def park(self, destination: str, items: Sequence[RawItem], *, reason: str, events: int,
             ids: pl.Series | None = None, timeout: float = 30.0) -> None:
        """Write the batch's raw messages to the destination's DLQ; raise DeliveryError unless
        Kafka acknowledged all of them. ``events`` of them are bound for the destination: those
        whose id is in ``ids``, which makes each message's count its own (see
        :func:`events_per_message`); without ``ids``, the first message carries them all."""
        topic = dlq_topic(self.cfg, destination)
        self._ensure(topic)
        if self._producer is None:
            self._producer = Producer({**client_settings(self.cfg), "acks": "all", "enable.idempotence": True,
                                       "linger.ms": 5, "compression.type": "lz4",
                                       "message.max.bytes": MAX_MESSAGE_BYTES})
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(err.str())

        parked_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        # Each message's own count: the messages of a batch that `dlq replay` committed part of
        # still add up to what waits.
        counts = events_per_message(items, events, ids)
        for i, (value, ts, headers) in enumerate(items):
            raw, dups, late = value[:3] if isinstance(value, Admitted) else (value, b"", b"")
            hdrs = [(k, v) for k, v in (headers or ()) if not k.startswith(H)]
            hdrs += [(H + "destination", destination.encode()), (H + "reason", reason.encode()[:2000]),
                     (H + "parked-at", parked_at), (H + "config-version", self.cfg.version.encode()),
                     (H + "events", str(counts[i]).encode()),
                     (H + "duplicates", bytes(dups)), (H + "late", bytes(late))]
            self._producer.produce(topic, value=raw, timestamp=int(ts), headers=hdrs, on_delivery=on_delivery)
            self._producer.poll(0)
        left = self._producer.flush(timeout)
        if left or errors:
            raise DeliveryError(f"cannot park {len(items)} messages in {topic!r}: "
                                f"{errors[0] if errors else f'{left} unacknowledged after {timeout}s'}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


class Fanout:
    """Per-destination delivery for the pipeline; see the module docstring."""

    def __init__(self, cfg: Config, destinations: Mapping[str, Any], path: PolicyPath):
        self.destinations = destinations
        self.path = path
        self.cfg = cfg
        self.dead_letters = DeadLetters(cfg)
        self._failing: set[str] = set()
        # A write that overran its timeout keeps its worker until it returns; one spare worker per
        # destination keeps the others going meanwhile.
        self._pool = threads.executor("tidegate-dest", max(2 * len(destinations), 1))
        self._busy: dict[str, Future[DeliveryError | None]] = {}

    def shares(self, cfg: Config, governed: GovernedBatch) -> dict[str, GovernedBatch]:
        """Every destination's share of the batch (suppression, then consent)."""
        warehouses = {n: s for n, s in self.destinations.items() if hasattr(s, "dialect")}
        return self.path.shares(governed, list(self.destinations), warehouses)

    def deliver(self, cfg: Config, governed: GovernedBatch, items: Sequence[RawItem]) -> dict[str, str]:
        """Deliver to every destination; park what fails. Return {destination: reason} of the
        parked ones. Raise DeliveryError only if something could be neither delivered nor parked
        (then the whole partition backs off and re-reads, and nothing is lost)."""
        shares = self.shares(cfg, governed)

        def one(name: str) -> DeliveryError | None:
            attempts = 1 if name in self._failing else cfg.delivery.max_attempts
            return deliver_with_retries(self.destinations[name], shares[name], cfg.delivery, attempts=attempts)

        if len(shares) == 1:
            results = {name: one(name) for name in shares}
        else:
            results = {}
            futures = {}
            timeout = cfg.delivery.write_timeout_s
            for name in shares:
                earlier = self._busy.get(name)
                if earlier is not None and not earlier.done():
                    results[name] = DeliveryError(f"destination {name!r} is still writing an earlier batch "
                                                  f"(over {timeout:g}s, delivery.write_timeout_s)")
                else:
                    futures[name] = self._pool.submit(one, name)
            wait(futures.values(), timeout=timeout)
            for name, f in futures.items():
                if f.done():
                    results[name] = f.result()
                    self._busy.pop(name, None)
                else:
                    # Too slow: the others go on; this share is parked and re-delivered later
                    # (idempotent writes make the late-finishing write harmless).
                    self._busy[name] = f
                    results[name] = DeliveryError(f"destination {name!r} did not finish within {timeout:g}s "
                                                  "(delivery.write_timeout_s)")
        # Every destination's state first, so that raising below leaves none of them stale.
        for name, error in results.items():
            if error is not None:
                self._failing.add(name)
            elif name in self._failing:
                self._failing.discard(name)
                if cfg.delivery.dead_letter:
                    log.warning("destination %r recovered; `tidegate dlq replay %s` re-delivers what was parked",
                                name, name)
                else:
                    log.warning("destination %r recovered", name)
        errors = [error for error in results.values() if error is not None]
        if errors and not cfg.delivery.dead_letter:
            for error in errors[1:]:
                log.error("%s", error)
            raise errors[0]
        parked: dict[str, str] = {}
        for name, error in results.items():
            if error is None:
                continue
            n = shares[name].accepted
            self.dead_letters.park(name, items, reason=str(error), events=n, ids=event_ids(shares[name]))
            metrics.sink.dead_lettered.labels(name).inc(n)
            log.error("%s; parked %d events (%d messages) for %r in %s", error, n, len(items), name, dlq_topic(cfg, name))
            parked[name] = str(error)
        return parked

    def close(self) -> list[str]:
        """Stop delivering; wait up to ``delivery.write_timeout_s`` for writes still running.
        Returns the destinations whose write is still running then: a write that overran its
        timeout (a destination that stopped answering) must not hold a shutdown up for as long as
        it hangs. Its batch was never committed, so it is read again after a restart."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        busy = {name: f for name, f in self._busy.items() if not f.done()}
        if busy:
            wait(list(busy.values()), timeout=self.cfg.delivery.write_timeout_s)
        stuck = sorted(name for name, f in busy.items() if not f.done())
        self.dead_letters.close()
        return stuck


# -- list and replay ----------------------------------------------------------------------------

@dataclass
class DlqSummary:
    destination: str
    topic: str
    pending_messages: int = 0
    pending_events: int = 0
    total_messages: int = 0
    oldest: str = ""
    newest: str = ""
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    replayed_events: int = 0
    delivered_events: int = 0
    reparked_messages: int = 0
    reparked_events: int = 0

    def render(self) -> str:
        if not self.total_messages:
            return f"dead-letter topic {self.topic}: empty (nothing was ever parked for {self.destination!r})"
        lines = [f"dead-letter topic {self.topic} (destination {self.destination!r}):",
                 f"  waiting: {counted(self.pending_messages, 'message')}, {counted(self.pending_events, 'event')}"
                 f" (of {counted(self.total_messages, 'message')} ever parked)"]
        if self.pending_messages:
            lines.append(f"  oldest parked {self.oldest}, newest {self.newest}")
            lines.append("  reasons:")
            for reason, n in self.reasons.most_common():
                lines.append(f"    {n:>6} batch{'es' if n != 1 else ''}: {reason}")
            lines.append(f"  re-deliver with: tidegate dlq replay {self.destination}")
        return "\n".join(lines)


def _check_destination(cfg: Config, destination: str) -> None:
    if destination not in cfg.destinations:
        raise ConfigError(f"unknown destination {destination!r}; configured: {', '.join(cfg.destinations) or 'none'}",
                          file=cfg.path, key="destinations")


def _consumer(cfg: Config, destination: str) -> tuple[Consumer, list[TopicPartition], dict[int, int]]:
    """A consumer of the DLQ assigned at its group's committed offsets; and the high watermarks."""
    topic = dlq_topic(cfg, destination)
    consumer = Consumer({**client_settings(cfg), "group.id": replay_group(cfg, destination),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.message.max.bytes": MAX_MESSAGE_BYTES})
    try:
        meta = consumer.list_topics(topic, timeout=15)
    except KafkaException as e:
        consumer.close()
        raise TidegateError(f"cannot reach Kafka at {cfg.kafka.bootstrap_servers} ({e.args[0]})") from None
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        consumer.close()
        return consumer, [], {}
    parts = [TopicPartition(topic, p) for p in sorted(t.partitions)]
    committed = consumer.committed(parts, timeout=15)
    assign: list[TopicPartition] = []
    highs: dict[int, int] = {}
    for tp in committed:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=15)
        start = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else low
        highs[tp.partition] = high
        assign.append(TopicPartition(topic, tp.partition, max(start, low)))
    consumer.assign(assign)
    return consumer, assign, highs


def _read_pending(consumer: Consumer, assign: list[TopicPartition], highs: dict[int, int],
                  max_messages: int) -> Iterable[list[Any]]:
    """The messages from the assigned offsets up to the high watermarks, in chunks."""
    position = {tp.partition: tp.offset for tp in assign}
    chunk: list[Any] = []
    idle_deadline = time.monotonic() + 30
    while any(position[p] < highs[p] for p in position):
        msg = consumer.poll(1.0)
        if msg is None:
            if time.monotonic() > idle_deadline:
                raise TidegateError("timed out reading the dead-letter topic")
            continue
        if msg.error():
            raise TidegateError(f"cannot read the dead-letter topic: {msg.error()}")
        idle_deadline = time.monotonic() + 30
        position[msg.partition()] = msg.offset() + 1
        if msg.offset() >= highs[msg.partition()]:
            continue
        chunk.append(msg)
        if len(chunk) >= max_messages:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _headers(msg: Any) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or ()) if k.startswith(H)}


def list_dlq(cfg: Config, destination: str) -> DlqSummary:
    _check_destination(cfg, destination)
    summary = DlqSummary(destination, dlq_topic(cfg, destination))
    consumer, assign, highs = _consumer(cfg, destination)
    if not assign:
        return summary
    try:
        for tp in assign:
            low, _ = consumer.get_watermark_offsets(TopicPartition(summary.topic, tp.partition), timeout=15)
            summary.total_messages += highs[tp.partition] - low
        parks: dict[str, set[str]] = {}  # reason -> parked-at stamps (one per parked batch)
        for chunk in _read_pending(consumer, assign, highs, 10_000):
            for msg in chunk:
                h = _headers(msg)
                summary.pending_messages += 1
                summary.pending_events += int(h.get(H + "events", b"0") or 0)
                at = h.get(H + "parked-at", b"").decode()
                summary.oldest = min(summary.oldest or at, at)
                summary.newest = max(summary.newest, at)
                parks.setdefault(h.get(H + "reason", b"?").decode(errors="replace"), set()).add(at)
        summary.reasons.update({reason: len(stamps) for reason, stamps in parks.items()})
    finally:
        consumer.close()
    return summary


def _as_items(chunk: Sequence[Any]) -> list[RawItem]:
    """DLQ messages back into the pipeline's ``(value, ts, headers)`` items."""
    out: list[RawItem] = []
    for msg in chunk:
        all_headers = msg.headers() or []
        h = {k: v for k, v in all_headers if k.startswith(H)}
        original = [(k, v) for k, v in all_headers if not k.startswith(H)]
        value = Admitted.of(msg.value(), original or None, h.get(H + "duplicates", b""), h.get(H + "late", b""))
        out.append((value, msg.timestamp()[1], original or None))
    return out


def replay_dlq(cfg: Config, destination: str, *, batch_messages: int = 500, repark_failing: bool = False) -> DlqSummary:
    """Re-deliver what waits in the destination's DLQ through the current policy; see the module
    docstring.

    A chunk the destination still refuses after the retry budget is split in halves, and each is
    tried once more, down to single messages, so that one message the destination can never take
    (an event it refuses whatever the attempt, such as a table over PostgreSQL's column limit)
    does not hold back the rest: such a message is parked again at the end of the topic with the
    error, and the replay goes on past it (``reparked_messages``). A message counts as refused on
    its own only when the write just before took something (the other half of its split, or the
    previous write, or ``repark_failing``: the operator says the destination is up); when nothing
    near it gets through, the destination itself is failing (it went away, or was never there),
    and DeliveryError is raised with the rest left in place (offsets of what was delivered so far
    are committed)."""
    from .sinks import build_sink
    from .stages import decode_messages

    _check_destination(cfg, destination)
    summary = DlqSummary(destination, dlq_topic(cfg, destination))
    consumer, assign, highs = _consumer(cfg, destination)
    if not assign:
        return summary
    path = PolicyPath(cfg)
    sink = build_sink(destination, cfg.destinations[destination])
    dead_letters = DeadLetters(cfg)
    last_ok = False  # whether the latest write took its share

    def attempt(chunk: Sequence[Any], attempts: int) -> tuple[DeliveryError | None, int]:
        """Deliver ``chunk``; (the error or None, its events bound for the destination)."""
        nonlocal last_ok
        governed = path.govern(decode_messages(_as_items(chunk)))
        share = path.shares(governed, [destination])[destination]
        error = deliver_with_retries(sink, share, cfg.delivery, attempts=attempts)
        last_ok = error is None
        if error is None:
            summary.replayed_events += governed.accepted
            summary.delivered_events += share.accepted
            metrics.sink.dlq_replayed.labels(destination).inc(share.accepted)
        return error, share.accepted

    Failed = list[tuple[Any, DeliveryError, int]]

    def failing_alone(chunk: Sequence[Any], error: DeliveryError, events: int, trusted: bool) -> Failed | None:
        """Of ``chunk``, which failed as a whole, deliver what can be; the messages that fail on
        their own, with their error and event count; None when the destination itself fails.
        ``trusted``: the write just before took something. One attempt each: the whole had its
        retries."""
        if len(chunk) == 1:
            return [(chunk[0], error, events)] if trusted else None
        half = len(chunk) // 2
        parts = [(part, *attempt(part, 1)) for part in (chunk[:half], chunk[half:])]
        if not trusted and all(e is not None for _, e, _ in parts):
            return None  # nothing near gets through: the destination fails
        failed: Failed = []
        for (part, part_error, part_events), (_, other_error, _) in zip(parts, parts[::-1]):
            if part_error is not None:
                # Trusted only next to a half that got through: both halves failing says
                # nothing about either, and the next split decides.
                inner = failing_alone(part, part_error, part_events, trusted=other_error is None)
                if inner is None:
                    return None
                failed += inner
        return failed

    try:
        sink.setup()
        for chunk in _read_pending(consumer, assign, highs, batch_messages):
            trusted = last_ok or repark_failing
            error, events = attempt(chunk, cfg.delivery.max_attempts)
            if error is not None:
                failed = failing_alone(chunk, error, events, trusted)
                if failed is None:
                    raise DeliveryError(f"{error}; {summary.replayed_events} events were re-delivered before this, "
                                        f"the rest stays in {summary.topic} — run `tidegate dlq replay {destination}` "
                                        "again later (if the destination is up and refuses these messages themselves, "
                                        "`--repark-failing` parks them again at the end of the topic and goes on)")
                for msg, msg_error, n in failed:
                    dead_letters.park(destination, _as_items([msg]), events=n,
                                      reason=f"fails on its own on replay while the rest was re-delivered: {msg_error}")
                    log.error("destination %r refused a parked message on its own (partition %d, offset %d, %d events): "
                              "%s; parked it again at the end of %s", destination, msg.partition(), msg.offset(), n,
                              msg_error, summary.topic)
                summary.reparked_messages += len(failed)
                summary.reparked_events += sum(n for _, _, n in failed)
            last: dict[int, int] = {}
            for msg in chunk:
                last[msg.partition()] = msg.offset() + 1
            consumer.commit(offsets=[TopicPartition(summary.topic, p, o) for p, o in last.items()], asynchronous=False)
            summary.pending_messages += len(chunk)
    finally:
        consumer.close()
        sink.close()
        dead_letters.close()
    return summary
