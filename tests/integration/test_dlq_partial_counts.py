"""`tidegate dlq list` counts the events that still wait after a replay committed part of a
parked batch: each parked message carries its own count (the count used to be on the first
message of the batch only, so the rest counted 0)."""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import polars as pl

from tidegate import load_config
from tidegate.dlq import DeadLetters, dlq_topic, list_dlq, replay_group
from tidegate.kafka import client_settings

with warnings.catch_warnings(record=True):
    from confluent_kafka import Consumer, TopicPartition


def message(*ids: str) -> tuple[bytes, int, None]:
    events = [{"type": "track", "event": "Clicked", "userId": "u", "messageId": i} for i in ids]
    return json.dumps({"v": 1, "source": "web", "receivedAt": "2026-11-26T08:00:00.000Z", "events": events}).encode(), \
        1_795_650_000_000, None


def test_list_counts_the_events_of_a_partly_replayed_batch(tmp_path: Path, kafka: str) -> None:
    toml = tmp_path / "tidegate.toml"
    toml.write_text(f'[kafka]\nbootstrap_servers = "{kafka}"\nraw_topic = "tidegate.partial.{uuid.uuid4().hex[:8]}"\n'
                    '[sources.web]\nwrite_key = "k"\n[destinations.wh]\ntype = "duckdb"\npath = "wh.duckdb"\n')
    cfg = load_config(toml, env={})
    dead = DeadLetters(cfg)
    # 5 events in 3 messages; 4 are bound for the destination ("c" is not: consent, say).
    dead.park("wh", [message("a", "b"), message("c"), message("d", "e")], reason="test", events=4,
              ids=pl.Series(["a", "b", "d", "e"]))
    dead.close()
    summary = list_dlq(cfg, "wh")
    assert (summary.pending_messages, summary.pending_events) == (3, 4)
    # A replay committed the first message, as after a chunk of one message.
    consumer = Consumer({**client_settings(cfg), "group.id": replay_group(cfg, "wh"), "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(dlq_topic(cfg, "wh"), 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    summary = list_dlq(cfg, "wh")
    assert (summary.pending_messages, summary.pending_events) == (2, 2)
    assert "waiting: 2 messages, 2 events" in summary.render()
