"""The pipeline's small HTTP server: ``/metrics`` (Prometheus), ``/healthz`` (alive) and
``/readyz`` (every destination ready)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics, threads
from .errors import TidegateError

__all__ = ["serve_health"]


def serve_health(host: str, port: int, ready: Callable[[], bool], *, key: str = "pipeline.metrics_port",
                 stalled: Callable[[], str | None] = lambda: None) -> ThreadingHTTPServer:
    """Serve on ``host``:``port`` from a thread; TidegateError naming the config ``key`` if the port
    cannot be had. ``stalled`` says why the process is alive but stuck (``/healthz`` 503), or ``None``."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/health"):
                why = stalled()
                self._send(503 if why else 200, why.encode() if why else b"OK")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready" if ok else b"not ready")
            else:
                self._send(404, b"not found; try /metrics, /healthz or /readyz")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise TidegateError(cannot_listen(host, port, e, key)) from None
    server.daemon_threads = True
    threads.Thread(target=server.serve_forever, name="tidegate-health", daemon=True).start()
    return server


def cannot_listen(host: str, port: int, error: OSError, key: str) -> str:
    """What to tell a user whose server could not bind ``host``:``port``."""
    return (f"cannot listen on {host}:{port}: {error.strerror or error}; stop what uses that port, "
            f"or set {key} to a free one")
