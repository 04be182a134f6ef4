"""HTTP load generator for the collector: ``POST /v1/batch`` bodies from a file, with a fixed
number of concurrent connections, round-robin over the bodies, for at most ``--seconds`` or
``--max-requests``.
Loopback only. Writes a JSON summary (statuses, accepted events, request latency quantiles)::

    python bench/loadgen.py --url http://127.0.0.1:8080 --write-key K --bodies bodies.bin \\
        --concurrency 32 --seconds 20 --out loadgen.json

``bodies.bin`` holds length-prefixed bodies (4-byte big-endian length, then the body) and a
``.counts`` sidecar with the events per body, as ``e2e.py`` writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import struct
import time
from pathlib import Path
from urllib.parse import urlparse

import aiohttp


def read_bodies(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def write_bodies(path: Path, bodies: list[bytes], counts: list[int]) -> None:
    with path.open("wb") as f:
        for b in bodies:
            f.write(struct.pack(">I", len(b)))
            f.write(b)
    path.with_suffix(".counts").write_text(json.dumps(counts))


async def run(url: str, write_key: str, bodies: list[bytes], counts: list[int], concurrency: int,
              seconds: float, max_requests: int) -> dict[str, object]:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loadgen only drives a loopback collector, not {host}")
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    accepted = 0
    next_body = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal next_body, accepted
            # Bodies are sent round-robin (repeats are fine: the collector does not dedupe).
            while time.monotonic() < deadline and next_body < max_requests:
                i = next_body % len(bodies)
                next_body += 1
                t = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/batch", data=bodies[i], headers=headers) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    accepted += counts[i]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def q(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    return {"requests": len(latencies), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "accepted_events": accepted, "elapsed_s": elapsed,
            "accepted_events_per_s": accepted / elapsed if elapsed else 0.0,
            "request_latency_s": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99)}, "concurrency": concurrency}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--write-key", required=True)
    ap.add_argument("--bodies", required=True, type=Path)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    bodies = read_bodies(args.bodies)
    counts = json.loads(args.bodies.with_suffix(".counts").read_text())
    result = asyncio.run(run(args.url, args.write_key, bodies, counts, args.concurrency, args.seconds, args.max_requests))
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
