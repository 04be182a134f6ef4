"""Every stage and sink emits its standard metrics (one shared check)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import generate_latest

from tidegate import metrics
from tidegate.config import DuckDBDestination
from tidegate.sinks import SINK_TYPES, DuckDBSink, deliver
from tidegate.stages import decode_messages, govern
from tidegate.stages.identity import IdentityResolver

ROOT = Path(__file__).resolve().parents[2]

STAGE_SERIES = {
    "decode": 'tidegate_pipeline_stage_seconds_count{stage="decode"}',
    "govern": 'tidegate_pipeline_stage_seconds_count{stage="govern"}',
    "identity": 'tidegate_pipeline_stage_seconds_count{stage="identity"}',
}
SINK_SERIES = [
    'tidegate_sink_events_total{destination="%s",outcome="delivered"}',
    'tidegate_sink_write_seconds_count{destination="%s"}',
    'tidegate_sink_rows_total{destination="%s",table="tracks"}',
    'tidegate_end_to_end_latency_seconds_count{destination="%s"}',
]


def sample(name: str) -> float:
    for line in generate_latest(metrics.REGISTRY).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_stages_and_sinks_emit_standard_metrics(tmp_path: Path) -> None:
    before = {k: sample(v) for k, v in STAGE_SERIES.items()}
    env = json.dumps({"v": 1, "source": "web", "receivedAt": "x", "events": [
        {"type": "track", "event": "A", "userId": "u", "messageId": "m1", "receivedAt": "2026-11-26T05:30:44.000Z"}]}).encode()
    batch = IdentityResolver().process(govern(decode_messages([(env, 0, None)])))
    for k, v in STAGE_SERIES.items():
        assert sample(v) > before[k], f"stage {k} emitted nothing"
    # Only DuckDB runs without services here; every other registered sink type's integration test
    # calls sink_support.assert_standard_metrics on the same series (checked below).
    assert DuckDBDestination in SINK_TYPES
    for cfg_type in SINK_TYPES:
        tag = cfg_type.__struct_config__.tag
        if tag != "duckdb":
            test = ROOT / "tests" / "integration" / f"test_sink_{tag}.py"
            assert test.exists() and "assert_standard_metrics" in test.read_text(), \
                f"the {tag} sink has no integration test checking its standard metrics"
    s = DuckDBSink("metrics-check", DuckDBDestination(path=str(tmp_path / "m.duckdb")))
    s.setup()
    deliver(s, batch)
    s.close()
    for series in SINK_SERIES:
        assert sample(series % "metrics-check") >= 1, series


def test_observe_many_matches_observe() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    reg = CollectorRegistry()
    a = Histogram("a", "a", buckets=(0.1, 1, 10), registry=reg)
    b = Histogram("b", "b", buckets=(0.1, 1, 10), registry=reg)
    values = [0.05, 0.1, 0.5, 1.0, 3, 20, 0.2]
    for v in values:
        a.observe(v)
    metrics.observe_many(b, pl.Series(values))
    dump = generate_latest(reg).decode()
    def series(prefix: str) -> dict[str, float]:
        return {line.split()[0][1:]: float(line.split()[1]) for line in dump.splitlines()
                if line.startswith(prefix) and "created" not in line}

    a, b = series("a_"), series("b_")
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) < 1e-9, k


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    import socket

    from tidegate.errors import TidegateError
    from tidegate.health import serve_health

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TidegateError, match=f"cannot listen on 127.0.0.1:{port}: .*set pipeline.metrics_port"):
            serve_health("127.0.0.1", port, lambda: True)
