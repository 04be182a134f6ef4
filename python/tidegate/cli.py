"""The ``tidegate`` command line: serve, run, up, validate, replay, plan, apply, audit, status, regulate, dlq, dry-run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Sequence

from . import __version__, metrics
from .config import Config, load_config
from .errors import TidegateError
from .wording import counted

if TYPE_CHECKING:
    from .pipeline import Pipeline

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
    p.add_argument("config", nargs="?", default=None, help=f"TOML config file (default: $TIDEGATE_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("-c", "--config", dest="config_option", metavar="CONFIG", help="the same, as the other commands take it")
    p = sub.add_parser("config-reference", help="print the configuration reference (Markdown)")

    p = sub.add_parser("replay", help="re-run archived events through the current policy into destinations",
                       description="Re-run the archived events received in [--from, --to) through the current policy "
                                   "(the applied config, as `tidegate run` and `dlq replay` govern by; the config on "
                                   "disk if none was applied) "
                                   "into the chosen destinations (all by default). Writes are keyed by event id: a row "
                                   "already stored is kept, so a replay is safe to repeat and never overwrites newer "
                                   "data with older data.")
    _config_arg(p)
    p.add_argument("--from", dest="start", required=True, metavar="TIME",
                   help="start (inclusive): ISO 8601 (2026-11-26T05:00Z; naive = UTC), a date, or a duration back from now (2h, 3d)")
    p.add_argument("--to", dest="end", default="now", metavar="TIME", help="end (exclusive), same forms (default: now)")
    p.add_argument("--source", action="append", metavar="S", help="only this source (repeatable)")
    p.add_argument("--destination", action="append", metavar="D", help="only this destination (repeatable; default: all)")
    p.add_argument("--batch-events", type=int, default=20_000, metavar="N", help="events per batch (default 20000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("plan", help="show what `apply` would change, previewed on archived traffic",
                       description="Diff the config on disk (TOML and plan files) against the applied one and preview "
                                   "the effect on the most recent archived events, per destination.")
    _config_arg(p)
    p.add_argument("--events", type=int, default=10_000, metavar="N",
                   help="preview on the newest N archived events (at least 1; default 10000)")
    p = sub.add_parser("apply", help="apply the config on disk and record it in the audit log",
                       description="Validate the config on disk and append it to the hash-chained audit log (actor from "
                                   "$TIDEGATE_ACTOR or the OS user). Running pipelines pick it up at their next checkpoint.")
    _config_arg(p)
    p.add_argument("-m", "--message", default="", help="why (recorded in the entry)")
    p = sub.add_parser("audit", help="show or verify the audit log of applied configs",
                       description="Show or verify the hash-chained audit log of applied configurations.")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    q = audit_sub.add_parser("log", help="list applied versions (newest last)", description="List applied versions.")
    _config_arg(q)
    q.add_argument("--diff", action="store_true", help="show each entry's diff")
    q.add_argument("-n", type=int, default=None, metavar="N", help="only the newest N entries (at least 1)")
    q = audit_sub.add_parser("verify", help="check the hash chain and the stored copies",
                             description="Check every entry's hash, the chain and the stored config copies; "
                                         "exit 1 naming each entry that fails.")
    _config_arg(q)
    q.add_argument("--expect-head", metavar="HASH", help="also require the newest entry's hash to be HASH")

    p = sub.add_parser("status", help="per-source and per-destination numbers from the running services",
                       description="Scrape the collector's and the pipeline's /metrics and show events per source and "
                                   "destination, policy actions, latency and consumer lag.")
    _config_arg(p)
    p.add_argument("--collector-url", metavar="URL", help="collector base URL (default from the config)")
    p.add_argument("--pipeline-url", metavar="URL", help="pipeline metrics base URL (default from the config)")
    p.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--no-lag", action="store_true", help="do not ask Kafka for the consumer lag")

    p = sub.add_parser("regulate", help="suppress, unsuppress or delete a user (regulations)",
                       description="Manage the suppression list that every running pipeline checks at each "
                                   "checkpoint. `delete` also suppresses the user and deletes their rows from the "
                                   "warehouse destinations (DuckDB, PostgreSQL), recording what was deleted.")
    reg_sub = p.add_subparsers(dest="regulate_command", metavar="ACTION", required=True)
    for action, text in (("suppress", "drop the user's events before every destination from now on"),
                         ("unsuppress", "take the user off the suppression list (deleted rows stay deleted)"),
                         ("delete", "suppress the user and delete their rows from the warehouse destinations")):
        q = reg_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        q.add_argument("user_id", metavar="USER_ID", help="the userId (also matched against anonymousId)")
        _config_arg(q)
    q = reg_sub.add_parser("list", help="show the suppression list and the deletion log",
                           description="Show the suppression list (with pending deletions) and the deletion log.")
    _config_arg(q)

    p = sub.add_parser("dlq", help="show or re-deliver a destination's dead letters",
                       description="Batches a destination could not take within its retry budget are parked in "
                                   "the dead-letter topic <raw_topic>.dlq.<destination>.")
    dlq_sub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    q = dlq_sub.add_parser("list", help="what waits: messages, events, oldest/newest, reasons",
                           description="Show what waits in a destination's dead-letter topic.")
    q.add_argument("destination", metavar="DESTINATION", help="destination name ([destinations.<name>])")
    _config_arg(q)
    q = dlq_sub.add_parser("replay", help="re-deliver through the current policy to that destination only",
                           description="Re-deliver what waits in the destination's dead-letter topic through the "
                                       "current policy, to that destination only. Writes are keyed by event id, and "
                                       "the replay's own consumer group commits after each delivered batch, so it is "
                                       "safe to repeat or to run again after a failure. A message the destination "
                                       "refuses on its own while it takes the rest is parked again at the end of the "
                                       "topic with its error (exit status 1), so one bad event does not hold back "
                                       "the others.")
    q.add_argument("destination", metavar="DESTINATION", help="destination name ([destinations.<name>])")
    _config_arg(q)
    q.add_argument("--batch-messages", type=int, default=500, metavar="N", help="Kafka messages per batch (default 500)")
    q.add_argument("--repark-failing", action="store_true",
                   help="the destination is up: park again, at the end of the topic, messages it refuses on their "
                        "own even where nothing before them got through (by default the replay stops there)")

    p = sub.add_parser("dry-run", help="run the policy over an NDJSON file, without Kafka or sinks",
                       description="Run exactly the streaming policy (collector normalisation, dedupe, tracking "
                                   "plans, PII, identity, suppression, per-destination consent) over a file of "
                                   "events, one JSON object per line, and write DIR/<destination>.ndjson, "
                                   "DIR/discards.ndjson and DIR/summary.json.")
    _config_arg(p)
    p.add_argument("--input", required=True, metavar="FILE", help="NDJSON file of events")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--source", metavar="SOURCE", help="source the events come from (default: the first enabled one)")
    p.add_argument("--received-at", metavar="TIME", help="receivedAt to stamp, ISO 8601 (default: now)")
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
            if args.config and args.config_option and args.config != args.config_option:
                raise TidegateError(f"two config files given ({args.config}, {args.config_option}); validate one at a time")
            args.config = args.config or args.config_option or DEFAULT_CONFIG
            cfg = load_config(args.config)
            from .stages import PolicyPath

            # What the pipeline compiles at startup: tracking plans (unsupported keywords are
            # errors), PII policies (each destination's own too), transforms and their functions.
            PolicyPath(cfg)
            print(f"{args.config}: OK (config version {cfg.version}; {counted(len(cfg.sources), 'source')}, "
                  f"{counted(len(cfg.destinations), 'destination')})")
            return 0
        if args.command == "config-reference":
            from .config import config_reference
            print(config_reference())
            return 0
        cfg = load_config(args.config)
        if args.command in ("replay", "plan", "apply", "audit", "status", "regulate", "dlq", "dry-run"):
            return _OPERATIONS[args.command](cfg, args)
        if args.command == "serve":
            from .collector import serve
            serve(cfg)
        elif args.command == "run":
            return _run(cfg)
        elif args.command == "up":
            return _up(cfg, args)
    except TidegateError as e:
        for line in str(e).splitlines() or [""]:
            print(f"tidegate: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _run(cfg: Config) -> int:
    from .pipeline import Pipeline

    from .audit import AppliedConfigWatcher, applied_config, reload_on_apply

    cfg = applied_config(cfg)
    pipeline = Pipeline(cfg)
    reload_on_apply(pipeline.sink, AppliedConfigWatcher(cfg))
    print(f"tidegate pipeline: {cfg.kafka.raw_topic} -> {', '.join(cfg.destinations)} "
          f"(group {cfg.kafka.consumer_group}; metrics on :{cfg.pipeline.metrics_port})", flush=True)
    pipeline.run()
    if pipeline.abandoned:
        # A hung destination write holds a worker thread that the interpreter would join at exit,
        # for as long as the destination hangs: finish what exit would, then leave without it.
        from . import archive

        archive.close_all()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


class _CollectorThread(threading.Thread):
    """The collector's aiohttp app on its own event loop, for `up`."""

    def __init__(self, cfg: Config):
        super().__init__(name="tidegate-collector", daemon=True)
        self.cfg = cfg
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()

    def run(self) -> None:
        from aiohttp import web

        from .collector import Collector

        asyncio.set_event_loop(self._loop)
        try:
            runner = web.AppRunner(Collector(self.cfg).app, handle_signals=False, access_log=None)
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.cfg.collector.host, self.cfg.collector.port)
            self._loop.run_until_complete(site.start())
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            self.error = e
            self.started.set()
            return
        self.started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.join(timeout=15)


def _accounted(destinations: int) -> float:
    """Events the pipeline has taken through its stages (delivered, refused, duplicate or
    filtered per destination)."""
    return sum(s.value for m in metrics.REGISTRY.collect() if m.name == "tidegate_pipeline_batch_events"
               for s in m.samples if s.name.endswith("_sum"))


def _up(cfg: Config, args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .sample import enabled_write_keys, send_sample

    if args.sample < 0:
        raise TidegateError(f"--sample must be 0 or more, not {args.sample}")
    if args.exit_when_done and not args.sample:
        raise TidegateError("--exit-when-done stops once the sample traffic has landed: give --sample N (N >= 1) too")
    if args.timeout <= 0:
        raise TidegateError(f"--timeout must be more than 0 seconds, not {args.timeout:g}")
    keys = enabled_write_keys(cfg) if args.sample else {}  # before starting anything: a source must take them
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
            before = _accounted(len(cfg.destinations))
            started = time.monotonic()
            sent = send_sample(base_url, keys, args.sample)
            print(f"sent {counted(sent, 'sample event')} through {base_url}/v1/* ({time.monotonic() - started:.1f}s)", flush=True)
            deadline = time.monotonic() + args.timeout
            while _accounted(len(cfg.destinations)) - before < sent:
                if time.monotonic() > deadline:
                    outcome["error"] = (f"only {_accounted(len(cfg.destinations)) - before:.0f} of "
                                        f"{counted(sent, 'event')} landed within {args.timeout}s")
                    break
                time.sleep(0.2)
            else:
                # Taken through the stages; the checkpoint that stores them follows within one interval.
                delivered = -1.0
                while delivered != (now := _metric_counts("tidegate_sink_events", "outcome").get("delivered", 0.0)):
                    delivered = now
                    time.sleep(cfg.pipeline.commit_interval_s + 0.5)
                print(f"{'the 1 event' if sent == 1 else f'all {sent} events'} processed in {time.monotonic() - started:.1f}s", flush=True)
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


def _print_counts(pipeline: Pipeline) -> None:
    for name, sink in pipeline.destinations.items():
        counts = getattr(sink, "row_counts", None)
        if counts is None:
            continue
        try:
            rows = counts()
        except Exception as e:  # noqa: BLE001 - e.g. not connected yet: say so, do not fail the summary
            print(f"\nrows per table in destination {name!r}: not readable ({str(e).splitlines()[0] if str(e) else e!r})")
            continue
        path = getattr(getattr(sink, "cfg", None), "path", "")
        print(f"\nrows per table in destination {name!r}" + (f" ({path}):" if path else ":"))
        width = max((len(t) for t in rows), default=5)
        for table, n in rows.items():
            print(f"  {table:<{width}}  {n:>8}")

    print("\npolicy (this run):")
    stages = _metric_counts("tidegate_pipeline_events", "stage_outcome")
    print("  refused: " + (", ".join(f"{k.split(':')[1]} {v:.0f}" for k, v in sorted(stages.items())
                                     if k.startswith("govern:") and not k.endswith(":accepted")) or "none"))
    print(f"  duplicates dropped: {stages.get('dedupe:duplicate', 0):.0f}; "
          f"late (delivered, flagged): {stages.get('reconcile:late', 0):.0f}")
    for label, metric, key in (("plan violations", "tidegate_policy_violations", "type_action"),
                               ("PII actions", "tidegate_pii_actions", "class_action")):
        counts = _metric_counts(metric, key)
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
            elif key == "stage_outcome":
                label = f"{s.labels['stage']}:{s.labels['outcome']}"
            elif key == "type_action":
                label = f"{s.labels['type']} ({s.labels['action']})"
            else:
                label = s.labels[key]
            out[label] = out.get(label, 0) + s.value
    return out


def _replay(cfg: Config, args: argparse.Namespace) -> int:
    from .audit import applied_config
    from .replay import Progress, check_arguments, parse_time, replay

    start, end = parse_time(args.start), parse_time(args.end)
    if args.batch_events < 1:
        raise TidegateError("--batch-events must be at least 1")
    # The policy `tidegate run` and `dlq replay` govern by: the applied config, when there is one.
    # Everything is checked before the header: an error names the user's file, not the stored copy.
    on_disk, cfg = cfg, applied_config(cfg)
    check_arguments(cfg, start, end, sources=args.source, destinations=args.destination, on_disk=on_disk)
    print(f"replaying events received {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} UTC from {cfg.archive.path} "
          f"into {', '.join(args.destination or cfg.destinations)} under config version {cfg.version}", flush=True)
    summary = replay(cfg, start, end, sources=args.source, destinations=args.destination,
                     batch_events=args.batch_events,
                     progress=None if args.no_progress else (lambda total: Progress(total)))
    print(summary.render())
    return 0


def _plan(cfg: Config, args: argparse.Namespace) -> int:
    from .audit import plan

    if args.events < 1:
        raise TidegateError("--events must be at least 1")
    text, _changed = plan(cfg, events=args.events)
    print(text)
    return 0


def _apply(cfg: Config, args: argparse.Namespace) -> int:
    from .audit import apply

    entry = apply(cfg, message=args.message)
    if entry is None:  # the files are those of the last entry
        from .audit import AuditLog, unchanged

        print(unchanged(cfg, AuditLog(cfg.audit.path).last() or {}))
        return 0
    print(entry["diff"], end="")  # never empty: an apply of unchanged files records nothing
    print(f"Applied version {entry['config_version']} as audit entry {entry['seq']} by {entry['actor']} at {entry['time']}.\n"
          f"Audit head: {entry['hash']} (keep it to check later: tidegate audit verify --expect-head {entry['hash']}).\n"
          "Running pipelines govern by it from their next checkpoint.")
    return 0


def _audit(cfg: Config, args: argparse.Namespace) -> int:
    from .audit import AuditLog

    if args.audit_command == "log" and args.n is not None and args.n < 1:
        raise TidegateError("-n must be at least 1")
    audit = AuditLog(cfg.audit.path)
    if args.audit_command == "verify":
        problems = audit.verify(expect_head=args.expect_head)
        if problems:
            for p in problems:
                print(f"{audit.path}: {p}", file=sys.stderr)
            print(f"tidegate: audit log verification FAILED ({counted(len(problems), 'problem')})", file=sys.stderr)
            return 1
        entries = audit.entries()
        head = entries[-1]["hash"] if entries else "none"
        print(f"{audit.path}: OK, {counted(len(entries), 'entry', 'entries')}, chain intact, stored copies match; head {head}")
        return 0
    entries = audit.entries()
    if not entries:
        print(f"no applied configs yet ({audit.path} is empty or missing); run `tidegate apply`")
        return 0
    for e in entries[-args.n:] if args.n else entries:
        msg = f" — {e['message']}" if e.get("message") else ""
        print(f"#{e['seq']}  {e['time']}  {e['actor']}  version {e['config_version']}  sha256 {e['config_sha256'][:12]}"
              f"  hash {e['hash'][:12]}{msg}")
        if args.diff and e.get("diff"):
            print("    " + e["diff"].rstrip("\n").replace("\n", "\n    "))
    return 0


def _status(cfg: Config, args: argparse.Namespace) -> int:
    from .status import gather, render

    while True:
        view = gather(cfg, collector_url=args.collector_url, pipeline_url=args.pipeline_url, lag=not args.no_lag)
        text = render(view)
        if args.watch <= 0:
            print(text)
            return 0 if view.reachable else 1
        print("\033[2J\033[H" + text, flush=True)
        time.sleep(args.watch)


def _regulate(cfg: Config, args: argparse.Namespace) -> int:
    from . import regulations

    action = args.regulate_command
    store = regulations.RegulationStore(cfg.regulations.path)
    if action == "list":
        users = store.users()
        print(f"suppression list {store.list_path}: {counted(len(users), 'user')}")
        for user, e in sorted(users.items()):
            pending = f"  deletion pending in: {', '.join(e['pending'])}" if e.get("pending") else ""
            print(f"  {user}  {e.get('regulation')}  since {e.get('at')} by {e.get('by')}{pending}")
        entries = store.log_entries()
        print(f"deletion log {store.log_path}: {counted(len(entries), 'entry', 'entries')}")
        for e in entries:
            rows = e.get("rows")
            print(f"  {e.get('time')}  {e.get('user_id')}  {e.get('destination')}.{e.get('table')}: "
                  f"{counted(rows, 'row') if isinstance(rows, int) else f'{rows} rows'} (by {e.get('actor')})")
        return 0

    def as_stored(verb: str) -> str:
        user_id = regulations.normalized_id(args.user_id, cfg.identity.lowercase_email_ids)
        if user_id != args.user_id:
            print(f"user {args.user_id!r} {verb} as {user_id!r}, as the pipeline stores ids (trimmed"
                  f"{', e-mail addresses lower-cased' if cfg.identity.lowercase_email_ids else ''})")
        return user_id

    if action == "suppress":
        added = regulations.suppress(cfg, args.user_id)
        user_id = as_stored("recorded")
        print(f"user {user_id!r} {'suppressed' if added else 'was already suppressed'}; running pipelines drop "
              "their events from their next checkpoint")
        return 0
    if action == "unsuppress":
        removed = regulations.unsuppress(cfg, args.user_id)
        user_id = as_stored("looked up")
        print(f"user {user_id!r} " + ("unsuppressed" if removed else "was not on the suppression list"))
        return 0
    result = regulations.delete(cfg, args.user_id)
    user_id = as_stored("recorded")
    print(f"user {user_id!r} suppressed (regulation delete)")
    for name, tables in result.deleted.items():
        rows = ", ".join(f"{t} {n}" for t, n in sorted(tables.items())) or "no rows"
        print(f"  {name}: deleted {rows}")
    for name, why in result.pending.items():
        print(f"  {name}: pending ({why}); the running pipeline that owns it deletes within seconds")
    for name in result.skipped:
        print(f"  {name}: not a warehouse, nothing stored to delete")
    if result.deleted:
        print(f"recorded in {store.log_path}" + (f" for {', '.join(result.deleted)}" if result.pending else ""))
    if result.pending:
        recorded = "not recorded there yet" if result.deleted else f"nothing recorded in {store.log_path} yet"
        print(f"deletion pending in {', '.join(result.pending)}: {recorded}, it is logged there once carried out "
              f"(`tidegate regulate list` shows what is pending); until then {user_id!r} cannot be unsuppressed")
    if not result.deleted and not result.pending:
        print("no warehouse destination: nothing deleted, nothing recorded in the deletion log")
    return 0


def _dlq(cfg: Config, args: argparse.Namespace) -> int:
    from .dlq import list_dlq, replay_dlq

    if args.dlq_command == "list":
        print(list_dlq(cfg, args.destination).render())
        return 0
    if args.batch_messages < 1:
        raise TidegateError("--batch-messages must be at least 1")
    from .audit import applied_config

    summary = replay_dlq(applied_config(cfg), args.destination, batch_messages=args.batch_messages,
                         repark_failing=args.repark_failing)
    if not summary.pending_messages:
        print(f"nothing waits in {summary.topic}")
    else:
        redelivered = summary.pending_messages - summary.reparked_messages
        print(f"re-delivered {counted(redelivered, 'parked message')} from {summary.topic}: "
              f"{counted(summary.replayed_events, 'event')} accepted by the current policy, {summary.delivered_events} delivered "
              f"to {args.destination!r}")
    if summary.reparked_messages:
        one = summary.reparked_messages == 1
        print(f"{counted(summary.reparked_messages, 'message')} ({counted(summary.reparked_events, 'event')}) "
              f"{args.destination!r} refused on {'its own was' if one else 'their own were'} parked again at the end "
              f"of {summary.topic}, {'with its' if one else 'each with its'} error; see "
              f"{'it' if one else 'them'} with `tidegate dlq list {args.destination}`", file=sys.stderr)
        return 1
    return 0


def _dry_run(cfg: Config, args: argparse.Namespace) -> int:
    from .dryrun import dry_run
    from .replay import parse_time

    received = parse_time(args.received_at) if args.received_at else None
    summary = dry_run(cfg, args.input, args.out, source=args.source, received_at=received)
    print(summary.render())
    print(f"wrote {args.out}/<destination>.ndjson, discards.ndjson, summary.json")
    return 0


_OPERATIONS = {"replay": _replay, "plan": _plan, "apply": _apply, "audit": _audit, "status": _status,
               "regulate": _regulate, "dlq": _dlq, "dry-run": _dry_run}
