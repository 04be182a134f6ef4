"""Regulations and CLI fixes: ids recorded as the pipeline stores them, no unsuppress while a
deletion is pending, damaged regulation files, deletion of identity mappings and refused events,
argument checks, replay by the applied config, and sample traffic without a source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sink_support import RECEIVED
from tidegate import TidegateError, load_config
from tidegate.archive import ArchiveWriter
from tidegate.cli import main
from tidegate.config import (Config, DuckDBDestination, IdentityConfig, PiiConfig, PostgresDestination, RegulationsConfig,
                             SourceConfig)
from tidegate.regulations import RegulationStore, SuppressionFilter, delete, suppress, unsuppress
from tidegate.sinks import DuckDBSink, deliver
from tidegate.stages import GovernedBatch, PolicyPath, build_policy, decode_messages, govern

UNREACHABLE_PG = PostgresDestination(dsn="postgresql://nobody@127.0.0.1:1/x", connect_timeout_s=1)


def make_cfg(tmp: Path, *, lowercase: bool = True, pii: bool = True, **dests: Any) -> Config:
    return Config(sources={"web": SourceConfig(write_key="k")}, regulations=RegulationsConfig(path=str(tmp / "reg")),
                  identity=IdentityConfig(lowercase_email_ids=lowercase, share_across_replicas=False),
                  pii=PiiConfig(enabled=pii),
                  destinations=dests or {"wh": DuckDBDestination(path=str(tmp / "wh.duckdb"))})


def write_toml(tmp: Path, destinations: str = '[destinations.wh]\ntype = "duckdb"\npath = "wh.duckdb"\n',
               extra: str = "") -> Path:
    p = tmp / "t.toml"
    p.write_text(f'[sources.web]\nwrite_key = "k"\n[regulations]\npath = "reg"\n[audit]\npath = "audit"\n'
                 f'[archive]\npath = "archive"\n{destinations}{extra}')
    return p


def envelope(events: list[Any]) -> bytes:
    return json.dumps({"v": 1, "source": "web", "receivedAt": RECEIVED, "events": events}).encode()


def ev(mid: str, kind: str = "track", **fields: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"type": kind, "messageId": mid, "receivedAt": RECEIVED, "timestamp": "2026-11-25T23:59:00.000Z"}
    if kind == "track":
        e["event"] = "Order Completed"
    e.update(fields)
    return e


def q(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def store(cfg: Config, *messages: bytes, hold: bool = False) -> DuckDBSink:
    """What a pipeline with this config stores: the policy path (identity included) into ``wh``."""
    path = PolicyPath(cfg)
    sink = DuckDBSink("wh", cfg.destinations["wh"])
    sink.setup()
    if hold:
        sink.hold_state()
    governed = path.govern(decode_messages([(m, 1_764_000_000_000, None) for m in messages]))
    deliver(sink, path.shares(governed, ["wh"])["wh"])
    return sink


# -- 1. ids recorded and looked up as the pipeline stores them --------------------------------------

TRICKY_IDS = ["  Alice@Example.COM ", "bob", " carol ", "Team-A", "Dave@localhost", "A@b.c@Host",
              "\u00a0Erin@Example.org\u3000", "\x1fFrank@Example.org", "\u0130lke@Example.com.tr",
              "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3@Example.gr", "\u24b6nna@Example.com", "\u01c5x@Example.com"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_normalized_id_is_the_cores(tmp_path: Path, lowercase: bool) -> None:
    from tidegate.regulations import normalized_id

    cfg = make_cfg(tmp_path, lowercase=lowercase)
    events = [ev(f"m{i}", userId=u) for i, u in enumerate(TRICKY_IDS)]
    stored = govern(decode_messages([(envelope(events), 0, None)]), policy=build_policy(cfg)).tables["tracks"]
    by_message = dict(zip(stored["id"].to_list(), stored["user_id"].to_list()))
    assert [normalized_id(u, lowercase) for u in TRICKY_IDS] == [by_message[f"m{i}"] for i in range(len(TRICKY_IDS))]


def test_suppress_and_delete_use_the_stored_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_toml(tmp_path)
    cfg = load_config(toml, env={})
    sink = store(cfg, envelope([ev("a1", userId="Alice@Example.com"), ev("a2", "identify", userId=" alice@example.COM"),
                                ev("b1", userId="bob")]))
    sink.close()
    assert main(["regulate", "suppress", "Alice@Example.com", "-c", str(toml)]) == 0
    # The pipeline drops her events, whatever case they were sent in.
    f = SuppressionFilter(cfg)
    f.refresh()
    b = govern(decode_messages([(envelope([ev("a3", userId="ALICE@EXAMPLE.COM"), ev("b2", userId="bob")]), 0, None)]))
    assert f.apply(b).tables["tracks"]["id"].to_list() == ["b2"]
    assert list(RegulationStore(cfg.regulations.path).users()) == ["alice@example.com"]
    out = capsys.readouterr().out
    assert "user 'Alice@Example.com' recorded as 'alice@example.com'" in out
    assert "user 'alice@example.com' suppressed" in out
    assert main(["regulate", "suppress", " ALICE@example.com ", "-c", str(toml)]) == 0
    assert "was already suppressed" in capsys.readouterr().out

    assert main(["regulate", "delete", "Alice@Example.com", "-c", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "recorded as 'alice@example.com'" in out and "tracks 1" in out and "identifies 1" in out
    wh = tmp_path / "wh.duckdb"
    assert q(wh, "select id from tracks order by id") == [("b1",)]
    assert q(wh, "select count(*) from users") == [(0,)]
    assert {e["user_id"] for e in RegulationStore(cfg.regulations.path).log_entries()} == {"alice@example.com"}

    assert main(["regulate", "unsuppress", "Alice@Example.COM", "-c", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "looked up as 'alice@example.com'" in out and "user 'alice@example.com' unsuppressed" in out
    assert RegulationStore(cfg.regulations.path).users() == {}


def test_entries_recorded_before_ids_were_normalised_still_count(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    legacy = {"regulation": "suppress", "at": "t", "by": "x", "pending": []}
    RegulationStore(cfg.regulations.path).update("Alice@Example.com", legacy)  # as `regulate suppress` wrote it
    RegulationStore(cfg.regulations.path).update(" bob ", legacy)
    f = SuppressionFilter(cfg)
    f.refresh()
    b = govern(decode_messages([(envelope([ev("a", userId="alice@example.com"), ev("b", userId="bob"),
                                           ev("c", userId="carol")]), 0, None)]))
    assert f.apply(b).tables["tracks"]["id"].to_list() == ["c"]
    assert unsuppress(cfg, "Alice@Example.com") and unsuppress(cfg, " bob ")
    assert RegulationStore(cfg.regulations.path).users() == {}


# -- 2. no unsuppress while a deletion is pending; say what was recorded ------------------------------

def test_unsuppress_refuses_while_a_deletion_is_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tmp_path, wh=DuckDBDestination(path=str(tmp_path / "wh.duckdb")), pg=UNREACHABLE_PG)
    res = delete(cfg, "u1")
    assert list(res.pending) == ["pg"] and "wh" in res.deleted
    with pytest.raises(TidegateError, match=r"user 'u1' cannot be unsuppressed yet: their deletion is still pending in pg"):
        unsuppress(cfg, "u1")
    entry = RegulationStore(cfg.regulations.path).users()["u1"]
    assert entry["regulation"] == "delete" and entry["pending"] == ["pg"]  # the deletion is not cancelled

    (tmp_path / "cli").mkdir()
    toml = write_toml(tmp_path / "cli", '[destinations.pg]\ntype = "postgres"\ndsn = "postgresql://nobody@127.0.0.1:1/x"\n'
                                        'connect_timeout_s = 1\n')
    assert main(["regulate", "delete", "u2", "-c", str(toml)]) == 0
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("recorded in")]  # nothing was written there
    assert "deletion pending in pg: nothing recorded in" in out and "logged there once carried out" in out
    assert not (tmp_path / "cli" / "reg" / "deletions.jsonl").exists()
    assert main(["regulate", "unsuppress", "u2", "-c", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "deletion is still pending in pg" in err and "tidegate regulate list" in err
    assert "u2" in RegulationStore(str(tmp_path / "cli" / "reg")).users()


# -- 3. damaged regulation files --------------------------------------------------------------------

def test_list_names_a_damaged_log_line_or_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_toml(tmp_path)
    assert main(["regulate", "delete", "u1", "-c", str(toml)]) == 0
    log = tmp_path / "reg" / "deletions.jsonl"
    with open(log, "a") as f:
        f.write('{"time": "2026-11-27T10:00:00Z", "act')  # a write cut off
    capsys.readouterr()
    assert main(["regulate", "list", "-c", str(toml)]) == 2
    err = capsys.readouterr().err
    assert f"{log}, line 2: damaged deletion log entry: not a JSON record" in err
    assert "move that line out of the file" in err and "Traceback" not in err

    # A later record is not glued to the damaged line.
    store = RegulationStore(str(tmp_path / "reg"))
    store.append_log({"time": "t", "actor": "a", "user_id": "u3", "destination": "wh", "table": "-", "rows": 0})
    assert json.loads(log.read_text().splitlines()[-1])["user_id"] == "u3"

    log.write_text(log.read_text().splitlines()[0] + "\n")
    (tmp_path / "reg" / "suppressions.json").write_text('{\n "users": {\n  "u9": "oops"\n }\n}')
    assert main(["regulate", "list", "-c", str(toml)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'reg' / 'suppressions.json'}, line 3: the entry of user 'u9' is damaged" in err
    assert "not an object" in err and "fix it, or remove it" in err and "Traceback" not in err


# -- 4. delete also removes identity mappings and refused events --------------------------------------

def ana_and_bob() -> list[bytes]:
    accepted = [ev("ia", "identify", userId="Ana@Example.org", anonymousId="anon-a"),
                ev("pa", "page", anonymousId="anon-a"),
                ev("ib", "identify", userId="bob", anonymousId="anon-b")]
    refused = [ev("ra", "bogus", userId=" ANA@example.org "),  # refused before its ids were normalised
               ev("rn", "bogus", anonymousId="anon-a"),  # names her anonymous id, not her
               ev("rb", "bogus", userId="bob", note="ana@example.org")]  # mentions her, but is bob's
    cut = b'[{"type":"track","userId":"Ana@Example.org","messageId":"x'  # invalid JSON: cut off
    return [envelope(accepted), envelope(refused), cut]


def test_delete_removes_identity_mappings_and_refused_events(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, pii=False)  # with PII detection on, refused events keep no e-mail address in clear
    store(cfg, *ana_and_bob()).close()
    wh = tmp_path / "wh.duckdb"
    assert len(q(wh, "select * from identity_map")) == 4
    assert len(q(wh, "select * from discarded_events")) == 4
    res = delete(cfg, "Ana@Example.org")
    assert res.deleted["wh"]["identity_map"] == 2 and res.deleted["wh"]["discarded_events"] == 2
    # Her own id and her anonymous id mapped to her are gone; bob's mappings stay.
    assert sorted(q(wh, "select id, canonical_id from identity_map")) == [("a:anon-b", "bob"), ("u:bob", "bob")]
    assert sorted(r[0] for r in q(wh, "select id from discarded_events")) == ["rb", "rn"]
    log = {(e["table"], e["rows"]) for e in RegulationStore(cfg.regulations.path).log_entries()}
    assert {("identity_map", 2), ("discarded_events", 2)} <= log


def test_a_pipeline_does_not_store_them_again(tmp_path: Path) -> None:
    """A pending deletion run by the pipeline drops the kept-back mappings too, and the suppressed
    user's mappings and refused events reach no destination afterwards."""
    cfg = make_cfg(tmp_path, pii=False)
    sink = store(cfg, *ana_and_bob(), hold=True)  # identity_map rows kept back for the checkpoint
    RegulationStore(cfg.regulations.path).update("ana@example.org", {"regulation": "delete", "at": "t", "by": "x",
                                                                      "pending": ["wh"]})
    f = SuppressionFilter(cfg)
    assert f.refresh()
    f.run_pending({"wh": sink})
    sink.checkpoint()
    path = PolicyPath(cfg)
    later = path.govern(decode_messages([(m, 0, None) for m in ana_and_bob()]))
    share: GovernedBatch = path.shares(later, ["wh"])["wh"]
    mapped = share.tables.get("identity_map")
    assert mapped is not None and sorted(mapped["id"].to_list()) == ["a:anon-b", "u:bob"]
    assert sorted(share.rejected["id"].to_list()) == ["rb", "rn"]
    deliver(sink, share)
    sink.checkpoint()
    sink.close()
    wh = tmp_path / "wh.duckdb"
    assert sorted(r[0] for r in q(wh, "select id from identity_map")) == ["a:anon-b", "u:bob"]
    assert sorted(r[0] for r in q(wh, "select id from discarded_events")) == ["rb", "rn"]


# -- 5. counts below 1 ------------------------------------------------------------------------------

def test_plan_events_and_audit_log_n_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_toml(tmp_path)
    for argv, message in ((["plan", "--events", "0"], "--events must be at least 1"),
                          (["plan", "--events", "-3"], "--events must be at least 1"),
                          (["audit", "log", "-n", "-1"], "-n must be at least 1"),
                          (["audit", "log", "-n", "0"], "-n must be at least 1")):
        assert main([*argv, "-c", str(toml)]) == 2, argv
        assert f"tidegate: error: {message}" in capsys.readouterr().err
    assert main(["apply", "-c", str(toml)]) == 0
    assert main(["audit", "log", "-n", "1", "-c", str(toml)]) == 0
    assert main(["audit", "log", "-c", str(toml)]) == 0


# -- 6. replay governs by the applied config -------------------------------------------------------

def test_replay_governs_by_the_applied_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_toml(tmp_path, extra='[pii.actions]\nemail = "block_event"\n')
    assert main(["apply", "-c", str(toml)]) == 0
    applied = load_config(toml, env={}).version
    toml.write_text(toml.read_text().replace('email = "block_event"', 'email = "allow"'))  # edited, not applied
    cfg = load_config(toml, env={})
    assert cfg.version != applied
    w = ArchiveWriter(cfg.archive, start_timer=False)
    w.add(decode_messages([(envelope([ev("ok", userId="u"), ev("pii", userId="u", properties={"c": "ana@example.com"})]),
                            0, None)]).messages)
    w.close()
    capsys.readouterr()
    assert main(["replay", "-c", str(toml), "--from", "2026-11-26", "--to", "2026-11-27", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"governing by applied config version {applied}" in captured.err
    assert f"under config version {applied}" in captured.out
    assert "refused by policy (to discarded_events): pii_blocked 1" in captured.out
    assert q(tmp_path / "wh.duckdb", "select id from tracks") == [("ok",)]


# -- 7. sample traffic without an enabled source ----------------------------------------------------

def test_sample_without_an_enabled_source_is_a_clear_error() -> None:
    from tidegate.sample import send_sample

    with pytest.raises(TidegateError, match=r"^no enabled source to send sample events to; enable one under \[sources\]$"):
        send_sample("http://127.0.0.1:1", {}, 5)
    from tidegate.sample import enabled_write_keys

    cfg = Config(sources={"web": SourceConfig(write_key="k", enabled=False)})
    with pytest.raises(TidegateError, match="no enabled source"):
        enabled_write_keys(cfg)
    assert enabled_write_keys(Config(sources={"web": SourceConfig(write_key="k")})) == {"web": "k"}


@pytest.mark.parametrize(("args", "message"), [
    (["--sample", "-5"], "--sample must be 0 or more"),
    (["--exit-when-done"], "give --sample N"),
    (["--sample", "0", "--exit-when-done"], "give --sample N"),
    (["--sample", "10", "--exit-when-done", "--timeout", "0"], "--timeout must be more than 0"),
])
def test_up_refuses_arguments_that_would_never_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      args: list[str], message: str) -> None:
    """Checked before anything starts (these had run forever, or raced the sink's setup)."""
    assert main(["up", "-c", str(write_toml(tmp_path)), *args]) == 2
    assert message in capsys.readouterr().err
