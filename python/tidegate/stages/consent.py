"""Stage `consent`: per destination, drop the events whose user did not consent to what the
destination needs. Vectorised over the batch's columns (polars); no Python loop per event.

Two consent vocabularies are understood, both read from the flattened ``context_*`` columns:

* RudderStack ``context.consentManagement`` (``deniedConsentIds`` — a JSON array held as text in
  ``context_consent_management_denied_consent_ids`` —, ``provider``, ``resolutionStrategy``).
  Only denied ids are evaluated (RudderStack ignores ``allowedConsentIds`` too). With the
  destination's ``consents``: strategy ``and`` (the default) drops the event if *any* of them is
  denied; ``or`` drops it only if *all* of them are. The strategy comes from the destination for
  provider ``custom`` (and for events naming no provider), from the event otherwise
  (``resolutionStrategy``, ``and`` when absent) — RudderStack's rule.
* Segment ``context.consent.categoryPreferences`` (one boolean column per category,
  ``context_consent_category_preferences_<snake_case category>``): the event reaches the
  destination only if every one of its ``categories`` is ``true``. Events carrying no category
  preferences at all are not filtered.

Requirements are the workspace's ``[consent]`` unless the destination has its own ``consent``
table, which replaces them whole (``consent = {}`` on a destination opts it out).

A dropped event's rows go from every table of the destination's copy of the batch (by ``id``),
its value discards with it, and the ``users`` row of a user one of whose ``identify`` calls was
dropped (the row merges that call's traits, so it cannot be kept for that destination).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import polars as pl

from .. import _core, metrics
from ..config import Config, ConsentConfig
from .govern import GovernedBatch, hourly_counts

__all__ = ["requirements", "drop_mask", "apply_consent", "filter_batch", "destination_batch", "dropped", "EVENT_TABLES",
           "DENIED_COLUMN", "PROVIDER_COLUMN", "STRATEGY_COLUMN", "CATEGORY_PREFIX"]

EVENT_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")
DENIED_COLUMN = "context_consent_management_denied_consent_ids"
PROVIDER_COLUMN = "context_consent_management_provider"
STRATEGY_COLUMN = "context_consent_management_resolution_strategy"
CATEGORY_PREFIX = "context_consent_category_preferences_"


def requirements(cfg: Config, destination: str) -> ConsentConfig:
    """The consent requirements of a destination: its own, else the workspace's."""
    own = getattr(cfg.destinations[destination], "consent", None)
    return own if own is not None else cfg.consent


def _truthy(df: pl.DataFrame, column: str) -> pl.Expr:
    dtype = df.schema[column]
    if dtype == pl.Boolean:
        return pl.col(column)
    return pl.col(column).cast(pl.String).str.to_lowercase().is_in(["true", "1", "yes"])


def drop_mask(df: pl.DataFrame, req: ConsentConfig) -> pl.Expr:
    """A boolean expression over ``df``'s rows: True where the event must not reach a destination
    with requirements ``req``."""
    drop = pl.lit(False)
    consents = sorted(set(req.consents))
    if consents and DENIED_COLUMN in df.columns:
        denied = pl.col(DENIED_COLUMN)
        if df.schema[DENIED_COLUMN] == pl.String:
            denied = denied.str.json_decode(pl.List(pl.String))
        denied_count = (denied.list.unique().list.eval(pl.element().cast(pl.String).is_in(consents))
                        .list.sum().fill_null(0))
        own = pl.lit(req.resolution_strategy)
        provider = pl.col(PROVIDER_COLUMN).str.to_lowercase() if PROVIDER_COLUMN in df.columns else pl.lit(None, pl.String)
        event_strategy = (pl.col(STRATEGY_COLUMN).str.to_lowercase().fill_null("and")
                          if STRATEGY_COLUMN in df.columns else pl.lit("and"))
        strategy = pl.when(provider.is_null() | (provider == "custom")).then(own).otherwise(event_strategy)
        drop = drop | (pl.when(strategy == "or").then(denied_count >= len(consents)).otherwise(denied_count > 0))
    if req.categories:
        present = [c for c in df.columns if c.startswith(CATEGORY_PREFIX)]
        if present:
            has_preferences = pl.any_horizontal([pl.col(c).is_not_null() for c in present])
            wanted = [CATEGORY_PREFIX + _core.snake_case(c) for c in req.categories]
            granted = pl.all_horizontal([_truthy(df, c).fill_null(False) if c in df.columns else pl.lit(False)
                                         for c in wanted])
            drop = drop | (has_preferences & ~granted)
    return drop


def filter_batch(batch: GovernedBatch, drop_ids: pl.Series, drop_users: pl.Series) -> GovernedBatch:
    """A copy of ``batch`` without the events ``drop_ids`` (every table, by ``id``), their value
    discards, the ``users`` rows ``drop_users``, and the ``identity_map`` rows of ids that only
    dropped events name (a mapping says who someone is: it goes where their events go);
    ``accepted`` and the hourly counts follow."""
    if drop_ids.len() == 0 and drop_users.len() == 0:
        return batch
    gone_nodes = _nodes_only_in(batch, drop_ids) if "identity_map" in batch.tables and drop_ids.len() else None
    tables: dict[str, pl.DataFrame] = {}
    for name, df in batch.tables.items():
        gone = drop_users if name == "users" else gone_nodes if name == "identity_map" else drop_ids
        if "id" in df.columns and gone is not None and gone.len():
            df = df.filter(~pl.col("id").is_in(gone.implode()))
        if df.height or batch.tables[name].height == 0:  # a table emptied here is left out
            tables[name] = df
    discards = batch.discards
    if discards.height and drop_ids.len():
        discards = discards.filter(~pl.col("row_id").is_in(drop_ids.implode()))
    kept = sum(tables[t].height for t in EVENT_TABLES if t in tables)
    return dataclasses.replace(batch, tables=tables, discards=discards, accepted=kept,
                               hourly_counts=hourly_counts(tables.get("tracks")))


def _nodes_only_in(batch: GovernedBatch, drop_ids: pl.Series) -> pl.Series:
    """The identity nodes (``u:<user id>``, ``a:<anonymous id>``, as ``identity_map.id``) that the
    events ``drop_ids`` name and no other event of ``batch`` does."""
    frames = [df.lazy().select(pl.col("id").is_in(drop_ids.implode()).alias("gone"),
                               (pl.lit(p) + pl.col(c).cast(pl.String)).alias("node"))
              for name in EVENT_TABLES if (df := batch.tables.get(name)) is not None
              for c, p in (("user_id", "u:"), ("anonymous_id", "a:")) if c in df.columns]
    if not frames:
        return pl.Series([], dtype=pl.String)
    nodes = pl.concat(frames).drop_nulls("node").group_by("node").agg(pl.col("gone").all()).filter("gone").collect()
    return nodes["node"]


def dropped(batch: GovernedBatch, mask_of: Callable[[pl.DataFrame], pl.Expr]) -> tuple[pl.Series, pl.Series]:
    """(event ids, user ids of identifies) of the event-table rows where ``mask_of(df)`` holds."""
    ids: list[pl.Series] = []
    users: list[pl.Series] = []
    for name in EVENT_TABLES:
        df = batch.tables.get(name)
        if df is None or df.is_empty():
            continue
        hit = df.filter(mask_of(df))
        if hit.height:
            ids.append(hit["id"].cast(pl.String))
            if name == "identifies" and "user_id" in hit.columns:
                users.append(hit["user_id"].cast(pl.String).drop_nulls())
    empty = pl.Series([], dtype=pl.String)
    return (pl.concat(ids) if ids else empty), (pl.concat(users).unique() if users else empty)


def apply_consent(batch: GovernedBatch, req: ConsentConfig, destination: str) -> GovernedBatch:
    """The destination's copy of ``batch``: events without the consent ``req`` needs removed, and
    counted in ``tidegate_consent_drops_total{destination}``."""
    if not req.consents and not req.categories:
        return batch
    ids, users = dropped(batch, lambda df: drop_mask(df, req))
    if ids.len():
        metrics.policy.consent_drops.labels(destination).inc(ids.len())
    return filter_batch(batch, ids, users)


def destination_batch(cfg: Config, destination: str, batch: GovernedBatch) -> GovernedBatch:
    """What ``destination`` receives of a governed (and suppression-filtered) batch: the one
    per-destination policy step every delivery path (stream, DLQ replay, dry run) goes through."""
    return apply_consent(batch, requirements(cfg, destination), destination)
