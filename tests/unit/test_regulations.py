"""Suppression list, deletion from warehouse sinks, the deletion log, and per-destination retries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sink_support import batch, event
from tidegate import metrics
from tidegate.cli import main
from tidegate.config import Config, DeliveryConfig, DuckDBDestination, PostgresDestination, RegulationsConfig, SourceConfig
from tidegate.dlq import backoff_delays, deliver_with_retries
from tidegate.errors import DeliveryError
from tidegate.regulations import RegulationStore, SuppressionFilter, delete, suppress, unsuppress
from tidegate.sinks import DuckDBSink, deliver


def make_cfg(tmp: Path, **dests: object) -> Config:
    return Config(sources={"web": SourceConfig(write_key="k")}, regulations=RegulationsConfig(path=str(tmp / "reg")),
                  destinations=dests or {"wh": DuckDBDestination(path=str(tmp / "wh.duckdb"))})  # type: ignore[arg-type]


def test_suppression_filter_reloads_and_drops_everywhere(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    f = SuppressionFilter(cfg)
    f.refresh()
    b = batch([event(1), event(2, "identify"), event(3, "identify", userId=None, anonymousId="anon-x"),
               event(6), event(7, "page")])  # users user-1, user-2, anon-x, user-1, user-2
    assert f.apply(b) is b
    assert suppress(cfg, "user-2") and suppress(cfg, "anon-x") and not suppress(cfg, "user-2")
    time.sleep(0.01)
    assert f.refresh() and not f.refresh()  # one stat per batch; re-read only on change
    before = metrics.REGISTRY.get_sample_value("tidegate_suppressed_events_total") or 0
    out = f.apply(b)
    assert out.tables["tracks"]["id"].to_list() == ["msg-1", "msg-6"]
    assert "pages" not in out.tables and "identifies" not in out.tables
    assert "users" not in out.tables
    assert (metrics.REGISTRY.get_sample_value("tidegate_suppressed_events_total") or 0) - before == 3
    assert unsuppress(cfg, "user-2") and not unsuppress(cfg, "user-2")
    os.utime(RegulationStore(cfg.regulations.path).list_path, ns=(time.time_ns() + 10**9,) * 2)
    assert f.refresh()
    assert set(f.apply(b).tables["identifies"]["id"].to_list()) == {"msg-2"}


def test_delete_removes_rows_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tmp_path)
    sink = DuckDBSink("wh", cfg.destinations["wh"])  # type: ignore[arg-type]
    sink.setup()
    deliver(sink, batch([event(i, k) for i, k in enumerate(["track", "identify", "page", "track", "identify", "track", "track"])]))
    sink.close()
    res = delete(cfg, "user-1")  # msg-1 (identify) and msg-6 (track) belong to user-1
    assert res.deleted["wh"] == {"identifies": 1, "users": 1, "tracks": 1, "order_completed": 1}
    assert not res.pending
    sink.setup()
    counts = sink.row_counts()
    assert counts["identifies"] == 1 and counts["tracks"] == 3 and counts["users"] == 1
    assert sink._rows("select count(*) from main.tracks where user_id = 'user-1'")[0][0] == 0  # noqa: SLF001
    sink.close()
    store = RegulationStore(cfg.regulations.path)
    assert store.users()["user-1"]["regulation"] == "delete" and store.users()["user-1"]["pending"] == []
    log = store.log_entries()
    assert {(e["destination"], e["table"], e["rows"]) for e in log} == {
        ("wh", "identifies", 1), ("wh", "users", 1), ("wh", "tracks", 1), ("wh", "order_completed", 1)}
    size = store.log_path.stat().st_size
    delete(cfg, "user-1")  # again: nothing left, still logged (append-only)
    assert store.log_path.stat().st_size > size


def test_unreachable_warehouse_stays_pending_until_the_pipeline_deletes(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, wh=DuckDBDestination(path=str(tmp_path / "wh.duckdb")),
                   pg=PostgresDestination(dsn="postgresql://nobody@127.0.0.1:1/x", connect_timeout_s=1))
    sink = DuckDBSink("wh", cfg.destinations["wh"])  # type: ignore[arg-type]
    sink.setup()
    deliver(sink, batch([event(1), event(2)]))
    res = delete(cfg, "user-1")
    assert "pg" in res.pending and res.deleted["wh"]["tracks"] == 1
    f = SuppressionFilter(cfg)
    f.refresh()
    assert f.pending("pg") == ["user-1"] and f.pending("wh") == []
    sink.close()


def test_regulate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text('[sources.web]\nwrite_key = "k"\n[regulations]\npath = "reg"\n'
                    '[destinations.wh]\ntype = "duckdb"\npath = "wh.duckdb"\n')
    assert main(["regulate", "suppress", "u1", "-c", str(toml)]) == 0
    assert main(["regulate", "delete", "u2", "-c", str(toml)]) == 0
    assert main(["regulate", "list", "-c", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "u1  suppress" in out and "u2  delete" in out
    assert main(["regulate", "suppress", " ", "-c", str(toml)]) == 2
    assert "USER_ID must not be empty" in capsys.readouterr().err


class Flaky:
    def __init__(self, failures: int):
        self.name = "flaky"
        self.failures = failures
        self.calls = 0

    def write(self, b: object) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DeliveryError("down")


def test_retries_with_backoff_then_give_up() -> None:
    cfg = DeliveryConfig(max_attempts=4, backoff_initial_s=0.5, backoff_max_s=1.0)
    delays = backoff_delays(cfg, 4)
    assert len(delays) == 3 and all(0 <= d <= c for d, c in zip(delays, (0.5, 1.0, 1.0)))
    slept: list[float] = []
    b = batch([event(1)])
    ok = Flaky(2)
    assert deliver_with_retries(ok, b, cfg, sleep=slept.append) is None and ok.calls == 3 and len(slept) == 2
    bad = Flaky(10)
    err = deliver_with_retries(bad, b, cfg, sleep=slept.append)
    assert isinstance(err, DeliveryError) and bad.calls == 4
    assert deliver_with_retries(Flaky(10), b, cfg, attempts=1, sleep=slept.append) is not None
