"""Every event counted once across crashes, restarts and rebalances (real Kafka, real processes)."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time

import pytest

from support import TIDEGATE, Stack, free_port


USERS = 37


def events(lo: int, hi: int) -> list[dict]:
    return [{"type": "track", "event": "Checkout Step", "anonymousId": f"anon-{i % 97}", "messageId": f"id-{i}",
             "properties": {"step": i % 5, "n": i}} for i in range(lo, hi)]


def identifies(lo: int, hi: int) -> list[dict]:
    """For every tenth event of ``lo``..``hi`` an identify of one of `USERS` users with trait ``n``
    (each user's stored ``n`` must end as the highest of theirs) and, on the user's first, ``first_n``."""
    return [{"type": "identify", "userId": f"user-{(i // 10) % USERS}", "anonymousId": f"anon-{i % 97}",
             "messageId": f"idf-{i}", "traits": {"n": i, **({"first_n": i} if i // 10 < USERS else {})}}
            for i in range(lo, hi) if i % 10 == 0]


def expected_users(total: int) -> list[tuple[str, int, int]]:
    """(id, n, first_n) per user: the newest ``n``, and ``first_n`` from the user's first identify."""
    last: dict[str, tuple[int, int]] = {}
    for i in range(0, total, 10):
        user = f"user-{(i // 10) % USERS}"
        last[user] = (i, last[user][1] if user in last else i)
    return sorted((u, n, first) for u, (n, first) in last.items())


def send_with_client_retries(stack: Stack, total: int, rng: random.Random, stop: threading.Event) -> None:
    """Send ``total`` distinct events in batches of 50; a third of the batches are sent twice, as an
    SDK does when it misses the first answer."""
    for lo in range(0, total, 50):
        batch = events(lo, min(lo + 50, total)) + identifies(lo, min(lo + 50, total))
        assert stack.post("/v1/batch", {"batch": batch})[0] == 200
        if rng.random() < 0.33:
            assert stack.post("/v1/batch", {"batch": batch})[0] == 200
        if stop.is_set():
            return
        time.sleep(0.1)


def count_when_idle(stack: Stack, expected: int, timeout: float = 240) -> tuple[int, int]:
    """Wait until the consumer group has committed everything in the raw topic (lag 0 on every
    partition: all of it is stored), then stop the pipeline and count rows (DuckDB lets one
    process at a time open the file)."""
    from tidegate import load_config
    from tidegate.status import consumer_lag

    cfg = load_config(stack.config_path, env={})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lag = consumer_lag(cfg)
        if lag and not any(lag.values()):
            break
        time.sleep(1)
    stack.stop_pipeline()
    return stack.query("select count(*), count(distinct id) from checkout_step")[0]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path, kafka: str, guarantee: str) -> None:
    stack = Stack(tmp_path, kafka, env={"TIDEGATE__PIPELINE__PROCESSING_GUARANTEE": guarantee})
    try:
        _kill_and_count(stack)
    finally:
        stack.stop()


def _kill_and_count(stack: Stack) -> None:
    rng = random.Random(20261126)
    total = 3000
    stack.start_collector()
    stack.start_pipeline()
    stop = threading.Event()
    sender = threading.Thread(target=send_with_client_retries, args=(stack, total, rng, stop))
    sender.start()
    kills = 0
    try:
        while sender.is_alive() and kills < 4:
            time.sleep(rng.uniform(0.3, 1.5))
            stack.stop_pipeline(signal.SIGKILL)
            kills += 1
            stack.start_pipeline()
    finally:
        sender.join(timeout=120)
    assert kills >= 2, "the sender finished before the pipeline could be killed twice; raise `total`"
    n, distinct = count_when_idle(stack, total)
    assert (n, distinct) == (total, total)
    assert stack.query("select count(*), count(distinct id) from tracks")[0] == (total, total)
    # `users` rows wait for each checkpoint (`Sink.hold_state`): the kills must not lose an update.
    assert stack.query("select id, n, first_n from users order by id") == expected_users(total)


def test_two_replicas_split_partitions_and_survive_one_dying(tmp_path, kafka: str) -> None:
    stack = Stack(tmp_path, kafka, partitions=4)
    # Replicas share the consumer group; each writes its own DuckDB file (DuckDB allows one
    # writer per file), and the test reads both.
    second_cfg = tmp_path / "replica2.toml"
    metrics2 = free_port()
    second_cfg.write_text(stack.config_path.read_text()
                          .replace('path = "warehouse.duckdb"', 'path = "warehouse2.duckdb"')
                          .replace(f"metrics_port = {stack.metrics_port}", f"metrics_port = {metrics2}")
                          .replace('state_dir = "state"', 'state_dir = "state2"'))
    replica2: subprocess.Popen[bytes] | None = None
    try:
        stack.start_collector()
        stack.start_pipeline()
        with open(tmp_path / "replica2.log", "ab") as log:
            replica2 = subprocess.Popen([*TIDEGATE, "run", "-c", str(second_cfg)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        total = 2000
        from support import http_get

        def delivered2() -> float:
            _, text = http_get(f"http://127.0.0.1:{metrics2}/metrics")
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("tidegate_sink_events_total{") and 'outcome="delivered"' in line)

        # Keep sending (many users, so every partition gets events) until the group has
        # rebalanced and both replicas deliver.
        sent = 0
        deadline = time.monotonic() + 90
        while not (stack.metric("tidegate_sink_events_total", outcome="delivered") > 0 and delivered2() > 0):
            assert time.monotonic() < deadline, "replica 2 never received partitions:\n" + (tmp_path / "replica2.log").read_text()
            if sent < 1000:
                assert stack.post("/v1/batch", {"batch": events(sent, sent + 50)})[0] == 200
                sent += 50
            time.sleep(0.3)
        if sent < 1000:
            for lo in range(sent, 1000, 50):
                assert stack.post("/v1/batch", {"batch": events(lo, lo + 50)})[0] == 200
        died_after = delivered2()
        replica2.kill()  # dies mid-stream; its partitions move to the first replica
        replica2.wait()
        second = events(1000, total)
        for lo in range(0, 1000, 100):
            assert stack.post("/v1/batch", {"batch": second[lo:lo + 100]})[0] == 200
        # Replica 1 takes over replica 2's partitions after the session timeout and re-reads
        # what replica 2 had not committed.
        stack.wait_processed(total - died_after, timeout=120)
        import duckdb

        deadline = time.monotonic() + 60
        while True:
            # Re-delivered events count towards the threshold above, so check the ids, and give
            # the replica more time if some are still in flight.
            stack.stop_pipeline()
            ids: set[str] = set()
            rows = 0
            for f in ("warehouse.duckdb", "warehouse2.duckdb"):
                con = duckdb.connect(str(tmp_path / f), read_only=True)
                got = [r[0] for r in con.execute("select id from checkout_step").fetchall()]
                con.close()
                assert len(got) == len(set(got)), f"duplicates inside {f}"
                rows += len(got)
                ids.update(got)
            if len(ids) >= total or time.monotonic() > deadline:
                break
            stack.start_pipeline()
            time.sleep(3)
        assert len(ids) == total
        # Events are delivered once per replica that processed them: at most the ones in flight
        # when replica 2 died are in both files, and within a file never twice.
        assert rows - len(ids) < 1000
    finally:
        if replica2 is not None and replica2.poll() is None:
            replica2.kill()
            replica2.wait()
        stack.stop()
