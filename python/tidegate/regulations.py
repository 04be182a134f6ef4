"""Regulations: the suppression list and user deletion (``tidegate regulate``).

The list lives in ``<regulations.path>/suppressions.json`` (written atomically, under a file lock):
``{"users": {USER_ID: {"regulation": "suppress" | "delete", "at": ISO time, "pending": [destination, ...]}}}``.
Every pipeline checks it at each checkpoint (it re-reads the file when its mtime changes) and
drops the events of listed users — ``user_id`` or ``anonymous_id`` in the list, one vectorised
``is_in`` per table — before fan-out, so they reach no destination
(``tidegate_suppressed_events_total``).

``delete`` suppresses the user and removes their rows from every warehouse destination (DuckDB,
PostgreSQL): every table with a ``user_id`` column, their value ``discards``, ``users`` by
``id``, the ``identity_map`` rows whose ``node_id`` or ``canonical_id`` is the user (so the
anonymous ids mapped to them too), and the refused events in ``discarded_events`` whose
``userId``, ``anonymousId`` or ``previousId`` is the user. What was deleted (destination, table,
rows) is appended to ``deletions.jsonl``, which is never rewritten. A warehouse that cannot be
opened now (an embedded DuckDB held by a running pipeline, a PostgreSQL that is down) is left
*pending* in the list; a running pipeline that owns that destination carries the deletion out
within seconds (it looks at the list every 2 s, idle or not, and at a shutdown;
``GovernedSink.check_regulations``) and logs it the same way. Until then the user cannot be unsuppressed (that
would cancel the deletion). A listed user's ``identity_map`` rows and refused events are dropped
before fan-out too, so a deletion is not undone by the next events.

A USER_ID is recorded and looked up the way the pipeline stores identifiers (:func:`normalized_id`,
the Rust core's ``govern::normalized_id``): trimmed, and e-mail addresses lower-cased when
``[identity] lowercase_email_ids`` is on.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import polars as pl

from . import _core, metrics
from .config import Config
from .errors import TidegateError
from .stages.consent import dropped, filter_batch
from .stages.govern import GovernedBatch
from .stages.identity import IDENTITY_TABLE

__all__ = ["RegulationStore", "SuppressionFilter", "delete_user_rows", "suppress", "unsuppress", "delete",
           "normalized_id", "DeletionPendingError", "WAREHOUSE_TYPES"]

log = logging.getLogger("tidegate.regulations")

WAREHOUSE_TYPES = ("duckdb", "postgres")
LIST_FILE = "suppressions.json"
LOG_FILE = "deletions.jsonl"
REFUSED_TABLE = "discarded_events"

# The fields of a refused event (`discarded_events.event`) that name a user.
_ID_FIELDS = ("userId", "anonymousId", "previousId")
_ID_PAIR = re.compile(r'"(?:userId|anonymousId|previousId)"\s*:\s*("(?:[^"\\]|\\.)*")')


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalized_id(user_id: str, lowercase_emails: bool = True) -> str:
    """``user_id`` as the pipeline stores it: the Rust core's own ``govern::normalized_id``
    (trimmed, and lower-cased if it is an e-mail address, an ``@`` and a dot after the last ``@``,
    and ``lowercase_emails``: ``[identity] lowercase_email_ids``).

    >>> normalized_id("  Ana@Example.COM "), normalized_id(" a-1 "), normalized_id("Team-A")
    ('ana@example.com', 'a-1', 'Team-A')
    >>> normalized_id("Ana@Example.com", False)
    'Ana@Example.com'
    """
    return _core.normalized_id(user_id, lowercase_emails)


class DeletionPendingError(TidegateError):
    """The user cannot be taken off the list while their deletion is pending somewhere."""


def _actor() -> str:
    try:
        return os.environ.get("TIDEGATE_ACTOR") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


class RegulationStore:
    """The files of one regulations directory."""

    def __init__(self, path: str | os.PathLike[str]):
        self.dir = Path(path)
        self.list_path = self.dir / LIST_FILE
        self.log_path = self.dir / LOG_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def users(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.list_path.read_text(encoding="utf-8")
            data = json.loads(text)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise TidegateError(f"cannot read the suppression list {self.list_path}: {e}; fix or remove the file") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise TidegateError(f"{self.list_path} is not a suppression list (expected {{\"users\": {{...}}}})")
        for user, entry in users.items():
            if isinstance(entry, dict) and isinstance(entry.get("pending", []), list) \
                    and all(isinstance(d, str) for d in entry.get("pending", [])):
                continue
            what = "its pending is not a list of destinations" if isinstance(entry, dict) else \
                f"it is {json.dumps(entry)[:60]}, not an object"
            key = json.dumps(user)
            line = next((n for n, t in enumerate(text.splitlines(), 1) if re.search(re.escape(key) + r"\s*:", t)), None)
            where = f"{self.list_path}, line {line}" if line else str(self.list_path)
            raise TidegateError(
                f"{where}: the entry of user {user!r} is damaged ({what}); an entry is "
                '{"regulation": "suppress" or "delete", "at": TIME, "by": ACTOR, "pending": [DESTINATION, ...]}: '
                "fix it, or remove it to take the user off the list")
        return users

    def _write(self, users: Mapping[str, Any]) -> None:
        tmp = self.list_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"users": users}, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.list_path)

    def update(self, user_id: str, entry: dict[str, Any] | None) -> dict[str, Any] | None:
        """Set (or with ``None`` remove) a user's entry; return the previous one."""
        with self._locked():
            users = self.users()
            before = users.pop(user_id, None)
            if entry is not None:
                users[user_id] = entry
            self._write(users)
            return before

    def finish_pending(self, user_id: str, destination: str) -> None:
        with self._locked():
            users = self.users()
            entry = users.get(user_id)
            if entry and destination in entry.get("pending", []):
                entry["pending"] = [d for d in entry["pending"] if d != destination]
                self._write(users)

    def append_log(self, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a+b") as f:
            # After a write that was cut off (no final newline) the record starts a line of its own
            # instead of being glued to the damaged one.
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def log_entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        entries = []
        for n, line in enumerate(self.log_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as e:
                entry, problem = None, f"not a JSON record ({e})"
            else:
                problem = "" if isinstance(entry, dict) else "not a JSON object"
            if problem:
                raise TidegateError(
                    f"{self.log_path}, line {n}: damaged deletion log entry: {problem}; a write cut off (a crash, a "
                    "full disk) leaves such a line. The log is append-only: move that line out of the file (keep a "
                    "copy) and run the command again")
            entries.append(entry)
        return entries


def delete_user_rows(sink: Any, user_id: str, lowercase_emails: bool = True, *, hashed: str | None = None) -> dict[str, int]:
    """Delete a user's rows from a warehouse sink in one transaction; rows deleted per table.

    ``user_id`` is the id as stored (:func:`normalized_id`); ``hashed`` the same id as the PII
    policy hashes it, when it does (see :func:`stored_forms`): rows under either go. ``lowercase_emails``
    is how the ids in refused events, which may be stored as received, are compared with it."""
    from .sinks.warehouse import quote

    p = sink.dialect.param
    s = quote(sink.schema)
    forms = [user_id] if hashed is None or hashed == user_id else [user_id, hashed]
    one = f"IN ({', '.join([p] * len(forms))})"
    deleted: dict[str, int] = {}
    with sink._lock, sink._transaction():  # noqa: SLF001 - the sink's own transaction and lock
        for form in forms:
            sink.forget_held(form)  # rows a pipeline write kept back for its checkpoint
        cols = sink._rows("SELECT table_name, column_name FROM information_schema.columns "  # noqa: SLF001
                          f"WHERE table_schema = {p} AND column_name IN ('user_id', 'id', 'node_id', 'canonical_id')",
                          [sink.schema])
        by_table: dict[str, set[str]] = {}
        for table, column in cols:
            by_table.setdefault(table, set()).add(column)
        tables = {t for (t,) in sink._rows(  # noqa: SLF001
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p}", [sink.schema])}
        has_discards = "discards" in tables
        for table in sorted(by_table):
            columns = by_table[table]
            t = quote(table)
            if table == "users" and "id" in columns:
                where, params = f"id {one}", forms
            elif table == IDENTITY_TABLE and columns & {"node_id", "canonical_id"}:
                # The user's own ids, and every other id (their anonymous ids) mapped to them.
                mapped = sorted(columns & {"node_id", "canonical_id"})
                where, params = "(" + " OR ".join(f"{c} {one}" for c in mapped) + ")", forms * len(mapped)
            elif "user_id" in columns:
                where, params = f"user_id {one}", forms
            else:
                continue
            n = sink._rows(f"SELECT count(*) FROM {s}.{t} WHERE {where}", params)[0][0]  # noqa: SLF001
            if not n:
                continue
            if has_discards and "id" in columns:
                gone = sink._rows(f"SELECT count(*) FROM {s}.discards WHERE table_name = {p} AND row_id IN "  # noqa: SLF001
                                  f"(SELECT id FROM {s}.{t} WHERE {where})", [table, *params])[0][0]
                if gone:
                    sink._rows(f"DELETE FROM {s}.discards WHERE table_name = {p} AND row_id IN "  # noqa: SLF001
                               f"(SELECT id FROM {s}.{t} WHERE {where})", [table, *params])
                    deleted["discards"] = deleted.get("discards", 0) + gone
            sink._rows(f"DELETE FROM {s}.{t} WHERE {where}", params)  # noqa: SLF001
            deleted[table] = n
        if REFUSED_TABLE in tables:
            n = _delete_refused_events(sink, user_id, lowercase_emails)
            if n:
                deleted[REFUSED_TABLE] = n
    sink._columns = None  # noqa: SLF001 - re-read the layout on the next write
    if deleted:
        sink.vacuum()  # the deleted rows' storage goes now, not at some later checkpoint
    return deleted


def _named_ids(event: str, lowercase_emails: bool) -> set[str]:
    """The ids (as stored, :func:`normalized_id`) a refused event's text names as its userId,
    anonymousId or previousId."""
    try:
        doc = json.loads(event)
    except ValueError:
        doc = None  # not JSON, or cut off at 64 KB: its "userId": "..." pairs still name users
    if isinstance(doc, dict):
        values = [doc.get(f) for f in _ID_FIELDS]
    else:
        values = []
        for m in _ID_PAIR.finditer(event):
            with contextlib.suppress(ValueError):
                values.append(json.loads(m.group(1)))
    return {normalized_id(v, lowercase_emails) for v in values if isinstance(v, str)}


def _delete_refused_events(sink: Any, user_id: str, lowercase_emails: bool) -> int:
    """Delete the user's refused events from ``discarded_events``; how many. The database picks
    the events whose text contains the id (either side lower-cased, as a stored id may not be),
    and of those the ones that name the user in an id field are deleted."""
    from .sinks.warehouse import quote

    p = sink.dialect.param
    s, t = quote(sink.schema), quote(REFUSED_TABLE)
    text = json.dumps(user_id, ensure_ascii=False)[1:-1]  # as it is written inside a JSON string
    candidates = sink._rows(f"SELECT id, event FROM {s}.{t} "  # noqa: SLF001
                            f"WHERE strpos(lower(event), lower(CAST({p} AS VARCHAR))) > 0", [text])
    ids = [i for i, event in candidates if event is not None and user_id in _named_ids(event, lowercase_emails)]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        sink._rows(f"DELETE FROM {s}.{t} WHERE id IN ({', '.join([p] * len(chunk))})", chunk)  # noqa: SLF001
    return len(ids)


def _log_deletion(store: RegulationStore, user_id: str, destination: str, deleted: dict[str, int], by: str) -> None:
    for table, rows in sorted(deleted.items()) or [("-", 0)]:
        store.append_log({"time": _now(), "actor": by, "user_id": user_id, "destination": destination,
                          "table": table, "rows": rows})


def suppress(cfg: Config, user_id: str) -> bool:
    """Add a user (:func:`normalized_id`) to the list; False if they were already on it."""
    stored = _stored_id(cfg, user_id)
    store = RegulationStore(cfg.regulations.path)
    with store._locked():  # noqa: SLF001
        users = store.users()
        if stored in users or user_id in users:  # the latter recorded before ids were normalised
            return False
        users[stored] = {"regulation": "suppress", "at": _now(), "by": _actor(), "pending": []}
        store._write(users)  # noqa: SLF001
    return True


def unsuppress(cfg: Config, user_id: str) -> bool:
    """Remove a user from the list; False if they were not on it. Rows already deleted stay deleted.
    Raises :class:`DeletionPendingError` while a deletion of the user is pending somewhere:
    taking them off the list would cancel it."""
    stored = _stored_id(cfg, user_id)
    store = RegulationStore(cfg.regulations.path)
    with store._locked():  # noqa: SLF001
        users = store.users()
        # An entry written before ids were normalised is under the id as it was typed.
        keys = [k for k in dict.fromkeys((stored, user_id)) if k in users]
        if not keys:
            return False
        pending = sorted({d for k in keys for d in users[k].get("pending", [])})
        if pending:
            raise DeletionPendingError(
                f"user {stored!r} cannot be unsuppressed yet: their deletion is still pending in {', '.join(pending)} "
                "(taking them off the list now would cancel it, and their events would land again).\n"
                f"Let the pipeline that owns {'it' if len(pending) == 1 else 'them'} delete (within seconds while it runs), or "
                f"run `tidegate regulate delete {shlex.quote(stored)}` again once {'it is' if len(pending) == 1 else 'they are'} "
                "reachable; `tidegate regulate list` shows what is pending. Then unsuppress.")
        for k in keys:
            del users[k]
        store._write(users)  # noqa: SLF001
    return True


@dataclass
class DeleteResult:
    deleted: dict[str, dict[str, int]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    user_id: str = ""
    """The id as recorded and deleted (:func:`normalized_id`)."""


def delete(cfg: Config, user_id: str) -> DeleteResult:
    """Suppress the user (:func:`normalized_id`), then delete their rows from every warehouse
    destination."""
    from .sinks import build_sink

    from .stages.govern import build_policy

    user_id = _stored_id(cfg, user_id)
    store = RegulationStore(cfg.regulations.path)
    warehouses = [n for n, d in cfg.destinations.items() if d.__struct_config__.tag in WAREHOUSE_TYPES]
    # How each warehouse stores identifiers (hashed or not): the workspace's PII policy, or its own.
    workspace = build_policy(cfg)
    policies = {n: workspace if cfg.destinations[n].pii is None else
                build_policy(cfg, cfg.destinations[n].pii, key=f"destinations.{n}.pii.actions") for n in warehouses}
    result = DeleteResult(skipped=[n for n in cfg.destinations if n not in warehouses], user_id=user_id)
    # Suppressed first (pending everywhere): nothing new of this user lands while rows are deleted.
    store.update(user_id, {"regulation": "delete", "at": _now(), "by": _actor(), "pending": list(warehouses)})
    for name in warehouses:
        sink = build_sink(name, cfg.destinations[name])
        try:
            sink.setup()
            if not sink.ready():
                raise TidegateError("destination not reachable")
            hashed = stored_forms([user_id], policies[name]).get(user_id)
            deleted = delete_user_rows(sink, user_id, cfg.identity.lowercase_email_ids, hashed=hashed)
        except Exception as e:  # noqa: BLE001 - left pending, the pipeline finishes it
            result.pending[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        finally:
            with contextlib.suppress(Exception):
                sink.close()
        result.deleted[name] = deleted
        _log_deletion(store, user_id, name, deleted, _actor())
        store.finish_pending(user_id, name)
    return result


def _check_id(user_id: str) -> None:
    if not normalized_id(user_id):
        raise TidegateError("USER_ID must not be empty")


def stored_forms(ids: list[str], policy: Any) -> dict[str, str]:
    """Each of ``ids`` (as :func:`normalized_id` stores them) that the PII ``policy`` (a compiled
    ``_core.Governance``) hashes in an identifier -> its hashed form: with ``hash`` for its class
    an email user id lands as ``hmac-sha256:…``, and the list must find it there too. (``redact``
    and ``drop_field`` leave the workspace's identifiers as they are.)"""
    from .stages import treat_ids

    if policy is None or not ids:
        return {}
    treated = treat_ids(pl.Series(ids, dtype=pl.String), policy)
    return {raw: t for raw, t in treated.iter_rows() if t is not None and t != raw}


def _stored_id(cfg: Config, user_id: str) -> str:
    """A USER_ID from the command line as the pipeline stores it."""
    _check_id(user_id)
    return normalized_id(user_id, cfg.identity.lowercase_email_ids)


class SuppressionFilter:
    """The pipeline's view of the list: re-read when the file changes (checked per batch, one
    ``stat``), applied to a governed batch before fan-out."""

    def __init__(self, cfg: Config, policy: Any = None, own_policies: Mapping[str, Any] | None = None):
        """``policy``: the workspace's compiled PII policy, whose hashed identifiers are matched
        too (:func:`stored_forms`); ``own_policies``: destinations' own PII policies, which decide
        how those destinations store identifiers, and so what a deletion there looks for."""
        self.store = RegulationStore(cfg.regulations.path)
        self.policy = policy
        self.own_policies = dict(own_policies or {})
        self._hashed: dict[str, str] = {}
        self.lowercase_emails = cfg.identity.lowercase_email_ids
        self._mtime: float | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self.ids = pl.Series("ids", [], dtype=pl.String)
        # the ids as they appear in a refused event's JSON text, lower-cased (made once per list)
        self._texts: list[str] = []
        self.last_suppressed = 0  # accepted events the last `apply` dropped (replay's summary counts them)

    def refresh(self) -> bool:
        """Re-read the list if it changed; True when it did."""
        try:
            mtime = self.store.list_path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return False
        try:
            users = self.store.users() if mtime is not None else {}
        except TidegateError as e:
            log.error("%s; keeping the previous suppression list", e)
            return False
        self._mtime, self._users = mtime, users
        # Entries written before ids were normalised are under the id as typed: match them as stored.
        ids = set(users) | {normalized_id(u, self.lowercase_emails) for u in users}
        self._hashed = stored_forms(sorted(ids), self.policy)
        ids |= set(self._hashed.values())
        self.ids = pl.Series("ids", sorted(ids), dtype=pl.String)
        self._texts = [json.dumps(u, ensure_ascii=False)[1:-1].lower() for u in sorted(ids)]
        log.info("suppression list: %d users", len(users))
        return True

    def pending(self, destination: str) -> list[str]:
        return [u for u, e in self._users.items() if destination in e.get("pending", [])]

    def run_pending(self, sinks: Mapping[str, Any]) -> None:
        """Carry out the deletions left pending for destinations this process owns."""
        for name, sink in sinks.items():
            for user_id in self.pending(name):
                stored = normalized_id(user_id, self.lowercase_emails)
                try:
                    own = self.own_policies.get(name)
                    hashed = (stored_forms([stored], own) if own is not None else self._hashed).get(stored)
                    deleted = delete_user_rows(sink, stored, self.lowercase_emails, hashed=hashed)
                except Exception as e:  # noqa: BLE001 - retried at the next change or restart
                    log.warning("pending deletion of %r in %r failed: %s", stored, name, e)
                    continue
                _log_deletion(self.store, stored, name, deleted, "pipeline")
                self.store.finish_pending(user_id, name)
                log.warning("deleted user %r from destination %r: %s", stored, name, deleted)

    def apply(self, batch: GovernedBatch) -> GovernedBatch:
        """``batch`` without the suppressed users' events, their ``identity_map`` rows (their own
        ids and the ids mapped to them) and their refused events."""
        self.last_suppressed = 0
        if self.ids.len() == 0 or (not batch.tables and batch.rejected.is_empty()):
            return batch
        ids = self.ids.implode()

        def mask(df: pl.DataFrame) -> pl.Expr:
            m = pl.lit(False)
            for c in ("user_id", "anonymous_id"):
                if c in df.columns:
                    m = m | pl.col(c).cast(pl.String).is_in(ids).fill_null(False)
            return m

        event_ids, identified = dropped(batch, mask)
        users = batch.tables.get("users")
        gone_users = identified
        if users is not None and "id" in users.columns:
            listed = users.filter(pl.col("id").cast(pl.String).is_in(ids))["id"].cast(pl.String)
            gone_users = pl.concat([identified, listed]).unique()
        self.last_suppressed = event_ids.len()
        if event_ids.len():
            metrics.policy.suppressed.inc(event_ids.len())
        return self._without_identities(filter_batch(batch, event_ids, gone_users))

    def _without_identities(self, batch: GovernedBatch) -> GovernedBatch:
        """``batch`` without the listed users' ``identity_map`` rows and refused events."""
        ids = self.ids.implode()
        tables = batch.tables
        mapping = tables.get(IDENTITY_TABLE)
        if mapping is not None:
            listed = pl.lit(False)
            for c in ("node_id", "canonical_id"):
                if c in mapping.columns:
                    listed = listed | pl.col(c).cast(pl.String).is_in(ids).fill_null(False)
            kept = mapping.filter(~listed)
            if kept.height < mapping.height:
                # In place, in the same order; a table emptied here is left out.
                tables = {t: (kept if t == IDENTITY_TABLE else df) for t, df in tables.items()
                          if t != IDENTITY_TABLE or kept.height}
        rejected = batch.rejected
        if rejected.height and "event" in rejected.columns:
            # The database-free counterpart of `delete_user_rows`: the events whose text holds a
            # listed id (one vectorised search), then those that name one in an id field.
            maybe = rejected.filter(pl.col("event").str.to_lowercase().str.contains_any(self._texts).fill_null(False))
            if maybe.height:  # few: only the refused events whose text holds a listed id
                listed_ids = set(self.ids.to_list())
                gone = [i for i, e in maybe.select("id", "event").iter_rows()
                        if _named_ids(e, self.lowercase_emails) & listed_ids]
                if gone:
                    rejected = rejected.filter(~pl.col("id").is_in(gone))
        if tables is batch.tables and rejected is batch.rejected:
            return batch
        return replace(batch, tables=tables, rejected=rejected)
