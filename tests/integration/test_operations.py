"""Operations on real Kafka and real processes: graceful SIGTERM, environment overrides, the raw
archive feeding replay, and a config applied while the pipeline runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

from support import TIDEGATE, Stack, free_port, http_get, wait_until


def events(lo: int, hi: int, **props) -> list[dict]:
    return [{"type": "track", "event": "Checkout Step", "anonymousId": f"anon-{i % 31}", "messageId": f"id-{i}",
             "properties": {"n": i, **props}} for i in range(lo, hi)]


def test_sigterm_mid_stream_flushes_commits_and_loses_nothing(stack: Stack) -> None:
    """SIGTERM while events flow: exit 0 after the current checkpoint is delivered and committed,
    so a restart re-delivers nothing and nothing is missing."""
    total = 2000
    stack.start_collector()
    stack.start_pipeline()
    stop = threading.Event()

    def send() -> None:
        for lo in range(0, total, 50):
            assert stack.post("/v1/batch", {"batch": events(lo, lo + 50)})[0] == 200
            time.sleep(0.05)
        stop.set()

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: stack.metric("tidegate_sink_events_total", outcome="delivered") >= 300, 60, "first deliveries")
    assert stack.stop_pipeline(signal.SIGTERM) == 0, stack.log("pipeline")
    assert "Traceback" not in stack.log("pipeline"), stack.log("pipeline")
    delivered_before = stack.query("select count(*) from checkout_step")[0][0]
    assert 0 < delivered_before
    sender.join(timeout=120)
    assert stop.is_set()
    stack.start_pipeline()
    stack.wait_processed(total - delivered_before, timeout=60)
    time.sleep(1.5)  # a few more checkpoints: anything re-read would show up now
    restarted_delivered = stack.metric("tidegate_sink_events_total", outcome="delivered")
    duplicates = stack.metric("tidegate_pipeline_events_total", stage="dedupe", outcome="duplicate")
    assert stack.stop_pipeline(signal.SIGTERM) == 0
    # The committed checkpoint covered exactly what was stored: nothing re-read, nothing lost.
    assert (restarted_delivered, duplicates) == (total - delivered_before, 0)
    assert stack.query("select count(*), count(distinct id) from checkout_step")[0] == (total, total)


def test_env_overrides_configure_a_running_pipeline(stack: Stack, tmp_path: Path) -> None:
    """Container-style configuration: the file plus TIDEGATE__* overrides (port, group, archive)."""
    port = free_port()
    env = {**os.environ, "TIDEGATE__PIPELINE__METRICS_PORT": str(port),
           "TIDEGATE__KAFKA__CONSUMER_GROUP": stack.group + "-env",
           "TIDEGATE__ARCHIVE__PATH": str(tmp_path / "env-archive"),
           "TIDEGATE__ARCHIVE__FLUSH_EVENTS": "10"}
    with open(tmp_path / "env-pipeline.log", "ab") as log:
        proc = subprocess.Popen([*TIDEGATE, "run", "-c", str(stack.config_path)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200 or proc.poll() is not None, 60,
                   "pipeline ready on the overridden port")
        assert proc.poll() is None, (tmp_path / "env-pipeline.log").read_text()
        assert f"group {stack.group}-env" in (tmp_path / "env-pipeline.log").read_text()
        stack.start_collector()
        assert stack.post("/v1/batch", {"batch": events(0, 20)})[0] == 200
        wait_until(lambda: len(list((tmp_path / "env-archive").rglob("*.parquet"))) > 0, 30, "archive under the overridden path")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_archive_then_replay_backfills_a_new_destination(stack: Stack, tmp_path: Path) -> None:
    total = 600
    stack.start_collector()
    stack.start_pipeline()
    for lo in range(0, total, 100):
        assert stack.post("/v1/batch", {"batch": events(lo, lo + 100)})[0] == 200
    stack.wait_processed(total)
    # SIGTERM flushes the archive's buffer to Parquet (flush_events is far away).
    assert stack.stop_pipeline() == 0
    archive = tmp_path / "data" / "archive"
    files = list(archive.rglob("*.parquet"))
    assert files and all("source=web/date=" in str(f) for f in files)
    assert not list(archive.rglob("*.arrow"))
    import polars as pl

    archived = pl.read_parquet(files)
    assert archived.height == total and archived["message_id"].n_unique() == total
    # A new destination, backfilled by replay; twice, to show a repeat adds nothing.
    with open(stack.config_path, "a") as f:
        f.write('\n[destinations.lake]\ntype = "duckdb"\npath = "lake.duckdb"\n')
    for attempt in range(2):
        out = subprocess.run([*TIDEGATE, "replay", "-c", str(stack.config_path), "--from", "1h", "--to", "now",
                              "--destination", "lake"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"replayed {total} archived events" in out.stdout
        assert ("0 new rows" in out.stdout) == (attempt == 1), out.stdout
    con = duckdb.connect(str(tmp_path / "lake.duckdb"), read_only=True)
    try:
        lake = con.execute("select count(*), count(distinct id) from checkout_step").fetchall()
    finally:
        con.close()
    assert lake == [(total, total)]


def test_applied_config_is_picked_up_without_restart(stack: Stack, tmp_path: Path) -> None:
    env = {**os.environ, "TIDEGATE_ACTOR": "integration"}
    apply = [*TIDEGATE, "apply", "-c", str(stack.config_path)]
    assert subprocess.run(apply, capture_output=True, env=env, timeout=60).returncode == 0
    stack.start_collector()
    stack.start_pipeline()
    assert stack.post("/v1/track", events(0, 1, contact="ana@example.com")[0])[0] == 200
    stack.wait_processed(1)
    with open(stack.config_path, "a") as f:
        f.write('\n[pii]\ndefault_action = "redact"\n')
    out = subprocess.run(apply, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "as audit entry 2 by integration" in out.stdout, out.stderr
    time.sleep(1.5)  # the next checkpoint reloads
    assert stack.post("/v1/track", events(1, 2, contact="ana@example.com")[0])[0] == 200
    stack.wait_processed(2)
    assert stack.stop_pipeline() == 0
    rows = dict(stack.query("select id, contact from checkout_step order by id"))
    assert rows["id-0"] == "ana@example.com" and rows["id-1"] != "ana@example.com"
    versions = dict(stack.query("select id, tidegate_config_version from checkout_step"))
    assert versions["id-0"] != versions["id-1"]
    assert "is now governing" in stack.log("pipeline")
    verify = subprocess.run([*TIDEGATE, "audit", "verify", "-c", str(stack.config_path)], capture_output=True, text=True)
    assert verify.returncode == 0 and "OK, 2 entries" in verify.stdout
