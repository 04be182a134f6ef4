"""A slow destination does not hold back the others: a webhook that takes 4 s per request next to
DuckDB, with `delivery.write_timeout_s = 1`. DuckDB keeps receiving at its own pace; the
webhook's shares are parked in its dead-letter topic instead of delaying every checkpoint."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support import Stack, free_port


def slow_server(delay_s: float) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay_s)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def stack_with_hook(tmp_path, kafka: str, port: int, timeout_s: float) -> Stack:
    """DuckDB and a webhook at ``port``; a write taking over 1 s counts as failing, no retries."""
    return Stack(tmp_path, kafka, extra_toml=f"""
[destinations.hook]
type = "webhook"
url = "http://127.0.0.1:{port}/events"
timeout_s = {timeout_s}

[delivery]
write_timeout_s = 1.0
max_attempts = 1
""")


def test_slow_webhook_does_not_delay_the_warehouse(tmp_path, kafka: str) -> None:
    server, port = slow_server(4.0)
    stack = stack_with_hook(tmp_path, kafka, port, 10)
    try:
        stack.start_collector()
        stack.start_pipeline()
        started = time.monotonic()
        for i in range(5):
            batch = [{"type": "track", "event": "Clicked", "userId": f"u{j}", "messageId": f"m{i}-{j}"} for j in range(20)]
            assert stack.post("/v1/batch", {"batch": batch})[0] == 200
            time.sleep(0.3)
        # DuckDB has all 100 before even two 4-second webhook calls could have finished in turn.
        while stack.metric("tidegate_sink_events_total", destination="warehouse", outcome="delivered") < 100:
            assert time.monotonic() - started < 6, "the slow webhook held back the warehouse"
            time.sleep(0.2)
        assert stack.metric("tidegate_sink_dead_lettered_events_total", destination="hook") > 0
    finally:
        stack.stop()
        server.shutdown()
        server.server_close()


def test_a_destination_that_stopped_answering_does_not_hold_a_shutdown_up(tmp_path, kafka: str) -> None:
    """A webhook that answers after 60 s: the pipeline's shutdown waits `write_timeout_s` for its
    write, then exits without it (the write's batch was never committed: it is read again)."""
    server, port = slow_server(60.0)
    stack = stack_with_hook(tmp_path, kafka, port, 120)
    try:
        stack.start_collector()
        stack.start_pipeline()
        batch = [{"type": "track", "event": "Clicked", "userId": f"u{j}", "messageId": f"m-{j}"} for j in range(20)]
        assert stack.post("/v1/batch", {"batch": batch})[0] == 200
        started = time.monotonic()
        while stack.metric("tidegate_sink_dead_lettered_events_total", destination="hook") < 20:
            assert time.monotonic() - started < 30, "the webhook's share was never parked"
            time.sleep(0.2)
        stopping = time.monotonic()
        assert stack.stop_pipeline() == 0
        assert time.monotonic() - stopping < 15, "the shutdown waited for the hung webhook"
    finally:
        stack.stop()
        server.shutdown()
        server.server_close()
