"""Micro-benchmarks per stage on the standard corpus (pytest-benchmark). Not part of the default
test run; run with::

    .venv/bin/python -m pytest bench/test_micro.py --benchmark-only

Every benchmark processes the same ``N`` corpus events per round; the summary at the end prints
events/s and the ratio to the per-event pure-Python baseline (``test_baseline_python[all]``).
Nothing is asserted about speed: the numbers are for reading, not for passing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import baseline
from conftest import PARTITIONS, Corpus

from tidegate import _core
from tidegate.config import DuckDBDestination
from tidegate.sinks.duckdb import DuckDBSink
from tidegate.stages import decode_messages, govern
from tidegate.stages.decode import split_message

LIMITS = (32 * 1024, 4 * 1024 * 1024, 10_000)  # the collector defaults: event, request, batch events
KAFKA_TS_MS = 1_767_607_200_000


def _messages(c: Corpus) -> list[tuple[bytes, int, None]]:
    return [(payload, KAFKA_TS_MS, None) for _, _, payload in c.envelopes]


# -- collector ---------------------------------------------------------------------------------
def test_collector_ingest(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.ingest`` over /v1/batch bodies of 100 events (what the collector does per request,
    without HTTP and Kafka)."""
    now_us = time.time_ns() // 1000

    def run() -> int:
        n = 0
        for body in data.bodies:
            n += sum(count for _, count, _ in _core.ingest(body, "batch", "web", now_us, PARTITIONS, *LIMITS))
        return n

    assert benchmark(run) == len(data.events)
    record(len(data.events))


# -- pipeline stages ---------------------------------------------------------------------------
def test_decode(benchmark: Any, record: Any, data: Corpus) -> None:
    """``stages.decode.decode_messages`` over the envelopes (msgspec, one step per envelope)."""
    msgs = _messages(data)
    out = benchmark(decode_messages, msgs)
    assert out.envelopes == len(msgs)
    record(len(data.events))


# -- admission: hash, dedupe, reconcile (per raw-topic message, before the batch stages) ---------
def _split(c: Corpus) -> list[tuple[str, Any]]:
    """(source, events JSON) of each envelope, as the admission step gets them."""
    return [split_message(payload, None)[:2] for _, _, payload in c.envelopes]


def test_hash(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.message_index`` per message: every event's idempotency key (xxh3-128 over
    ``source`` + ``messageId``, or over the canonical event without one) and event time."""
    msgs = _split(data)
    kafka_us = KAFKA_TS_MS * 1000

    def run() -> int:
        return sum(len(_core.message_index(source, events, kafka_us)[0]) // 16 for source, events in msgs)

    assert benchmark(run) == len(data.events)
    record(len(data.events))


class _Checkpoints:
    """A real Quix Streams RocksDB state partition (what the pipeline's admission step uses),
    fresh for every round, one transaction per round as one checkpoint."""

    def __init__(self, root: Path):
        self.root = root
        self.rounds = iter(range(10_000))
        self.partitions: list[Any] = []

    def state(self) -> tuple[Any, Any]:
        from quixstreams.state.rocksdb import RocksDBStorePartition

        partition = RocksDBStorePartition(str(self.root / f"state{next(self.rounds)}"))
        self.partitions.append(partition)
        tx = partition.begin()
        return tx, tx.as_state(prefix=b"web", timestamp=KAFKA_TS_MS)

    def close(self) -> None:
        for p in self.partitions:
            p.close()


@pytest.mark.parametrize("repeats", ["new", "redelivered"])
def test_dedupe(benchmark: Any, record: Any, data: Corpus, tmp_path: Path, repeats: str) -> None:
    """``stages.dedupe.Dedupe.flags`` per message on a RocksDB state, then the checkpoint's
    ``persist`` and commit: ``new`` keys (every event remembered), or the whole corpus
    ``redelivered`` after a first checkpoint (every event flagged as a repeat)."""
    from tidegate.stages.dedupe import Dedupe

    kafka_us = KAFKA_TS_MS * 1000
    keys = [_core.message_index(source, events, kafka_us)[0] for source, events in _split(data)]
    checkpoints = _Checkpoints(tmp_path)

    def checkpoint(dedupe: Dedupe, tx: Any, state: Any) -> bytes:
        flags = b"".join(dedupe.flags(k, kafka_us, state, (0, b"web")) for k in keys)
        dedupe.persist()
        tx.prepare()
        tx.flush()
        return flags

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        dedupe = Dedupe(window_s=24 * 3600)
        tx, state = checkpoints.state()
        if repeats == "redelivered":
            checkpoint(dedupe, tx, state)
            tx = checkpoints.partitions[-1].begin()
            state = tx.as_state(prefix=b"web", timestamp=KAFKA_TS_MS)
        return (dedupe, tx, state), {}

    try:
        flags = benchmark.pedantic(checkpoint, setup=setup, rounds=5, iterations=1)
    finally:
        checkpoints.close()
    repeated = sum(flags)
    assert len(flags) == len(data.events)
    assert repeated == len(data.events) if repeats == "redelivered" else repeated < len(data.events) * 0.01
    record(len(data.events))


def test_reconcile(benchmark: Any, record: Any, data: Corpus, tmp_path: Path) -> None:
    """``stages.reconcile.Reconcile.lateness`` per message on a RocksDB state: each event's
    lateness against the partition's watermark, which moves forward."""
    from tidegate.stages.reconcile import Reconcile

    kafka_us = KAFKA_TS_MS * 1000
    times = [_core.message_index(source, events, kafka_us)[1] for source, events in _split(data)]
    reconcile = Reconcile(allowed_lateness_s=3600)
    checkpoints = _Checkpoints(tmp_path)

    def run(state: Any) -> int:
        return sum(len(reconcile.lateness(t, kafka_us, state)) // 8 for t in times)

    try:
        n = benchmark.pedantic(run, setup=lambda: ((checkpoints.state()[1],), {}), rounds=5, iterations=1)
    finally:
        checkpoints.close()
    assert n == len(data.events)
    record(len(data.events))


def test_govern_core(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.process_batch`` alone: one Rust call for the whole batch of envelopes."""
    decoded = decode_messages(_messages(data)).messages
    result = benchmark(_core.process_batch, decoded, [("tidegate_config_version", "bench")])
    assert result.events_in == len(data.events)
    record(len(data.events))


def _policy(c: Corpus) -> Any:
    """The bench plan on source ``web`` (violations forwarded) and PII with the product defaults."""
    from tidegate.config import PiiConfig

    pii = PiiConfig()
    return _core.Governance([("bench", json.dumps(c.plan).encode())], [("web", "bench", [])],
                            (list(_core.DEFAULT_SENSITIVE_KEYS), sorted(pii.actions.items()), pii.default_action, b""))


def test_govern_core_policy(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.process_batch`` with the tracking plan and PII policy: the full governance call
    (decode + validate + PII scan + hash + layout), comparable to ``test_baseline_python_rows``."""
    decoded = decode_messages(_messages(data)).messages
    policy = _policy(data)
    result = benchmark(_core.process_batch, decoded, [("tidegate_config_version", "bench")], policy)
    assert result.events_in == len(data.events)
    record(len(data.events))


# -- issue 8 peer comparisons: one stage at a time, same corpus, same run ----------------------
def _pii_tuple() -> tuple[Any, ...]:
    from tidegate.config import PiiConfig

    pii = PiiConfig()
    return (list(_core.DEFAULT_SENSITIVE_KEYS), sorted(pii.actions.items()), pii.default_action, b"")


def test_govern_core_plan_only(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.process_batch`` with the tracking plan only (PII off): Tidegate's validation stage,
    inside the whole batch call (decode + envelope checks + validate + hash + layout)."""
    decoded = decode_messages(_messages(data)).messages
    policy = _core.Governance([("bench", json.dumps(data.plan).encode())], [("web", "bench", [])], None)
    result = benchmark(_core.process_batch, decoded, [("tidegate_config_version", "bench")], policy)
    assert result.events_in == len(data.events)
    record(len(data.events))


def test_govern_core_pii_only(benchmark: Any, record: Any, data: Corpus) -> None:
    """``_core.process_batch`` with PII detection only (no plan, product default actions):
    Tidegate's PII stage inside the whole batch call."""
    decoded = decode_messages(_messages(data)).messages
    policy = _core.Governance([], [], _pii_tuple())
    result = benchmark(_core.process_batch, decoded, [("tidegate_config_version", "bench")], policy)
    assert result.events_in == len(data.events)
    record(len(data.events))


@pytest.mark.parametrize("input_", ["parsed", "json"])
def test_peer_jsonschema_rs(benchmark: Any, record: Any, data: Corpus, input_: str) -> None:
    """jsonschema-rs called per event from Python against the same plan schemas (common + event /
    identify schema, all errors collected). ``parsed``: on dicts parsed beforehand (favours the
    peer); ``json``: ``json.loads`` of each single-event message first, as a consumer must."""
    pytest.importorskip("jsonschema_rs")
    import peers

    v = peers.JsonschemaRsPlan(data.plan)
    parsed = [json.loads(s) for s in data.singles]
    assert sum(1 for e in parsed if v.validate(e)) > 0  # the planted violations are found
    if input_ == "parsed":
        def run() -> int:
            return sum(1 for e in parsed if v.validate(e) is not None)
    else:
        def run() -> int:
            return sum(1 for s in data.singles if v.validate(json.loads(s)) is not None)
    assert benchmark(run) == len(data.events)
    record(len(data.events))


PRESIDIO_EVENTS = int(os.environ.get("TIDEGATE_BENCH_PRESIDIO_EVENTS", "1000"))


def test_peer_presidio_patterns(benchmark: Any, record: Any, data: Corpus) -> None:
    """Presidio's predefined recognizers without an NLP model (email, phone, credit card, US SSN,
    IBAN, IP) over every string of every (pre-parsed) event. It is slow, so it runs on the first
    ``TIDEGATE_BENCH_PRESIDIO_EVENTS`` (default 1000) corpus events, 3 rounds; events/s is per
    event processed, so it stays comparable with the rows that process the whole corpus."""
    pytest.importorskip("presidio_analyzer")
    import peers

    scanner = peers.PresidioPatterns()
    parsed = [json.loads(s) for s in data.singles[:PRESIDIO_EVENTS]]
    assert sum(1 for e in parsed if scanner.scan(e)) > 0  # it does find the planted PII

    def run() -> int:
        n = 0
        for e in parsed:
            scanner.scan(e)
            n += 1
        return n

    assert benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0) == len(parsed)
    record(len(parsed))


def test_govern_stage(benchmark: Any, record: Any, data: Corpus) -> None:
    """``stages.govern.govern``: the Rust call plus turning its NDJSON buffers into polars frames."""
    decoded = decode_messages(_messages(data))
    batch = benchmark(govern, decoded, config_version="bench")
    assert batch.events_in == len(data.events)
    record(len(data.events))


@pytest.mark.parametrize("batch_events", [100, 1000])
def test_govern_core_small_batches(benchmark: Any, record: Any, data: Corpus, batch_events: int) -> None:
    """The same events in batches of ``batch_events``: the per-call overhead at low load."""
    decoded = decode_messages(_messages(data)).messages
    per_env = max(1, len(data.events) // len(decoded))
    step = max(1, batch_events // per_env)
    chunks = [decoded[i:i + step] for i in range(0, len(decoded), step)]

    def run() -> int:
        return sum(_core.process_batch(chunk, [("tidegate_config_version", "bench")]).events_in for chunk in chunks)

    assert benchmark(run) == len(data.events)
    record(len(data.events))


def _sink(path: Path) -> DuckDBSink:
    sink = DuckDBSink("bench", DuckDBDestination(path=str(path)))
    sink.setup()
    return sink


def test_duckdb_write(benchmark: Any, record: Any, data: Corpus, tmp_path: Path) -> None:
    """``DuckDBSink.write`` of one governed batch into a warm file (tables exist; new ids)."""
    import corpus

    warm = govern(decode_messages([(p, KAFKA_TS_MS, None) for _, _, p in corpus.envelopes(
        corpus.events(2000, seed=99), partitions=PARTITIONS, received_at="2026-01-05T10:00:00.000Z")]))
    batch = govern(decode_messages(_messages(data)), config_version="bench")
    rounds = iter(range(1000))
    sinks: list[DuckDBSink] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        sink = _sink(tmp_path / f"w{next(rounds)}.duckdb")
        sink.write(warm)
        sinks.append(sink)
        return (batch,), {}

    def run(b: Any) -> None:
        sinks[-1].write(b)

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    assert sum(v for k, v in sinks[-1].row_counts().items() if k in ("tracks", "pages", "screens", "identifies",
                                                                      "groups", "aliases")) >= len(data.events) * 0.9
    for s in sinks:
        s.close()
    record(len(data.events))


def test_pipeline_batch(benchmark: Any, record: Any, data: Corpus, tmp_path: Path) -> None:
    """What ``GovernedSink.write`` does per checkpoint without Kafka: decode -> govern -> DuckDB."""
    msgs = _messages(data)
    rounds = iter(range(1000))
    sinks: list[DuckDBSink] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        sinks.append(_sink(tmp_path / f"p{next(rounds)}.duckdb"))
        return (msgs,), {}

    def run(m: Any) -> None:
        sinks[-1].write(govern(decode_messages(m), config_version="bench"))

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    for s in sinks:
        s.close()
    record(len(data.events))


# -- the per-event pure-Python baseline --------------------------------------------------------
@pytest.mark.parametrize("stage", ["all", "json", "validate", "pii", "hash"])
def test_baseline_python(benchmark: Any, record: Any, data: Corpus, stage: str) -> None:
    """What a user writes without Tidegate, per event: ``json.loads`` + fastjsonschema against the
    plan + ``re`` PII patterns + sha256 key (``all``), and each part alone on parsed events."""
    gov = baseline.PythonGovernance(data.plan)
    parsed = [json.loads(s) for s in data.singles]
    if stage == "all":
        def run() -> int:
            return sum(1 for s in data.singles if gov.process(s, "web").event is not None)
    elif stage == "json":
        def run() -> int:
            return sum(1 for s in data.singles if json.loads(s))
    elif stage == "validate":
        def run() -> int:
            return sum(1 for e in parsed if gov.validate(e) is not None)
    elif stage == "pii":
        def run() -> int:
            n = 0
            for e in parsed:
                found: list[tuple[str, str]] = []
                baseline.scan_pii(e, "$", found)
                n += 1
            return n
    else:
        def run() -> int:
            return sum(1 for e in parsed if gov.key("web", e))
    assert benchmark(run) == len(data.events)
    record(len(data.events))


def test_baseline_python_rows(benchmark: Any, record: Any, data: Corpus) -> None:
    """The baseline plus the warehouse layout in Python (what ``_core.process_batch`` also does)."""
    gov = baseline.PythonGovernance(data.plan)
    extra = {"tidegate_config_version": "bench"}

    def run() -> int:
        n = 0
        for s in data.singles:
            g = gov.process(s, "web")
            if g.event is not None:
                n += len(baseline.flatten_rows(g, "web", extra)) > 0
        return n

    assert benchmark(run) == len(data.events)
    record(len(data.events))
