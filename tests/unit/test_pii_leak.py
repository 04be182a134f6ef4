"""The leak test: events carrying every PII class, in every place an event can hold text, go to
destinations with different PII actions; no class configured `redact`, `hash`, `drop_field` or
`block_event` ever reaches a destination in clear — on the stream path and on re-delivery (dead
letters and replay re-run the raw messages through the same policy path)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from tidegate import load_config
from tidegate.config import DuckDBDestination
from tidegate.sinks import DuckDBSink, deliver
from tidegate.stages import PolicyPath, decode_messages

VALUES = {
    "email": ["ana.lima@example.com", "Bob+news@mail.example.org"],
    "phone": ["+1 415-555-0123", "+44 20 7946 0958"],
    "credit_card": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
    "ssn": ["123-45-6789", "212-67-4432"],
    "iban": ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32"],
    "ipv4": ["203.0.113.77", "198.51.100.23"],
    "ipv6": ["2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
}
KEYED = {"password": "hunter2-secret", "api_key": "sk_live_abcdef123456"}
ACTIONS = ["redact", "hash", "drop_field", "block_event", "allow"]


def events(rng: random.Random, n: int = 60) -> list[dict]:
    out = []
    for i in range(n):
        cls = list(VALUES)[i % len(VALUES)]
        value = rng.choice(VALUES[cls])
        where = i % 4
        props: dict = {"total": 5.0}
        ev = {"type": "track", "event": "Contact Submitted", "userId": f"u{i}", "messageId": f"m{i}",
              "receivedAt": "2026-11-26T05:30:44.000Z", "properties": props, "context": {"library": {"name": "t"}}}
        if where == 0:
            props["note"] = f"please reach me at {value} today"
        elif where == 1:
            props["contact"] = {"details": [{"value": value}]}
        elif where == 2:
            ev["context"]["extra"] = value
        else:
            ev = {**ev, "type": "identify", "traits": {"info": f"{value}", "nested": {"list": ["x", value]}}}
        if i % 5 == 0:
            props.update(KEYED)
        out.append(ev)
    return out


def config(tmp_path: Path, rng: random.Random) -> tuple[Path, dict[str, dict[str, str]]]:
    plans: dict[str, dict[str, str]] = {}
    blocks = []
    for d in ("wh", "hook", "stream", "lake"):
        actions = {cls: rng.choice(ACTIONS) for cls in [*VALUES, "key_name"]}
        plans[d] = actions
        table = ", ".join(f'{c} = "{a}"' for c, a in actions.items())
        kind = {"wh": 'type = "duckdb"\npath = "w.duckdb"', "hook": 'type = "webhook"\nurl = "http://127.0.0.1:9/x"',
                "stream": 'type = "kafka"', "lake": 'type = "delta"\npath = "lake"'}[d]
        blocks.append(f"[destinations.{d}]\n{kind}\npii = {{actions = {{{table}}}}}\n")
    p = tmp_path / "t.toml"
    p.write_text('[sources.web]\nwrite_key = "k"\n[regulations]\npath = "regs"\n' + "\n".join(blocks))
    return p, plans


def clear_values(cls: str) -> list[str]:
    return list(KEYED.values()) if cls == "key_name" else VALUES[cls]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_configured_class_reaches_a_destination_in_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setenv("TIDEGATE_PII_HASH_KEY", "leak-test-key-" + "x" * 20)
    rng = random.Random(seed)
    cfg_path, plans = config(tmp_path, rng)
    cfg = load_config(cfg_path, env={})
    evs = events(rng)
    raw = json.dumps({"v": 1, "source": "web", "receivedAt": "2026-11-26T05:30:44.000Z", "events": evs}).encode()
    for path_name in ("stream", "redelivery"):
        # Re-delivery (dead letters, archive replay) re-runs the raw messages through a new path.
        path = PolicyPath(cfg)
        shares = path.shares(path.govern(decode_messages([(raw, 0, None)])), list(cfg.destinations))
        for dest, share in shares.items():
            text = json.dumps({t: df.to_dicts() for t, df in share.tables.items()}, default=str)
            text += share.rejected.write_json() if share.rejected.height else ""
            for cls, action in plans[dest].items():
                if action == "allow":
                    continue
                for value in clear_values(cls):
                    assert value not in text, f"{path_name}: {cls} ({action}) in clear at {dest}"
    # and through a real sink: what DuckDB stores holds none of it either
    path = PolicyPath(cfg)
    wh_share = path.shares(path.govern(decode_messages([(raw, 0, None)])), ["wh"])["wh"]
    sink = DuckDBSink("wh", DuckDBDestination(path=str(tmp_path / "leak.duckdb")))
    sink.setup()
    deliver(sink, wh_share)
    sink.close()
    con = duckdb.connect(str(tmp_path / "leak.duckdb"), read_only=True)
    stored = ""
    for (table,) in con.execute("select table_name from information_schema.tables").fetchall():
        stored += json.dumps(con.execute(f'select * from "{table}"').fetchall(), default=str)
    con.close()
    for cls, action in plans["wh"].items():
        if action != "allow":
            for value in clear_values(cls):
                assert value not in stored, f"{cls} ({action}) stored in clear in DuckDB"
