"""Regulations: the suppression list and user deletion (``tidegate regulate``).

The list lives in ``<regulations.path>/suppressions.json`` (written atomically, under a file lock):
``{"users": {USER_ID: {"regulation": "suppress" | "delete", "at": ISO time, "pending": [destination, ...]}}}``.
Every pipeline checks it at each checkpoint (it re-reads the file when its mtime changes) and
drops the events of listed users — ``user_id`` or ``anonymous_id`` in the list, one vectorised
``is_in`` per table — before fan-out, so they reach no destination
(``tidegate_suppressed_events_total``).

``delete`` suppresses the user and removes their rows from every warehouse destination (DuckDB,
PostgreSQL): every table with a ``user_id`` column, their value ``discards``, and ``users`` by
``id``. What was deleted (destination, table, rows) is appended to ``deletions.jsonl``, which is
never rewritten. A warehouse that cannot be opened now (an embedded DuckDB held by a running
pipeline, a PostgreSQL that is down) is left *pending* in the list; a running pipeline that owns
that destination carries the deletion out at its next checkpoint and logs it the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import polars as pl

from . import metrics
from .config import Config
from .errors import TidegateError
from .stages.consent import dropped, filter_batch
from .stages.govern import GovernedBatch

__all__ = ["RegulationStore", "SuppressionFilter", "delete_user_rows", "suppress", "unsuppress", "delete",
           "WAREHOUSE_TYPES"]

log = logging.getLogger("tidegate.regulations")

WAREHOUSE_TYPES = ("duckdb", "postgres")
LIST_FILE = "suppressions.json"
LOG_FILE = "deletions.jsonl"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
            data = json.loads(self.list_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise TidegateError(f"cannot read the suppression list {self.list_path}: {e}; fix or remove the file") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise TidegateError(f"{self.list_path} is not a suppression list (expected {{\"users\": {{...}}}})")
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
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def log_entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def delete_user_rows(sink: Any, user_id: str) -> dict[str, int]:
    """Delete a user's rows from a warehouse sink in one transaction; rows deleted per table."""
    from .sinks.warehouse import quote

    p = sink.dialect.param
    s = quote(sink.schema)
    deleted: dict[str, int] = {}
    with sink._lock, sink._transaction():  # noqa: SLF001 - the sink's own transaction and lock
        sink.forget_held(user_id)  # rows a pipeline write kept back for its checkpoint
        cols = sink._rows("SELECT table_name, column_name FROM information_schema.columns "  # noqa: SLF001
                          f"WHERE table_schema = {p} AND column_name IN ('user_id', 'id')", [sink.schema])
        by_table: dict[str, set[str]] = {}
        for table, column in cols:
            by_table.setdefault(table, set()).add(column)
        has_discards = "discards" in {t for (t,) in sink._rows(  # noqa: SLF001
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p}", [sink.schema])}
        for table in sorted(by_table):
            columns = by_table[table]
            t = quote(table)
            if table == "users" and "id" in columns:
                where = "id"
            elif "user_id" in columns:
                where = "user_id"
            else:
                continue
            n = sink._rows(f"SELECT count(*) FROM {s}.{t} WHERE {where} = {p}", [user_id])[0][0]  # noqa: SLF001
            if not n:
                continue
            if has_discards and "id" in columns:
                gone = sink._rows(f"SELECT count(*) FROM {s}.discards WHERE table_name = {p} AND row_id IN "  # noqa: SLF001
                                  f"(SELECT id FROM {s}.{t} WHERE {where} = {p})", [table, user_id])[0][0]
                if gone:
                    sink._rows(f"DELETE FROM {s}.discards WHERE table_name = {p} AND row_id IN "  # noqa: SLF001
                               f"(SELECT id FROM {s}.{t} WHERE {where} = {p})", [table, user_id])
                    deleted["discards"] = deleted.get("discards", 0) + gone
            sink._rows(f"DELETE FROM {s}.{t} WHERE {where} = {p}", [user_id])  # noqa: SLF001
            deleted[table] = n
    sink._columns = None  # noqa: SLF001 - re-read the layout on the next write
    if deleted:
        sink.vacuum()  # the deleted rows' storage goes now, not at some later checkpoint
    return deleted


def _log_deletion(store: RegulationStore, user_id: str, destination: str, deleted: dict[str, int], by: str) -> None:
    for table, rows in sorted(deleted.items()) or [("-", 0)]:
        store.append_log({"time": _now(), "actor": by, "user_id": user_id, "destination": destination,
                          "table": table, "rows": rows})


def suppress(cfg: Config, user_id: str) -> bool:
    """Add a user to the list; False if they were already on it."""
    _check_id(user_id)
    store = RegulationStore(cfg.regulations.path)
    with store._locked():  # noqa: SLF001
        users = store.users()
        if user_id in users:
            return False
        users[user_id] = {"regulation": "suppress", "at": _now(), "by": _actor(), "pending": []}
        store._write(users)  # noqa: SLF001
    return True


def unsuppress(cfg: Config, user_id: str) -> bool:
    """Remove a user from the list; False if they were not on it. Rows already deleted stay deleted."""
    _check_id(user_id)
    return RegulationStore(cfg.regulations.path).update(user_id, None) is not None


@dataclass
class DeleteResult:
    deleted: dict[str, dict[str, int]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def delete(cfg: Config, user_id: str) -> DeleteResult:
    """Suppress the user, then delete their rows from every warehouse destination."""
    from .sinks import build_sink

    _check_id(user_id)
    store = RegulationStore(cfg.regulations.path)
    warehouses = [n for n, d in cfg.destinations.items() if d.__struct_config__.tag in WAREHOUSE_TYPES]
    result = DeleteResult(skipped=[n for n in cfg.destinations if n not in warehouses])
    # Suppressed first (pending everywhere): nothing new of this user lands while rows are deleted.
    store.update(user_id, {"regulation": "delete", "at": _now(), "by": _actor(), "pending": list(warehouses)})
    for name in warehouses:
        sink = build_sink(name, cfg.destinations[name])
        try:
            sink.setup()
            if not sink.ready():
                raise TidegateError("destination not reachable")
            deleted = delete_user_rows(sink, user_id)
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
    if not user_id or not user_id.strip():
        raise TidegateError("USER_ID must not be empty")


class SuppressionFilter:
    """The pipeline's view of the list: re-read when the file changes (checked per batch, one
    ``stat``), applied to a governed batch before fan-out."""

    def __init__(self, cfg: Config):
        self.store = RegulationStore(cfg.regulations.path)
        self._mtime: float | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self.ids = pl.Series("ids", [], dtype=pl.String)

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
        self.ids = pl.Series("ids", sorted(users), dtype=pl.String)
        log.info("suppression list: %d users", len(users))
        return True

    def pending(self, destination: str) -> list[str]:
        return [u for u, e in self._users.items() if destination in e.get("pending", [])]

    def run_pending(self, sinks: Mapping[str, Any]) -> None:
        """Carry out the deletions left pending for destinations this process owns."""
        for name, sink in sinks.items():
            for user_id in self.pending(name):
                try:
                    deleted = delete_user_rows(sink, user_id)
                except Exception as e:  # noqa: BLE001 - retried at the next change or restart
                    log.warning("pending deletion of %r in %r failed: %s", user_id, name, e)
                    continue
                _log_deletion(self.store, user_id, name, deleted, "pipeline")
                self.store.finish_pending(user_id, name)
                log.warning("deleted user %r from destination %r: %s", user_id, name, deleted)

    def apply(self, batch: GovernedBatch, count: bool = True) -> GovernedBatch:
        """``batch`` without the suppressed users' events; ``count=False`` for another pass over
        the same events (a destination's own PII pass), already counted."""
        if self.ids.len() == 0 or not batch.tables:
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
        if event_ids.len() and count:
            metrics.policy.suppressed.inc(event_ids.len())
        return filter_batch(batch, event_ids, gone_users)
