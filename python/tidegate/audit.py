"""Configuration as code: ``tidegate plan``, ``apply`` and the hash-chained audit log.

The config file on disk (TOML plus the tracking-plan files it names) is the desired state;
``apply`` makes it the *applied* one by appending an entry to ``<audit.path>/audit.jsonl`` and
storing a copy of the TOML and plan files under ``<audit.path>/applied/<seq>-<version>/``.
A running pipeline picks the newest applied copy up at its next checkpoint
(:class:`AppliedConfigWatcher`), and ``tidegate run`` starts from it when there is one.

Each entry is one JSON line::

    {"seq", "time", "actor", "message", "config_path", "config_dir", "config_version",
     "config_sha256", "plans": {id: sha256}, "snapshot", "diff", "prev_hash", "hash"}

``hash`` is the SHA-256 of the entry's canonical JSON without ``hash``, and ``prev_hash`` the
previous entry's ``hash`` (64 zeros for the first), so changing, inserting or deleting an entry
breaks the chain from there on; ``audit verify`` also re-hashes each stored copy. Deleting the
*newest* entries leaves a valid shorter chain: keep the head hash that ``apply`` prints somewhere
else (a ticket, a CI log) and check it with ``audit verify --expect-head``.
"""

from __future__ import annotations

import difflib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import msgspec
import polars as pl

from .config import Config, DestinationPolicy, load_config
from .errors import ConfigError, TidegateError
from .stages.govern import STATE_TABLES

__all__ = ["AuditError", "AuditLog", "Snapshot", "apply", "plan", "load_applied", "applied_config",
           "AppliedConfigWatcher", "preview", "PreviewCounts", "GENESIS"]

log = logging.getLogger("tidegate.audit")

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"


class AuditError(TidegateError):
    """The audit log is unreadable or fails verification; the message names the entry."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def actor() -> str:
    """Who applies: ``$TIDEGATE_ACTOR`` (CI sets it to the person or pipeline), else the OS user."""
    explicit = os.environ.get("TIDEGATE_ACTOR", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return f"uid:{os.getuid()}"


# -- what is applied: the TOML text and the plan files it names ------------------------------

@dataclass
class Snapshot:
    path: Path
    text: str
    plans: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (file path, content)

    @classmethod
    def of(cls, cfg: Config) -> "Snapshot":
        path = Path(cfg.path)
        plans: dict[str, tuple[str, bytes]] = {}
        for plan_id, p in sorted(cfg.plans.items()):
            try:
                plans[plan_id] = (p.path, Path(p.path).read_bytes())
            except OSError as e:
                raise ConfigError(f"cannot read tracking plan file {p.path}: {e.strerror}", file=cfg.path,
                                  key=f"plans.{plan_id}.path") from None
        return cls(path, path.read_text(encoding="utf-8"), plans)

    def plan_hashes(self) -> dict[str, str]:
        return {pid: hashlib.sha256(content).hexdigest() for pid, (_, content) in self.plans.items()}

    def sha256(self) -> str:
        """Hash of everything that governs: the TOML text and every plan file."""
        h = hashlib.sha256(self.text.encode())
        for pid, digest in sorted(self.plan_hashes().items()):
            h.update(b"\0" + pid.encode() + b"\0" + digest.encode())
        return h.hexdigest()

    def files(self) -> dict[str, str]:
        """Name -> text of every file, for diffs."""
        out = {"tidegate.toml": self.text}
        for pid, (_, content) in self.plans.items():
            out[f"plans/{pid}.json"] = content.decode("utf-8", "replace")
        return out


def unified_diff(old: Snapshot | None, new: Snapshot) -> str:
    before = old.files() if old else {}
    after = new.files()
    chunks: list[str] = []
    for name in sorted(set(before) | set(after), key=lambda n: (n != "tidegate.toml", n)):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        chunks.extend(difflib.unified_diff(
            (a or "").splitlines(keepends=True), (b or "").splitlines(keepends=True),
            fromfile=f"applied/{name}" if a is not None else "/dev/null",
            tofile=f"disk/{name}" if b is not None else "/dev/null"))
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    return "".join(chunks)


# -- the log ---------------------------------------------------------------------------------

class AuditLog:
    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)
        self.path = self.dir / LOG_NAME

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with self.path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise AuditError(f"{self.path}: entry {n} is not valid JSON; run `tidegate audit verify`") from None
        return out

    def last(self) -> dict[str, Any] | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def verify(self, expect_head: str | None = None) -> list[str]:
        """Problems found, each naming the entry (1-based); empty when the log is intact."""
        problems: list[str] = []
        if not self.path.exists():
            return [] if expect_head is None else [f"{self.path} does not exist, expected head {expect_head}"]
        prev = GENESIS
        count = 0
        with self.path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                count = n
                try:
                    entry = json.loads(line)
                except ValueError:
                    problems.append(f"entry {n}: not valid JSON (the line was edited or truncated)")
                    prev = ""
                    continue
                if not isinstance(entry, dict):
                    problems.append(f"entry {n}: not a JSON object")
                    prev = ""
                    continue
                if entry.get("seq") != n:
                    problems.append(f"entry {n}: sequence number is {entry.get('seq')!r}, expected {n} "
                                    "(an entry was inserted or removed)")
                if prev and entry.get("prev_hash") != prev:
                    problems.append(f"entry {n}: prev_hash does not match entry {n - 1}'s hash "
                                    "(an entry before it was changed, inserted or removed)")
                if entry_hash(entry) != entry.get("hash"):
                    problems.append(f"entry {n}: hash mismatch (the entry was changed after it was written)")
                snap = self.dir / str(entry.get("snapshot", ""))
                if entry.get("snapshot") and snap.is_dir():
                    try:
                        stored = _stored_snapshot(snap, entry)
                        if stored.sha256() != entry.get("config_sha256"):
                            problems.append(f"entry {n}: the stored config copy {snap} does not match config_sha256 "
                                            "(the copy was changed)")
                    except (OSError, AuditError) as e:
                        problems.append(f"entry {n}: cannot read the stored config copy: {e}")
                else:
                    problems.append(f"entry {n}: the stored config copy {snap} is missing")
                prev = str(entry.get("hash", ""))
        if expect_head is not None and prev != expect_head:
            problems.append(f"head is {prev or 'unknown'} after {count} entries, expected {expect_head} "
                            "(entries were removed from the end, or the log is another one)")
        return problems

    def verified_last(self) -> dict[str, Any] | None:
        """The newest entry, once the whole log verifies (a stored copy is only used from an
        intact chain); AuditError naming the first problem otherwise."""
        problems = self.verify()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise AuditError(f"audit log {self.path} fails verification: {problems[0]}{more}; run "
                             f"`tidegate audit verify` to see every problem, and restore the log or its copies")
        return self.last()

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Chain ``entry`` to the last one and append it (under an exclusive lock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self.entries()
            problems = self.verify()
            if problems:
                raise AuditError(f"{self.path} fails verification, refusing to append: {problems[0]}")
            entry = {**entry, "seq": len(entries) + 1, "prev_hash": entries[-1]["hash"] if entries else GENESIS}
            entry["hash"] = entry_hash(entry)
            os.write(fd, _canonical(entry) + b"\n")
            os.fsync(fd)
            return entry
        finally:
            os.close(fd)


def _stored_snapshot(directory: Path, entry: dict[str, Any]) -> Snapshot:
    text = (directory / "tidegate.toml").read_text(encoding="utf-8")
    plans: dict[str, tuple[str, bytes]] = {}
    for pid in entry.get("plans", {}):
        p = directory / "plans" / f"{pid}.json"
        plans[pid] = (str(p), p.read_bytes())
    return Snapshot(directory / "tidegate.toml", text, plans)


def load_applied(cfg: Config) -> tuple[Config, dict[str, Any]] | None:
    """The newest applied config of ``cfg``'s audit log (and its entry), or None."""
    entry = AuditLog(cfg.audit.path).verified_last()
    if entry is None:
        return None
    return _load_entry(cfg.audit.path, entry), entry


def _load_entry(audit_dir: str, entry: dict[str, Any]) -> Config:
    snap = Path(audit_dir) / entry["snapshot"]
    applied = load_config(snap / "tidegate.toml", base_dir=entry["config_dir"])
    # The plans that were applied, not whatever the plan files hold now.
    plans = {pid: msgspec.structs.replace(p, path=str(snap / "plans" / f"{pid}.json")) for pid, p in applied.plans.items()}
    return msgspec.structs.replace(applied, plans=plans)


def applied_config(cfg: Config) -> Config:
    """What ``tidegate run`` governs by: the newest applied config when the audit log has one
    (with a note on stderr if the file on disk differs), else ``cfg`` itself."""
    import sys

    found = load_applied(cfg)
    if found is None:
        return cfg
    applied, entry = found
    try:
        on_disk = Snapshot.of(cfg).sha256()
    except ConfigError:
        on_disk = ""
    note = "" if on_disk == entry["config_sha256"] else \
        f"; the config on disk differs from it (see `tidegate plan -c {cfg.path}`)"
    print(f"tidegate: governing by applied config version {applied.version} (audit entry {entry['seq']}){note}",
          file=sys.stderr, flush=True)
    return applied


def apply(cfg: Config, *, message: str = "") -> dict[str, Any] | None:
    """Record ``cfg`` (already validated) as applied; None when it is the applied one already."""
    from .stages import PolicyPath

    PolicyPath(cfg)  # the policy must compile, as the pipeline compiles it, before it can be applied
    audit = AuditLog(cfg.audit.path)
    last = audit.verified_last()
    snap = Snapshot.of(cfg)
    digest = snap.sha256()
    if last is not None and last.get("config_sha256") == digest:
        return None
    old = _stored_snapshot(audit.dir / last["snapshot"], last) if last else None
    seq = (last["seq"] + 1) if last else 1
    rel = f"applied/{seq:06d}-{digest[:12]}"
    target = audit.dir / rel
    if target.exists():
        shutil.rmtree(target)  # left by an apply that died before appending its entry
    (target / "plans").mkdir(parents=True)
    (target / "tidegate.toml").write_text(snap.text, encoding="utf-8")
    for pid, (_, content) in snap.plans.items():
        (target / "plans" / f"{pid}.json").write_bytes(content)
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "actor": actor(),
        "message": message,
        "config_path": str(Path(cfg.path).resolve()),
        "config_dir": str(Path(cfg.path).resolve().parent),
        "config_version": cfg.version,
        "config_sha256": digest,
        "plans": snap.plan_hashes(),
        "snapshot": rel,
        "diff": unified_diff(old, snap),
    }
    return audit.append(entry)


# -- the pipeline side -----------------------------------------------------------------------

class AppliedConfigWatcher:
    """Notices a new ``apply`` (the log's size or mtime changed) and loads what it applied.
    ``poll()`` is cheap (one ``stat``) and meant to be called at every checkpoint."""

    def __init__(self, cfg: Config, current_sha256: str | None = None):
        self.audit = AuditLog(cfg.audit.path)
        self.seen = self._stat()
        last = self.audit.last() if self.seen else None
        self.current = current_sha256 if current_sha256 is not None else (last or {}).get("config_sha256")

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.audit.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def poll(self) -> Config | None:
        stat = self._stat()
        if stat == self.seen:
            return None
        self.seen = stat
        try:
            last = self.audit.verified_last()
            if last is None or last.get("config_sha256") == self.current:
                return None
            cfg = _load_entry(str(self.audit.dir), last)
        except (TidegateError, OSError, KeyError) as e:
            log.error("cannot load the applied config; keeping the current policy: %s", e)
            return None
        self.current = last["config_sha256"]
        return cfg


def needs_restart(old: Config, new: Config) -> list[str]:
    """The changed settings a running pipeline reads only when it starts: connections, the
    pipeline's own, a destination's sink settings (its policy: sources, consent, pii and
    transforms, is taken up at once), and whether identity merges are shared."""
    out = [f"[{s}]" for s in ("kafka", "pipeline", "archive", "collector") if getattr(new, s) != getattr(old, s)]
    policy = set(DestinationPolicy.__struct_fields__)
    for name, dest in new.destinations.items():
        was = old.destinations.get(name)
        if was is not None and (type(was) is not type(dest) or any(
                getattr(was, f) != getattr(dest, f) for f in dest.__struct_fields__ if f not in policy)):
            out.append(f"[destinations.{name}]")
    if new.identity.share_across_replicas != old.identity.share_across_replicas:
        out.append("identity.share_across_replicas")
    return out


def reload_on_apply(sink: Any, watcher: AppliedConfigWatcher) -> None:
    """Make a ``GovernedSink`` take up applied configs: before each checkpoint's first write is
    governed, a newly applied config replaces ``sink.cfg`` and the policy of ``sink.path`` (so
    every row still carries the version that governed it). Policy sections (sources, plans, PII)
    take effect at once; other sections (Kafka, destinations, archive) need a restart, which the
    log says."""

    def reload() -> None:
        new = watcher.poll()
        if new is None:
            return
        added, removed = set(new.destinations) - set(sink.cfg.destinations), set(sink.cfg.destinations) - set(new.destinations)
        if added or removed:
            # the running fan-out has a sink per destination it started with: it cannot take up a
            # policy without one of them, nor deliver to one it has no sink for
            log.error("applied config %s %s; restart the pipeline to take it up (keeping version %s until then)",
                      new.version, " and ".join(f"{what} destination{'s' if len(names) > 1 else ''} {', '.join(sorted(names))}"
                                                for what, names in (("adds", added), ("removes", removed)) if names),
                      sink.cfg.version)
            return
        try:
            sink.path.reload(new)
        except TidegateError as e:
            log.error("applied config %s does not compile; keeping the current policy: %s", new.version, e)
        else:
            restart = needs_restart(sink.cfg, new)
            log.warning("applied config %s is now governing (was %s)%s", new.version, sink.cfg.version,
                        f"; changes to {', '.join(restart)} take effect after a restart" if restart else "")
            sink.cfg = new

    sink.before_checkpoint = reload


# -- plan: what would change -----------------------------------------------------------------

@dataclass
class PreviewCounts:
    events: int = 0
    newly_dropped: dict[str, int] = field(default_factory=dict)
    no_longer_dropped: int = 0
    newly_with_violations: int = 0
    no_longer_with_violations: int = 0
    newly_redacted: int = 0
    pii_changed: int = 0
    changed: int = 0
    """Events with any difference in outcome (each counted once)."""
    destinations: dict[str, DestinationPreview] = field(default_factory=dict)
    """What each destination of the new config receives differently (its own PII actions,
    consent, routing and transforms included)."""


@dataclass
class DestinationPreview:
    no_longer_delivered: int = 0
    newly_delivered: int = 0
    newly_redacted: int = 0
    pii_changed: int = 0
    delivered: int = 0
    """Events it receives under the new config (what a destination new to it gets)."""
    masked: int = 0
    """Of those, events with PII redacted, hashed or dropped."""


_MASKING = r"(?:^|,)[a-z_0-9]+:(?:redact|hash|drop_field)"


def _outcomes(governed: Any) -> pl.DataFrame:
    """One row per event: id, dropped (reason or null), has_violations, pii (actions text)."""
    parts = []
    for table, df in governed.tables.items():
        if table in STATE_TABLES or "id" not in df.columns:  # their ids are users and identities, not events
            continue
        parts.append(df.select(
            pl.col("id").cast(pl.String),
            (pl.col("context_violation_errors").is_not_null() if "context_violation_errors" in df.columns
             else pl.lit(False)).alias("violations"),
            (pl.col("tidegate_pii_actions").cast(pl.String) if "tidegate_pii_actions" in df.columns
             else pl.lit(None, dtype=pl.String)).alias("pii"),
        ))
    kept = (pl.concat(parts) if parts else pl.DataFrame(schema={"id": pl.String, "violations": pl.Boolean, "pii": pl.String}))
    kept = kept.group_by("id").agg(pl.col("violations").any(), pl.col("pii").drop_nulls().first())
    dropped = governed.rejected.select(pl.col("id").cast(pl.String), pl.col("reason").alias("dropped"))
    return pl.concat([kept.with_columns(pl.lit(None, dtype=pl.String).alias("dropped")),
                      dropped.with_columns(pl.lit(False).alias("violations"), pl.lit(None, dtype=pl.String).alias("pii"))],
                     how="diagonal_relaxed").unique("id", keep="first")


_MASKED_OLD = pl.col("pii").fill_null("").str.contains(_MASKING)
_MASKED_NEW = pl.col("pii_new").fill_null("").str.contains(_MASKING)
_PII_DIFFERS = pl.col("pii").fill_null("") != pl.col("pii_new").fill_null("")


def _destination_previews(before: Any, after: Any, names: list[str]) -> dict[str, DestinationPreview]:
    """Each destination's share of the batch governed under the old (``before``, a
    ``(PolicyPath, batch)`` or None) and the new config (``after``), through the delivery path
    (`PolicyPath.shares`: suppression, its own PII, consent, routing, transforms), compared by
    event id. A destination the old config did not have compares with receiving nothing."""
    after_shares = after[0].shares(after[1], names)
    before_shares = before[0].shares(before[1], [n for n in names if n in before[0].cfg.destinations]) if before else {}
    empty = pl.DataFrame(schema={"id": pl.String, "pii": pl.String})
    out: dict[str, DestinationPreview] = {}
    for name in names:
        a, b = (_outcomes(shares[name]).filter(pl.col("dropped").is_null()).select("id", "pii") if name in shares else empty
                for shares in (after_shares, before_shares))
        both = b.join(a, on="id", how="inner", suffix="_new")
        out[name] = DestinationPreview(
            no_longer_delivered=b.join(a, on="id", how="anti").height,
            newly_delivered=a.join(b, on="id", how="anti").height,
            newly_redacted=both.filter(_MASKED_NEW & ~_MASKED_OLD).height,
            pii_changed=both.filter(_PII_DIFFERS).height,
            delivered=a.height, masked=a.filter(_MASKED_OLD).height)
    return out


def preview(old: Config | None, new: Config, rows: pl.DataFrame) -> PreviewCounts:
    """Govern archived ``rows`` under the old and the new policy and count the events whose
    outcome differs, for the workspace policy and for each destination's share. ``old`` None
    means "no policy" (nothing applied yet)."""
    from .replay import to_raw_messages
    from .stages import PolicyPath, decode_messages, govern

    counts = PreviewCounts(events=rows.height)
    if rows.is_empty():
        return counts
    decoded = decode_messages(to_raw_messages(rows))
    paths = [PolicyPath(c) if c is not None else None for c in (old, new)]
    governed = [(path, path.govern(decoded)) if path is not None else None for path in paths]
    before = _outcomes(governed[0][1] if governed[0] else govern(decoded))
    after = _outcomes(governed[1][1])  # type: ignore[index]
    counts.destinations = _destination_previews(governed[0], governed[1], list(new.destinations))
    both = before.join(after, on="id", how="full", suffix="_new", coalesce=True)
    new_drop = both.filter(pl.col("dropped").is_null() & pl.col("dropped_new").is_not_null())
    counts.newly_dropped = dict(new_drop.group_by("dropped_new").len().iter_rows())
    kept = both.filter(pl.col("dropped_new").is_null())
    counts.no_longer_dropped = kept.filter(pl.col("dropped").is_not_null()).height
    stayed = kept.filter(pl.col("dropped").is_null())
    # Includes events dropped before and now forwarded carrying their violations.
    counts.newly_with_violations = kept.filter(
        pl.col("violations_new") & (pl.col("dropped").is_not_null() | ~pl.col("violations").fill_null(False))).height
    counts.no_longer_with_violations = stayed.filter(~pl.col("violations_new").fill_null(False) & pl.col("violations")).height
    counts.newly_redacted = kept.filter(_MASKED_NEW & (~_MASKED_OLD | pl.col("dropped").is_not_null())).height
    counts.pii_changed = stayed.filter(_PII_DIFFERS).height
    counts.changed = both.filter(
        (pl.col("dropped").fill_null("") != pl.col("dropped_new").fill_null(""))
        | (pl.col("violations").fill_null(False) != pl.col("violations_new").fill_null(False))
        | _PII_DIFFERS).height
    return counts


def unchanged(cfg: Config, last: dict[str, Any]) -> str:
    """What `plan` and `apply` say when the files on disk are the applied config ``last``."""
    env = "" if last["config_version"] == cfg.version else (
        f" This process's TIDEGATE__* environment overrides make it version {cfg.version}: overrides are "
        "each process's own, read when it loads the config, and not part of what `apply` records.")
    return (f"No changes: {cfg.path} is the applied config (version {last['config_version']}, audit entry "
            f"{last['seq']}, applied by {last['actor']} at {last['time']}).{env}")


def plan(cfg: Config, *, events: int = 10_000) -> tuple[str, bool]:
    """The text of ``tidegate plan`` and whether anything would change."""
    from .archive import ArchiveError, read_archive

    audit = AuditLog(cfg.audit.path)
    last = audit.verified_last()
    snap = Snapshot.of(cfg)
    old_snap = _stored_snapshot(audit.dir / last["snapshot"], last) if last else None
    lines: list[str] = []
    if last is not None and last["config_sha256"] == snap.sha256():
        return unchanged(cfg, last), False
    if last is None:
        lines.append(f"Nothing applied yet (no entries in {audit.path}); `tidegate apply` records the first version.")
        old_cfg = None
    else:
        lines.append(f"Applied: version {last['config_version']} (audit entry {last['seq']}, by {last['actor']} at {last['time']})")
        old_cfg = _load_entry(str(audit.dir), last)
    lines.append(f"On disk: version {cfg.version} ({cfg.path})\n")
    diff = unified_diff(old_snap, snap)
    lines.append(diff if diff else "(the TOML text and plan files are unchanged; environment overrides differ)\n")
    try:
        rows = read_archive(cfg.archive.path, last=events) if cfg.archive.enabled else None
    except ArchiveError:
        rows = None
    if rows is None or rows.is_empty():
        lines.append("Preview: no archived traffic to preview on (archive.path is empty or the archive is off).")
        return "\n".join(lines), True
    counts = preview(old_cfg, cfg, rows)
    span = f"{rows['received_at'].min():%Y-%m-%d %H:%M} .. {rows['received_at'].max():%Y-%m-%d %H:%M} UTC"
    lines.append(f"Preview on the last {counts.events} archived events ({span}):")
    old_dests = set(old_cfg.destinations) if old_cfg is not None else set()
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(counts.newly_dropped.items())) or "0"
    lines.append("  workspace policy (tracking plans, PII)" + (":" if old_cfg is not None else ", against no policy at all:"))
    lines.append(f"    newly dropped: {dropped}; no longer dropped: {counts.no_longer_dropped}")
    lines.append(f"    newly forwarded with violations: {counts.newly_with_violations}; "
                 f"no longer with violations: {counts.no_longer_with_violations}")
    lines.append(f"    newly redacted/hashed/dropped PII: {counts.newly_redacted}; PII handling changed: {counts.pii_changed}")
    lines.append("  per destination (its own PII actions, consent, routing and transforms included):")
    for name in cfg.destinations:
        d = counts.destinations.get(name, DestinationPreview())
        if old_cfg is None or name not in old_dests:
            # Nothing to compare with: what it would receive.
            note = "" if old_cfg is None else " (new destination: backfill with `tidegate replay --destination " + name + "`)"
            lines.append(f"    {name}{note}: would receive {d.delivered} of {counts.events} events, "
                         f"{d.masked} of them with PII redacted/hashed/dropped")
        else:
            lines.append(f"    {name}: no longer delivered {d.no_longer_delivered}; newly delivered {d.newly_delivered}; "
                         f"newly redacted/hashed/dropped PII {d.newly_redacted}; PII handling changed {d.pii_changed}")
    for name in sorted(old_dests - set(cfg.destinations)):
        lines.append(f"  {name}: removed (receives nothing after apply)")
    against = "the applied config" if old_cfg is not None else "no policy at all"
    lines.append(f"  events whose outcome under the workspace policy changes against {against}: "
                 f"{counts.changed} of {counts.events}")
    return "\n".join(lines), True


def iter_log(cfg: Config) -> Iterator[dict[str, Any]]:
    yield from AuditLog(cfg.audit.path).entries()
