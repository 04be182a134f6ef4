"""Stage `transform`: a destination's declarative transforms, then its optional Python function.

Transforms work on the warehouse layout every sink receives — column names as they land in the
warehouse (`revenue`, `context_ip`, `user_id`) — with polars expressions over whole tables, in
the order configured:

- ``rename`` (from, to), ``set_default`` (column, value), ``drop_field`` (column), ``copy`` (from
  one or more columns joined by ``separator``, to), ``normalize`` (case, whitespace), ``hash``
  (keyed HMAC-SHA256 with the ``[pii]`` hash key, like the PII ``hash`` action),
- ``filter``: keep or drop whole events by type, track name or a column's values; a filtered
  event leaves every table of that destination's batch.

Then ``transform_function = "module:function"`` is called once per table as
``function(table_name, df) -> df``, for what declarative rules cannot say. Lineage: every row of
a table a transform touched lists them in ``tidegate_transforms`` (``rename:revenue>amount,
hash:email``), next to ``tidegate_pii_actions`` and ``tidegate_config_version``.

>>> import polars as pl
>>> from tidegate.config import Rename, Normalize
>>> t = Transformer([Rename(from_="revenue", to="amount"), Normalize(column="plan", case="lower")])
>>> t.table("tracks", pl.DataFrame({"id": ["1"], "revenue": [3.5], "plan": ["  PRO "]})).to_dicts()
[{'id': '1', 'amount': 3.5, 'plan': 'pro', 'tidegate_transforms': 'rename:revenue>amount,normalize:plan'}]
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable, Sequence

import polars as pl

from .. import _core, metrics
from ..config import (Config, CopyColumn, DestinationPolicy, DropColumn, Filter, HashColumn, Normalize, Rename,
                      SetDefault, Transform)
from ..errors import ConfigError
from .consent import dropped, filter_batch
from .govern import EVENT_TYPE_TABLES, STATE_TABLES, GovernedBatch

__all__ = ["Transformer", "for_destination"]

LINEAGE = "tidegate_transforms"


def _load_function(spec: str) -> Callable[[str, pl.DataFrame], pl.DataFrame]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"transform_function {spec!r} must look like `package.module:function`")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load transform_function {spec!r}: {e}; check the module is importable "
                          "(on PYTHONPATH) and defines the function") from None
    if not callable(fn):
        raise ConfigError(f"transform_function {spec!r} is not callable")
    return fn


class Transformer:
    """One destination's transforms, compiled once."""

    def __init__(self, steps: Sequence[Transform], function: str | Callable[[str, pl.DataFrame], pl.DataFrame] | None = None,
                 hash_key: bytes = b""):
        self.steps = list(steps)
        self.function = _load_function(function) if isinstance(function, str) else function
        self.hash_key = hash_key
        if any(isinstance(s, HashColumn) for s in self.steps) and len(hash_key) < 16:
            raise ConfigError("the `hash` transform needs the [pii] hash key (at least 16 bytes) in its environment "
                              "variable; set it or remove the transform")

    @property
    def active(self) -> bool:
        return bool(self.steps) or self.function is not None

    def apply(self, batch: GovernedBatch, destination: str = "") -> GovernedBatch:
        if not self.active:
            return batch
        drop_ids = self._filtered_ids(batch.tables)
        if drop_ids is not None and drop_ids.len():
            # as consent does: the events' rows, the users rows their identifies made, and the
            # identity mappings only they name (a routed-away source's users stay away)
            ids, identified = dropped(batch, lambda df: pl.col("id").is_in(drop_ids.implode()))
            metrics.pipeline.events.labels("transform", "filtered").inc(ids.len())
            batch = filter_batch(batch, ids, identified)
        out = {t: (self.table(t, df) if t not in STATE_TABLES else self._state_table(t, df)) for t, df in batch.tables.items()}
        if any(isinstance(s, HashColumn) and s.column in ("user_id", "anonymous_id") for s in self.steps):
            # canonical_id is one of those ids (a user id, or an anonymous id when the person has
            # none): hashed once, with the same key, so it still joins the hashed columns
            out = {t: (df.with_columns(pl.Series("canonical_id", _core.hmac_column(
                       df["canonical_id"].cast(pl.String).to_list(), self.hash_key), dtype=pl.String))
                       if "canonical_id" in df.columns else df) for t, df in out.items()}
        return dataclasses.replace(batch, tables=out)

    def _state_table(self, name: str, df: pl.DataFrame) -> pl.DataFrame:
        """The steps that protect data, on a state table (``users``, ``accounts``,
        ``identity_map``): a dropped field is dropped there too, and hashing ``user_id`` or
        ``anonymous_id`` hashes the ids that are those values (``users.id``, ``identity_map``'s
        node ids; ``canonical_id`` everywhere in ``apply``). Renames, copies and functions stay
        on the event tables."""
        for step in self.steps:
            if isinstance(step, DropColumn) and step.column in df.columns and step.column not in ("id",):
                df = df.drop(step.column)
            elif isinstance(step, HashColumn) and step.column in ("user_id", "anonymous_id"):
                df = self._hash_ids(name, df, step.column)
            elif isinstance(step, SetDefault) and name in step.tables:  # named explicitly
                df, _ = self._step(name, df, step)
        return df

    def _hash_ids(self, table: str, df: pl.DataFrame, kind: str) -> pl.DataFrame:
        def hashed(col: pl.Series) -> pl.Series:
            return pl.Series(col.name, _core.hmac_column(col.cast(pl.String).to_list(), self.hash_key), dtype=pl.String)

        if table == "users" and kind == "user_id" and "id" in df.columns:
            df = df.with_columns(hashed(df["id"]))
        if table == "identity_map" and {"id", "node_kind", "node_id"} <= set(df.columns):
            mine = df["node_kind"] == kind
            node = pl.Series("node_id", _core.hmac_column(df["node_id"].cast(pl.String).to_list(), self.hash_key), dtype=pl.String)
            df = df.with_columns(pl.when(mine).then(node).otherwise(pl.col("node_id")).alias("node_id"))
            df = df.with_columns((pl.col("id").str.slice(0, 2) + pl.col("node_id")).alias("id"))
        return df

    def table(self, name: str, df: pl.DataFrame) -> pl.DataFrame:
        applied: list[str] = []
        for step in self.steps:
            df, label = self._step(name, df, step)
            if label:
                applied.append(label)
        if self.function is not None:
            df = self.function(name, df)
            if not isinstance(df, pl.DataFrame):
                raise ConfigError(f"transform_function returned {type(df).__name__} for table {name!r}; "
                                  "it must return a polars DataFrame")
            applied.append("function")
        if applied:
            df = df.with_columns(pl.lit(",".join(applied)).alias(LINEAGE))
        return df

    def _step(self, table: str, df: pl.DataFrame, step: Transform) -> tuple[pl.DataFrame, str]:
        cols = set(df.columns)
        if isinstance(step, Rename):
            if step.from_ not in cols:
                return df, ""
            if step.to in cols:
                df = df.drop(step.to)
            return df.rename({step.from_: step.to}), f"rename:{step.from_}>{step.to}"
        if isinstance(step, SetDefault):
            if step.tables and table not in step.tables or not step.tables and table in STATE_TABLES:
                return df, ""
            value = pl.lit(step.value)
            expr = pl.coalesce(pl.col(step.column), value) if step.column in cols else value
            return df.with_columns(expr.alias(step.column)), f"set_default:{step.column}"
        if isinstance(step, DropColumn):
            return (df.drop(step.column), f"drop_field:{step.column}") if step.column in cols else (df, "")
        if isinstance(step, CopyColumn):
            if not all(c in cols for c in step.from_):
                return df, ""
            expr = (pl.col(step.from_[0]) if len(step.from_) == 1
                    else pl.concat_str([pl.col(c).cast(pl.String) for c in step.from_], separator=step.separator, ignore_nulls=True))
            return df.with_columns(expr.alias(step.to)), f"copy:{'+'.join(step.from_)}>{step.to}"
        if isinstance(step, Normalize):
            if step.column not in cols or df.schema[step.column] != pl.String:
                return df, ""
            expr = pl.col(step.column)
            if step.whitespace:
                expr = expr.str.strip_chars().str.replace_all(r"\s+", " ")
            if step.case == "lower":
                expr = expr.str.to_lowercase()
            elif step.case == "upper":
                expr = expr.str.to_uppercase()
            return df.with_columns(expr), f"normalize:{step.column}"
        if isinstance(step, HashColumn):
            if step.column not in cols:
                return df, ""
            values = df[step.column].cast(pl.String).to_list()
            hashed = pl.Series(step.column, _core.hmac_column(values, self.hash_key), dtype=pl.String)
            return df.with_columns(hashed), f"hash:{step.column}"
        return df, ""  # Filter acts on whole events, in apply()

    def _filtered_ids(self, tables: dict[str, pl.DataFrame]) -> pl.Series | None:
        filters = [s for s in self.steps if isinstance(s, Filter)]
        if not filters:
            return None
        events = [df.select("id", pl.lit(kind).alias("_type"),
                            (pl.col("event_text") if "event_text" in df.columns else pl.lit(None, pl.String)).alias("_name"))
                  for kind, t in EVENT_TYPE_TABLES.items() if (df := tables.get(t)) is not None and df.height]
        if not events:
            return None
        ids = pl.concat(events)
        dropped = pl.Series("id", [], dtype=pl.String)
        for f in filters:
            match = pl.lit(True)
            if f.event_types:
                match = match & pl.col("_type").is_in(f.event_types)
            if f.event_names:
                match = match & pl.col("_name").is_in(f.event_names)
            matched = ids.filter(match)["id"]
            if f.column:
                with_col = pl.concat([df.select("id", pl.col(f.column).cast(pl.String).alias("_v"))
                                      for t, df in tables.items() if f.column in df.columns and t not in STATE_TABLES]
                                     or [pl.DataFrame(schema={"id": pl.String, "_v": pl.String})])
                hit = with_col.filter(pl.col("_v").is_in([str(v).lower() if isinstance(v, bool) else str(v)
                                                          for v in f.values]))["id"]
                matched = matched.filter(matched.is_in(hit.implode()))
            if f.action == "drop":
                dropped = pl.concat([dropped, matched])
            else:
                dropped = pl.concat([dropped, ids["id"].filter(~ids["id"].is_in(matched.implode()))])
        return dropped.unique()


def for_destination(cfg: Config, dest: DestinationPolicy, name: str = "") -> Transformer:
    """A destination's routing (its `sources`) and transforms, as one Transformer; an error
    names the config file and the destination's key at fault."""
    key = os.environ.get(cfg.pii.hash_key_env, "").encode()
    steps: list[Transform] = []
    if dest.sources:
        steps.append(Filter(action="keep", column="context_source_id", values=list(dest.sources)))
    try:
        function = _load_function(dest.transform_function) if dest.transform_function else None
    except ConfigError as e:
        raise ConfigError(e.message, file=cfg.path or None, key=f"destinations.{name}.transform_function") from None
    try:
        return Transformer([*steps, *dest.transforms], function, key)
    except ConfigError as e:
        raise ConfigError(e.message, file=cfg.path or None, key=f"destinations.{name}.transforms") from None
