"""Pipeline stages, one module each, in the order a batch goes through them.

Per Kafka message (the stateful admission step): ``dedupe`` (idempotency keys in the partition's
state) and ``reconcile`` (event-time watermark, lateness). Per batch: ``decode`` (msgspec) ->
``govern`` (one Rust call: envelope checks, tracking plan, PII, warehouse rows) -> ``identity``
(canonical ids) -> per destination: suppression and ``consent`` -> sinks.

Every delivery path — the stream, replay from the archive, dead-letter re-delivery and the
offline dry run — goes through :class:`PolicyPath`, so enforcement is the same on all of them.
"""

from __future__ import annotations

from ..config import Config
from .decode import DecodedBatch, decode_messages
from .govern import GovernedBatch, build_policy, govern
from .identity import IdentityResolver

__all__ = ["DecodedBatch", "decode_messages", "GovernedBatch", "govern", "build_policy", "PolicyPath"]


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
        self.suppression = SuppressionFilter(cfg)

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
                own = govern(batch.source, config_version=self.cfg.version, policy=self.own_pii[name], destination=name)
                base = self.suppression.apply(self.identity.process(own, share=False), count=False)
            share = destination_batch(self.cfg, name, base)
            out[name] = self.transforms[name].apply(share, name) if name in self.transforms else share
        return out

    def reload(self, cfg: Config) -> None:
        """Govern by a newly applied config from the next batch on (raises, changing nothing, if
        it does not compile)."""
        self._compile(cfg)
