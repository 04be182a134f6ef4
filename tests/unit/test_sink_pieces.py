"""The sinks' pure pieces, no services: shared warehouse logic, outbound JSON, backoff, config."""

from __future__ import annotations

import datetime as dt
import doctest
import json
from pathlib import Path
from typing import get_args

import polars as pl
import pytest

from sink_support import batch, event
from tidegate.config import Destination, load_config
from tidegate.errors import ConfigError
from tidegate.sinks import SINK_TYPES, build_sink, delta, outbound, warehouse, webhook
from tidegate.sinks.outbound import outbound_events
from tidegate.sinks.warehouse import conform, fitted, rows_to_store, upsert_values


@pytest.mark.parametrize("module", [warehouse, outbound, webhook], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert tried and not failed


def test_conform_casts_what_fits_and_discards_the_rest() -> None:
    df = pl.DataFrame({"id": ["a", "b", "c"], "n": ["1", "x", None], "s": [1, 2, 3], "new": [True, None, False]})
    fitted, conflicts = conform("t", df, {"n": (pl.Int64(), "BIGINT"), "s": (pl.String(), "VARCHAR")})
    assert fitted["n"].to_list() == [1, None, None] and fitted["s"].to_list() == ["1", "2", "3"]
    assert fitted["new"].dtype == pl.Boolean  # not stored yet: left as it is
    (d,) = conflicts
    assert d.select("row_id", "column_name", "column_value").rows() == [("b", "n", "x")]
    assert d["reason"][0] == "incompatible schema conversion from String to BIGINT"
    assert d["received_at"].null_count() == 1  # the frame had no received_at


@pytest.mark.parametrize(("values", "target", "stored"), [
    ([3.0, 2.7, -1e30, float("nan")], pl.Int64(), [3, None, None, None]),  # never truncated
    ([True, False], pl.Int64(), [None, None]),
    ([True], pl.Float64(), [None]),
    ([1, 0, 5], pl.Boolean(), [None, None, None]),  # numbers do not stand for booleans
    ([1.0], pl.Boolean(), [None]),
    (["true", "False", "yes"], pl.Boolean(), [True, False, None]),
    (["2026-11-26T05:30:40Z", "soon"], pl.Datetime("us", "UTC"),
     [dt.datetime(2026, 11, 26, 5, 30, 40, tzinfo=dt.timezone.utc), None]),
    ([1764135040], pl.Datetime("us", "UTC"), [None]),  # a number is not a time
    # Each value read by its own form, not by the form of the column's first value; a zoned time
    # into a column without a zone is its UTC time; no zone is UTC.
    (["2026-01-05T10:00:00+05:00", "2026-01-05 10:00", "2026-01-05", "not a date", "99999-01-05T10:00:00"],
     pl.Datetime("us"), [dt.datetime(2026, 1, 5, 5), dt.datetime(2026, 1, 5, 10), dt.datetime(2026, 1, 5), None, None]),
    (["2026-01-05 10:00", "2026-01-05T10:00:00.5-01:30", "2026-01-05T10:00Z", "2026-02-30T10:00:00Z"],
     pl.Datetime("us", "UTC"), [dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc),
                                dt.datetime(2026, 1, 5, 11, 30, 0, 500_000, tzinfo=dt.timezone.utc),
                                dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc), None]),
    ([True, False], pl.String(), ["true", "false"]),
    ([2, 3], pl.String(), ["2", "3"]),
    ([2, 2**40], pl.Int32(), [2, None]),
    ([2], pl.Float64(), [2.0]),
])
def test_fitted_stores_only_what_fits_exactly(values: list, target: pl.DataType, stored: list) -> None:
    s = pl.Series("v", values, strict=False)
    assert fitted(s, target).to_list() == stored


def test_conform_never_raises_and_discards_each_value_that_does_not_fit() -> None:
    df = pl.DataFrame({"id": ["a", "b"], "items": [2.0, 2.7], "gift": [5, None], "vip": ["yes", "true"]})
    out, conflicts = conform("t", df, {"items": (pl.Int64(), "BIGINT"), "gift": (pl.Boolean(), "BOOLEAN"),
                                       "vip": (pl.Boolean(), "BOOLEAN")})
    assert out.rows() == [("a", 2, None, None), ("b", None, None, True)]
    assert sorted((r, c, v) for d in conflicts for r, c, v in d.select("row_id", "column_name", "column_value").rows()) == [
        ("a", "gift", "5"), ("a", "vip", "yes"), ("b", "items", "2.7")]


def test_rows_to_store_keeps_one_row_per_id() -> None:
    ts = pl.Series([3, 1, 2]).cast(pl.Datetime("us", "UTC"))
    df = pl.DataFrame({"id": ["u", "u", "u"], "plan": ["pro", "free", None], "city": [None, "Oslo", "Rome"], "received_at": ts})
    assert rows_to_store(df, upsert=True).select("id", "plan", "city").rows() == [("u", "pro", "Rome")]
    assert rows_to_store(df, upsert=False)["plan"].to_list() == ["pro"]  # first copy wins


def test_upsert_values_never_touches_the_key() -> None:
    values = upsert_values("users", ["id", "plan"])
    assert list(values) == ["plan"] and "excluded.received_at >= \"users\".received_at" in values["plan"]


def test_event_date_falls_back_to_received_at() -> None:
    t = pl.Series([None, 86_400_000_000 * 3, None], dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    r = pl.Series([86_400_000_000, 0, None], dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    out = delta.with_event_date(pl.DataFrame({"timestamp": t, "received_at": r}))
    assert [str(d) for d in out["event_date"]] == ["1970-01-02", "1970-01-04", "1970-01-01"]
    assert delta.with_event_date(pl.DataFrame({"id": ["a"]}))["event_date"].to_list() == [dt.date(1970, 1, 1)]
    # A property of that name stays beside the partition column.
    own = delta.with_event_date(pl.DataFrame({"received_at": r, "event_date": ["concert", None, "x"]}))
    assert own["_event_date"].to_list() == ["concert", None, "x"] and str(own["event_date"][0]) == "1970-01-02"


def test_outbound_sends_each_event_once_and_no_state() -> None:
    b = batch([event(1), event(2, "identify"), event(3, "track", event=""), event(4, "page")])
    out = outbound_events(b)
    assert [(e.table, e.id) for e in out] == [("order_completed", "msg-1"), ("tracks", "msg-3"),
                                              ("identifies", "msg-2"), ("pages", "msg-4")]
    assert "users" in b.tables
    rows = [json.loads(e.json) for e in out]
    assert rows[0]["total"] == 1.5 and rows[0]["context_library_name"] == "sink-tests"
    assert all(r["tidegate_config_version"] == "test" for r in rows)


def test_outbound_keeps_a_property_named_like_its_table_column() -> None:
    out = outbound_events(batch([event(1, properties={"tidegate_table": "mine", "total": 2})]))
    row = json.loads(out[0].json)
    assert (row["tidegate_table"], row["_tidegate_table"], row["total"]) == ("order_completed", "mine", 2)


def test_every_destination_type_has_a_sink() -> None:
    assert set(SINK_TYPES) == set(get_args(Destination))


@pytest.mark.parametrize("body, kind", [
    ('type = "postgres"\ndsn = "postgresql://u@db:5432/w"\nschema = "analytics"', "PostgresSink"),
    ('type = "delta"\npath = "lake"', "DeltaSink"),
    ('type = "kafka"\ntopic = "governed"\nbootstrap_servers = "k:9092"\nsettings = { "compression.type" = "zstd" }', "KafkaSink"),
    ('type = "webhook"\nurl = "https://hooks.example.com/in"\nheaders = { X-Team = "growth" }\nmax_batch_events = 100', "WebhookSink"),
])
def test_destination_types_load_from_toml(tmp_path: Path, body: str, kind: str) -> None:
    p = tmp_path / "t.toml"
    p.write_text(f'[sources.web]\nwrite_key = "k"\n[destinations.out]\n{body}\n')
    cfg = load_config(p, env={})
    assert type(build_sink("out", cfg.destinations["out"])).__name__ == kind


def test_destination_field_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    p.write_text('[sources.web]\nwrite_key = "k"\n[destinations.hook]\ntype = "webhook"\nurl = "ftp://x"\n')
    with pytest.raises(ConfigError, match=r"t.toml:5: \[destinations.hook.url\]"):
        load_config(p, env={})
