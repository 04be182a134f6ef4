"""`tidegate dry-run` reads its input as the collector would receive it: refusals name the line
of the file, a line is one event, the summary counts the file's lines and the blank ones skipped,
and a disabled source is refused up front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidegate.cli import main
from tidegate.config import load_config
from tidegate.dryrun import dry_run
from tidegate.errors import TidegateError

CONFIG = '''[sources.web]
write_key = "k"
[sources.legacy]
write_key = "old"
enabled = false
[regulations]
path = "reg"
[destinations.wh]
type = "duckdb"
path = "wh.duckdb"
'''


def page(message_id: str) -> str:
    return json.dumps({"type": "page", "userId": "u1", "messageId": message_id, "name": "Home"})


def run(tmp_path: Path, text: str) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
    """Dry-run ``text`` as the input file: the summary, the discards and the delivered ids."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    (tmp_path / "ev.ndjson").write_text(text)
    out = tmp_path / "out"
    assert main(["dry-run", "-c", str(cfg), "--input", str(tmp_path / "ev.ndjson"), "--out", str(out),
                 "--received-at", "2026-11-26T05:00:00Z"]) == 0
    discards = [json.loads(x) for x in (out / "discards.ndjson").read_text().splitlines()]
    delivered = {json.loads(x)["id"] for x in (out / "wh.ndjson").read_text().splitlines()}
    return json.loads((out / "summary.json").read_text()), discards, delivered


def test_refusals_name_the_line_of_the_file_when_there_are_blank_lines(tmp_path: Path) -> None:
    text = "\n".join([page("a1"), "", "   ", '{"type":"track","event":"X"}', page("a5"), "", "not json", ""]) + "\n"
    summary, discards, delivered = run(tmp_path, text)
    assert [(d["line"], d["reason"]) for d in discards] == [(4, "missing_identity"), (7, "malformed_json")]
    assert delivered == {"a1", "a5"}
    assert summary["input_lines"] == 8 and summary["blank_lines"] == 4 and summary["events"] == 4


@pytest.mark.parametrize("bad", [
    page("b1") + "," + page("b2"),                # two objects joined by a comma
    page("b1") + '],"extra":[' + page("b2"),      # closes the batch array, would swallow the next lines
])
def test_a_line_that_is_not_one_json_value_is_refused_alone(tmp_path: Path, bad: str) -> None:
    summary, discards, delivered = run(tmp_path, "\n".join([page("a1"), bad, page("a3")]) + "\n")
    assert delivered == {"a1", "a3"}
    assert [(d["kind"], d["line"], d["reason"], d["status"]) for d in discards] == [("request", 2, "malformed_json", 400)]
    assert "not one JSON value" in discards[0]["detail"] and discards[0]["event"] == bad
    assert summary["events"] == 3 and summary["accepted"] == 2 and summary["refused"] == {"malformed_json": 1}


def test_malformed_and_non_object_lines_keep_the_collectors_refusal(tmp_path: Path) -> None:
    text = "\n".join([page("a1"), "{nope", "[" + page("a3") + "]", page("a4")]) + "\n"
    summary, discards, delivered = run(tmp_path, text)
    assert delivered == {"a1", "a4"}
    assert [(d["line"], d["reason"], d["status"]) for d in discards] == [(2, "malformed_json", 400), (3, "not_an_object", 400)]
    assert discards[0]["detail"].startswith("request body is not valid JSON")


def test_a_disabled_source_is_refused_before_the_input_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    with pytest.raises(TidegateError, match=r"source 'legacy' is disabled"):
        dry_run(load_config(str(cfg)), tmp_path / "missing.ndjson", tmp_path / "out", source="legacy")
    assert not (tmp_path / "out").exists()
    assert main(["dry-run", "-c", str(cfg), "--input", str(tmp_path / "missing.ndjson"), "--out", str(tmp_path / "out"),
                 "--source", "legacy"]) == 2
    err = capsys.readouterr().err
    assert "'legacy' is disabled" in err and "cannot read --input" not in err


def test_the_summary_counts_the_lines_of_the_file_and_the_blank_ones(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lines = [page(f"a{i}") for i in range(10)]
    lines.insert(5, "")
    summary, _discards, delivered = run(tmp_path, "\n".join(lines) + "\n")
    assert "10 events read (11 lines, 1 blank skipped)" in capsys.readouterr().out
    assert (summary["input_lines"], summary["blank_lines"], summary["events"], len(delivered)) == (11, 1, 10, 10)


@pytest.mark.parametrize(("separator", "last"), [("\n", "\n"), ("\n", ""), ("\r\n", "\r\n")])
def test_without_blank_lines_with_any_line_ending(tmp_path: Path, capsys: pytest.CaptureFixture[str], separator: str,
                                                  last: str) -> None:
    summary, _discards, _delivered = run(tmp_path, separator.join(page(f"a{i}") for i in range(3)) + last)
    assert "3 events read (3 lines)," in capsys.readouterr().out
    assert (summary["input_lines"], summary["blank_lines"]) == (3, 0)


def test_whitespace_only_lines_are_blank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary, _discards, _delivered = run(tmp_path, f"\n  \n{page('a1')}\n\t\n{page('a2')}\n\n")
    assert "2 events read (6 lines, 4 blank skipped)" in capsys.readouterr().out
    assert (summary["input_lines"], summary["blank_lines"]) == (6, 4)
