"""Configuration as code: plan, apply, the hash-chained audit log, and reload on apply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tidegate import load_config
from tidegate.archive import ArchiveWriter
from tidegate.audit import AppliedConfigWatcher, AuditError, AuditLog, applied_config, apply, plan, preview, reload_on_apply
from tidegate.cli import main
from tidegate.stages import PolicyPath, decode_messages

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the example config (with its tracking plan) writing under tmp_path."""
    shutil.copytree(ROOT / "config", tmp_path / "config", ignore=shutil.ignore_patterns("data"))
    p = tmp_path / "config" / "tidegate.toml"
    p.write_text(p.read_text().replace('"../data/', '"data/'))
    return p


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def archive_sample(path: Path) -> None:
    cfg = load_config(path, env={})
    events = [{"type": "track", "event": "Order Completed", "userId": "u", "messageId": f"m{i}",
               "receivedAt": "2026-11-26T05:30:44.000Z",
               "properties": {"order_id": f"o{i}", "total": 10.0, "currency": "EUR", "contact": "ana@example.com"}}
              for i in range(30)]
    events += [{"type": "track", "event": "Mystery", "userId": "u", "messageId": f"x{i}",
                "receivedAt": "2026-11-26T05:30:44.000Z"} for i in range(5)]
    w = ArchiveWriter(cfg.archive, start_timer=False)
    w.add(decode_messages([(json.dumps({"v": 1, "source": "web", "receivedAt": "x", "events": events}).encode(), 0, None)]).messages)
    w.close()


def test_apply_appends_chained_entries_and_stores_copies(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEGATE_ACTOR", "alice")
    first = apply(load_config(config, env={}), message="initial")
    assert first is not None
    assert (first["seq"], first["actor"], first["message"], first["prev_hash"]) == (1, "alice", "initial", "0" * 64)
    assert first["diff"].startswith("--- /dev/null\n+++ disk/tidegate.toml")
    assert apply(load_config(config, env={})) is None  # nothing changed
    edit(config, 'phone = "redact"', 'phone = "redact"\nemail = "hash"')
    monkeypatch.setenv("TIDEGATE_PII_HASH_KEY", "k" * 32)
    monkeypatch.delenv("TIDEGATE_ACTOR")
    second = apply(load_config(config, env={}))
    assert second is not None and second["seq"] == 2 and second["prev_hash"] == first["hash"]
    assert second["actor"]  # the OS user
    assert '+email = "hash"' in second["diff"]
    audit = AuditLog(load_config(config, env={}).audit.path)
    assert audit.verify() == [] and audit.verify(expect_head=second["hash"]) == []
    stored = audit.dir / second["snapshot"]
    assert (stored / "tidegate.toml").read_text() == config.read_text()
    assert (stored / "plans" / "shop_web.json").read_bytes() == (config.parent / "plans" / "web.json").read_bytes()


def test_a_plan_file_change_is_a_change(config: Path) -> None:
    apply(load_config(config, env={}))
    plan_file = config.parent / "plans" / "web.json"
    spec = json.loads(plan_file.read_text())
    spec["version"] = spec.get("version", 1) + 1 if isinstance(spec.get("version"), int) else "2"
    plan_file.write_text(json.dumps(spec, indent=2))
    text, changed = plan(load_config(config, env={}))
    assert changed and "plans/shop_web.json" in text
    entry = apply(load_config(config, env={}))
    assert entry is not None and "+++ disk/plans/shop_web.json" in entry["diff"]


def tamper(log: Path, line: int, old: str, new: str) -> None:
    lines = log.read_text().splitlines()
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    log.write_text("\n".join(lines) + "\n")


def three_entries(config: Path) -> AuditLog:
    for i, action in enumerate(("redact", "allow", "redact")):
        if i:
            edit(config, f'iban = "{("redact", "allow")[(i - 1) % 2]}"', f'iban = "{action}"')
        apply(load_config(config, env={}), message=f"change {i + 1}")
    return AuditLog(load_config(config, env={}).audit.path)


def test_verify_names_the_entry_that_was_edited(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = three_entries(config)
    assert main(["audit", "verify", "-c", str(config)]) == 0
    assert "OK, 3 entries" in capsys.readouterr().out
    tamper(audit.path, 2, '"message":"change 2"', '"message":"nothing to see"')
    problems = audit.verify()
    assert problems == ["entry 2: hash mismatch (the entry was changed after it was written)"]
    assert main(["audit", "verify", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "entry 2: hash mismatch" in err and "FAILED" in err
    with pytest.raises(AuditError, match="fails verification: entry 2: hash mismatch"):
        edit(config, 'iban = "redact"', 'iban = "allow"')
        apply(load_config(config, env={}))


def test_verify_detects_a_rehashed_edit_removal_and_truncation(config: Path) -> None:
    audit = three_entries(config)
    entries = [json.loads(line) for line in audit.path.read_text().splitlines()]
    head = entries[-1]["hash"]
    # An editor who also recomputes the edited entry's hash breaks the link to the next one.
    from tidegate.audit import entry_hash

    forged = {**entries[0], "actor": "mallory"}
    forged["hash"] = entry_hash(forged)
    lines = audit.path.read_text().splitlines()
    audit.path.write_text("\n".join([json.dumps(forged)] + lines[1:]) + "\n")
    assert audit.verify() == ["entry 2: prev_hash does not match entry 1's hash "
                              "(an entry before it was changed, inserted or removed)"]
    # Removing an entry in the middle.
    audit.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert any(p.startswith("entry 2: sequence number is 3") for p in audit.verify())
    # Cutting the newest entry leaves a valid chain: the recorded head catches it.
    audit.path.write_text("\n".join(lines[:2]) + "\n")
    assert audit.verify() == []
    assert audit.verify(expect_head=head)[0].startswith("head is")
    # The stored copy is checked too.
    audit.path.write_text("\n".join(lines) + "\n")
    (audit.dir / entries[0]["snapshot"] / "tidegate.toml").write_text("# changed\n")
    assert audit.verify() == [f"entry 1: the stored config copy {audit.dir / entries[0]['snapshot']} does not match "
                              "config_sha256 (the copy was changed)"]


def test_plan_previews_the_effect_on_archived_traffic(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_sample(config)
    apply(load_config(config, env={}))
    text, changed = plan(load_config(config, env={}))
    assert not changed and text.startswith("No changes")
    edit(config, 'unplanned_event = "drop"', 'unplanned_event = "forward"')
    edit(config, 'phone = "redact"', 'phone = "redact"\nemail = "redact"')
    assert main(["plan", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert '-unplanned_event = "drop"\n+unplanned_event = "forward"' in out
    assert "Preview on the last 35 archived events" in out
    assert "no longer dropped: 5" in out
    assert "newly forwarded with violations: 5" in out
    assert "newly redacted/hashed/dropped PII: 30" in out
    assert "events whose outcome under the workspace policy changes against the applied config: 35 of 35" in out


def test_plan_previews_each_destinations_own_policy(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A change to one destination's own PII actions or consent shows on that destination only
    (the preview goes through the delivery path, not the workspace policy alone)."""
    edit(config, "[destinations.warehouse]", '[destinations.lake]\ntype = "duckdb"\npath = "data/lake.duckdb"\n\n'
                                             "[destinations.warehouse]")
    archive_sample(config)
    apply(load_config(config, env={}))
    edit(config, '[destinations.lake]\ntype = "duckdb"', '[destinations.lake]\ntype = "duckdb"\n'
                                                         'pii = {actions = {email = "redact"}}')
    assert main(["plan", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "newly redacted/hashed/dropped PII: 0;" in out  # the workspace policy did not change
    assert "    lake: no longer delivered 0; newly delivered 0; newly redacted/hashed/dropped PII 30; " in out
    assert "    warehouse: no longer delivered 0; newly delivered 0; newly redacted/hashed/dropped PII 0; " in out
    edit(config, '[destinations.lake]\ntype = "duckdb"', '[destinations.lake]\ntype = "duckdb"\nsources = ["server"]')
    assert main(["plan", "-c", str(config)]) == 0
    assert "    lake: no longer delivered 30; " in capsys.readouterr().out  # the web source's 30 planned events


def test_plan_with_nothing_applied_says_what_each_destination_would_receive(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No baseline: the destinations' lines are what they would receive, not "newly delivered"
    next to a workspace count against no policy (the numbers contradicted each other)."""
    archive_sample(config)
    assert main(["plan", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Nothing applied yet" in out and "against no policy at all" in out
    assert "    warehouse: would receive 30 of 35 events, 0 of them with PII redacted/hashed/dropped" in out, out
    assert "newly delivered" not in out


def test_preview_counts_newly_dropped_by_reason(config: Path) -> None:
    from tidegate.archive import read_archive

    archive_sample(config)
    old = load_config(config, env={})
    edit(config, 'phone = "redact"', 'phone = "redact"\nemail = "block_event"')
    new = load_config(config, env={})
    counts = preview(old, new, read_archive(old.archive.path))
    assert counts.newly_dropped == {"pii_blocked": 30} and counts.changed == 30


def test_running_pipeline_takes_up_an_applied_config(config: Path) -> None:
    cfg = load_config(config, env={})
    apply(cfg)
    running = applied_config(load_config(config, env={}))
    assert running.version == cfg.version

    class RecordingSink:  # the parts of GovernedSink the reload touches, with the real PolicyPath
        def __init__(self) -> None:
            self.cfg, self.path, self.seen = running, PolicyPath(running), []
            self.before_checkpoint: Any = None

        def write(self, batch: object) -> None:  # a checkpoint's first write, as GovernedSink stages it
            self.before_checkpoint()
            self.seen.append((batch, self.cfg.version))

    sink = RecordingSink()
    original_policy = sink.path.policy
    reload_on_apply(sink, AppliedConfigWatcher(running))
    sink.write("b1")
    edit(config, 'iban = "redact"', 'iban = "allow"')
    new = load_config(config, env={})
    apply(new)
    sink.write("b2")
    assert sink.seen == [("b1", cfg.version), ("b2", new.version)]
    assert sink.path.policy is not original_policy  # rebuilt from the applied config
    # A later edit that is not applied changes nothing.
    edit(config, 'iban = "allow"', 'iban = "hash"')
    sink.write("b3")
    assert sink.seen[-1] == ("b3", new.version)


def test_a_running_pipeline_keeps_its_policy_when_an_applied_config_adds_or_removes_destinations(
        config: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its fan-out has a sink per destination it started with: taking up a config without one of
    them crashed the next checkpoint (KeyError in the consent step); now it waits for a restart."""
    edit(config, '[destinations.warehouse]', '[destinations.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n\n'
                                             '[destinations.warehouse]')
    cfg = load_config(config, env={})
    apply(cfg)
    running = applied_config(load_config(config, env={}))

    class Sink:
        def __init__(self) -> None:
            self.cfg, self.path = running, PolicyPath(running)
            self.before_checkpoint: Any = None

    sink = Sink()
    reload_on_apply(sink, AppliedConfigWatcher(running))
    edit(config, '[destinations.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n', "")
    apply(load_config(config, env={}))
    sink.before_checkpoint()
    assert sink.cfg is running and sink.path.cfg is running
    assert "removes destination hook; restart the pipeline to take it up" in caplog.text
    batch = sink.path.govern(decode_messages([(json.dumps({"type": "track", "event": "E", "userId": "u", "messageId": "m",
                                                           "receivedAt": "2026-01-01T00:00:00Z"}).encode(), 0, None)]))
    assert set(sink.path.shares(batch, ["hook", "warehouse"])) == {"hook", "warehouse"}


def test_restart_is_asked_for_sink_settings_only(config: Path) -> None:
    from tidegate.audit import needs_restart

    old = load_config(config, env={})
    edit(config, '[destinations.warehouse]', '[destinations.warehouse]\npii = {actions = {email = "redact"}}')
    assert needs_restart(old, load_config(config, env={})) == []  # a destination's policy is taken up at once
    edit(config, '"data/tidegate.duckdb"', '"data/other.duckdb"')
    assert needs_restart(old, load_config(config, env={})) == ["[destinations.warehouse]"]
    edit(config, "[destinations.warehouse]", "[identity]\nshare_across_replicas = false\n\n[destinations.warehouse]")
    assert needs_restart(old, load_config(config, env={}))[-1] == "identity.share_across_replicas"


def test_a_changed_or_missing_stored_copy_is_an_audit_error_not_a_policy(config: Path) -> None:
    """`run` governs by the stored copy only when the chain verifies; `apply` and `plan` say what
    is wrong with the log instead of a traceback."""
    cfg = load_config(config, env={})
    apply(cfg)
    [copy] = Path(cfg.audit.path, "applied").iterdir()
    toml = copy / "tidegate.toml"
    toml.write_text(toml.read_text() + "\n# edited\n")
    with pytest.raises(AuditError, match="fails verification: entry 1: the stored config copy .* does not match"):
        applied_config(load_config(config, env={}))
    shutil.rmtree(copy)
    edit(config, 'iban = "redact"', 'iban = "allow"')
    for run in (lambda: apply(load_config(config, env={})), lambda: plan(load_config(config, env={}))):
        with pytest.raises(AuditError, match="entry 1: the stored config copy .* is missing; run `tidegate audit verify`"):
            run()


def test_applied_copy_is_used_not_the_edited_plan_file(config: Path) -> None:
    apply(load_config(config, env={}))
    (config.parent / "plans" / "web.json").write_text("not json any more")
    running = applied_config(load_config(config, env={}))
    from tidegate.stages import build_policy

    build_policy(running)  # compiles from the stored copy


def test_audit_log_cli(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["audit", "log", "-c", str(config)]) == 0
    assert "no applied configs yet" in capsys.readouterr().out
    monkeypatch.setenv("TIDEGATE_ACTOR", "ci-bot")
    assert main(["apply", "-c", str(config), "-m", "first"]) == 0
    out = capsys.readouterr().out
    assert "as audit entry 1 by ci-bot" in out and "Audit head:" in out
    assert main(["apply", "-c", str(config)]) == 0
    assert "No changes" in capsys.readouterr().out
    assert main(["audit", "log", "-c", str(config), "--diff"]) == 0
    out = capsys.readouterr().out
    assert "#1" in out and "ci-bot" in out and "— first" in out and "+++ disk/tidegate.toml" in out


def test_apply_refuses_a_config_whose_policy_does_not_compile(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(config, 'phone = "redact"', 'phone = "hash"')
    assert main(["apply", "-c", str(config)]) == 2
    assert "TIDEGATE_PII_HASH_KEY" in capsys.readouterr().err
    assert not AuditLog(load_config(config, env={}).audit.path).path.exists()
