"""How `dlq replay` tells a message the destination refuses on its own from a destination that is
failing: the split decisions, over a scripted destination. Kafka's part (reading, committing,
parking again) is replaced by lists here; `tests/integration/test_dlq.py` runs it on a real broker
and PostgreSQL."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import tidegate.dlq as dlq
import tidegate.sinks as sinks
from tidegate.config import load_config
from tidegate.errors import DeliveryError

CHUNK = 8


class Msg:
    def __init__(self, i: int):
        self.i = i
        self._v = json.dumps({"v": 1, "source": "web", "receivedAt": "2026-01-01T00:00:00.000Z",
                              "events": [{"type": "track", "event": "X", "userId": f"u{i}", "messageId": f"m{i}",
                                          "receivedAt": "2026-01-01T00:00:00.000Z"}]}).encode()

    def value(self) -> bytes:
        return self._v

    def headers(self) -> list[tuple[str, bytes]]:
        return [("tidegate-dlq-events", b"1")]

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.i


class Destination:
    """Refuses a write holding a poisoned message, or every write once it is down."""

    def __init__(self, poisoned: set[str], down_after_writes: int | None):
        self.name, self.poisoned, self.down_after = "wh", poisoned, down_after_writes
        self.writes = 0
        self.stored: list[str] = []

    def setup(self) -> None: ...

    def close(self) -> None: ...

    def write(self, batch: Any) -> None:
        self.writes += 1
        if self.down_after is not None and self.writes > self.down_after:
            raise DeliveryError("destination 'wh' cannot connect: connection refused")
        ids = batch.tables["tracks"]["id"].to_list()
        if self.poisoned & set(ids):
            raise DeliveryError("destination 'wh': tables can have at most 1600 columns")
        self.stored += ids


def _replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, destination: Destination,
            **kw: Any) -> tuple[Any, list[int], int]:
    (tmp_path / "t.toml").write_text(f'[sources.web]\nwrite_key = "k"\n[regulations]\npath = "{tmp_path}/regs"\n'
                                     f'[destinations.wh]\ntype = "duckdb"\npath = "{tmp_path}/w.duckdb"\n'
                                     "[delivery]\nmax_attempts = 2\nbackoff_initial_s = 0\nbackoff_max_s = 0\n")
    cfg = load_config(tmp_path / "t.toml", env={})
    msgs = [Msg(i) for i in range(n)]
    committed = [0]
    reparked: list[int] = []

    class Consumer:
        def commit(self, offsets: Any, asynchronous: bool) -> None:
            committed[0] = offsets[0].offset

        def close(self) -> None: ...

    class DeadLetters:
        def __init__(self, cfg: Any): ...

        def park(self, destination: str, items: Any, **kw: Any) -> None:
            reparked.extend(int(json.loads(value[0])["events"][0]["messageId"][1:]) for value, _, _ in items)

        def close(self) -> None: ...

    size = kw.pop("batch_messages", CHUNK)
    monkeypatch.setattr(dlq, "_consumer", lambda cfg, d: (Consumer(), [object()], {0: n}))
    monkeypatch.setattr(dlq, "_read_pending", lambda c, a, h, _: (msgs[i:i + size] for i in range(0, n, size)))
    monkeypatch.setattr(dlq, "DeadLetters", DeadLetters)
    monkeypatch.setattr(sinks, "build_sink", lambda name, d: destination)
    logging.disable(logging.CRITICAL)
    try:
        try:
            result: Any = dlq.replay_dlq(cfg, "wh", batch_messages=size, **kw)
        except DeliveryError as e:
            result = e
    finally:
        logging.disable(logging.NOTSET)
    return result, reparked, committed[0]


def test_a_message_refused_on_its_own_is_parked_again_and_the_rest_delivered(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dest = Destination({"m3", "m13"}, None)  # the first chunk's too: nothing had got through before it
    result, reparked, committed = _replay(tmp_path, monkeypatch, 24, dest)
    assert not isinstance(result, Exception), result
    assert sorted(reparked) == [3, 13] and committed == 24
    assert sorted(dest.stored) == sorted(f"m{i}" for i in range(24) if i not in (3, 13))


def test_a_destination_that_goes_away_midway_stops_the_replay_without_parking_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = Destination(set(), down_after_writes=1)  # takes the first chunk, then is gone
    result, reparked, committed = _replay(tmp_path, monkeypatch, 24, dest)
    assert isinstance(result, DeliveryError) and "connection refused" in str(result)
    assert reparked == [] and committed == CHUNK  # the rest stays where it was
    assert dest.writes == 1 + 2 + 2 + 2  # the first chunk; the second's attempts, its halves, one half's halves


def test_a_lone_refused_message_with_nothing_before_it_needs_the_operators_word(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, reparked, committed = _replay(tmp_path, monkeypatch, 3, Destination({"m0"}, None), batch_messages=1)
    assert isinstance(result, DeliveryError) and "--repark-failing" in str(result) and committed == 0
    result, reparked, committed = _replay(tmp_path, monkeypatch, 3, Destination({"m0"}, None), batch_messages=1,
                                          repark_failing=True)
    assert not isinstance(result, Exception) and reparked == [0] and committed == 3
