"""`tidegate status` (scraping /metrics) and the Grafana dashboard over the same series."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest

from tidegate import archive, load_config, metrics, status  # noqa: F401 - archive registers its metrics
from tidegate.cli import build_parser, main
from tidegate.health import serve_health
from tidegate.status import Samples, StatusView, histogram_quantile, render

ROOT = Path(__file__).resolve().parents[2]

COLLECTOR = """
# TYPE tidegate_collector_events_total counter
tidegate_collector_events_total{source="web",outcome="accepted"} 90
tidegate_collector_events_total{source="web",outcome="invalid_json"} 4
tidegate_collector_events_total{source="server",outcome="accepted"} 10
"""
PIPELINE = """
# TYPE tidegate_sink_events_total counter
tidegate_sink_events_total{destination="warehouse",outcome="delivered"} 95
tidegate_sink_events_total{destination="warehouse",outcome="failed"} 5
# TYPE tidegate_pipeline_events_total counter
tidegate_pipeline_events_total{stage="govern",outcome="accepted"} 95
tidegate_pipeline_events_total{stage="govern",outcome="tracking_plan"} 3
tidegate_pipeline_events_total{stage="dedupe",outcome="duplicate"} 2
# TYPE tidegate_policy_violations_total counter
tidegate_policy_violations_total{source="web",type="Unplanned-Event",action="drop"} 3
# TYPE tidegate_pii_actions_total counter
tidegate_pii_actions_total{class="email",action="redact"} 7
# TYPE tidegate_end_to_end_latency_seconds histogram
tidegate_end_to_end_latency_seconds_bucket{destination="warehouse",le="0.1"} 50
tidegate_end_to_end_latency_seconds_bucket{destination="warehouse",le="1.0"} 99
tidegate_end_to_end_latency_seconds_bucket{destination="warehouse",le="+Inf"} 100
tidegate_end_to_end_latency_seconds_count{destination="warehouse"} 100
tidegate_end_to_end_latency_seconds_sum{destination="warehouse"} 20
"""


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(status)
    assert tried and not failed


def test_quantiles_like_prometheus() -> None:
    buckets = [(0.1, 50), (1.0, 99), (float("inf"), 100)]
    assert histogram_quantile(0.5, buckets) == 0.1
    assert histogram_quantile(0.99, buckets) == 1.0
    assert histogram_quantile(0.5, []) is None


def test_render_shows_sources_destinations_and_policy() -> None:
    view = StatusView("http://c", "http://p", Samples.parse(COLLECTOR), Samples.parse(PIPELINE), lag={0: 3, 1: 0})
    text = render(view)
    web = next(line for line in text.splitlines() if line.strip().startswith("web"))
    assert web.split() == ["web", "94", "90", "4", "3"]
    assert "refused by reason: invalid_json 4" in text
    wh = next(line for line in text.splitlines() if line.strip().startswith("warehouse"))
    assert wh.split() == ["warehouse", "95", "5", "0.100s", "1.000s"]
    assert "duplicates dropped 2" in text and "tracking_plan 3" in text
    assert "Unplanned-Event (drop) 3" in text and "email:redact 7" in text
    assert "Consumer lag: 3 messages (p0:3 p1:0)" in text


def test_status_scrapes_a_live_metrics_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = serve_health("127.0.0.1", 0, lambda: True)
    port = server.server_address[1]
    try:
        metrics.sink.events.labels("status-check", "delivered").inc(3)
        cfg = tmp_path / "t.toml"
        cfg.write_text(f'[collector]\nport = 9\n[pipeline]\nmetrics_port = {port}\n[sources.web]\nwrite_key = "k"\n'
                       '[destinations.w]\ntype = "duckdb"\n')
        assert main(["status", "-c", str(cfg), "--no-lag"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"status-check\s+3\s+0", out)
        assert "collector not reachable" in out
    finally:
        server.shutdown()
        server.server_close()


def test_status_exits_1_when_nothing_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[collector]\nport = 9\n[pipeline]\nmetrics_port = 9\n[sources.web]\nwrite_key = "k"\n'
                   '[destinations.w]\ntype = "duckdb"\n')
    assert main(["status", "-c", str(cfg), "--no-lag"]) == 1
    assert "pipeline not reachable" in capsys.readouterr().out


def test_dashboard_uses_only_metrics_that_exist() -> None:
    dash = json.loads((ROOT / "deploy" / "grafana" / "tidegate-dashboard.json").read_text())
    known = set()
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            known.add(s.name)
        known.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            known.update({family.name + "_bucket", family.name + "_count", family.name + "_sum"})
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"tidegate_\w+", t["expr"])}
    assert used and used <= known, used - known
    families = {f.name for f in metrics.REGISTRY.collect()}
    covered = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in used}
    assert families <= covered, f"add a panel to deploy/grafana/tidegate-dashboard.json for {families - covered}"


@pytest.mark.parametrize("argv", [["replay"], ["plan"], ["apply"], ["audit"], ["audit", "log"], ["audit", "verify"], ["status"]])
def test_every_new_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: tidegate " + " ".join(argv) in capsys.readouterr().out


def test_missing_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
