"""Shared fixtures of the micro-benchmarks: the corpus in every form, and an events/s summary.

Run explicitly (the default test run only collects ``tests/``)::

    .venv/bin/python -m pytest bench/test_micro.py --benchmark-only

``TIDEGATE_BENCH_EVENTS`` (default 10000) sets the events per measured round and
``TIDEGATE_BENCH_SIZE_MIX`` (default ``small``, ≈700 B; ``large`` ≈2 KB; or weights such as
``small:0.8,large:0.2``) the event sizes; ``TIDEGATE_BENCH_PII_RATE`` and
``TIDEGATE_BENCH_VIOLATION_RATE`` the planted shares.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

N = int(os.environ.get("TIDEGATE_BENCH_EVENTS", "10000"))
SIZE_MIX = os.environ.get("TIDEGATE_BENCH_SIZE_MIX", "small")
PII_RATE = float(os.environ.get("TIDEGATE_BENCH_PII_RATE", "0.10"))
VIOLATION_RATE = float(os.environ.get("TIDEGATE_BENCH_VIOLATION_RATE", "0.05"))
PARTITIONS = 4  # the config default: a 100-event request becomes ≈4 envelopes of ≈25 events

_RESULTS: dict[str, tuple[int, Any]] = {}


@dataclass(frozen=True)
class Corpus:
    events: list[dict[str, Any]]
    labels: list[corpus.Label]
    bodies: list[bytes]  # /v1/batch bodies, 100 events each
    envelopes: list[tuple[int, int, bytes]]  # (partition, count, payload)
    singles: list[bytes]  # one stamped event per message
    plan: dict[str, Any]

    @property
    def bytes_per_event(self) -> float:
        return sum(len(s) for s in self.singles) / len(self.singles)


@pytest.fixture(scope="session")
def data() -> Corpus:
    g = corpus.generate(N, seed=7, size_mix=SIZE_MIX, pii_rate=PII_RATE, violation_rate=VIOLATION_RATE)
    now = "2026-01-05T10:00:00.000Z"
    return Corpus(
        events=g.events,
        labels=g.labels,
        bodies=corpus.batch_bodies(g.events, 100),
        envelopes=corpus.envelopes(g.events, partitions=PARTITIONS, received_at=now),
        singles=[p for _, p in corpus.singles(g.events, received_at=now)],
        plan=corpus.load_plan(),
    )


@pytest.fixture
def record(benchmark: Any, request: pytest.FixtureRequest) -> Any:
    """``record(events)`` after ``benchmark(...)``: remember events per round for the summary."""

    def _record(events: int) -> None:
        benchmark.extra_info["events_per_round"] = events
        _RESULTS[request.node.name] = (events, benchmark)

    return _record


def _events_per_s(events: int, bench: Any) -> float | None:
    stats = getattr(bench, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return None
    median = stats.stats.median
    return events / median if median else None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    rates = {name: _events_per_s(n, b) for name, (n, b) in _RESULTS.items()}
    base = rates.get("test_baseline_python[all]")
    tr = terminalreporter
    tr.section(f"events/s (median round, {N} events/round, size mix {SIZE_MIX})")
    tr.write_line(f"{'benchmark':<44} {'events/s':>14} {'vs per-event Python':>20}")
    for name, rate in sorted(rates.items(), key=lambda kv: -(kv[1] or 0)):
        if rate is None:
            continue
        ratio = f"{rate / base:>19.1f}x" if base else ""
        tr.write_line(f"{name:<44} {rate:>14,.0f} {ratio:>20}")
    if base:
        tr.write_line("ratio = events/s of the row / events/s of test_baseline_python[all] "
                      "(json + fastjsonschema + re + sha256, per event)")
    peers = _peer_table(rates, {name: _median_per_event(n, b) for name, (n, b) in _RESULTS.items()})
    if peers:
        tr.section("issue 8 comparisons (same corpus, same run)")
        tr.write_line(f"{'comparison':<58} {'Tidegate ev/s':>14} {'peer ev/s':>12} {'ratio':>9} {'target':>8}")
        for row in peers:
            tr.write_line(f"{row['comparison']:<58} {row['tidegate']:>14,.0f} {row['peer']:>12,.0f} "
                          f"{row['ratio']:>8.1f}x {row['target']:>8}")
        tr.write_line("'stage only' = events / (median of the call with that stage - median of the call with no "
                      "policy): the stage's own time inside the batch call")
    commit = _git_commit()
    # A run of some benchmarks only (``-k``, one file) must not replace the full suite's results.
    name = "micro.json" if base else "micro-partial.json"
    out = Path(__file__).resolve().parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"events_per_round": N, "size_mix": SIZE_MIX, "events_per_s": rates,
                               "baseline": "test_baseline_python[all]", "comparisons": peers,
                               "git_commit": commit, "note": os.environ.get("TIDEGATE_BENCH_NOTE", ""),
                               "cpus": os.cpu_count()}, indent=2) + "\n")
    tr.write_line(f"written to {out} (commit {commit})")


def _median_per_event(events: int, bench: Any) -> float | None:
    stats = getattr(bench, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return None
    return stats.stats.median / events


def _git_commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _peer_table(rates: dict[str, float | None], per_event: dict[str, float | None]) -> list[dict[str, Any]]:
    """Issue 8's comparisons: Tidegate's batch call (whole, and the stage's own share) vs each peer."""
    rows: list[dict[str, Any]] = []

    def add(comparison: str, tg: float | None, peer: float | None, target: str) -> None:
        if tg and peer:
            rows.append({"comparison": comparison, "tidegate": tg, "peer": peer, "ratio": tg / peer, "target": target})

    def stage_only(name: str) -> float | None:
        a, b = per_event.get(name), per_event.get("test_govern_core")
        return 1 / (a - b) if a and b and a > b else None

    jrs, jrs_json = rates.get("test_peer_jsonschema_rs[parsed]"), rates.get("test_peer_jsonschema_rs[json]")
    plan = rates.get("test_govern_core_plan_only")
    add("validation: batch call, plan only vs jsonschema-rs per event", plan, jrs, "> 1x")
    add("validation: batch call, plan only vs json.loads + jsonschema-rs", plan, jrs_json, "> 1x")
    add("validation: stage only vs jsonschema-rs per event", stage_only("test_govern_core_plan_only"), jrs, "> 1x")
    pres, pii = rates.get("test_peer_presidio_patterns"), rates.get("test_govern_core_pii_only")
    add("PII: batch call, PII only vs Presidio patterns", pii, pres, ">= 100x")
    add("PII: stage only vs Presidio patterns", stage_only("test_govern_core_pii_only"), pres, ">= 100x")
    add("PII: batch call, PII only vs Python re baseline [pii]", pii, rates.get("test_baseline_python[pii]"), "")
    base = rates.get("test_baseline_python[all]")
    add("whole call (plan + PII) vs pure-Python baseline [all]", rates.get("test_govern_core_policy"), base, ">= 25x")
    add("whole call (plan + PII) vs baseline + layout [rows]", rates.get("test_govern_core_policy"),
        rates.get("test_baseline_python_rows"), "")
    return rows
