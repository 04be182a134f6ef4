"""`tidegate dry-run` and the streaming pipeline deliver the same events, with the same key
columns, to each destination, on the same input (consent, suppression, dedupe, PII included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import duckdb

from support import TIDEGATE, Stack, wait_until

EVENT_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")


def corpus() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(60):
        e: dict[str, Any] = {"userId": f"user-{i % 7}", "messageId": f"m-{i}", "context": {"library": {"name": "t"}}}
        kind = ("track", "track", "identify", "page", "track")[i % 5]
        e["type"] = kind
        if kind == "track":
            e.update(event="Order Completed", properties={"total": i + 0.25, "note": f"mail me at u{i}@example.com"})
        elif kind == "identify":
            e["traits"] = {"plan": "pro", "email": f"u{i}@example.com"}
        else:
            e["name"] = "Home"
        if i % 3 == 0:
            e["context"]["consentManagement"] = {"provider": "custom", "deniedConsentIds": ["ads"] if i % 2 else []}
        if i % 4 == 0:
            e["context"]["consent"] = {"categoryPreferences": {"Marketing": i % 8 == 0, "Analytics": True}}
        out.append(e)
    out += [dict(out[5]), dict(out[12])]  # redelivered by the client: duplicates
    return out


def keys_from_duckdb(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        ids = set()
        for t in EVENT_TABLES:
            if t in tables:
                ids |= set(con.execute(f"select id, user_id from {t}").fetchall())
        totals = set(con.execute("select id, total, note from order_completed").fetchall()) if "order_completed" in tables else set()
        return {"ids": ids, "totals": totals}
    finally:
        con.close()


def keys_from_dry_run(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return {"ids": {(r["id"], r["user_id"]) for r in rows},
            "totals": {(r["id"], r["total"], r["note"]) for r in rows if r["_table"] == "order_completed"}}


def test_dry_run_matches_the_stream(tmp_path: Path, kafka: str) -> None:
    stack = Stack(tmp_path, kafka, extra_toml="""
[destinations.marketing]
type = "duckdb"
path = "marketing.duckdb"
consent = { categories = ["Marketing"] }

[consent]
consents = ["ads"]

[pii.actions]
email = "redact"
""")
    events = corpus()
    (tmp_path / "events.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))
    run = lambda *a: subprocess.run([*TIDEGATE, *a, "-c", str(stack.config_path)], capture_output=True,  # noqa: E731
                                    text=True, cwd=tmp_path, timeout=120)
    r = run("regulate", "suppress", "user-3")
    assert r.returncode == 0, r.stderr
    r = run("dry-run", "--input", "events.ndjson", "--out", "dry", "--source", "web")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "dry" / "summary.json").read_text())
    expected = {name: d["events"] for name, d in summary["destinations"].items()}
    assert summary["duplicates"] == 2 and summary["suppressed"] > 0
    assert summary["destinations"]["warehouse"]["consent_dropped"] > 0
    assert summary["destinations"]["marketing"]["consent_dropped"] > 0
    assert summary["pii_actions"]["email"]["redact"] > 0
    assert 0 < expected["marketing"] < 60 and 0 < expected["warehouse"] < 60 and expected["marketing"] != expected["warehouse"]

    try:
        stack.start_collector()
        stack.start_pipeline()
        assert stack.post("/v1/batch", {"batch": events})[0] == 200
        wait_until(lambda: all(stack.metric("tidegate_sink_events_total", destination=n, outcome="delivered") >= want
                               for n, want in expected.items()), 60, "the stream delivered what the dry run predicts")
        assert stack.stop_pipeline() == 0
    finally:
        stack.stop()
    for name in ("warehouse", "marketing"):
        streamed = keys_from_duckdb(tmp_path / f"{name}.duckdb")
        dry = keys_from_dry_run(tmp_path / "dry" / f"{name}.ndjson")
        assert streamed == dry, name
        assert len(streamed["ids"]) == expected[name]
        assert not any(uid == "user-3" for _, uid in streamed["ids"])
        assert all("@example.com" not in (note or "") for _, _, note in streamed["totals"])
