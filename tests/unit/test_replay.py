"""`tidegate replay`: archived events through the current policy, safe to repeat, never
overwriting newer data with older data."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from tidegate import TidegateError, load_config
from tidegate.archive import ArchiveWriter
from tidegate.cli import main
from tidegate.errors import ConfigError
from tidegate.replay import Progress, parse_time, replay, to_raw_messages
from tidegate.sinks import build_sink, deliver
from tidegate.stages import build_policy, decode_messages, govern

T0 = datetime(2026, 11, 26, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 27, 0, tzinfo=timezone.utc)


def write_config(tmp: Path, extra: str = "") -> Path:
    p = tmp / "tidegate.toml"
    p.write_text(f"""
[sources.web]
write_key = "k1"
[sources.server]
write_key = "k2"
[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
[destinations.lake]
type = "duckdb"
path = "lake.duckdb"
{extra}
""")
    return p


def envelope(events: list[dict], source: str = "web") -> bytes:
    return json.dumps({"v": 1, "source": source, "receivedAt": "x", "events": events}).encode()


def identify(mid: str, at: str, **traits) -> dict:
    return {"type": "identify", "userId": "u1", "messageId": mid, "receivedAt": at, "traits": traits}


def track(mid: str, at: str = "2026-11-26T08:00:00.000Z", **props) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": mid, "receivedAt": at,
            "properties": props}


def archive_events(cfg, *batches: tuple[list[dict], str]) -> None:
    w = ArchiveWriter(cfg.archive, start_timer=False)
    w.add(decode_messages([(envelope(events, source), 0, None) for events, source in batches]).messages)
    w.close()


def stream(cfg, events: list[dict]) -> None:
    """What the running pipeline would have stored."""
    sink = build_sink("warehouse", cfg.destinations["warehouse"])
    sink.setup()
    deliver(sink, govern(decode_messages([(envelope(events), 0, None)]), config_version=cfg.version,
                         policy=build_policy(cfg)))
    sink.close()


def q(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_replay_backfills_a_destination_and_is_safe_to_repeat(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), env={})
    archive_events(cfg, ([track(f"m{i}", total=i) for i in range(20)], "web"), ([track("s1")], "server"))
    first = replay(cfg, T0, T1, destinations=["lake"])
    assert (first.read, first.accepted, first.delivered) == (21, 21, {"lake": 21})
    assert first.new_rows["lake"] and first.new_rows["lake"]["tracks"] == 21
    assert q(tmp_path / "lake.duckdb", "select count(*), count(distinct id) from tracks") == [(21, 21)]
    assert not (tmp_path / "warehouse.duckdb").exists()  # only the chosen destination
    again = replay(cfg, T0, T1, destinations=["lake"])
    assert again.new_rows == {"lake": {}}
    assert "0 new rows" in again.render()
    only_server = replay(cfg, T0, T1, sources=["server"], destinations=["lake"])
    assert only_server.read == 1


def test_replay_never_overwrites_newer_data_with_older(tmp_path: Path) -> None:
    old_cfg = load_config(write_config(tmp_path), env={})
    # The stream stored, under the old config: a newer identify (plan=pro) and an order.
    stream(old_cfg, [identify("i-new", "2026-11-26T10:00:00.000Z", plan="pro"),
                     track("o1", note="card 4111 1111 1111 1111")])
    # The archive also holds an older identify (plan=free, and a company the newer one lacks) and the order.
    archive_events(old_cfg, ([identify("i-old", "2026-11-26T09:00:00.000Z", plan="free", company="Acme"),
                              track("o1", note="card 4111 1111 1111 1111"), track("o2", note="x")], "web"))
    # The current config is a different version (PII default changed).
    cfg = load_config(write_config(tmp_path, '[pii]\ndefault_action = "redact"\n'), env={})
    assert cfg.version != old_cfg.version
    summary = replay(cfg, T0, T1, destinations=["warehouse"])
    assert summary.accepted == 3
    wh = tmp_path / "warehouse.duckdb"
    # users: the newer trait value stays; the older event only fills what was empty.
    assert q(wh, "select plan, company from users where id = 'u1'") == [("pro", "Acme")]
    # event tables: the stored row is kept as it was (its config version too); only new ids are added.
    rows = dict(q(wh, "select id, tidegate_config_version from tracks"))
    assert rows == {"o1": old_cfg.version, "o2": cfg.version}
    assert dict(q(wh, "select id, tidegate_config_version from identifies")) == {
        "i-new": old_cfg.version, "i-old": cfg.version}


def test_replay_goes_through_the_current_policy(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, '[pii.actions]\nemail = "block_event"\n'), env={})
    archive_events(cfg, ([track("ok"), track("pii", contact="ana@example.com")], "web"))
    s = replay(cfg, T0, T1, destinations=["lake"])
    assert s.accepted == 1 and s.refused == {"pii_blocked": 1}
    assert q(tmp_path / "lake.duckdb", "select id from tracks") == [("ok",)]
    assert q(tmp_path / "lake.duckdb", "select id from discarded_events") == [("pii",)]


def test_events_without_id_are_replayed_one_by_one(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), env={})
    w = ArchiveWriter(cfg.archive, start_timer=False)
    w.add(decode_messages([
        (b'{"type":"track","event":"Direct","userId":"d"}', 1_795_650_000_000, [("tidegate-source", b"server")]),
        (b"{broken", 1_795_650_000_000, None)]).messages)
    w.close()
    rows = __import__("tidegate.archive", fromlist=["read_archive"]).read_archive(cfg.archive.path)
    msgs = to_raw_messages(rows)
    assert len(msgs) == 2 and all(m[2] is not None for m in msgs)
    s = replay(cfg, datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc),
               destinations=["lake"])
    assert s.accepted == 1 and sum(s.refused.values()) == 1


def test_parse_time_forms_and_errors() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    assert parse_time("now", now=now) == now
    assert parse_time("90m", now=now) == datetime(2026, 11, 26, 10, 30, tzinfo=timezone.utc)
    assert parse_time("3d ago", now=now) == datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    assert parse_time("2026-11-26T05:00:00+01:00") == datetime(2026, 11, 26, 4, tzinfo=timezone.utc)
    with pytest.raises(TidegateError, match="ISO 8601"):
        parse_time("yesterday-ish")


def test_replay_errors_are_clear(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), env={})
    with pytest.raises(ConfigError, match="unknown destination 'nope'; configured: warehouse, lake"):
        replay(cfg, T0, T1, destinations=["nope"])
    with pytest.raises(TidegateError, match="must be before"):
        replay(cfg, T1, T0)
    with pytest.raises(TidegateError, match="no archive at"):
        replay(cfg, T0, T1)


def test_replay_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    cfg = load_config(path, env={})
    archive_events(cfg, ([track("c1")], "web"))
    assert main(["replay", "-c", str(path), "--from", "2026-11-26", "--to", "2026-11-27", "--destination", "lake"]) == 0
    out = capsys.readouterr().out
    assert "replayed 1 archived event " in out and "destination 'lake': of 1 event, 1 delivered" in out
    assert main(["replay", "-c", str(path), "--from", "someday"]) == 2
    assert "cannot read time 'someday'" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal() -> None:
    import io

    buf = io.StringIO()
    bar = Progress(10, stream=buf, enabled=True)
    bar.update(5)
    bar.close()
    assert "50.0%" in buf.getvalue() and "5/10 events" in buf.getvalue()
