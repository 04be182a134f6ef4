"""`tidegate dry-run` without services, and the help of the new commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidegate.cli import build_parser, main

CONFIG = '''[sources.web]
write_key = "k"
[consent]
consents = ["ads"]
[regulations]
path = "reg"
[destinations.wh]
type = "duckdb"
path = "wh.duckdb"
[destinations.hook]
type = "webhook"
url = "http://127.0.0.1:9/x"
consent = { categories = ["Marketing"] }
'''

EVENTS = [
    {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "a1", "properties": {"total": 3},
     "context": {"consentManagement": {"deniedConsentIds": ["ads"]}}},
    {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": "a2",
     "context": {"consent": {"categoryPreferences": {"Marketing": False}}}},
    {"type": "identify", "userId": "u3", "messageId": "a3", "traits": {"plan": "pro"}},
    {"type": "identify", "userId": "u3", "messageId": "a3", "traits": {"plan": "pro"}},
    {"type": "page", "userId": "u9", "messageId": "a9"},
]


def test_dry_run_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    (tmp_path / "ev.ndjson").write_text("".join(json.dumps(e) + "\n" for e in EVENTS) + '{"type":"track","event":"X"}\nnot json\n')
    assert main(["regulate", "suppress", "u9", "-c", str(cfg)]) == 0
    out = tmp_path / "out"
    assert main(["dry-run", "-c", str(cfg), "--input", str(tmp_path / "ev.ndjson"), "--out", str(out),
                 "--received-at", "2026-11-26T05:00:00Z"]) == 0
    rows = {name: [json.loads(x) for x in (out / f"{name}.ndjson").read_text().splitlines()] for name in ("wh", "hook")}
    assert {(r["_table"], r["id"]) for r in rows["wh"]} == {("order_completed", "a2"), ("identifies", "a3")}
    assert {(r["_table"], r["id"]) for r in rows["hook"]} == {("order_completed", "a1"), ("identifies", "a3")}
    assert all(r["received_at"].startswith("2026-11-26T05:00:00") for r in rows["wh"])
    discards = [json.loads(x) for x in (out / "discards.ndjson").read_text().splitlines()]
    assert {(d["kind"], d["reason"]) for d in discards} == {("request", "missing_identity"), ("request", "malformed_json")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duplicates"] == 1 and summary["suppressed"] == 1 and summary["events"] == 7
    assert summary["destinations"]["wh"]["events"] == 2 and summary["destinations"]["wh"]["consent_dropped"] == 1
    assert summary["destinations"]["hook"]["consent_dropped"] == 1
    assert summary["refused"] == {"missing_identity": 1, "malformed_json": 1}


def test_dry_run_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    assert main(["dry-run", "-c", str(cfg), "--input", str(tmp_path / "missing.ndjson"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read --input" in capsys.readouterr().err
    (tmp_path / "e.ndjson").write_text("")
    assert main(["dry-run", "-c", str(cfg), "--input", str(tmp_path / "e.ndjson"), "--out", str(tmp_path / "o"),
                 "--source", "nope"]) == 2
    assert "unknown source 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["regulate"], ["regulate", "suppress"], ["regulate", "unsuppress"], ["regulate", "delete"],
                                  ["regulate", "list"], ["dlq"], ["dlq", "list"], ["dlq", "replay"], ["dry-run"]])
def test_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0 and "usage: tidegate" in capsys.readouterr().out
