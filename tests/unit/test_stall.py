"""A pipeline stuck inside a call (a destination that stopped answering) is alive but stalled:
its `/healthz` answers 503 with why, so a liveness probe restarts it; the gauge
`tidegate_pipeline_longest_task_seconds` shows how long the stuck task has run."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from sink_support import event, warehouse_config
from tidegate import metrics, threads
from tidegate.health import serve_health
from tidegate.pipeline import Pipeline

SOURCE = [("tidegate-source", b"web")]


def test_a_pool_knows_how_long_its_running_task_has_run() -> None:
    pool = threads.executor("tidegate-test-stall")
    release = threading.Event()
    try:
        assert pool.longest_task() is None
        done = pool.submit(release.wait)
        time.sleep(0.2)
        name, seconds = pool.longest_task() or ("", 0.0)
        assert name.startswith("tidegate-test-stall") and seconds >= 0.2
        assert threads.longest_task()[1] >= seconds  # type: ignore[index]
        release.set()
        done.result(timeout=5)
        assert pool.longest_task() is None
    finally:
        release.set()
        pool.shutdown()


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_write_that_never_returns_fails_healthz_until_it_does(tmp_path: Path) -> None:
    pipeline = Pipeline(warehouse_config(tmp_path, pipeline="stall_timeout_s = 0.5"))
    sink = pipeline.sink
    sink.setup()
    warehouse = pipeline.destinations["warehouse"]
    answering = threading.Event()
    write = warehouse.write

    def hung(batch):  # type: ignore[no-untyped-def]
        answering.wait()
        return write(batch)

    warehouse.write = hung  # type: ignore[method-assign]
    server = serve_health("127.0.0.1", 0, pipeline.ready, stalled=pipeline.stalled)
    port = server.server_address[1]
    try:
        assert healthz(port) == (200, "OK")
        sink.add(json.dumps(event(1)).encode(), None, 1_767_607_200_000, SOURCE, "raw", 0, 1)
        flushing = threading.Thread(target=sink.flush, daemon=True)
        flushing.start()
        time.sleep(0.8)
        status, body = healthz(port)
        assert status == 503
        assert "stalled: a task on thread tidegate-deliver" in body and "pipeline.stall_timeout_s (0.5s)" in body
        assert (metrics.REGISTRY.get_sample_value("tidegate_pipeline_longest_task_seconds") or 0) > 0.5
        answering.set()
        flushing.join(timeout=10)
        assert not flushing.is_alive()
        assert healthz(port) == (200, "OK")
        assert warehouse.row_counts()["tracks"] == 1
    finally:
        answering.set()
        server.shutdown()
        server.server_close()
        warehouse.close()
