"""The HTTP collector: a Segment/RudderStack-compatible API in front of the raw Kafka topic.

``POST /v1/{track,identify,page,screen,group,alias,batch}`` with the write key as the HTTP
Basic username. A request is answered 200 only after Kafka acknowledged every envelope of it
(``acks=all``); otherwise it is refused whole with a status and a message saying what to fix, as
long as nothing of it reached Kafka. An envelope once produced cannot be taken back: a request
Kafka took only in part (or may still take, after a timeout) is answered 502 saying what Kafka holds.

For browser SDKs every response carries CORS headers and preflight ``OPTIONS`` requests are
answered; ``GET /sourceConfig`` serves the source configuration the RudderStack JavaScript SDK
loads before it sends anything (no device-mode destinations: every event comes here).

The collector answers as soon as it listens, Kafka or not, as an orchestrator expects of a
container: ``/healthz`` says it is alive, ``/readyz`` answers 503 with the reason until Kafka is
reachable (and the raw topic exists), and meanwhile event requests are refused 503
``kafka_unavailable`` with nothing written. A thread keeps trying to reach Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
import zlib
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import _core, metrics, threads
from .config import Config
from .errors import RequestRejected, TidegateError
from .kafka import AsyncProducer, KafkaException, client_settings, ensure_topic

__all__ = ["Collector", "ENDPOINTS", "write_key_from_header", "cors_headers", "source_config"]

ENDPOINTS = ("track", "identify", "page", "screen", "group", "alias", "batch")
_json = msgspec.json.Encoder()
log = logging.getLogger("tidegate.collector")

# While Kafka cannot be reached: how long one attempt waits for it, and the pause before the next.
# Short, so that the collector is ready soon after Kafka is.
CONNECT_ATTEMPT_S = 5.0
CONNECT_RETRY_S = 2.0
_SILENT = logging.getLogger("tidegate.collector.librdkafka-retries")
_SILENT.disabled = True


def write_key_from_header(header: str | None) -> str | None:
    """The write key of an ``Authorization: Basic`` header (the username; the password is empty).

    >>> write_key_from_header("Basic " + base64.b64encode(b"abc:").decode())
    'abc'
    >>> write_key_from_header("Bearer x") is None
    True
    """
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.split(":", 1)[0]
    return user or None


def cors_headers(origin: str | None, requested_headers: str | None = None) -> dict[str, str]:
    """CORS headers for a browser request from ``origin`` (any origin may send: write keys of
    browser sources are public, as with Segment and RudderStack). The origin is echoed rather
    than ``*`` so that requests with credentials work too.

    >>> cors_headers("http://localhost:3000", "authorization,content-type")["Access-Control-Allow-Headers"]
    'authorization,content-type'
    >>> cors_headers(None)["Access-Control-Allow-Origin"]
    '*'
    """
    headers = {
        "Access-Control-Allow-Origin": origin or "*",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": requested_headers or "Authorization, Content-Type, Content-Encoding, AnonymousId",
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin",
    }
    if origin:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    headers = cors_headers(request.headers.get("Origin"), request.headers.get("Access-Control-Request-Headers"))
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=headers)
    try:
        response = await handler(request)
    except web.HTTPException as e:
        e.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


def source_config(source: str, write_key: str, enabled: bool = True) -> dict[str, Any]:
    """The ``/sourceConfig`` answer for a source, in the shape the RudderStack JavaScript SDK
    validates (``source.id``, ``source.config``, ``source.destinations``): no device-mode
    destinations and no SDK error/metrics reporting to RudderStack's servers.

    >>> source_config("web", "k")["source"]["destinations"]
    []
    """
    return {
        "isHosted": False,
        "source": {
            "id": source,
            "name": source,
            "writeKey": write_key,
            "workspaceId": "tidegate",
            "enabled": enabled,
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # `code` is what the Segment and RudderStack SDKs read (`payload["code"]`); `error` is ours.
    return web.Response(status=status, body=_json.encode({"error": code, "code": code, "message": message}),
                        content_type="application/json", headers=headers)


# Content-Encoding -> zlib's wbits for it. The collector decodes bodies itself (aiohttp's own
# decoding is off): it bounds the decoded size, and a bad body gets a JSON error, not a 500.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded per its Content-Encoding, at most ``limit`` bytes; RequestRejected
    (400 malformed, 413 too large, 415 unsupported) otherwise.

    >>> import gzip
    >>> _decoded(gzip.compress(b'{"a":1}'), "gzip", 100)
    b'{"a":1}'
    >>> _decoded(gzip.compress(b'{"a":1}')[:-4], "gzip", 100)
    Traceback (most recent call last):
    ...
    tidegate.errors.RequestRejected: body ends inside its gzip stream (cut off?); send the whole body
    >>> raw = zlib.compressobj(wbits=-zlib.MAX_WBITS); data = raw.compress(b'{}') + raw.flush()
    >>> _decoded(zlib.compress(b'{}'), "deflate", 100), _decoded(data, "deflate", 100)
    (b'{}', b'{}')
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise RequestRejected(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; send the body "
                              "plain, gzip or deflate")
    if wbits == zlib.MAX_WBITS and not (len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0):
        wbits = -zlib.MAX_WBITS  # "deflate" without the zlib header, as some clients send it
    malformed = "malformed_gzip" if "gzip" in encoding else "malformed_deflate"
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise RequestRejected(400, malformed,
                              f"body is not valid {encoding} ({e}); send plain JSON or a valid {encoding} body") from None
    if len(out) > limit:
        raise RequestRejected(413, "request_too_large",
                              f"request body is over the limit of {limit} bytes after {encoding} decoding; send smaller batches")
    if not d.eof:
        raise RequestRejected(400, malformed,
                              f"body ends inside its {encoding} stream (cut off?); send the whole body")
    return out


class Collector:
    """The aiohttp application of the collector. Its startup starts reaching Kafka in the
    background and its cleanup closes the producer."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.sources = cfg.source_by_write_key()
        self.disabled_keys = {s.write_key for s in cfg.sources.values() if not s.enabled}
        self.producer: AsyncProducer | None = None
        self.partitions = cfg.kafka.partitions
        # Why the collector is not ready, while it has no producer.
        self.kafka_problem: str | None = f"connecting to Kafka at {cfg.kafka.bootstrap_servers}"
        self._attempted: asyncio.Event | None = None  # set once the first attempt to reach Kafka ended
        self._stop_connecting = threading.Event()
        self._in_flight = 0
        limits = cfg.collector
        self.app = web.Application(client_max_size=limits.max_request_bytes + 1, middlewares=[_cors],
                                   handler_args={"auto_decompress": False})  # see `_decoded`
        self.app.router.add_post("/v1/{endpoint}", self.handle_event)
        self.app.router.add_route("*", "/v1/{endpoint}", self.wrong_method)
        self.app.router.add_get("/sourceConfig", self.source_config)
        self.app.router.add_get("/sourceConfig/", self.source_config)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/health", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.on_startup.append(self._on_startup)
        self.app.on_cleanup.append(self._on_cleanup)

    async def _on_startup(self, _app: web.Application) -> None:
        # Reaching Kafka must not hold up the startup: the collector would neither answer its
        # probes nor stop on SIGTERM until Kafka answered. Its own thread rather than the default
        # executor, which the shutdown waits for.
        self._attempted = asyncio.Event()
        threads.Thread(target=self._connect, args=(asyncio.get_running_loop(),), name="tidegate-collector-kafka",
                       daemon=True).start()

    def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Try to reach Kafka (ensuring the raw topic) until it works or the collector stops."""
        settings = client_settings(self.cfg)
        k = self.cfg.kafka
        while not self._stop_connecting.is_set():
            try:
                partitions = ensure_topic(settings, k.raw_topic, k.partitions, k.replication_factor, CONNECT_ATTEMPT_S)
                producer = AsyncProducer(self.cfg)
            except Exception as e:  # noqa: BLE001 - any failure is a reason not to be ready, and retried
                problem = str(e) if isinstance(e, TidegateError) else f"cannot use Kafka: {e}"
                try:
                    loop.call_soon_threadsafe(self._not_connected, problem)
                except RuntimeError:  # the loop is closed: the collector stopped
                    return
                # librdkafka said why on the first attempt; on each retry it would say it again.
                settings = {**client_settings(self.cfg), "logger": _SILENT}
                self._stop_connecting.wait(CONNECT_RETRY_S)
                continue
            try:
                loop.call_soon_threadsafe(self._connected, producer, partitions)
            except RuntimeError:
                producer.close(0)
            return

    def _not_connected(self, problem: str) -> None:
        if problem != self.kafka_problem:
            log.warning("%s; until Kafka is reachable /readyz answers 503 and events are refused with 503 "
                        "kafka_unavailable (retrying)", problem)
        self.kafka_problem = problem
        assert self._attempted is not None
        self._attempted.set()

    def _connected(self, producer: AsyncProducer, partitions: int) -> None:
        if self._stop_connecting.is_set():  # the cleanup ran already
            producer.close(0)
            return
        if self._attempted is not None and self._attempted.is_set():  # after failed attempts
            log.warning("Kafka at %s is reachable: the collector is ready", self.cfg.kafka.bootstrap_servers)
        self.producer, self.partitions, self.kafka_problem = producer, partitions, None
        assert self._attempted is not None
        self._attempted.set()

    async def _on_cleanup(self, _app: web.Application) -> None:
        self._stop_connecting.set()
        if self.producer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.producer.close)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def readyz(self, _request: web.Request) -> web.Response:
        if self.producer is None:
            return web.Response(status=503, text=f"not ready: {self.kafka_problem}")
        ok = await asyncio.get_running_loop().run_in_executor(None, self.producer.ready)
        return web.Response(status=200 if ok else 503, text="ready" if ok else "kafka not reachable")

    async def wrong_method(self, request: web.Request) -> web.Response:
        """Any method but POST (and the CORS preflight) on an event endpoint."""
        return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}; "
                      "send events with POST", headers={"Allow": "POST, OPTIONS"})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def source_config(self, request: web.Request) -> web.Response:
        """The source configuration the RudderStack JavaScript SDK fetches on load (write key as
        the HTTP Basic username or the ``writeKey`` query parameter, both of which it sends)."""
        key = write_key_from_header(request.headers.get("Authorization")) or request.query.get("writeKey") or None
        if key is None:
            return _error(401, "missing_write_key", "send the write key as the HTTP Basic username or ?writeKey=")
        if key in self.disabled_keys:
            disabled = next(name for name, s in self.cfg.sources.items() if s.write_key == key)
            return web.Response(body=_json.encode(source_config(disabled, key, enabled=False)), content_type="application/json")
        source = self.sources.get(key)
        if source is None:
            return _error(401, "invalid_write_key", "invalid write key; use the write_key of a configured source")
        return web.Response(body=_json.encode(source_config(source, key)), content_type="application/json")

    async def handle_event(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        started = time.perf_counter()
        source = "-"
        try:
            if endpoint not in ENDPOINTS:
                raise RequestRejected(404, "unknown_endpoint", f"no endpoint /v1/{endpoint}; use one of " + ", ".join(ENDPOINTS))
            key = write_key_from_header(request.headers.get("Authorization"))
            if key is None:
                raise RequestRejected(401, "missing_write_key",
                                      "failed to read writekey from header; send it as the HTTP Basic username")
            if key in self.disabled_keys:
                raise RequestRejected(404, "source_disabled", "the source of this write key is disabled")
            source = self.sources.get(key, "-")
            if source == "-":
                raise RequestRejected(401, "invalid_write_key", "invalid write key; use the write_key of a configured source")
            response = await self._accept(request, endpoint, source)
        except RequestRejected as e:
            metrics.collector.events.labels(source, e.code).inc()
            response = _error(e.status, e.code, e.message)
        except web.HTTPRequestEntityTooLarge:
            metrics.collector.events.labels(source, "request_too_large").inc()
            response = _error(413, "request_too_large",
                              f"request body is over the limit of {self.cfg.collector.max_request_bytes} bytes; send smaller batches")
        # A path nobody serves is one label value, however many a client makes up.
        label = endpoint if endpoint in ENDPOINTS else "unknown"
        metrics.collector.requests.labels(source, label, str(response.status)).inc()
        metrics.collector.request_seconds.labels(label).observe(time.perf_counter() - started)
        return response

    async def _accept(self, request: web.Request, endpoint: str, source: str) -> web.Response:
        limits = self.cfg.collector
        if request.content_length is not None and request.content_length > limits.max_request_bytes:
            raise RequestRejected(413, "request_too_large",
                                  f"request body is {request.content_length} bytes, over the limit of {limits.max_request_bytes}")
        if self._in_flight >= limits.max_in_flight_requests:
            raise RequestRejected(429, "max_requests_limit_reached", "too many requests waiting for Kafka; retry with backoff")
        if self.producer is None:
            await self._first_attempt()
        if self.producer is None:
            raise RequestRejected(503, "kafka_unavailable", f"the collector is not ready: {self.kafka_problem}; "
                                  "nothing was written, retry with backoff")
        body = _decoded(await request.read(), request.headers.get("Content-Encoding", ""), limits.max_request_bytes)
        received_us = time.time_ns() // 1000
        envelopes = _core.ingest(
            body, endpoint, source, received_us, self.partitions,
            limits.max_event_bytes, limits.max_request_bytes, limits.max_batch_events,
        )
        self._in_flight += 1
        metrics.collector.in_flight.inc()
        try:
            return await self._write(envelopes, source)
        finally:
            self._in_flight -= 1
            metrics.collector.in_flight.dec()

    async def _first_attempt(self) -> None:
        """Wait for the first attempt to reach Kafka to end, so that a request coming in as the
        collector starts does not find it unready only because it is starting."""
        if self._attempted is None:
            return
        try:
            # An attempt lists the topics, may create the raw one, then reads its partitions: each
            # step waits up to CONNECT_ATTEMPT_S.
            await asyncio.wait_for(self._attempted.wait(), 3 * CONNECT_ATTEMPT_S)
        except asyncio.TimeoutError:
            pass

    async def _write(self, envelopes: list[tuple[int, int, bytes]], source: str) -> web.Response:
        """Produce the envelopes of a request and wait for Kafka's acknowledgements, all within
        ``ack_timeout_s``. Refused whole (503) only when nothing of it can reach Kafka. Once an
        envelope is produced it cannot be taken back: a full producer queue is then waited out
        (as the Kafka sink does) rather than refusing the rest, and a request Kafka took in part,
        or may still take, is answered 502 with what Kafka holds."""
        assert self.producer is not None
        limits = self.cfg.collector
        deadline = time.monotonic() + limits.ack_timeout_s
        futures: list[asyncio.Future[None]] = []
        unsent = ""  # why the envelopes after the produced ones were not produced
        for partition, _count, payload in envelopes:
            while True:
                try:
                    futures.append(self.producer.produce(self.cfg.kafka.raw_topic, payload, partition, source.encode()))
                    break
                except BufferError:  # the local queue is full
                    if not futures:
                        raise RequestRejected(503, "backpressure",
                                              "the Kafka producer queue is full; nothing was written, retry with backoff") from None
                    if time.monotonic() >= deadline:
                        unsent = f"the Kafka producer queue stayed full for {limits.ack_timeout_s}s"
                        break
                    await asyncio.sleep(0.01)  # the producer's poll thread drains acknowledged messages meanwhile
                except KafkaException as e:  # refused before it was queued (e.g. over the broker's message size)
                    if not futures:
                        raise RequestRejected(503, "kafka_unavailable",
                                              f"Kafka refused the write ({e.args[0].str()}); nothing was written") from None
                    unsent = f"Kafka refused to queue it: {e.args[0].str()}"
                    break
            if unsent:
                break
        await asyncio.wait(futures, timeout=max(deadline - time.monotonic(), 0))
        acked = acked_events = failed = pending = 0
        first_error: BaseException | None = None
        for (_, count, _), fut in zip(envelopes, futures):
            if not fut.done():
                pending += 1
                fut.cancel()  # its delivery report still comes; nobody waits for it any more
            elif (error := fut.exception()) is not None:
                failed += 1
                first_error = first_error or error
            else:
                acked += 1
                acked_events += count
        events = sum(n for _, n, _ in envelopes)
        if acked == len(envelopes):
            metrics.collector.events.labels(source, "accepted").inc(events)
            return web.Response(text="OK")
        if not acked and not pending:  # every envelope produced was refused: nothing was written
            raise RequestRejected(503, "kafka_unavailable", f"{first_error}; nothing was written, retry")
        # Part of the request is in Kafka (or may still get there) and cannot be taken back.
        rest: list[str] = []
        if failed:
            rest.append(f"{failed} refused ({first_error})")
        if pending:
            rest.append(f"{pending} not acknowledged within {limits.ack_timeout_s}s, which may still be written")
        if unsent:
            rest.append(f"{len(envelopes) - len(futures)} not sent ({unsent})")
        metrics.collector.events.labels(source, "accepted").inc(acked_events)
        metrics.collector.events.labels(source, "partially_written").inc(events - acked_events)
        return _error(502, "partially_written",
                      f"Kafka acknowledged {acked} of the {len(envelopes)} messages of this request ({acked_events} of "
                      f"{events} events); of the rest, " + ", ".join(rest) + ". What Kafka took stays and is "
                      "delivered: retry, and the pipeline drops the events it already has by messageId "
                      "(events sent without a messageId get a new one and are delivered twice)")


def serve(cfg: Config, *, handle_signals: bool = True, print_fn: Any = print) -> None:
    """Run the collector until interrupted."""
    from .health import cannot_listen

    collector = Collector(cfg)
    print_fn(f"tidegate collector on http://{cfg.collector.host}:{cfg.collector.port} -> {cfg.kafka.raw_topic}")
    try:
        web.run_app(collector.app, host=cfg.collector.host, port=cfg.collector.port,
                    handle_signals=handle_signals, print=None, access_log=None)
    except OSError as e:
        raise TidegateError(cannot_listen(cfg.collector.host, cfg.collector.port, e, "collector.port")) from None
