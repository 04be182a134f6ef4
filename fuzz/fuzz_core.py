"""Fuzz the Rust core's two batch entry points with atheris (coverage-guided, libFuzzer).

    python fuzz/fuzz_core.py batch  fuzz/corpus/batch  -max_total_time=60
    python fuzz/fuzz_core.py ingest fuzz/corpus/ingest -max_total_time=60

Any exception other than the documented refusal (`RequestRejected` from `ingest`) or a crash is
a finding. `tests/unit/test_fuzz_corpus.py` replays the kept corpus in every test run.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from tidegate import RequestRejected, _core

GOV = None


def _governance():
    global GOV
    if GOV is None:
        plan = b'{"id":"p","version":1,"events":{"A":{"properties":{"properties":{"type":"object","required":["x"]}}}}}'
        GOV = _core.Governance([("p", plan)], [("s", "p", ["Unplanned-Event"])],
                               ([], [], "redact", b""))
    return GOV


def check_batch(data: bytes) -> None:
    dups = data[:4]
    late = (data[4:12] * 4)[: (len(data[4:12]) * 4) // 8 * 8]
    result = _core.process_batch([("s", 0, data, dups, late), ("s", 1, data[::-1], b"", b"")], None, _governance())
    assert result.accepted + result.duplicates + sum(result.rejected_reasons.values()) == result.events_in


def check_ingest(data: bytes) -> None:
    endpoint = ["batch", "track", "identify", "page"][data[0] % 4] if data else "batch"
    try:
        envelopes = _core.ingest(data[1:], endpoint, "s", 0, 4, 32_768, 4_194_304, 10_000)
    except RequestRejected as e:
        assert e.status in (400, 404, 413) and e.message
        return
    assert envelopes and all(0 <= p < 4 and n > 0 for p, n, _ in envelopes)


TARGETS = {"batch": check_batch, "ingest": check_ingest}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(__doc__)
        raise SystemExit(2)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[sys.argv[1]])
    atheris.Fuzz()
