"""End-to-end benchmark of Tidegate against a plain Quix Streams baseline, in one run, on one
machine, on the same corpus and Kafka. Nothing is asserted: numbers are written, ratios emphasised.

    .venv/bin/python bench/e2e.py --events 300000 --mode both

Mode ``kafka``:
  1. *max rate*: the corpus, as collector envelopes, is produced straight to a fresh raw topic;
     then ``tidegate run`` starts and drains it. Sustained events/s is the delivery rate between
     10% and 90% of the events delivered (startup and tail excluded), read from the pipeline's
     ``/metrics``. Peak RSS and CPU seconds per million events of the pipeline (and the broker)
     come from /proc.
  2. *latency vs offered load*: a fresh topic and pipeline; envelopes are produced live at
     fractions of the measured max rate (``--load-steps``), each stamped with ``receivedAt`` at
     send time. Latency receivedAt -> committed is read after the run from DuckDB as
     ``uuid_ts - received_at`` of every event row (uuid_ts is stamped when the sink's write
     transaction starts: the commit follows within that batch's write time).
  3. *baseline*: ``baseline_app.py`` (plain Quix Streams; per-event json + fastjsonschema + re +
     sha256 + Segment layout in Python; Tidegate's DuckDB sink) drains the same events as
     single-event messages, and again as envelopes. Tidegate also drains the singles topic, so
     the like-for-like ratio (same messages) is shown next to the by-design one.

Mode ``collector``: ``tidegate serve`` on a fresh topic, driven by ``loadgen.py`` (separate
process, ``--concurrency`` connections, /v1/batch bodies of 100 events, bounded by
``--collector-seconds``). Accepted events/s counts only requests answered 200, which the
collector sends after Kafka acknowledged (acks=all).

Outputs under ``--out``: results.json, results.md (the table), throughput.png.
All processes share this machine's cores with the broker: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

from tidegate.status import Samples  # noqa: E402

with warnings.catch_warnings(record=True):
    from confluent_kafka import Producer  # noqa: E402
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PY = sys.executable
# `--pipeline-command` replaces this to benchmark an experiment (e.g. a wrapper that patches
# tidegate before running it) without touching the package.
TIDEGATE = [PY, "-m", "tidegate"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENT_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")
WRITE_KEY = "bench-write-key"


def checkout_ref(ref: str, work: Path) -> list[str]:
    """``--compare-ref``: ``ref`` checked out beside this tree (a detached git worktree under
    ``work``) with its own Rust extension built (cargo, release, this tree's target directory so
    that dependencies are not compiled again), and the command that runs its ``tidegate`` on this
    interpreter. Python dependencies are this environment's."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        why = (getattr(e, "stderr", "") or str(e)).strip()
        raise SystemExit(f"--compare-ref: {ref!r} is no commit of {ROOT} ({why}); give a branch, tag or commit") from None
    tree = work / f"ref-{sha[:10]}"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), sha], check=True, cwd=ROOT,
                   capture_output=True)
    log(f"--compare-ref {ref} ({sha[:10]}): building its extension (cargo build --release) ...")
    env = {**os.environ, "PYO3_PYTHON": sys.executable, "CARGO_TARGET_DIR": str(ROOT / "target" / "compare-ref")}
    built = subprocess.run(["cargo", "build", "--release", "--features", "python", "--manifest-path",
                            str(tree / "rust" / "Cargo.toml")], env=env, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"--compare-ref: building {ref}'s extension failed:\n{built.stderr[-3000:]}")
    shutil.copy(ROOT / "target" / "compare-ref" / "release" / "libtidegate_core.so", tree / "python" / "tidegate" / "_core.abi3.so")
    runner = work / f"tidegate-{sha[:10]}"
    runner.write_text(f'#!/bin/sh\nPYTHONPATH="{tree / "python"}" exec "{sys.executable}" -m tidegate "$@"\n')
    runner.chmod(0o755)
    return [str(runner)]


def discard_work(work: Path) -> None:
    """Delete the work directory, unregistering the `--compare-ref` worktrees in it first."""
    for tree in work.glob("ref-*"):
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def git_commit() -> str:
    """``git rev-parse --short HEAD`` (+``dirty`` when tracked files differ): results move with the tree."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- processes ---------------------------------------------------------------------------------
def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_label(pid: int, tid: int, comm: str) -> str:
    """A thread's group in the per-thread CPU breakdown: Tidegate's threads by name (they are
    named in the OS, see ``tidegate.threads``; a pool's ``_<n>`` dropped), the main thread (the
    Quix Streams loop), librdkafka's and polars' threads, then anything else (DuckDB's and
    RocksDB's workers among them)."""
    if tid == pid:
        return "main"
    if comm.startswith("tg-"):
        return re.sub(r"_\d+$", "", comm)
    for prefix, label in (("rdk:", "librdkafka"), ("polars", "polars"), ("rocksdb", "rocksdb")):
        if comm.startswith(prefix):
            return label
    return "other"


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread group of process ``pid`` (see ``thread_label``)."""
    out: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            head, _, rest = (task / "stat").read_text().rpartition(")")
            fields = rest.split()
            label = thread_label(pid, int(task.name), head.partition("(")[2])
            out[label] = out.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return out


def proc_status_kb(pid: int) -> dict[str, int]:
    """The kB fields of ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, ...), read once."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0])
    except OSError:
        pass
    return out


def proc_mem_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def broker_pid() -> int | None:
    """The local broker: ``scripts/kafka-local``'s pid file, else the one ``kafka.Kafka`` JVM running
    on this machine (e.g. a broker another checkout started), so its CPU and RSS are still counted."""
    p = ROOT / ".cache" / "kafka" / "kafka.pid"
    try:
        pid = int(p.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        pass
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"java") and b"kafka.Kafka" in argv:
            found.append(int(d.name))
    return found[0] if len(found) == 1 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    return Samples.parse(text).total(name, **labels)


class RssTimeline:
    """The pipeline's RSS (all its processes) sampled about once a second while a load step
    produces: what a soak (a long step, ``--step-seconds 600``) needs to say whether memory stays
    flat. ``summary()`` gives the mean per minute and the growth over the step's second half (the
    least-squares slope, MB per minute), which leaves out the first minutes' warm-up."""

    def __init__(self, procs: list[Proc], t0: float, every_s: float = 1.0):
        self.procs, self.t0, self.every_s = procs, t0, every_s
        self.points: list[tuple[float, float]] = []  # (seconds since t0, MB)
        self.kinds: list[tuple[float, float, float]] = []  # (MB anonymous, MB file-backed, MB shared)
        self._next = t0

    def sample(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        kinds = [0.0, 0.0, 0.0]
        for pr in self.procs:
            status = proc_status_kb(pr.pid)  # one read per process: RSS is the sum of the three kinds
            pr.peak_rss_kb = max(pr.peak_rss_kb, status.get("VmHWM", 0), status.get("VmRSS", 0))
            for i, k in enumerate(("RssAnon", "RssFile", "RssShmem")):
                kinds[i] += status.get(k, 0) / 1024
        self.points.append((now - self.t0, sum(kinds)))
        self.kinds.append((kinds[0], kinds[1], kinds[2]))

    def summary(self) -> dict[str, Any]:
        minutes: dict[int, list[int]] = {}
        for i, (t, _) in enumerate(self.points):
            minutes.setdefault(int(t // 60), []).append(i)
        rows = [v for _, v in sorted(minutes.items())] if len(minutes) > 1 else []
        per_minute = [sum(self.points[i][1] for i in v) / len(v) for v in rows]
        # which memory grows: anonymous (heaps) or file-backed pages (reclaimable)
        by_kind = {k: [sum(self.kinds[i][j] for i in v) / len(v) for v in rows]
                   for j, k in enumerate(("anonymous", "file", "shared"))}
        late = [(t, mb) for t, mb in self.points if self.points and t >= self.points[-1][0] / 2]
        growth = None
        if len(late) >= 10:
            mt = sum(t for t, _ in late) / len(late)
            mm = sum(mb for _, mb in late) / len(late)
            var = sum((t - mt) ** 2 for t, _ in late)
            growth = 60 * sum((t - mt) * (mb - mm) for t, mb in late) / var if var else None
        return {"per_minute": per_minute, "per_minute_by_kind": by_kind, "growth_mb_per_min": growth,
                "max": max((mb for _, mb in self.points), default=None), "samples": len(self.points)}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    peak_rss_kb: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def sample(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, proc_mem_kb(self.pid, "VmHWM"), proc_mem_kb(self.pid, "VmRSS"))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.sample()
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], cwd: Path) -> Proc:
    log_path = cwd / f"{name}.log"
    with open(log_path, "ab") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Proc(name, p, log_path)


# -- Kafka -------------------------------------------------------------------------------------
def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(topics).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


def producer(bootstrap: str) -> Producer:
    # The collector's producer settings (acks=all, idempotent, lz4), with more batching for bulk.
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "compression.type": "lz4", "linger.ms": 20, "batch.size": 1_000_000,
                     "message.max.bytes": 10_000_000, "queue.buffering.max.kbytes": 1_048_576})


def produce_all(bootstrap: str, topic: str, messages: list[tuple[int, bytes]]) -> float:
    """Produce every ``(partition, payload)``; return the seconds it took until all were acked.

    Each message's events get ``receivedAt`` = the moment it is produced, as the collector stamps
    each request on arrival: a backlog spans the time it was collected in (here, the seconds the
    production takes, which is shorter than any real backlog). One stamp for the whole backlog
    would put every stored row of the warehouse in each write's `receivedAt` range, so that its
    stored-id lookups could skip nothing (see `WarehouseSink.id_index`): a cost no real backlog
    has."""
    p = producer(bootstrap)
    started = time.perf_counter()
    for partition, payload in messages:
        payload = corpus.restamp(payload, now_iso())
        while True:
            try:
                p.produce(topic, payload, partition=partition)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(120)
    if left:
        raise RuntimeError(f"{left} messages not acknowledged by Kafka")
    return time.perf_counter() - started


# -- a Tidegate deployment ---------------------------------------------------------------------
class TidegateRun:
    """``tidegate run`` (and optionally ``serve``) with its own config, topic, group, DuckDB."""

    def __init__(self, work: Path, bootstrap: str, topic: str, partitions: int, replicas: int = 1,
                 commit_interval: float = 0.25, dedupe_window: float | None = None, guarantee: str = "at-least-once",
                 command: list[str] | None = None, delta: bool = False):
        self.work = work
        self.command = command or TIDEGATE
        self.topic = topic
        self.group = f"bench-{uuid.uuid4().hex[:8]}"
        self.bootstrap = bootstrap
        self.replicas: list[tuple[Path, int, Path]] = []  # (config, metrics port, duckdb)
        # An event counts as delivered once every destination has it.
        self.destinations = ["warehouse", "lake"] if delta else ["warehouse"]
        lake = '\n[destinations.lake]\ntype = "delta"\npath = "lake"\n' if delta else ""
        self.collector_port = free_port()
        for r in range(replicas):
            d = work / f"replica{r}"
            d.mkdir(parents=True, exist_ok=True)
            port = free_port()
            duck = d / "warehouse.duckdb"
            cfg = d / "tidegate.toml"
            cfg.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
raw_topic = "{topic}"
partitions = {partitions}
consumer_group = "{self.group}"

[collector]
port = {self.collector_port}

[pipeline]
commit_interval_s = {commit_interval}
processing_guarantee = "{guarantee}"
state_dir = "state"
metrics_port = {port}
{"" if dedupe_window is None else f"dedupe_window_s = {dedupe_window}"}

# The same governance the baseline does: the bench plan (violations forwarded) and PII
# detection with the product's default actions.
[sources.web]
write_key = "{WRITE_KEY}"
tracking_plan = "bench"

[plans.bench]
path = "{corpus.PLAN_PATH}"

[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
{lake}""")
            self.replicas.append((cfg, port, duck))
        self.procs: list[Proc] = []

    def start_pipeline(self) -> None:
        for i, (cfg, port, _duck) in enumerate(self.replicas):
            self.procs.append(spawn(f"pipeline{i}", [*self.command, "run", "-c", str(cfg)], cfg.parent))
        for (cfg, port, _), proc in zip(self.replicas, self.procs):
            wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200 or not proc.alive(), 90,
                       "pipeline ready")
            if not proc.alive():
                raise RuntimeError(f"pipeline exited:\n{proc.tail()}")

    def processed(self) -> float:
        total = 0.0
        for _, port, _ in self.replicas:
            status, text = http_get(f"http://127.0.0.1:{port}/metrics")
            if status != 200:
                continue
            total += min(metric_sum(text, "tidegate_sink_events_total", destination=d, outcome="delivered")
                         for d in self.destinations)
            for reason in ("missing_identity", "unknown_type", "not_an_object", "invalid_json"):
                total += metric_sum(text, "tidegate_pipeline_events_total", stage="govern", outcome=reason)
        return total

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    def write_sizes(self) -> dict[str, float | None]:
        """Mean events per write and seconds per write of each destination, from the pipelines'
        metrics: a destination's cost per event depends on how large its writes are."""
        totals: dict[str, float] = {}
        for _, port, _ in self.replicas:
            status, text = http_get(f"http://127.0.0.1:{port}/metrics")
            if status != 200:
                continue
            samples = Samples.parse(text)
            for key, name in (("batches", "tidegate_pipeline_batch_events_count"),
                              ("events", "tidegate_pipeline_batch_events_sum")):
                totals[key] = totals.get(key, 0.0) + samples.total(name)
            for dest in self.destinations:
                for key, name in (("writes", "tidegate_sink_write_seconds_count"), ("seconds", "tidegate_sink_write_seconds_sum")):
                    totals[f"{dest}.{key}"] = totals.get(f"{dest}.{key}", 0.0) + samples.total(name, destination=dest)
        out: dict[str, float | None] = {"events_per_write": totals["events"] / totals["batches"] if totals.get("batches") else None}
        for dest in self.destinations:
            n = totals.get(f"{dest}.writes")
            out[f"{dest}_seconds_per_write"] = totals[f"{dest}.seconds"] / n if n else None
        return out

    def lake_rows(self, tables: tuple[str, ...]) -> int:
        """Rows of ``tables`` in every replica's Delta Lake destination."""
        from deltalake import DeltaTable

        return sum(DeltaTable(str(cfg.parent / "lake" / t)).to_pyarrow_dataset().count_rows()
                   for cfg, _, _ in self.replicas for t in tables if (cfg.parent / "lake" / t / "_delta_log").is_dir())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        rows: list[tuple[Any, ...]] = []
        for _, _, duck in self.replicas:
            if not duck.exists():
                continue
            con = duckdb.connect(str(duck), read_only=True)
            try:
                rows.extend(con.execute(sql).fetchall())
            finally:
                con.close()
        return rows


def _guarantees(args: argparse.Namespace) -> list[str]:
    """``--guarantee``: the first is used for every run; with ``both`` the envelope drain is repeated
    with exactly-once on the same topic (fresh consumer group and warehouse) to price it."""
    return ["at-least-once", "exactly-once"] if args.guarantee == "both" else [args.guarantee]


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- measuring a drain -------------------------------------------------------------------------
@dataclass
class Drain:
    events: int
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)  # (t, processed, cpu, broker cpu)
    thread_samples: list[dict[str, float]] = field(default_factory=list)  # CPU s per thread group, with each sample
    peak_rss_mb: list[float] = field(default_factory=list)
    broker_peak_rss_mb: float = 0.0
    completed: bool = False

    def _at(self, frac: float) -> tuple[float, float, float, float]:
        return self.samples[self._index_at(frac)]

    def _index_at(self, frac: float) -> int:
        target = self.events * frac
        for i, s in enumerate(self.samples):
            if s[1] >= target:
                return i
        return len(self.samples) - 1

    def summary(self) -> dict[str, Any]:
        if len(self.samples) < 2 or self.samples[-1][1] <= 0:
            return {"events": self.events, "completed": False}
        ia, ib = self._index_at(0.10), self._index_at(0.90)
        if self.samples[ib][0] <= self.samples[ia][0]:
            ia, ib = 0, len(self.samples) - 1
        a, b = self.samples[ia], self.samples[ib]
        rate = (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else 0.0
        first = next(s for s in self.samples if s[1] > 0)
        last = self.samples[-1]
        cpu_window = b[2] - a[2]
        broker_window = b[3] - a[3]
        events_window = b[1] - a[1]
        return {
            "events": self.events,
            "processed": last[1],
            "completed": self.completed,
            "sustained_events_per_s": rate,
            "first_to_last_events_per_s": (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None,
            "wall_s_from_start": last[0] - self.samples[0][0],
            "cpu_s_per_million_events": cpu_window / events_window * 1e6 if events_window else None,
            "broker_cpu_s_per_million_events": broker_window / events_window * 1e6 if events_window else None,
            "cpu_utilisation_cores": cpu_window / (b[0] - a[0]) if b[0] > a[0] else None,
            "thread_cpu_s_per_million_events": self._threads(ia, ib, events_window),
            "peak_rss_mb": self.peak_rss_mb,
            "broker_peak_rss_mb": self.broker_peak_rss_mb,
        }


    def _threads(self, ia: int, ib: int, events: float) -> dict[str, float]:
        """CPU s per M events of each thread group of the pipeline process(es) over the same
        window as the rate, largest first."""
        if not events or len(self.thread_samples) != len(self.samples):
            return {}
        return per_million(self.thread_samples[ia], self.thread_samples[ib], events)


def per_million(before: dict[str, float], after: dict[str, float], events: float, floor: float = 0.0) -> dict[str, float]:
    """CPU s per M events of each thread group between two `_all_threads` samples, largest
    first, those above ``floor`` only."""
    per = {k: (v - before.get(k, 0.0)) / events * 1e6 for k, v in after.items()} if events else {}
    return dict(sorted(((k, v) for k, v in per.items() if v > floor), key=lambda kv: -kv[1]))


def _all_threads(procs: list[Proc]) -> dict[str, float]:
    """CPU seconds by thread group, summed over ``procs``."""
    out: dict[str, float] = {}
    for p in procs:
        for label, cpu in thread_cpu_s(p.pid).items():
            out[label] = out.get(label, 0.0) + cpu
    return out


def drain(events: int, processed: Callable[[], float], procs: Callable[[], list[Proc]], timeout: float,
          interval: float = 0.25) -> Drain:
    d = Drain(events)
    bpid = broker_pid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ps = procs()
        for p in ps:
            p.sample()
        n = processed()
        d.samples.append((time.monotonic(), n, sum(proc_cpu_s(p.pid) for p in ps), proc_cpu_s(bpid) if bpid else 0.0))
        d.thread_samples.append(_all_threads(ps))
        if bpid:
            d.broker_peak_rss_mb = max(d.broker_peak_rss_mb, proc_mem_kb(bpid, "VmRSS") / 1024)
        if n >= events:
            d.completed = True
            break
        if not all(p.alive() for p in ps):
            raise RuntimeError("a process exited during the run:\n" + "\n".join(p.tail() for p in ps if not p.alive()))
        time.sleep(interval)
    d.peak_rss_mb = [p.peak_rss_kb / 1024 for p in procs()]
    return d


# -- phases ------------------------------------------------------------------------------------
def now_iso() -> str:
    return corpus.iso(datetime.now(timezone.utc))


def phase_tidegate_drain(args: argparse.Namespace, work: Path, topic: str, events: int, label: str,
                         guarantee: str | None = None, command: list[str] | None = None) -> dict[str, Any]:
    guarantee = guarantee or _guarantees(args)[0]
    run = TidegateRun(work / label, args.bootstrap, topic, args.partitions, args.processes, args.commit_interval,
                      args.dedupe_window, guarantee, command, args.delta)
    log(f"{label}: starting {args.processes} pipeline process(es) on {topic} ({events:,} events waiting, {guarantee})")
    started = time.monotonic()
    run.start_pipeline()
    startup = time.monotonic() - started
    try:
        d = drain(events, run.processed, lambda: run.procs, args.timeout)
        writes = run.write_sizes()
    finally:
        run.stop()
    out = d.summary()
    out.update(writes)
    out["startup_s"] = startup
    out["processing_guarantee"] = guarantee
    out["rows_in_event_tables"] = sum(r[0] for t in EVENT_TABLES if _has_table(run, t)
                                      for r in run.query(f"SELECT count(*) FROM main.{t}"))
    if args.delta:
        out["rows_in_lake_event_tables"] = run.lake_rows(EVENT_TABLES)
    log(f"{label}: {out.get('sustained_events_per_s', 0):,.0f} events/s sustained, "
        f"RSS {', '.join(f'{m:.0f}' for m in out.get('peak_rss_mb', []))} MB, "
        f"{out.get('events_per_write') or 0:,.0f} events per write, "
        f"{out.get('cpu_s_per_million_events') or 0:.0f} CPU s per M events ("
        + ", ".join(f"{k} {v:.1f}" for k, v in out.get("thread_cpu_s_per_million_events", {}).items()) + ")")
    return out


def _run_summary(r: dict[str, Any]) -> dict[str, Any]:
    return {"events_per_s": r.get("sustained_events_per_s"), "cpu_s_per_million_events": r.get("cpu_s_per_million_events"),
            "peak_rss_mb": max(r.get("peak_rss_mb") or [0])}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median sustained rate (the lower middle one of an even count), with
    every run's rate, CPU and peak RSS under ``repeats`` when there was more than one."""
    ordered = sorted(runs, key=lambda r: r.get("sustained_events_per_s") or 0)
    out = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        out["repeats"] = [_run_summary(r) for r in runs]
    return out


def phase_envelope_drains(args: argparse.Namespace, work: Path, topic: str, events: int) -> dict[str, Any]:
    """``--repeat`` drains of the envelopes topic (a fresh consumer group and warehouse each); with
    ``--compare-command`` each round drains with this tree's pipeline, then with that command.
    The run reported as Tidegate's is the median one of this tree's."""
    sides: list[tuple[str, list[str]]] = [("A", TIDEGATE)]
    if args.compare_command:
        sides.append(("B", args.compare_command.split()))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in sides}
    for i in range(args.repeat):
        for name, command in sides:
            label = "tidegate_envelopes" + (f"_{name}{i}" if len(sides) > 1 or args.repeat > 1 else "")
            runs[name].append(phase_tidegate_drain(args, work, topic, events, label, command=command))
    out: dict[str, Any] = {"tidegate_envelopes": median_run(runs["A"])}
    if args.compare_command:
        out["compare"] = {"command": args.compare_command, "a": [_run_summary(r) for r in runs["A"]],
                          "b": [_run_summary(r) for r in runs["B"]],
                          "b_median": median_run(runs["B"]).get("sustained_events_per_s")}
    return out


def _has_table(run: TidegateRun, table: str) -> bool:
    return bool(run.query(f"SELECT 1 FROM information_schema.tables WHERE table_name = '{table}'"))


def phase_baseline(args: argparse.Namespace, work: Path, topic: str, events: int, kind: str) -> dict[str, Any]:
    d = work / f"baseline_{kind}"
    d.mkdir(parents=True, exist_ok=True)
    status = d / "status.json"
    log(f"baseline ({kind}): starting the plain Quix Streams app on {topic} ({events:,} events waiting)")
    started = time.monotonic()
    proc = spawn("baseline", [PY, str(HERE / "baseline_app.py"), "--bootstrap", args.bootstrap, "--topic", topic,
                              "--group", f"bench-baseline-{uuid.uuid4().hex[:8]}", "--duckdb", str(d / "warehouse.duckdb"),
                              "--status", str(status), "--input", kind, "--state-dir", str(d / "state"),
                              "--commit-interval", str(args.commit_interval)], d)

    def processed() -> float:
        try:
            s = json.loads(status.read_text())
            return float(s["delivered"])
        except (OSError, ValueError, KeyError):
            return 0.0

    try:
        dr = drain(events, processed, lambda: [proc], args.timeout)
    finally:
        proc.stop()
    out = dr.summary()
    out["wall_s_including_startup"] = time.monotonic() - started
    log(f"baseline ({kind}): {out.get('sustained_events_per_s', 0):,.0f} events/s sustained, "
        f"RSS {', '.join(f'{m:.0f}' for m in out.get('peak_rss_mb', []))} MB")
    return out


def phase_latency(args: argparse.Namespace, work: Path, evs: list[dict[str, Any]], max_rate: float) -> dict[str, Any]:
    """Live production at fractions of the max rate into one pipeline; latency per step from DuckDB."""
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic, args.partitions)
    run = TidegateRun(work / "latency", args.bootstrap, topic, args.partitions, args.processes, args.commit_interval,
                      args.dedupe_window, _guarantees(args)[0], delta=args.delta)
    run.start_pipeline()
    fractions = [float(f) for f in args.load_steps.split(",") if f.strip()]
    envs = corpus.envelopes(evs, partitions=args.partitions)
    per_env = len(evs) / len(envs)
    p = producer(args.bootstrap)
    steps: list[dict[str, Any]] = []
    cursor = 0
    try:
        for frac in fractions:
            rate = frac * max_rate
            seconds = args.step_seconds
            n_env = min(len(envs) - cursor, int(rate * seconds / per_env))
            if n_env <= 0:
                log(f"latency: corpus exhausted before step {frac:.0%}; use more --events")
                break
            start_wall = time.time()
            start_processed = run.processed()
            cpu0 = sum(proc_cpu_s(pr.pid) for pr in run.procs)
            threads0 = _all_threads(run.procs)
            t0 = time.monotonic()
            rss = RssTimeline(run.procs, t0)
            sent_events = 0
            for i in range(n_env):
                part, count, payload = envs[cursor + i]
                due = t0 + (sent_events / rate)
                rss.sample()
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                p.produce(topic, corpus.restamp(payload, now_iso()), partition=part)
                p.poll(0)
                sent_events += count
            cursor += n_env
            p.flush(60)
            send_s = time.monotonic() - t0
            target = start_processed + sent_events
            try:
                wait_until(lambda: run.processed() >= target, max(30.0, seconds * 3), f"step {frac:.0%} delivered", 0.1)
            except TimeoutError:
                log(f"latency: step {frac:.0%} did not finish delivering in time")
            for pr in run.procs:
                pr.sample()
            drain_s = time.monotonic() - t0
            end_wall = time.time()
            delivered = run.processed() - start_processed
            by_thread = per_million(threads0, _all_threads(run.procs), delivered, floor=0.05)
            steps.append({"fraction": frac, "offered_events_per_s": sent_events / send_s if send_s else None,
                          "target_events_per_s": rate, "events": sent_events,
                          "delivered_events_per_s": (run.processed() - start_processed) / drain_s,
                          "cpu_cores": (sum(proc_cpu_s(pr.pid) for pr in run.procs) - cpu0) / drain_s,
                          "thread_cpu_s_per_million_events": by_thread,
                          "rss_mb": rss.summary(),
                          "window": (start_wall, end_wall)})
            log(f"latency: step {frac:.0%} offered {sent_events / send_s:,.0f} events/s for {send_s:.1f}s, "
                f"delivered in {drain_s:.1f}s; CPU s per M events by thread: "
                + ", ".join(f"{k} {v:.1f}" for k, v in steps[-1]["thread_cpu_s_per_million_events"].items()))
            r = steps[-1]["rss_mb"]
            if r["per_minute"]:
                log(f"latency: step {frac:.0%} pipeline RSS per minute {', '.join(f'{m:.0f}' for m in r['per_minute'])} MB; "
                    f"growth over the second half {_f(r['growth_mb_per_min'], '.1f')} MB/min; "
                    + "; ".join(f"{k} {', '.join(f'{m:.0f}' for m in v)}" for k, v in r["per_minute_by_kind"].items()))
            time.sleep(args.commit_interval * 2)
    finally:
        run.stop()
        peak = [pr.peak_rss_kb / 1024 for pr in run.procs]
    union = " UNION ALL ".join(
        f"SELECT epoch_ms(received_at) AS r, epoch_ms(uuid_ts) - epoch_ms(received_at) AS ms FROM main.{t}"
        for t in EVENT_TABLES if _has_table(run, t))
    for s in steps:
        a, b = s.pop("window")
        rows = run.query(
            f"SELECT count(*), quantile_cont(ms, 0.5), quantile_cont(ms, 0.95), quantile_cont(ms, 0.99), max(ms) "
            f"FROM ({union}) WHERE r >= {int(a * 1000) - 1} AND r <= {int(b * 1000) + 1}")
        n, p50, p95, p99, mx = rows[0] if rows else (0, None, None, None, None)
        s.update({"rows": n, "latency_s": {k: (v / 1000 if v is not None else None)
                                           for k, v in (("p50", p50), ("p95", p95), ("p99", p99), ("max", mx))}})
        lat = s["latency_s"]
        log(f"latency: step {s['fraction']:.0%}: p50 {lat['p50']}s p95 {lat['p95']}s p99 {lat['p99']}s over {n:,} rows")
    delete_topics(args.bootstrap, [topic])
    return {"steps": steps, "peak_rss_mb": peak, "max_rate_reference": max_rate}


def phase_collector(args: argparse.Namespace, work: Path, evs: list[dict[str, Any]]) -> dict[str, Any]:
    import loadgen

    topic = f"bench.collector.{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic, args.partitions)
    run = TidegateRun(work / "collector", args.bootstrap, topic, args.partitions)
    cfg = run.replicas[0][0]
    proc = spawn("collector", [PY, "-m", "tidegate", "serve", "-c", str(cfg)], cfg.parent)
    url = f"http://127.0.0.1:{run.collector_port}"
    try:
        wait_until(lambda: http_get(f"{url}/readyz")[0] == 200 or not proc.alive(), 60, "collector ready")
        if not proc.alive():
            raise RuntimeError(f"collector exited:\n{proc.tail()}")
        bodies = corpus.batch_bodies(evs, 100)
        counts = [min(100, len(evs) - i) for i in range(0, len(evs), 100)]
        bodies_path = work / "collector" / "bodies.bin"
        loadgen.write_bodies(bodies_path, bodies, counts)
        out_path = work / "collector" / "loadgen.json"
        log(f"collector: {args.concurrency} connections for up to {args.collector_seconds:.0f}s "
            f"({len(bodies):,} distinct bodies of 100 events, sent round-robin)")
        cpu0 = proc_cpu_s(proc.pid)
        bpid = broker_pid()
        bcpu0 = proc_cpu_s(bpid) if bpid else 0.0
        gen = spawn("loadgen", [PY, str(HERE / "loadgen.py"), "--url", url, "--write-key", WRITE_KEY,
                                "--bodies", str(bodies_path), "--concurrency", str(args.concurrency),
                                "--seconds", str(args.collector_seconds), "--out", str(out_path)], work / "collector")
        gen_cpu = 0.0
        while gen.alive():
            proc.sample()
            gen.sample()
            gen_cpu = max(gen_cpu, proc_cpu_s(gen.pid))
            time.sleep(0.25)
        if gen.popen.returncode != 0:
            raise RuntimeError(f"loadgen failed:\n{gen.tail()}")
        cpu = proc_cpu_s(proc.pid) - cpu0
        bcpu = (proc_cpu_s(bpid) - bcpu0) if bpid else 0.0
        result = json.loads(out_path.read_text())
        _, text = http_get(f"{url}/metrics")
        accepted_metric = metric_sum(text, "tidegate_collector_events_total", outcome="accepted")
    finally:
        proc.stop()
    n = result["accepted_events"] or 1
    result.update({
        "collector_peak_rss_mb": proc.peak_rss_kb / 1024,
        "loadgen_peak_rss_mb": gen.peak_rss_kb / 1024,
        "collector_cpu_s_per_million_events": cpu / n * 1e6,
        "collector_cpu_cores": cpu / result["elapsed_s"],
        "loadgen_cpu_cores": gen_cpu / result["elapsed_s"],
        "broker_cpu_cores": bcpu / result["elapsed_s"],
        "accepted_by_collector_metric": accepted_metric,
    })
    log(f"collector: {result['accepted_events_per_s']:,.0f} accepted events/s, statuses {result['statuses']}, "
        f"request p99 {result['request_latency_s']['p99']:.3f}s; collector {result['collector_cpu_cores']:.2f} cores, "
        f"loadgen {result['loadgen_cpu_cores']:.2f} cores, broker {result['broker_cpu_cores']:.2f} cores")
    delete_topics(args.bootstrap, [topic])
    return result


# -- report ------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = ",.0f") -> str:
    return "–" if v is None else format(v, fmt)


def ratio(a: Any, b: Any) -> float | None:
    return a / b if a and b else None


def write_report(results: dict[str, Any], out: Path) -> str:
    k = results.get("kafka", {})
    lines = [f"# Tidegate benchmark — {results['started']}", "",
             f"Commit `{results.get('git_commit', '?')}`, processing guarantee `{results['params'].get('guarantee', 'at-least-once')}`"
             + (f"; note: {results['note']}" if results.get("note") else "") + ".", "",
             f"{results['params']['events']:,} events, size mix `{results['params']['size_mix']}` "
             f"(≈{results['corpus']['bytes_per_event']:.0f} B/event as sent), PII {results['params']['pii_rate']:.0%}, "
             f"violations {results['params']['violation_rate']:.0%}, {results['params']['partitions']} partitions, "
             f"{results['params']['processes']} pipeline process(es); machine: {results['machine']['cpus']} CPUs shared by "
             f"broker, pipeline and load generator.", ""]
    if k:
        tg = k.get("tidegate_envelopes", {})
        into = "DuckDB + Delta Lake" if results["params"].get("delta") else "DuckDB"
        lines += [f"## Kafka → pipeline → {into} (sustained drain of a pre-produced topic)", "",
                  "| run | messages | events/s | ratio vs baseline (singles) | CPU s / M events | peak RSS MB | broker CPU s / M events |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        base = k.get("baseline_singles", {}).get("sustained_events_per_s")
        for key, label, msgs in (("tidegate_envelopes", f"**Tidegate** ({tg.get('processing_guarantee', 'at-least-once')})", "envelopes"),
                                 ("tidegate_envelopes_exactly_once", "Tidegate, exactly-once", "envelopes"),
                                 ("tidegate_singles", "Tidegate", "single events"),
                                 ("baseline_singles", "plain Quix + Python governance", "single events"),
                                 ("baseline_envelopes", "plain Quix + Python governance", "envelopes")):
            r = k.get(key)
            if not r:
                continue
            rate = r.get("sustained_events_per_s")
            rr = ratio(rate, base)
            lines.append(f"| {label} | {msgs} | {_f(rate)} | {('**' + format(rr, '.1f') + '×**') if rr else '–'} | "
                         f"{_f(r.get('cpu_s_per_million_events'))} | {', '.join(_f(m) for m in r.get('peak_rss_mb', []))} | "
                         f"{_f(r.get('broker_cpu_s_per_million_events'))} |")
        like = ratio(k.get("tidegate_singles", {}).get("sustained_events_per_s"), base)
        env_ratio = ratio(tg.get("sustained_events_per_s"), k.get("baseline_envelopes", {}).get("sustained_events_per_s"))
        lines += ["", f"Ratios: Tidegate on its envelopes vs the plain app on single events (the headline, issue 6 target ≥ 10×): "
                      f"**{_f(ratio(tg.get('sustained_events_per_s'), base), '.1f')}×**; same single-event messages for both: "
                      f"**{_f(like, '.1f')}×**; same envelopes for both: **{_f(env_ratio, '.1f')}×**.", ""]
        by_thread = tg.get("thread_cpu_s_per_million_events")
        if by_thread:
            lines += ["Where the Tidegate envelope drain's CPU went, CPU s / M events by thread: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in by_thread.items())
                      + " (`tg-*` are Tidegate's threads, `main` is the Quix Streams loop; see bench/README.md).", ""]
        if tg.get("events_per_write"):
            secs = ", ".join(f"{k.removesuffix('_seconds_per_write')} {v:.2f} s" for k, v in tg.items()
                             if k.endswith("_seconds_per_write") and v)
            lines += [f"Writes: {tg['events_per_write']:,.0f} events each on average; time per write by destination: "
                      f"{secs} (a destination's cost per event falls as its writes grow).", ""]
        reps = tg.get("repeats")
        if reps:
            lines += [f"The Tidegate envelope drain above is the median of {len(reps)} drains: "
                      + " / ".join(_f(r["events_per_s"]) for r in reps) + " events/s; CPU s / M "
                      + " / ".join(_f(r["cpu_s_per_million_events"]) for r in reps) + "; peak RSS "
                      + " / ".join(_f(r["peak_rss_mb"]) for r in reps) + " MB.", ""]
        cmp_ = k.get("compare")
        if cmp_:
            a_med, b_med = tg.get("sustained_events_per_s"), cmp_.get("b_median")
            lines += [f"## A/B: this tree (A) vs `{cmp_['command']}` (B), drains alternating", "",
                      "| round | A events/s | B events/s | A CPU s / M | B CPU s / M | A peak RSS MB | B peak RSS MB |",
                      "|---:|---:|---:|---:|---:|---:|---:|"]
            for i, (a, b) in enumerate(zip(cmp_["a"], cmp_["b"]), 1):
                lines.append(f"| {i} | {_f(a['events_per_s'])} | {_f(b['events_per_s'])} | {_f(a['cpu_s_per_million_events'])} | "
                             f"{_f(b['cpu_s_per_million_events'])} | {_f(a['peak_rss_mb'])} | {_f(b['peak_rss_mb'])} |")
            lines += ["", f"Medians: A {_f(a_med)}, B {_f(b_med)} events/s; B/A **{_f(ratio(b_med, a_med), '.3f')}×**. "
                          "Read a difference smaller than the spread of one side's runs as noise.", ""]
        eos = k.get("tidegate_envelopes_exactly_once")
        if eos:
            alo_rate, eos_rate = tg.get("sustained_events_per_s"), eos.get("sustained_events_per_s")
            alo_cpu, eos_cpu = tg.get("cpu_s_per_million_events"), eos.get("cpu_s_per_million_events")
            lines += [f"Processing guarantee (issue 4), same envelopes, same run: at-least-once {_f(alo_rate)} events/s vs "
                      f"exactly-once {_f(eos_rate)} events/s: exactly-once delivers **{_f(ratio(eos_rate, alo_rate), '.2f')}×** "
                      f"the at-least-once rate (cost {_f((1 - eos_rate / alo_rate) * 100 if alo_rate and eos_rate else None, '.0f')}% "
                      f"of throughput) and uses {_f(ratio(eos_cpu, alo_cpu), '.2f')}× the CPU s per M events.", ""]
        lat = k.get("latency", {}).get("steps", [])
        if lat:
            lines += ["## Latency receivedAt → committed vs offered load (live production)", "",
                      "| offered load | offered events/s | delivered events/s | p50 s | p95 s | p99 s | max s | pipeline cores |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for s in lat:
                L = s["latency_s"]
                lines.append(f"| {s['fraction']:.0%} of max | {_f(s['offered_events_per_s'])} | {_f(s['delivered_events_per_s'])} | "
                             f"{_f(L['p50'], '.3f')} | {_f(L['p95'], '.3f')} | {_f(L['p99'], '.3f')} | {_f(L['max'], '.3f')} | "
                             f"{_f(s.get('cpu_cores'), '.2f')} |")
            lines.append("")
            for s in lat:
                r = s.get("rss_mb") or {}
                if r.get("per_minute"):
                    lines += [f"Pipeline RSS during the {s['fraction']:.0%} step, mean per minute: "
                              + ", ".join(_f(m) for m in r["per_minute"])
                              + f" MB (highest sample {_f(r['max'])} MB); growth over the step's second half "
                              f"**{_f(r['growth_mb_per_min'], '.1f')} MB/min**."
                              + "".join(f" {k.capitalize()}: {', '.join(_f(m) for m in v)} MB." for k, v in
                                        (r.get("per_minute_by_kind") or {}).items()), ""]
            if any(s.get("thread_cpu_s_per_million_events") for s in lat):
                lines += ["CPU s / M events by thread at each step (live writes are smaller than a drain's, so "
                          "each destination's fixed cost per write weighs more): "
                          + "; ".join(f"{s['fraction']:.0%}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                            s.get("thread_cpu_s_per_million_events", {}).items())
                                      for s in lat) + ".", ""]
    c = results.get("collector")
    if c:
        lines += ["## Collector (`POST /v1/batch`, 100 events per request, 200 only after Kafka acks)", "",
                  "| accepted events/s | requests | statuses | request p50 s | p99 s | collector cores | CPU s / M events | peak RSS MB | loadgen cores | broker cores |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
                  f"| **{_f(c['accepted_events_per_s'])}** | {c['requests']:,} | {c['statuses']} | "
                  f"{_f(c['request_latency_s']['p50'], '.3f')} | {_f(c['request_latency_s']['p99'], '.3f')} | "
                  f"{_f(c['collector_cpu_cores'], '.2f')} | {_f(c['collector_cpu_s_per_million_events'])} | "
                  f"{_f(c['collector_peak_rss_mb'])} | {_f(c['loadgen_cpu_cores'], '.2f')} | {_f(c['broker_cpu_cores'], '.2f')} |", ""]
    lines += ["Absolute numbers depend on this machine (everything shares its cores); read the ratios. "
              "Nothing here is asserted. See bench/README.md.", ""]
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results.get("kafka", {})
    lat = k.get("latency", {}).get("steps", [])
    fig, axes = plt.subplots(1, 2 if lat else 1, figsize=(13 if lat else 7, 4.8), squeeze=False)
    ax = axes[0][0]
    bars = []
    for key, label in (("tidegate_envelopes", "Tidegate\n(envelopes)"),
                       ("tidegate_envelopes_exactly_once", "Tidegate\nexactly-once"),
                       ("tidegate_singles", "Tidegate\n(single events)"),
                       ("baseline_envelopes", "plain Quix\n(envelopes)"), ("baseline_singles", "plain Quix\n(single events)")):
        r = k.get(key, {}).get("sustained_events_per_s")
        if r:
            bars.append((label, r))
    c = results.get("collector")
    if c:
        bars.append(("collector\n/v1/batch", c["accepted_events_per_s"]))
    if bars:
        colors = ["#1f77b4" if "Tidegate" in b[0] else "#2ca02c" if "collector" in b[0] else "#999999" for b in bars]
        rects = ax.bar([b[0] for b in bars], [b[1] for b in bars], color=colors)
        base = k.get("baseline_singles", {}).get("sustained_events_per_s")
        for rect, (label, v) in zip(rects, bars):
            txt = f"{v:,.0f}/s"
            if base and "collector" not in label:
                txt += f"\n{v / base:.1f}× baseline"
            ax.annotate(txt, (rect.get_x() + rect.get_width() / 2, rect.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("events/s (sustained)")
        ax.set_title("Throughput into DuckDB (collector: accepted)")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(0, max(v for _, v in bars) * 1.25)
    if lat:
        ax2 = axes[0][1]
        x = [s["offered_events_per_s"] for s in lat]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-")):
            ax2.plot(x, [s["latency_s"][q] for s in lat], style, label=q)
        ax2.set_xlabel("offered load (events/s)")
        ax2.set_ylabel("latency receivedAt → committed (s)")
        ax2.set_title("Latency vs offered load")
        ax2.axhline(2.0, color="red", lw=0.8, ls=":", label="2 s target (p99)")
        ax3 = ax2.twinx()
        ax3.plot(x, [s["delivered_events_per_s"] for s in lat], "k:", alpha=0.5, label="delivered events/s")
        ax3.set_ylabel("delivered events/s", color="gray")
        ax2.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Tidegate e2e — {results['params']['events']:,} events, {results['corpus']['bytes_per_event']:.0f} B/event, "
                 f"{results['machine']['cpus']} CPUs shared with the broker", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/e2e.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000, help="events in the corpus (default 300000)")
    ap.add_argument("--size-mix", default="small", help="small (≈700 B), large (≈2 KB) or weights, e.g. small:0.8,large:0.2")
    ap.add_argument("--pii-rate", type=float, default=0.10, help="share of events carrying PII (default 0.10)")
    ap.add_argument("--violation-rate", type=float, default=0.05, help="share of events violating bench/plan.json (default 0.05)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of every raw topic (default 4)")
    ap.add_argument("--processes", type=int, default=1, help="pipeline processes in the consumer group (default 1; "
                    "each writes its own DuckDB file, DuckDB allows one writer)")
    ap.add_argument("--mode", choices=("collector", "kafka", "both"), default="both")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="output directory (default bench/results)")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--baseline-events", type=int, default=100_000,
                    help="events the (slow) baseline drains, capped at --events (default 100000)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain Quix Streams baseline")
    ap.add_argument("--no-singles", action="store_true", help="skip Tidegate on single-event messages")
    ap.add_argument("--load-steps", default="0.25,0.5,0.75",
                    help="offered load steps as fractions of the measured max rate ('' to skip latency)")
    ap.add_argument("--step-seconds", type=float, default=15.0, help="seconds of live production per load step")
    ap.add_argument("--collector-seconds", type=float, default=20.0, help="length of the collector load (default 20)")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent HTTP connections of the load generator")
    ap.add_argument("--commit-interval", type=float, default=0.25,
                    help="commit interval in seconds of Tidegate and the baseline (default 0.25, the product default)")
    ap.add_argument("--delta", action="store_true",
                    help="deliver to a Delta Lake destination (Parquet files) as well as DuckDB; an event counts as "
                         "delivered once both have it")
    ap.add_argument("--dedupe-window", type=float, default=None,
                    help="pipeline.dedupe_window_s for Tidegate (default: the product default; 0 turns dedupe off)")
    ap.add_argument("--guarantee", choices=("at-least-once", "exactly-once", "both"), default="at-least-once",
                    help="pipeline.processing_guarantee of every Tidegate run (default at-least-once, the product "
                         "default); 'both' also drains the envelopes with exactly-once to price it (issue 4)")
    ap.add_argument("--note", default=os.environ.get("TIDEGATE_BENCH_NOTE", ""),
                    help="free text recorded with the results (e.g. what else ran on the machine)")
    ap.add_argument("--pipeline-command", default=None,
                    help="command that runs tidegate (default: the current python -m tidegate); for experiments")
    ap.add_argument("--repeat", type=int, default=1,
                    help="drain the envelopes this many times (fresh consumer group and warehouse each) and report "
                         "the median run; runs of one tree vary by ±10%% on a shared 2-core machine (default 1)")
    ap.add_argument("--compare-command", default=None,
                    help="A/B: after each envelope drain of this tree, drain again with this command in place of "
                         "`python -m tidegate` (e.g. a wrapper running another checkout) and report both, run by run")
    ap.add_argument("--compare-ref", default=None, metavar="REF",
                    help="A/B against a git branch, tag or commit of this repository: checked out in the work "
                         "directory, its Rust extension built, then used as --compare-command")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up a drain after this many seconds")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.compare_command is not None and not args.compare_command.split():
        ap.error("--compare-command is empty; give the command that runs the other tidegate")
    if args.compare_ref and args.compare_command:
        ap.error("give --compare-ref or --compare-command, not both")
    if (args.compare_command or args.compare_ref) and args.mode == "collector":
        ap.error("--compare-command and --compare-ref compare envelope drains: use --mode kafka or both")

    if args.pipeline_command:
        TIDEGATE[:] = args.pipeline_command.split()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tidegate-bench-"))
    if args.compare_ref:
        try:
            args.compare_command = " ".join(checkout_ref(args.compare_ref, work))
        except BaseException:
            discard_work(work)
            raise
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "git_commit": git_commit(),
        "note": args.note,
    }
    log(f"generating {args.events:,} events (size mix {args.size_mix}) ...")
    evs = corpus.events(args.events, seed=7, size_mix=args.size_mix, pii_rate=args.pii_rate,
                        violation_rate=args.violation_rate)
    singles = corpus.singles(evs, partitions=args.partitions)
    results["corpus"] = {"events": len(evs), "bytes_per_event": sum(len(s) for _, s in singles) / len(singles)}
    topics: list[str] = []
    try:
        if args.mode in ("kafka", "both"):
            k: dict[str, Any] = {}
            results["kafka"] = k
            envs = corpus.envelopes(evs, partitions=args.partitions)
            results["corpus"]["envelopes"] = len(envs)
            results["corpus"]["events_per_envelope"] = len(evs) / len(envs)
            env_topic = f"bench.env.{uuid.uuid4().hex[:8]}"
            create_topic(args.bootstrap, env_topic, args.partitions)
            topics.append(env_topic)
            secs = produce_all(args.bootstrap, env_topic, [(p, m) for p, _, m in envs])
            log(f"produced {len(envs):,} envelopes ({len(evs):,} events) in {secs:.1f}s")
            k.update(phase_envelope_drains(args, work, env_topic, len(evs)))
            if args.guarantee == "both":
                k["tidegate_envelopes_exactly_once"] = phase_tidegate_drain(
                    args, work, env_topic, len(evs), "tidegate_envelopes_exactly_once", "exactly-once")
            nb = min(args.baseline_events, len(evs))
            if not (args.no_baseline and args.no_singles):
                single_topic = f"bench.single.{uuid.uuid4().hex[:8]}"
                create_topic(args.bootstrap, single_topic, args.partitions)
                topics.append(single_topic)
                secs = produce_all(args.bootstrap, single_topic, singles[:nb])
                log(f"produced {nb:,} single-event messages in {secs:.1f}s")
                if not args.no_singles:
                    k["tidegate_singles"] = phase_tidegate_drain(args, work, single_topic, nb, "tidegate_singles")
                if not args.no_baseline:
                    k["baseline_singles"] = phase_baseline(args, work, single_topic, nb, "singles")
                    # The same envelopes topic, first nb events' worth: the baseline stops at nb.
                    k["baseline_envelopes"] = phase_baseline(args, work, env_topic, nb, "envelopes")
            max_rate = k["tidegate_envelopes"].get("sustained_events_per_s") or 0
            if args.load_steps.strip() and max_rate:
                # Enough events for every step to last --step-seconds at its rate: a step cut
                # short by a small corpus measures little more than its start.
                need = sum(int(float(f) * max_rate * args.step_seconds) for f in args.load_steps.split(",") if f.strip())
                lat_evs = corpus.events(max(args.events, need), seed=8, size_mix=args.size_mix, pii_rate=args.pii_rate,
                                        violation_rate=args.violation_rate)
                k["latency"] = phase_latency(args, work, lat_evs, max_rate)
        if args.mode in ("collector", "both"):
            results["collector"] = phase_collector(args, work, evs)
    finally:
        delete_topics(args.bootstrap, topics)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = write_report(results, args.out)
    plot(results, args.out)
    print()
    print(text)
    log(f"written {args.out / 'results.json'}, {args.out / 'results.md'}, {args.out / 'throughput.png'}; work dir {work}")
    if not os.environ.get("TIDEGATE_BENCH_KEEP"):
        discard_work(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
