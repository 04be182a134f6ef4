"""The command line's counts read as English: "1 destination", "(1 problem)", "2 entries"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate import load_config
from tidegate.audit import AuditLog, apply
from tidegate.cli import counted, main


def test_counted() -> None:
    assert [counted(n, "event") for n in (0, 1, 2)] == ["0 events", "1 event", "2 events"]
    assert counted(1, "entry", "entries") == "1 entry" and counted(3, "entry", "entries") == "3 entries"


def write_config(tmp_path: Path) -> Path:
    p = tmp_path / "tidegate.toml"
    p.write_text('[sources.web]\nwrite_key = "k"\n[regulations]\npath = "reg"\n[audit]\npath = "audit"\n'
                 '[destinations.wh]\ntype = "duckdb"\npath = "wh.duckdb"\n')
    return p


def test_validate_says_1_source_1_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(write_config(tmp_path))]) == 0
    assert "; 1 source, 1 destination)" in capsys.readouterr().out


def test_audit_verify_says_1_problem_and_1_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    apply(load_config(path, env={}), message="first")
    assert main(["audit", "verify", "-c", str(path)]) == 0
    assert ", 1 entry, chain intact" in capsys.readouterr().out
    log = AuditLog(load_config(path, env={}).audit.path).path
    log.write_text(log.read_text().replace('"message":"first"', '"message":"edited"'))
    assert main(["audit", "verify", "-c", str(path)]) == 1
    assert "verification FAILED (1 problem)" in capsys.readouterr().err


def test_regulate_list_says_1_user_1_entry_1_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["regulate", "delete", "u1", "-c", str(path)]) == 0
    capsys.readouterr()
    assert main(["regulate", "list", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "suppressions.json: 1 user\n" in out and "deletions.jsonl: 1 entry\n" in out
    assert "wh.-: 0 rows" in out
