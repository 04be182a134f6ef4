"""Stage `identity`: join anonymous ids and user ids into one canonical id per person.

Every event that carries both ids (``identify``, and any other event with both), and every
``alias`` (``previousId`` and ``userId``, two user ids), is an edge of the identity graph
(``_core.IdentityGraph``: union-find, merges transitive; the canonical id of a component is its
smallest user id, or smallest anonymous id if it has none, so it does not depend on arrival
order). Each delivered row gets ``canonical_id``, resolved once here before fan-out, so every
destination sees the same one.

Replicas share the graph through the ``<raw_topic>.identity`` topic: each batch's new edges are
published there and every replica reads the whole topic (from the beginning, in a background
thread) into its own graph, skipping the messages it published itself (a header names the
publishing process; its graph has those edges already). A merge learnt from another partition
therefore reaches a replica moments later; rows delivered before it keep the id they resolved
to, and the warehouse's ``identity_map`` table (one row per known id: ``node_kind``,
``node_id``, ``canonical_id``) is the current mapping to re-stitch them by. A batch writes only the mappings that are news: ids
this process sees for the first time, and ids a merge re-labelled (a restarted process writes
each id again once). The graph keeps the ids joined to another (≈120-150 bytes each, measured);
ids never joined are remembered by a 64-bit hash in two bounded generations (≈35 MB at most), so
such an id's row is written again after a million others.

Work is per batch and per *distinct* id, never per event: edges and ids are made unique with
polars before they reach the graph, and canonical ids are joined back on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import warnings
from typing import Any

import polars as pl

with warnings.catch_warnings(record=True):
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from .. import _core, metrics, threads
from .govern import GovernedBatch

__all__ = ["IdentityResolver", "IDENTITY_TABLE", "REDACTED_MARK", "identity_topic"]

log = logging.getLogger("tidegate.identity")

IDENTITY_TABLE = "identity_map"
REDACTED_MARK = "[REDACTED:"  # how the core's PII `redact` action begins a replaced span
PUBLISH_BYTES = 256 * 1024  # per identity-topic message (ids are not escaped often enough to matter)
PUBLISHER_HEADER = "tidegate-publisher"  # the publishing process's id, so that it skips its own messages


def identity_topic(raw_topic: str) -> str:
    return f"{raw_topic}.identity"


def _id_pairs(value: bytes | None) -> list[tuple[str, str]] | None:
    """The [[left, right], ...] pairs of an identity-topic message; ``None`` if it is not that."""
    try:
        pairs = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str) for p in pairs):
        return None
    return [(p[0], p[1]) for p in pairs]


def _node(kind: str, column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_not_null() & (pl.col(column) != "")).then(pl.lit(kind) + pl.col(column))


class IdentityResolver:
    """Keeps the graph, adds each batch's edges, and stamps ``canonical_id`` on every row."""

    def __init__(self, kafka_settings: dict[str, Any] | None = None, topic: str | None = None):
        self.graph = _core.IdentityGraph()
        self._lock = threading.Lock()
        self._publisher = uuid.uuid4().hex.encode()
        self._topic = topic
        self._producer = Producer({**kafka_settings, "acks": "all", "enable.idempotence": True}) if kafka_settings and topic else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # `identity_map` rows made since the last commit (`confirm`), and those of a checkpoint
        # that backed off (`forget`), which the next batch carries again: the graph marks an id
        # seen when a batch is governed, so its re-read would not make them again.
        # Only a pipeline, which calls both, sets `keeps_until_commit`.
        self.keeps_until_commit = False
        self._unconfirmed: list[pl.DataFrame] = []
        self._redo: list[pl.DataFrame] = []
        if kafka_settings and topic:
            self._thread = threads.Thread(target=self._follow, args=(kafka_settings, topic),
                                          name="tidegate-identity", daemon=True)
            self._thread.start()

    # -- edges -----------------------------------------------------------------------------
    @staticmethod
    def _edges(tables: list[tuple[str, pl.DataFrame]]) -> pl.LazyFrame:
        frames = []
        for table, df in tables:
            if "user_id" not in df.columns:
                continue
            if "anonymous_id" in df.columns:
                frames.append(df.lazy().select(_node("a:", "anonymous_id").alias("left"), _node("u:", "user_id").alias("right")))
            if table == "aliases" and "previous_id" in df.columns:
                frames.append(df.lazy().select(_node("u:", "previous_id").alias("left"), _node("u:", "user_id").alias("right")))
        if not frames:
            return pl.LazyFrame(schema={"left": pl.String, "right": pl.String})
        return pl.concat(frames).drop_nulls().unique(maintain_order=True)

    @staticmethod
    def _row_nodes(tables: list[tuple[str, pl.DataFrame]]) -> pl.LazyFrame:
        """The node of every row of ``tables``, in order: its user id, else its anonymous id
        (an empty id is no id, as for edges)."""
        frames = []
        for _, df in tables:
            ids = [_node(kind, column) for kind, column in (("u:", "user_id"), ("a:", "anonymous_id")) if column in df.columns]
            node = pl.coalesce(ids) if len(ids) > 1 else ids[0]
            frames.append(df.lazy().select(node.alias("node")))
        if not frames:
            return pl.LazyFrame(schema={"node": pl.String})
        return pl.concat(frames)

    def link(self, left: list[str], right: list[str]) -> list[str]:
        with self._lock:
            return self.graph.link(left, right)

    # -- per batch -------------------------------------------------------------------------
    def process(self, batch: GovernedBatch) -> GovernedBatch:
        """Stamp ``canonical_id`` (a second pass over the same tables replaces the column).

        The batch's tables are handled as one: a few polars queries in all (not a few per
        table), one join of every row's node onto the resolved ids, and each table gets its
        slice of the result as a column."""
        started = time.perf_counter()
        tables = [(t, df) for t, df in batch.tables.items()
                  if t not in ("users", IDENTITY_TABLE) and {"user_id", "anonymous_id"} & set(df.columns)]
        edges, row_nodes = pl.collect_all([self._edges(tables), self._row_nodes(tables)])
        changed: list[str] = []
        if edges.height:
            changed = self.link(edges["left"].to_list(), edges["right"].to_list())
            self._publish(edges)
        # Every id the batch mentions, resolved once.
        all_nodes = pl.concat([row_nodes["node"].drop_nulls(), pl.Series("node", changed, dtype=pl.String),
                               edges["left"], edges["right"]]).unique()
        with self._lock:
            resolved, news = self.graph.observe(all_nodes.to_list())
        mapping = pl.DataFrame({"node": all_nodes, "canonical": pl.Series(resolved, dtype=pl.String),
                                "news": pl.Series(news, dtype=pl.Boolean)})
        mapping = mapping.with_columns(pl.col("canonical").str.slice(2).alias("canonical_id"))
        canonical = row_nodes.join(mapping.select("node", "canonical_id"), on="node", how="left",
                                   maintain_order="left")["canonical_id"]
        offset = 0
        for table, df in tables:
            if "canonical_id" in df.columns:
                df = df.drop("canonical_id")
            batch.tables[table] = df.hstack([canonical.slice(offset, df.height)])
            offset += df.height
        # `identity_map` gets the mappings that are news: ids seen for the first time (by this
        # process) and ids re-labelled by a merge; the others are stored already.
        news_mapping = mapping.filter("news")
        now = pl.lit(time.time_ns() // 1000).cast(pl.Datetime("us", "UTC"))
        rows = news_mapping.select(
            pl.col("node").alias("id"),
            pl.when(pl.col("node").str.starts_with("u:")).then(pl.lit("user_id")).otherwise(pl.lit("anonymous_id")).alias("node_kind"),
            pl.col("node").str.slice(2).alias("node_id"),
            pl.col("canonical_id"),
            now.alias("received_at"),
        )
        if self.keeps_until_commit:
            with self._lock:
                redo, self._redo = self._redo, []
                if redo:
                    rows = pl.concat([*redo, rows], how="vertical_relaxed").unique("id", keep="last", maintain_order=True)
                if rows.height:
                    self._unconfirmed.append(rows)
        if rows.height:
            batch.tables[IDENTITY_TABLE] = rows
        metrics.pipeline.identity_merges.inc(len(changed))
        metrics.pipeline.stage_seconds.labels("identity").observe(time.perf_counter() - started)
        return batch

    def confirm(self) -> None:
        """The mappings made so far are delivered (their checkpoint commits)."""
        with self._lock:
            self._unconfirmed = []

    def forget(self) -> None:
        """The checkpoint backed off: its mappings go with the next batch instead."""
        with self._lock:
            self._redo, self._unconfirmed = self._redo + self._unconfirmed, []

    @staticmethod
    def ids_to_restamp(main: GovernedBatch) -> pl.Series:
        """The ids of ``main`` that :meth:`stamp_as` carries over: canonical ids, and the node
        and canonical ids of its ``identity_map``."""
        values = [df["canonical_id"] for t, df in main.tables.items()
                  if t not in ("users", IDENTITY_TABLE) and "canonical_id" in df.columns]
        identity_map = main.tables.get(IDENTITY_TABLE)
        if identity_map is not None:
            values += [identity_map["node_id"], identity_map["canonical_id"]]
        return pl.concat([v.cast(pl.String) for v in values]) if values else pl.Series([], dtype=pl.String)

    def stamp_as(self, own: GovernedBatch, main: GovernedBatch, mapping: pl.DataFrame) -> GovernedBatch:
        """``canonical_id`` for another pass over ``main``'s events (a destination's own PII
        pass): each row gets its event's canonical id from ``main`` through ``mapping`` (``raw`` →
        ``treated``: that destination's PII actions on :meth:`ids_to_restamp`), and
        ``identity_map`` is ``main``'s, treated the same way (rows left meaningless by a redaction
        or a dropped field are left out). The graph is neither changed nor asked: the own pass's
        ids may be redacted or hashed, and linking them would merge different people (every
        redacted email would be one "user")."""
        for t, df in list(own.tables.items()):
            if t in ("users", IDENTITY_TABLE) or "id" not in df.columns or t not in main.tables \
                    or "canonical_id" not in main.tables[t].columns:
                continue
            canonical = (main.tables[t].lazy().select("id", "canonical_id")
                         .join(mapping.lazy(), left_on="canonical_id", right_on="raw", how="left")
                         .select("id", pl.col("treated").alias("canonical_id")).unique("id", keep="first"))
            own.tables[t] = (df.lazy().drop("canonical_id", strict=False)
                             .join(canonical, on="id", how="left", maintain_order="left").collect())
        own.tables.pop(IDENTITY_TABLE, None)
        identity_map = main.tables.get(IDENTITY_TABLE)
        if identity_map is not None and identity_map.height:
            node = mapping.rename({"raw": "node_id", "treated": "t_node"})
            canon = mapping.rename({"raw": "canonical_id", "treated": "t_canonical"})
            meaningful = pl.all_horizontal(pl.col(c).is_not_null() & ~pl.col(c).str.contains(REDACTED_MARK, literal=True)
                                           for c in ("t_node", "t_canonical"))
            rows = (identity_map.lazy().join(node.lazy(), on="node_id", how="left")
                    .join(canon.lazy(), on="canonical_id", how="left").filter(meaningful)
                    .select((pl.col("id").str.slice(0, 2) + pl.col("t_node")).alias("id"), "node_kind",
                            pl.col("t_node").alias("node_id"), pl.col("t_canonical").alias("canonical_id"), "received_at")
                    .unique("id", keep="last", maintain_order=True).collect())
            if rows.height:
                own.tables[IDENTITY_TABLE] = rows
        return own

    # -- sharing between replicas ----------------------------------------------------------
    def _publish(self, edges: pl.DataFrame) -> None:
        if self._producer is None or self._topic is None:
            return
        # Messages stay under the broker's default 1 MB limit, however big the batch.
        pair_bytes = pl.col("left").str.len_bytes() + pl.col("right").str.len_bytes() + 8
        chunked = edges.with_columns(((pair_bytes.cum_sum() - pair_bytes) // PUBLISH_BYTES).alias("_chunk"))
        for chunk in chunked.partition_by("_chunk", maintain_order=True, include_key=False):
            self._producer.produce(self._topic, json.dumps(chunk.rows()).encode(), headers=[(PUBLISHER_HEADER, self._publisher)],
                                   on_delivery=self._published)
        self._producer.poll(0)

    def _published(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:  # the producer's own retries are used up: say so, not silently
            log.error("identity topic %s: %d bytes of id pairs were not written (%s); other replicas learn "
                      "these merges only when the ids meet again", self._topic, len(msg.value() or b""), err.str())

    def _follow(self, settings: dict[str, Any], topic: str) -> None:
        """Read the identity topic into the graph until closed. Kafka being away (at startup too)
        is waited out, and a message that is not a list of id pairs is skipped with a warning:
        neither may end the sharing for the life of the process."""
        consumer = Consumer({**settings, "group.id": f"tidegate-identity-{id(self)}", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
        try:
            parts = self._partitions(consumer, topic)
            if parts is None:
                return
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    if msg is not None and msg.error().code() not in (KafkaError._PARTITION_EOF,):
                        log.warning("identity topic: %s", msg.error())
                    continue
                if (PUBLISHER_HEADER, self._publisher) in (msg.headers() or ()):
                    continue  # this process's own edges, linked when it published them
                pairs = _id_pairs(msg.value())
                if pairs is None:
                    log.warning("identity topic %s[%d] offset %d: not a JSON list of [id, id] pairs; skipped",
                                topic, msg.partition(), msg.offset())
                elif pairs:
                    left, right = zip(*pairs)
                    self.link(list(left), list(right))
        except Exception:  # noqa: BLE001 - the graph still works locally; say why sharing stopped
            log.exception("identity topic follower stopped; merges from other replicas arrive no more")
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer, topic: str) -> list[int] | None:
        """The topic's partitions (partition 0 if it does not exist yet); asked again, at growing
        intervals, while Kafka cannot be reached. ``None`` if closed meanwhile."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                meta = consumer.list_topics(topic, timeout=10)
            except KafkaException as e:
                log.warning("identity topic %s: cannot read its partitions (%s); trying again in %.0f s", topic, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            return sorted(meta.topics[topic].partitions) if topic in meta.topics else [0]
        return None

    def close(self) -> None:
        self._stop.set()
        if self._producer is not None:
            self._producer.flush(5)
