"""Pipeline stages, one module each, in the order a batch goes through them.

Per Kafka message (the stateful admission step): ``dedupe`` (idempotency keys in the partition's
state) and ``reconcile`` (event-time watermark, lateness). Per batch: ``decode`` (msgspec) ->
``govern`` (one Rust call: envelope checks, tracking plan, PII, warehouse rows) -> ``identity``
(canonical ids) -> per destination: suppression and ``consent`` -> sinks.

Every delivery path — the stream, replay from the archive, dead-letter re-delivery and the
offline dry run — goes through :class:`PolicyPath`, so enforcement is the same on all of them.
"""

from __future__ import annotations

import dataclasses

import polars as pl

from .. import _core
from ..config import Config
from .decode import DecodedBatch, decode_messages
from .consent import EVENT_TABLES, filter_batch
from .govern import GovernedBatch, _table_frame, build_policy, govern
from .identity import REDACTED_MARK, IdentityResolver

__all__ = ["DecodedBatch", "decode_messages", "GovernedBatch", "govern", "build_policy", "PolicyPath", "treat_ids"]

_IDS_SOURCE = "tidegate.ids"  # no source of a config: its events meet no tracking plan, PII only


def treat_ids(ids: pl.Series, policy: _core.Governance) -> pl.DataFrame:
    """``raw`` → ``treated``: each of ``ids`` as ``policy``'s PII actions leave a user id (as it
    is, redacted, hashed, or null when the field or the event would be dropped). One core call for
    all of them, as the userIds of identify events, so that the treatment is exactly the one the
    events got; straight to the core, so no stage records metrics for them."""
    ids = ids.cast(pl.String).drop_nulls().unique(maintain_order=True).alias("raw")
    if ids.len() == 0:
        return pl.DataFrame({"raw": [], "treated": []}, schema={"raw": pl.String, "treated": pl.String})
    events = pl.DataFrame({"userId": ids}).select(
        pl.lit("identify").alias("type"), "userId", pl.format("i{}", pl.int_range(pl.len())).alias("messageId"),
        pl.lit("2000-01-01T00:00:00.000Z").alias("receivedAt")).write_json()
    result = _core.process_batch([(_IDS_SOURCE, 0, events.encode(), b"", b"")], [], policy)
    rows = next((_table_frame(columns, buffers, count) for name, columns, buffers, count in result.tables
                 if name == "identifies"), None)
    treated = pl.Series("treated", [None] * ids.len(), dtype=pl.String)
    if rows is not None and "user_id" in rows.columns:
        at = rows.select(pl.col("id").str.slice(1).cast(pl.Int64).alias("i"), pl.col("user_id").cast(pl.String))
        treated = (pl.DataFrame({"i": pl.int_range(ids.len(), eager=True)}).join(at, on="i", how="left", maintain_order="left")
                   ["user_id"].alias("treated"))
    return pl.DataFrame([ids, treated])


class PolicyPath:
    """The policy stages after decoding, shared by every delivery path: ``govern`` with the
    compiled policy, then ``identity``; ``shares`` adds suppression and consent per destination."""

    def __init__(self, cfg: Config, identity: IdentityResolver | None = None):
        self.identity = identity or IdentityResolver()
        self._compile(cfg)

    def _compile(self, cfg: Config) -> None:
        """Everything the config decides, built before anything is swapped in."""
        from ..regulations import SuppressionFilter
        from .transform import for_destination

        policy = build_policy(cfg)
        own_pii = {name: build_policy(cfg, d.pii, key=f"destinations.{name}.pii.actions")
                   for name, d in cfg.destinations.items() if d.pii is not None}
        transforms = {name: for_destination(cfg, d, name) for name, d in cfg.destinations.items()}
        self.cfg, self.policy, self.own_pii, self.transforms = cfg, policy, own_pii, transforms
        self.suppression = SuppressionFilter(cfg, policy, own_pii)

    def govern(self, decoded: DecodedBatch) -> GovernedBatch:
        batch = govern(decoded, config_version=self.cfg.version, policy=self.policy)
        return self.identity.process(batch)

    def shares(self, batch: GovernedBatch, destinations: list[str] | tuple[str, ...] | dict[str, object],
               warehouses: dict[str, object] | None = None) -> dict[str, GovernedBatch]:
        """Each destination's share: its own PII actions (a second core pass over the same
        messages when it has them), suppressed users removed, its consent requirements, then its
        transforms. A changed suppression list is re-read first; pending deletions run on
        ``warehouses``."""
        from .consent import destination_batch

        if self.suppression.refresh() and warehouses:
            self.suppression.run_pending(warehouses)
        common = self.suppression.apply(batch)
        out = {}
        for name in destinations:
            base = common
            if name in self.own_pii and batch.source is not None:
                base = self._own_pass(name, batch, common)
            share = destination_batch(self.cfg, name, base)
            out[name] = self.transforms[name].apply(share, name) if name in self.transforms else share
        return out

    def _own_pass(self, name: str, batch: GovernedBatch, common: GovernedBatch) -> GovernedBatch:
        """The events of ``batch`` governed again with destination ``name``'s own PII actions.
        Everything about who a row's person is, and whether they are suppressed, comes from the
        main pass, ``common`` (``batch`` without the suppressed users): the own pass's ids may be
        redacted or hashed, so they can neither be linked nor matched against the list. So the
        own pass keeps the events and refusals ``common`` kept, and its ids are ``common``'s,
        treated by the destination's actions (one core call for all of them)."""
        policy = self.own_pii[name]
        own = govern(batch.source, config_version=self.cfg.version, policy=policy, destination=name)
        kept = [common.tables[t]["id"] for t in EVENT_TABLES if t in common.tables]
        kept_ids = pl.concat(kept).cast(pl.String) if kept else pl.Series([], dtype=pl.String)
        own_ids = [own.tables[t]["id"].cast(pl.String) for t in EVENT_TABLES if t in own.tables]
        gone_ids = pl.concat(own_ids).filter(~pl.concat(own_ids).is_in(kept_ids.implode())) if own_ids else kept_ids.clear()
        main_users, kept_users = batch.tables.get("users"), common.tables.get("users")
        gone_users = main_users["id"].cast(pl.String) if main_users is not None else kept_ids.clear()
        if kept_users is not None:
            gone_users = gone_users.filter(~gone_users.is_in(kept_users["id"].cast(pl.String).implode()))
        mapping = treat_ids(pl.concat([self.identity.ids_to_restamp(common), gone_users]), policy)
        treated_gone = gone_users.to_frame("raw").join(mapping, on="raw", how="left")["treated"].drop_nulls()
        own = filter_batch(own, gone_ids, treated_gone)
        if own.rejected.height:
            own = dataclasses.replace(own, rejected=own.rejected.filter(pl.col("id").is_in(common.rejected["id"].implode())))
        own = self.identity.stamp_as(own, common, mapping)
        users = own.tables.get("users")
        if users is not None and users.height:
            # a users row keyed by a redacted id would merge every such user's traits into one
            users = users.filter(~pl.col("id").cast(pl.String).str.contains(REDACTED_MARK, literal=True))
            if users.height:
                own.tables["users"] = users
            else:
                del own.tables["users"]
        return own

    def reload(self, cfg: Config) -> None:
        """Govern by a newly applied config from the next batch on (raises, changing nothing, if
        it does not compile)."""
        self._compile(cfg)
