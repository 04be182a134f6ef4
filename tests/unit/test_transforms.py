"""Per-destination transforms and PII actions through the shared policy path."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tidegate import ConfigError, load_config
from tidegate.sinks.outbound import event_frames
from tidegate.stages import PolicyPath, decode_messages

KEY = "k" * 32


def config(tmp_path: Path, destinations: str, pii: str = "") -> Path:
    p = tmp_path / "t.toml"
    p.write_text(f"""
[sources.web]
write_key = "k1"
[pii]
default_action = "allow"
{pii}
[regulations]
path = "regs"
{destinations}
""")
    return p


def run(cfg_path: Path, events: list[dict], monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, pl.DataFrame]]:
    monkeypatch.setenv("TIDEGATE_PII_HASH_KEY", KEY)
    cfg = load_config(cfg_path, env={})
    path = PolicyPath(cfg)
    env = json.dumps({"v": 1, "source": "web", "receivedAt": "2026-11-26T05:30:44.000Z", "events": events}).encode()
    batch = path.govern(decode_messages([(env, 0, None)]))
    return {name: share.tables for name, share in path.shares(batch, list(cfg.destinations)).items()}


def ev(i: int, **props) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": f"u{i}", "messageId": f"m{i}",
            "receivedAt": "2026-11-26T05:30:44.000Z", "properties": {"total": 10.0 + i, **props}}


def test_declarative_transforms_in_order_with_lineage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = config(tmp_path, """
[destinations.wh]
type = "duckdb"
path = "w.duckdb"
transforms = [
  {type = "rename", from = "total", to = "amount"},
  {type = "set_default", column = "currency", value = "EUR"},
  {type = "drop_field", column = "internal_note"},
  {type = "copy", from = ["first", "last"], to = "full_name"},
  {type = "normalize", column = "full_name", case = "upper"},
  {type = "hash", column = "user_id"},
  {type = "filter", action = "drop", event_names = ["Debug Ping"]},
]
""")
    tables = run(p, [ev(1, internal_note="x", first=" Ana ", last="Lima"), ev(2, currency="USD"),
                     {"type": "track", "event": "Debug Ping", "userId": "u3", "messageId": "m3"}], monkeypatch)["wh"]
    oc = tables["order_completed"].sort("id")
    assert "total" not in oc.columns and oc["amount"].to_list() == [11.0, 12.0]
    assert oc["currency"].to_list() == ["EUR", "USD"]
    assert "internal_note" not in oc.columns
    assert oc["full_name"].to_list()[0] == "ANA LIMA"
    assert all(v.startswith("hmac-sha256:") for v in oc["user_id"].to_list())
    assert "m3" not in tables["tracks"]["id"].to_list(), "filtered events leave every table"
    assert oc["tidegate_transforms"][0].startswith("rename:total>amount,set_default:currency")


def test_filter_keep_only_some_event_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = config(tmp_path, """
[destinations.hook]
type = "webhook"
url = "http://127.0.0.1:9/x"
transforms = [{type = "filter", action = "keep", event_types = ["identify"]}]
""")
    tables = run(p, [ev(1), {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"plan": "pro"}}], monkeypatch)["hook"]
    assert [t for t, df in event_frames_of(tables)] == ["identifies"]


def event_frames_of(tables: dict[str, pl.DataFrame]):
    from tidegate.stages.govern import GovernedBatch

    return event_frames(GovernedBatch(tables=tables))


def test_python_transform_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_transforms.py").write_text(
        "import polars as pl\n"
        "def transform(table, df):\n"
        "    return df.with_columns(pl.lit(table).alias('seen_by_function'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = config(tmp_path, """
[destinations.wh]
type = "duckdb"
path = "w.duckdb"
transform_function = "my_transforms:transform"
""")
    tables = run(p, [ev(1)], monkeypatch)["wh"]
    assert tables["order_completed"]["seen_by_function"].to_list() == ["order_completed"]
    assert tables["order_completed"]["tidegate_transforms"].to_list() == ["function"]


def test_bad_transform_function_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = config(tmp_path, '[destinations.wh]\ntype = "duckdb"\npath = "w.duckdb"\ntransform_function = "nope_module:fn"\n')
    with pytest.raises(ConfigError, match="cannot load transform_function 'nope_module:fn'"):
        run(p, [ev(1)], monkeypatch)


def test_each_destination_gets_its_own_pii_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = config(tmp_path, """
[destinations.wh]
type = "duckdb"
path = "w.duckdb"
pii = {actions = {email = "hash"}}

[destinations.hook]
type = "webhook"
url = "http://127.0.0.1:9/x"
pii = {actions = {email = "redact"}}

[destinations.stream]
type = "kafka"
""", pii='[pii.actions]\nemail = "allow"\n')
    out = run(p, [ev(1, note="write to ana@example.com")], monkeypatch)
    assert out["wh"]["order_completed"]["note"][0].startswith("write to hmac-sha256:")
    assert out["hook"]["order_completed"]["note"][0] == "write to [REDACTED:email]"
    assert out["stream"]["order_completed"]["note"][0] == "write to ana@example.com"  # workspace: allow


def test_destination_takes_only_its_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = config(tmp_path, """
[sources.ios]
write_key = "k2"
[destinations.web_only]
type = "kafka"
sources = ["web"]
[destinations.all]
type = "kafka"
topic = "all"
""")
    monkeypatch.setenv("TIDEGATE_PII_HASH_KEY", KEY)
    cfg = load_config(p, env={})
    path = PolicyPath(cfg)
    msgs = [(json.dumps({"v": 1, "source": src, "receivedAt": "x", "events": [ev(i)]}).encode(), 0, None)
            for i, src in enumerate(["web", "ios"])]
    shares = path.shares(path.govern(decode_messages(msgs)), list(cfg.destinations))
    assert shares["web_only"].tables["tracks"]["context_source_id"].to_list() == ["web"]
    assert sorted(shares["all"].tables["tracks"]["context_source_id"].to_list()) == ["ios", "web"]


def test_unknown_destination_source_is_a_config_error(tmp_path: Path) -> None:
    p = config(tmp_path, '[destinations.d]\ntype = "kafka"\nsources = ["nope"]\n')
    with pytest.raises(ConfigError, match="unknown source 'nope'"):
        load_config(p, env={})
