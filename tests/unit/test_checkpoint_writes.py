"""How a checkpoint's messages become writes: started every `max_write_mb` while consumption goes
on, across partitions, and all done before `flush` returns (the offsets commit after it).

The sink runs for real here: the stages, the archive and a DuckDB destination; the destination
is a DuckDB sink whose writes a test can hold back or fail."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from quixstreams.sinks import SinkBackpressureError

from tidegate.errors import DeliveryError
from tidegate.pipeline import GovernedSink
from tidegate.sinks.duckdb import DuckDBSink
from tidegate.stages.decode import Admitted
from tidegate.stages.govern import GovernedBatch

from sink_support import event, warehouse_config

SOURCE = [("tidegate-source", b"web")]


class Warehouse(DuckDBSink):
    """The DuckDB sink, with a gate on its writes and a way to fail the next one."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.writes: list[int] = []  # events per write, in order
        self.idled: list[int] = []  # writes done at each idle call

    def write(self, batch: GovernedBatch) -> None:
        self.gate.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise DeliveryError("warehouse unavailable (test)")
        super().write(batch)
        self.writes.append(batch.accepted)

    def idle(self) -> None:
        self.idled.append(len(self.writes))
        super().idle()


def make_sink(tmp_path: Path, max_write_mb: float, warehouse_class: type[Warehouse] = Warehouse, *,
              dead_letter: bool = False) -> tuple[GovernedSink, Warehouse]:
    cfg = warehouse_config(tmp_path, pipeline=f"max_write_mb = {max_write_mb}", dead_letter=dead_letter)
    warehouse = warehouse_class("warehouse", cfg.destinations["warehouse"])
    sink = GovernedSink(cfg, {"warehouse": warehouse})
    sink.setup()
    return sink, warehouse


def message(n: int) -> bytes:
    return json.dumps(event(n)).encode()


def add(sink: GovernedSink, n: int, partition: int = 0, *, admitted: bool = False, kafka_ms: int = 1_767_607_200_000) -> None:
    value: Any = Admitted.of(message(n), SOURCE) if admitted else message(n)
    sink.add(value, None, kafka_ms, SOURCE, "raw", partition, n)


def stored(warehouse: Warehouse) -> int:
    return warehouse.row_counts().get("tracks", 0)


def test_identity_mappings_of_a_checkpoint_that_backed_off_are_written_by_its_re_read(tmp_path: Path) -> None:
    """The graph marks an id seen when its batch is governed; the re-read of a failed checkpoint
    governs the same ids again and would have made no `identity_map` rows for them."""
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size + 1) / 2**20)  # 2 messages a write
    both = [json.dumps(event(n, anonymousId=f"anon-{n}", userId=f"user-{n}")).encode() for n in range(4)]
    warehouse.fail_next = True
    for n, value in enumerate(both):
        sink.add(value, None, 1_767_607_200_000, SOURCE, "raw", 0, n)
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    sink.on_paused()
    for n, value in enumerate(both):
        sink.add(value, None, 1_767_607_200_000, SOURCE, "raw", 0, n)
    sink.flush()
    assert stored(warehouse) == 4
    assert warehouse.row_counts().get("identity_map") == 8  # u:user-n and a:anon-n, n = 0..3
    for n, value in enumerate(both):  # a later checkpoint of the same ids makes none again
        sink.add(value, None, 1_767_607_200_000, SOURCE, "raw", 0, 10 + n)
    sink.flush()
    assert warehouse.row_counts().get("identity_map") == 8 and not sink.identity._unconfirmed


def test_writes_start_while_the_checkpoint_is_consumed(tmp_path: Path) -> None:
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(3 * size + 1) / 2**20)  # 4 messages a write
    for n in range(10):
        add(sink, n, partition=n % 3)
    sink._writes[-1].delivered.result(10)  # delivered before any flush
    assert warehouse.writes == [4, 4] and stored(warehouse) == 8
    sink.flush()
    assert warehouse.writes == [4, 4, 2] and stored(warehouse) == 10
    assert sink._writes == [] and sink._pending == []


def test_flush_writes_a_small_checkpoint_in_one_write_across_partitions(tmp_path: Path) -> None:
    sink, warehouse = make_sink(tmp_path, max_write_mb=16)
    for n in range(6):
        add(sink, n, partition=n % 3)
    assert warehouse.writes == []
    sink.flush()
    assert warehouse.writes == [6] and stored(warehouse) == 6
    sink.flush()  # nothing gathered: no write
    assert warehouse.writes == [6]


def test_the_bound_counts_the_message_not_the_admission_tuple(tmp_path: Path) -> None:
    """After the admission step a value is an `Admitted` (message, duplicate flags, lateness and
    the message already split)."""
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(2 * size + 1) / 2**20)
    for n in range(6):
        add(sink, n, admitted=True)
    sink.flush()
    assert warehouse.writes == [3, 3]


def test_a_failed_write_backs_off_and_the_writes_after_it_are_not_delivered(tmp_path: Path) -> None:
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size + 1) / 2**20)  # 2 messages a write
    warehouse.fail_next = True
    for n in range(8):
        add(sink, n, partition=n % 2)
    with pytest.raises(SinkBackpressureError) as e:
        sink.flush()
    assert e.value.retry_after == 1.0
    assert warehouse.writes == [] and stored(warehouse) == 0  # the first failed; none after it ran
    sink.on_paused()
    # The re-read (Quix Streams seeks back to the last commit) delivers everything.
    for n in range(8):
        add(sink, n, partition=n % 2)
    sink.flush()
    assert sum(warehouse.writes) == 8 and stored(warehouse) == 8


def test_writes_ahead_of_delivery_are_bounded(tmp_path: Path) -> None:
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size - 1) / 2**20)  # a write per message
    warehouse.gate.clear()
    undelivered = []
    behind: list[bool] = []
    sink.after_checkpoint = behind.append
    release = threading.Timer(1.0, warehouse.gate.set)
    release.start()
    for n in range(6):
        add(sink, n)
        undelivered.append(sum(not w.delivered.done() for w in sink._writes))
    sink.flush()
    release.join()
    # While the destination was held, staging stopped at the one being delivered plus
    # WRITES_AHEAD waiting: adding waited instead of piling up governed batches.
    assert max(undelivered) == GovernedSink.WRITES_AHEAD + 1
    assert warehouse.writes == [1] * 6
    # Its messages (Kafka time 2026-01-05) were far older than max_commit_interval_s: behind.
    # A checkpoint of a message produced just now is not.
    assert behind == [True]
    add(sink, 6, kafka_ms=int(time.time() * 1000))
    sink.flush()
    assert behind == [True, False]


def test_before_checkpoint_runs_once_per_checkpoint_before_its_first_write(tmp_path: Path) -> None:
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size + 1) / 2**20)
    calls: list[int] = []
    sink.before_checkpoint = lambda: calls.append(len(warehouse.writes))
    for n in range(5):
        add(sink, n)
    sink.flush()
    for n in range(5, 7):
        add(sink, n)
    sink.flush()
    assert calls == [0, 3]


def test_commit_hooks_run_after_every_write_is_done_or_on_backoff(tmp_path: Path) -> None:
    """The admission step persists its dedupe keys only once the checkpoint's writes are all
    delivered, and forgets them when the checkpoint backs off instead."""
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size + 1) / 2**20)
    calls: list[tuple[str, int]] = []
    sink.before_commit.append(lambda: calls.append(("commit", stored(warehouse))))
    sink.after_backoff.append(lambda: calls.append(("backoff", stored(warehouse))))
    for n in range(4):
        add(sink, n)
    sink.flush()
    warehouse.fail_next = True
    for n in range(4, 8):
        add(sink, n)
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    assert calls == [("commit", 4), ("backoff", 4)]


def test_destinations_get_an_idle_call_when_no_write_waits(tmp_path: Path) -> None:
    size = len(message(0))
    sink, warehouse = make_sink(tmp_path, max_write_mb=(size - 1) / 2**20)  # a write per message
    warehouse.gate.clear()  # hold the first write: the next three queue behind it
    for n in range(4):
        add(sink, n)
    warehouse.gate.set()
    sink.flush()
    assert sink._upkeep is not None
    sink._upkeep.result(10)  # its own task: the checkpoint does not wait for it
    assert warehouse.writes == [1, 1, 1, 1] and warehouse.idled == [4]  # only once the queue emptied


def test_a_checkpoint_does_not_wait_for_upkeep(tmp_path: Path) -> None:
    sink, warehouse = make_sink(tmp_path, max_write_mb=16)
    upkeep, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_idle() -> None:
        upkeep.set()
        release.wait(5)
        done.set()

    warehouse.idle = slow_idle  # type: ignore[method-assign]
    add(sink, 0)
    sink.flush()  # returns while the upkeep still runs
    assert upkeep.wait(10) and not done.is_set()
    add(sink, 1)  # the next checkpoint's write queues behind the upkeep
    release.set()
    sink.flush()
    assert warehouse.writes == [1, 1]


def test_duckdb_checkpoints_when_idle_past_its_wal_bound(tmp_path: Path) -> None:
    from tidegate.config import DuckDBDestination
    from tidegate.sinks.duckdb import DuckDBSink

    path = tmp_path / "w.duckdb"
    duck = DuckDBSink("w", DuckDBDestination(path=str(path), idle_checkpoint_mb=1))
    duck.setup()
    duck.con.execute("CREATE TABLE t AS SELECT range AS i, repeat('x', 100) AS s FROM range(30000)")
    wal = Path(f"{path}.wal")
    assert wal.exists() and wal.stat().st_size >= 1024 * 1024
    duck.idle()
    assert not wal.exists() or wal.stat().st_size < 1024 * 1024
    off = DuckDBSink("w", DuckDBDestination(path=str(tmp_path / "x.duckdb"), idle_checkpoint_mb=0))
    off.setup()
    off.con.execute("CREATE TABLE t AS SELECT range AS i, repeat('x', 100) AS s FROM range(30000)")
    off.idle()
    assert Path(f"{tmp_path / 'x.duckdb'}.wal").stat().st_size >= 1024 * 1024


def test_duckdb_upkeep_does_not_wait_for_a_write_still_running(tmp_path: Path) -> None:
    """A write that overran `delivery.write_timeout_s` still holds the sink; the upkeep on the
    deliver thread goes on without it (it waited, and every destination's next write with it)."""
    from tidegate.config import DuckDBDestination
    from tidegate.sinks.duckdb import DuckDBSink

    path = tmp_path / "w.duckdb"
    duck = DuckDBSink("w", DuckDBDestination(path=str(path), idle_checkpoint_mb=1))
    duck.setup()
    duck.con.execute("CREATE TABLE t AS SELECT range AS i, repeat('x', 100) AS s FROM range(30000)")
    with duck._lock:  # noqa: SLF001 - as the running write holds it
        upkeep = threading.Thread(target=duck.idle)
        upkeep.start()
        upkeep.join(2)
        assert not upkeep.is_alive()
    wal = Path(f"{path}.wal")
    assert wal.stat().st_size >= 1024 * 1024
    duck.idle()  # the next quiet moment
    assert not wal.exists() or wal.stat().st_size < 1024 * 1024


@pytest.mark.parametrize("vacuum_every", [0, 1, 2])
def test_duckdb_idle_checkpoints_vacuum_every_nth(tmp_path: Path, vacuum_every: int) -> None:
    """Appends after a checkpoint become a row group of their own unless the next checkpoint
    vacuums (merges them into the partly filled one before)."""
    from tidegate.config import DuckDBDestination
    from tidegate.sinks.duckdb import DuckDBSink

    duck = DuckDBSink("w", DuckDBDestination(path=str(tmp_path / "w.duckdb"), idle_checkpoint_mb=1,
                                             vacuum_every=vacuum_every))
    duck.setup()
    duck.con.execute("CREATE TABLE t (i BIGINT, s VARCHAR)")
    groups = []
    for n in range(4):
        duck.con.execute(f"INSERT INTO t SELECT range + {n * 15000}, repeat('x', 100) FROM range(15000)")
        duck.idle()
        groups.append(duck.con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')").fetchone()[0])
    if vacuum_every == 0:
        assert groups == [1, 2, 3, 4]
    else:  # DuckDB merges by its own rules (measured: [1, 1, 2, 1] with 1, [1, 1, 2, 2] with 2)
        assert groups[1] == 1 and groups[-1] < 4
    # Between checkpoints DuckDB's own (at checkpoint_threshold_mb) do not vacuum either.
    assert duck.con.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0] == (100 if vacuum_every == 1 else 0)
    duck.close()


def test_checkpoints_lengthen_while_behind_and_reset_when_not(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tidegate import metrics
    from tidegate.pipeline import Pipeline

    cfg = make_sink(tmp_path, 16)[0].cfg
    app = SimpleNamespace(_processing_context=SimpleNamespace(commit_interval=cfg.pipeline.commit_interval_s))
    adapt = Pipeline._checkpoint_interval(SimpleNamespace(cfg=cfg), app)  # type: ignore[arg-type]
    seen = []
    for behind in (True, True, True, True, True, False, True):
        adapt(behind)
        seen.append(app._processing_context.commit_interval)
    assert seen == [0.5, 1.0, 2.0, 2.0, 2.0, 0.25, 0.5]  # doubles up to max_commit_interval_s (2.0)
    assert metrics.REGISTRY.get_sample_value("tidegate_pipeline_commit_interval_seconds") == 0.5
