"""The ``tidegate`` command line: serve, run, up, validate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import Sequence

from . import __version__, metrics
from .config import Config, load_config
from .errors import TidegateError

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("TIDEGATE_CONFIG", "config/tidegate.toml")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                   help=f"TOML config file (default: $TIDEGATE_CONFIG or {DEFAULT_CONFIG})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidegate",
        description="Tidegate: a governed customer-event pipeline (collector -> Kafka -> policy -> warehouse).",
    )
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP collector", description="Run the Segment/RudderStack-compatible HTTP collector.")
    _config_arg(p)
    p = sub.add_parser("run", help="run the pipeline (consumer service)",
                       description="Run the pipeline: consume the raw topic, enforce policy, deliver to destinations.")
    _config_arg(p)
    p = sub.add_parser("up", help="collector and pipeline in one process, for local use",
                       description="Run the collector and the pipeline in one process; optionally send sample traffic.")
    _config_arg(p)
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="send N built-in sample events through the HTTP API once both are up")
    p.add_argument("--exit-when-done", action="store_true",
                   help="with --sample: stop once every sample event has landed, after printing rows per table")
    p.add_argument("--timeout", type=float, default=120.0, help="with --exit-when-done: give up after this many seconds")
    p = sub.add_parser("validate", help="check a config file",
                       description="Check a config file; exit 0, or 2 with an error naming file, line and key.")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="TOML config file")
    p = sub.add_parser("config-reference", help="print the configuration reference (Markdown)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "validate":
            cfg = load_config(args.config)
            from .stages import build_policy

            build_policy(cfg)  # compiles tracking plans: unsupported keywords are errors here
            print(f"{args.config}: OK (config version {cfg.version}; {len(cfg.sources)} sources, "
                  f"{len(cfg.destinations)} destinations)")
            return 0
        if args.command == "config-reference":
            from .config import config_reference
            print(config_reference())
            return 0
        cfg = load_config(args.config)
        if args.command == "serve":
            from .collector import serve
            serve(cfg)
        elif args.command == "run":
            return _run(cfg)
        elif args.command == "up":
            return _up(cfg, args)
    except TidegateError as e:
        print(f"tidegate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _run(cfg: Config) -> int:
    from .pipeline import Pipeline

    pipeline = Pipeline(cfg)
    print(f"tidegate pipeline: {cfg.kafka.raw_topic} -> {', '.join(cfg.destinations)} "
          f"(group {cfg.kafka.consumer_group}; metrics on :{cfg.pipeline.metrics_port})", flush=True)
    pipeline.run()
    return 0


class _CollectorThread(threading.Thread):
    """The collector's aiohttp app on its own event loop, for `up`."""

    def __init__(self, cfg: Config):
        super().__init__(name="tidegate-collector", daemon=True)
        self.cfg = cfg
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._runner = None

    def run(self) -> None:
        from aiohttp import web

        from .collector import Collector

        asyncio.set_event_loop(self._loop)
        try:
            self._runner = web.AppRunner(Collector(self.cfg).app, handle_signals=False, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.cfg.collector.host, self.cfg.collector.port)
            self._loop.run_until_complete(site.start())
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            self.error = e
            self.started.set()
            return
        self.started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.join(timeout=15)


def _accounted(destinations: int) -> float:
    """Events the pipeline is done with: delivered (to every destination) or refused by policy."""
    delivered = _metric_counts("tidegate_sink_events", "outcome").get("delivered", 0.0) / max(destinations, 1)
    refused = _metric_counts("tidegate_pipeline_events", "outcome")
    refused.pop("accepted", None)
    return delivered + sum(refused.values())


def _up(cfg: Config, args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .sample import send_sample

    collector = _CollectorThread(cfg)
    collector.start()
    collector.started.wait()
    if collector.error is not None:
        raise TidegateError(f"collector failed to start on {cfg.collector.host}:{cfg.collector.port}: {collector.error}")
    base_url = f"http://{cfg.collector.host}:{cfg.collector.port}"
    print(f"tidegate up: collector {base_url}, pipeline -> {', '.join(cfg.destinations)}", flush=True)
    outcome: dict[str, object] = {}

    def drive_sample() -> None:
        try:
            keys = {name: s.write_key for name, s in cfg.sources.items() if s.enabled}
            before = _accounted(len(cfg.destinations))
            started = time.monotonic()
            sent = send_sample(base_url, keys, args.sample)
            print(f"sent {sent} sample events through {base_url}/v1/* ({time.monotonic() - started:.1f}s)", flush=True)
            deadline = time.monotonic() + args.timeout
            while _accounted(len(cfg.destinations)) - before < sent:
                if time.monotonic() > deadline:
                    outcome["error"] = f"only {_accounted(len(cfg.destinations)) - before:.0f} of {sent} events landed within {args.timeout}s"
                    break
                time.sleep(0.2)
            else:
                print(f"all {sent} events processed in {time.monotonic() - started:.1f}s", flush=True)
            _print_counts(pipeline)
        except Exception as e:  # noqa: BLE001 - reported at exit
            outcome["error"] = str(e)
        if args.exit_when_done:
            pipeline.stop()

    pipeline = Pipeline(cfg, on_ready=drive_sample if args.sample else None)
    try:
        pipeline.run()
    finally:
        collector.stop()
    if "error" in outcome:
        print(f"tidegate: error: {outcome['error']}", file=sys.stderr)
        return 1
    return 0


def _print_counts(pipeline: "Pipeline") -> None:  # type: ignore[name-defined]  # noqa: F821
    for name, sink in pipeline.destinations.items():
        counts = getattr(sink, "row_counts", None)
        if counts is None:
            continue
        rows = counts()
        path = getattr(getattr(sink, "cfg", None), "path", "")
        print(f"\nrows per table in destination {name!r} ({path}):")
        width = max((len(t) for t in rows), default=5)
        for table, n in rows.items():
            print(f"  {table:<{width}}  {n:>8}")

    print("\npolicy (this run):")
    for label, metric, key in (("refused", "tidegate_pipeline_events", "outcome"),
                               ("plan violations", "tidegate_policy_violations", "type_action"),
                               ("PII actions", "tidegate_pii_actions", "class_action")):
        counts = _metric_counts(metric, key)
        if metric == "tidegate_pipeline_events":
            counts.pop("accepted", None)
        shown = ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items())) or "none"
        print(f"  {label}: {shown}")
    print(flush=True)


def _metric_counts(name: str, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in metrics.REGISTRY.collect():
        if metric.name != name:
            continue
        for s in metric.samples:
            if not s.name.endswith("_total") or s.value == 0:
                continue
            if key == "class_action":
                label = f"{s.labels['class']}:{s.labels['action']}"
            elif key == "type_action":
                label = f"{s.labels['type']} ({s.labels['action']})"
            else:
                label = s.labels[key]
            out[label] = out.get(label, 0) + s.value
    return out
