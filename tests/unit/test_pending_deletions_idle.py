"""A deletion left pending for the pipeline (`regulate delete` while its DuckDB was held) is
carried out by the running pipeline within seconds of the list's change, without waiting for
traffic, and at a shutdown; it used to wait for the next events or the next start."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tidegate.pipeline import GovernedSink, Pipeline
from tidegate.regulations import RegulationStore

from sink_support import event, warehouse_config

SOURCE = [("tidegate-source", b"web")]


def stored_sink(tmp_path: Path) -> GovernedSink:
    """A pipeline's sink holding the warehouse, with user-1's and user-2's events stored."""
    cfg = warehouse_config(tmp_path, extra='[regulations]\npath = "reg"\n')
    sink = Pipeline(cfg).sink
    sink.setup()
    for n in range(1, 5):
        sink.add(json.dumps(event(n)).encode(), None, 1_767_607_200_000, SOURCE, "raw", 0, n)
    sink.flush()
    return sink


def leave_pending(cfg, user: str) -> None:
    """What `regulate delete` records when it cannot open the warehouse (another process holds it)."""
    RegulationStore(cfg.regulations.path).update(user, {"regulation": "delete", "at": "t", "by": "x",
                                                        "pending": ["warehouse"]})


def user_rows(sink: GovernedSink, user: str) -> int:
    wh = sink.destinations["warehouse"]
    return wh._rows("select count(*) from main.tracks where user_id = ?", [user])[0][0]  # noqa: SLF001


def test_the_sink_carries_out_a_pending_deletion_without_a_write(tmp_path: Path) -> None:
    sink = stored_sink(tmp_path)
    assert user_rows(sink, "user-1") > 0
    leave_pending(sink.cfg, "user-1")
    sink.check_regulations().result(10)
    assert user_rows(sink, "user-1") == 0 and user_rows(sink, "user-2") > 0
    store = RegulationStore(sink.cfg.regulations.path)
    assert store.users()["user-1"]["pending"] == []
    assert {e["table"] for e in store.log_entries() if e["destination"] == "warehouse"} >= {"tracks"}
    for s in sink.destinations.values():
        s.close()


def test_an_idle_pipeline_deletes_within_seconds(tmp_path: Path) -> None:
    cfg = warehouse_config(tmp_path, extra='[regulations]\npath = "reg"\n')
    pipeline = Pipeline(cfg)
    sink = pipeline.sink
    sink.setup()
    for n in range(1, 5):
        sink.add(json.dumps(event(n)).encode(), None, 1_767_607_200_000, SOURCE, "raw", 0, n)
    sink.flush()
    pipeline._stopping = threading.Event()  # noqa: SLF001 - what `run` sets up
    watcher = threading.Thread(target=pipeline._watch_regulations, kwargs={"every_s": 0.1}, daemon=True)  # noqa: SLF001
    watcher.start()
    try:
        leave_pending(cfg, "user-1")
        deadline = time.monotonic() + 5
        while RegulationStore(cfg.regulations.path).users()["user-1"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert RegulationStore(cfg.regulations.path).users()["user-1"]["pending"] == []
        assert user_rows(sink, "user-1") == 0
    finally:
        pipeline._stopping.set()  # noqa: SLF001
        watcher.join(5)
        for s in sink.destinations.values():
            s.close()
