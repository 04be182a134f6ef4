"""Replay the kept fuzzing corpus (fuzz/corpus) through the Rust entry points on every run, plus
the hostile inputs the governance issue names: each is classified, none crashes or hangs, and the
rest of the batch is unaffected."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tidegate import RequestRejected, _core

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))


def corpus(target: str) -> list[Path]:
    return sorted((ROOT / "fuzz" / "corpus" / target).iterdir())


def check_batch(data: bytes) -> None:
    gov = _core.Governance([], [], ([], [], "redact", b""))
    result = _core.process_batch([("s", 0, data, b"", b"")], None, gov)
    assert result.accepted + result.duplicates + sum(result.rejected_reasons.values()) == result.events_in


def check_ingest(data: bytes) -> None:
    try:
        envelopes = _core.ingest(data[1:], "batch" if data[:1] == b"x" else "track", "s", 0, 4, 32_768, 4_194_304, 10_000)
    except RequestRejected as e:
        assert e.status in (400, 404, 413)
        return
    assert all(0 <= p < 4 for p, _, _ in envelopes)


@pytest.mark.parametrize("path", corpus("batch"), ids=lambda p: p.name[:12])
def test_batch_corpus(path: Path) -> None:
    check_batch(path.read_bytes())


@pytest.mark.parametrize("path", corpus("ingest"), ids=lambda p: p.name[:12])
def test_ingest_corpus(path: Path) -> None:
    check_ingest(path.read_bytes())


GOOD = {"type": "track", "event": "Fine", "userId": "u", "messageId": "good"}
HOSTILE = {
    "deep_nesting": b'{"type":"track","userId":"u","properties":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}",
    "deep_array": b"[" * 10_000 + b"]" * 10_000,
    "ten_mb_string": json.dumps({"type": "track", "userId": "u", "event": "Big", "properties": {"s": "x" * 10_000_000}}).encode(),
    "invalid_utf8": b'{"type":"track","userId":"u","event":"\xff\xfe"}',
    "wrong_top_level": b'"just a string"',
    "nan": b'{"type":"track","userId":"u","properties":{"x":NaN}}',
    "infinity": b'{"type":"track","userId":"u","properties":{"x":Infinity}}',
    "duplicate_keys": b'{"type":"track","userId":"u","userId":"v","event":"Dup"}',
    "truncated": b'{"type":"track","userId":"u","event":',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_message_does_not_affect_the_rest_of_the_batch(name: str) -> None:
    gov = _core.Governance([], [], ([], [], "redact", b""))
    messages = [("s", 0, HOSTILE[name], b"", b""), ("s", 0, json.dumps([GOOD]).encode(), b"", b"")]
    result = _core.process_batch(messages, None, gov)
    assert result.accepted >= 1, "the good event still passes"
    assert result.accepted + sum(result.rejected_reasons.values()) == result.events_in
    if name in ("deep_nesting", "deep_array", "invalid_utf8", "nan", "infinity", "truncated"):
        assert sum(result.rejected_reasons.values()) >= 1, f"{name} is refused with a reason"
    tables = {t[0] for t in result.tables}
    assert "fine" in tables


@pytest.mark.parametrize("name", ["deep_nesting", "invalid_utf8", "nan", "truncated"])
def test_hostile_request_is_refused_cleanly(name: str) -> None:
    with pytest.raises(RequestRejected) as e:
        _core.ingest(HOSTILE[name], "track", "s", 0, 4, 32 * 1024 * 1024, 64 * 1024 * 1024, 10_000)
    assert e.value.status == 400 and e.value.message
