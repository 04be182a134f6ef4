"""`tidegate replay` checks its arguments before it says what it replays, and an error names the
user's config file (not the stored applied copy), saying that the applied config governs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate import load_config
from tidegate.audit import apply
from tidegate.cli import main

RANGE = ["--from", "2026-11-26", "--to", "2026-11-27"]


def write_config(tmp: Path, extra: str = "") -> Path:
    p = tmp / "tidegate.toml"
    p.write_text('[sources.web]\nwrite_key = "k1"\n[audit]\npath = "audit"\n'
                 '[destinations.warehouse]\ntype = "duckdb"\npath = "warehouse.duckdb"\n' + extra)
    return p


def test_unknown_destination_is_refused_before_the_header_naming_the_users_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    cfg = load_config(path, env={})
    apply(cfg)
    assert main(["replay", "-c", str(path), *RANGE, "--destination", "nope"]) == 2
    out, err = capsys.readouterr()
    assert "replaying" not in out
    assert f"{path}: [destinations] unknown destination 'nope'" in err
    assert f"replay governs by the applied config (version {cfg.version}), which has: warehouse" in err
    assert "applied/0" not in err  # not the stored copy


def test_a_destination_not_applied_yet_says_to_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    apply(load_config(path, env={}))
    path.write_text(path.read_text() + '[destinations.lake]\ntype = "duckdb"\npath = "lake.duckdb"\n')
    assert main(["replay", "-c", str(path), *RANGE, "--destination", "lake"]) == 2
    out, err = capsys.readouterr()
    assert "replaying" not in out
    assert f"{path}: [destinations] destination 'lake' is in this file but not applied yet" in err
    assert f"run `tidegate apply -c {path}` first" in err


def test_unknown_source_and_bad_range_are_refused_before_the_header(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["replay", "-c", str(path), *RANGE, "--source", "app"]) == 2
    out, err = capsys.readouterr()
    assert "replaying" not in out and f"{path}: [sources] unknown source 'app'; configured: web" in err
    assert main(["replay", "-c", str(path), "--from", "2026-11-27", "--to", "2026-11-26"]) == 2
    out, err = capsys.readouterr()
    assert "replaying" not in out and "must be before --to" in err
