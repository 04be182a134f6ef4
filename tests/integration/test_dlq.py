"""Per-destination isolation and dead letters on the real stack: a PostgreSQL destination whose
server goes away (a TCP proxy in front of the test server is stopped, so other users of the
server are not disturbed) while DuckDB keeps receiving; after recovery `tidegate dlq replay`
re-delivers what was parked and every event is stored exactly once."""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from sink_support import event, postgres_dsn
from support import TIDEGATE, Stack, free_port, wait_until


class Proxy:
    """A TCP forwarder that can be stopped (connections cut, port refusing) and started again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()


@pytest.fixture
def pg() -> Iterator[tuple[str, str, Proxy]]:
    dsn, schema = postgres_dsn(), f"t_{uuid.uuid4().hex[:10]}"
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    proxy = Proxy((str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    proxy.start()
    proxied = psycopg.conninfo.make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))
    yield dsn, schema, proxy
    proxy.stop()
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    del proxied


def tidegate(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIDEGATE, *args, "-c", str(stack.config_path)], capture_output=True, text=True,
                          cwd=stack.tmp, timeout=120)


def events(start: int, n: int) -> list[dict[str, object]]:
    out = [event(i) for i in range(start, start + n)]
    for e in out:
        e.pop("receivedAt")
    return out


def test_postgres_outage_is_dead_lettered_and_replayed_exactly_once(tmp_path: Path, kafka: str,
                                                                   pg: tuple[str, str, Proxy]) -> None:
    dsn, schema, proxy = pg
    proxied = psycopg.conninfo.make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))
    stack = Stack(tmp_path, kafka, partitions=2, extra_toml=f"""
[destinations.pg]
type = "postgres"
dsn = "{proxied}"
schema = "{schema}"
connect_timeout_s = 2

[delivery]
max_attempts = 2
backoff_initial_s = 0.05
backoff_max_s = 0.2
""")

    def delivered(dest: str) -> float:
        return stack.metric("tidegate_sink_events_total", destination=dest, outcome="delivered")

    def pg_tracks() -> tuple[int, int]:
        with psycopg.connect(dsn) as con:
            row = con.execute(f"select count(*), count(distinct id) from {schema}.tracks").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    try:
        stack.start_collector()
        stack.start_pipeline()
        assert stack.post("/v1/batch", {"batch": events(0, 20)})[0] == 200
        wait_until(lambda: delivered("pg") >= 20 and delivered("warehouse") >= 20, 60, "first 20 events in both")

        proxy.stop()  # the PostgreSQL destination goes away
        assert stack.post("/v1/batch", {"batch": events(20, 30)})[0] == 200
        wait_until(lambda: stack.metric("tidegate_sink_dead_lettered_events_total", destination="pg") >= 30, 90,
                   "the outage's 30 events parked for pg")
        wait_until(lambda: delivered("warehouse") >= 50, 30, "DuckDB keeps receiving during the outage")
        assert stack.metric("tidegate_sink_retries_total", destination="pg") >= 1
        assert stack.metric("tidegate_sink_dead_lettered_events_total", destination="warehouse") == 0

        listed = tidegate(stack, "dlq", "list", "pg")
        assert listed.returncode == 0, listed.stderr
        assert "30 events" in listed.stdout and "PostgreSQL unreachable" in listed.stdout, listed.stdout

        proxy.start()  # recovery: new events flow to pg again
        assert stack.post("/v1/batch", {"batch": events(50, 10)})[0] == 200
        wait_until(lambda: delivered("pg") >= 30 and delivered("warehouse") >= 60, 90, "pg receives again")
        assert pg_tracks() == (30, 30)

        replayed = tidegate(stack, "dlq", "replay", "pg")
        assert replayed.returncode == 0, replayed.stderr
        assert "30 delivered" in replayed.stdout, replayed.stdout
        assert pg_tracks() == (60, 60)
        again = tidegate(stack, "dlq", "replay", "pg")  # idempotent: nothing waits any more
        assert again.returncode == 0 and "nothing waits" in again.stdout, again.stdout + again.stderr
        assert "waiting: 0 messages" in tidegate(stack, "dlq", "list", "pg").stdout
        assert pg_tracks() == (60, 60)
        assert stack.stop_pipeline() == 0
    finally:
        stack.stop()
    assert stack.query("select count(*), count(distinct id) from tracks") == [(60, 60)]


def test_a_message_the_destination_never_takes_does_not_hold_back_the_rest(tmp_path: Path, kafka: str,
                                                                           pg: tuple[str, str, Proxy]) -> None:
    """One event PostgreSQL refuses whatever the attempt (its table would have more than 1,600
    columns) parks its whole batch; the replay delivers the batch's other events and parks that
    one message again, with its error, instead of failing on it forever."""
    dsn, schema, _ = pg
    stack = Stack(tmp_path, kafka, partitions=1, extra_toml=f"""
[destinations.pg]
type = "postgres"
dsn = "{dsn}"
schema = "{schema}"

[delivery]
max_attempts = 1
""")
    poison = event(99, event="Too Wide", properties={f"p{i}": i for i in range(1700)})
    poison.pop("receivedAt")
    try:
        stack.start_collector()
        stack.start_pipeline()
        for i in range(4):  # separate requests: separate Kafka messages, one of them the wide event
            assert stack.post("/v1/batch", {"batch": events(i * 5, 5)})[0] == 200
        assert stack.post("/v1/batch", {"batch": [poison]})[0] == 200
        wait_until(lambda: stack.metric("tidegate_sink_events_total", destination="warehouse", outcome="delivered") >= 21,
                   60, "every event in DuckDB")
        wait_until(lambda: stack.metric("tidegate_sink_dead_lettered_events_total", destination="pg") >= 1, 60,
                   "the wide event's batch parked for pg")
        assert stack.stop_pipeline() == 0
        parked = stack.metric("tidegate_sink_dead_lettered_events_total", destination="pg")

        replayed = tidegate(stack, "dlq", "replay", "pg")
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert "1 message (1 event) 'pg' refused on its own was parked again" in replayed.stderr, replayed.stderr
        with psycopg.connect(dsn) as con:
            stored = con.execute(f"select count(*) from {schema}.tracks").fetchone()
        assert stored is not None and stored[0] == 20, (stored, parked)
        listed = tidegate(stack, "dlq", "list", "pg").stdout
        assert "waiting: 1 message, 1 event" in listed and "1600 columns" in listed, listed
        again = tidegate(stack, "dlq", "replay", "pg")  # nothing else delivered: the destination's refusal, told as such
        assert again.returncode == 2 and "1600 columns" in again.stderr, again.stdout + again.stderr
    finally:
        stack.stop()


def test_dlq_commands_explain_errors(tmp_path: Path, kafka: str) -> None:
    stack = Stack(tmp_path, kafka)
    out = tidegate(stack, "dlq", "list", "nope")
    assert out.returncode == 2 and "unknown destination 'nope'" in out.stderr and "warehouse" in out.stderr
    out = tidegate(stack, "dlq", "list", "warehouse")
    assert out.returncode == 0 and "empty" in out.stdout
