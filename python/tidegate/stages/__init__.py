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
        from ..regulations import SuppressionFilter

        self.cfg = cfg
        self.policy = build_policy(cfg)
        self.identity = identity or IdentityResolver()
        self.suppression = SuppressionFilter(cfg)

    def govern(self, decoded: DecodedBatch) -> GovernedBatch:
        batch = govern(decoded, config_version=self.cfg.version, policy=self.policy)
        return self.identity.process(batch)

    def shares(self, batch: GovernedBatch, destinations: list[str] | tuple[str, ...] | dict[str, object],
               warehouses: dict[str, object] | None = None) -> dict[str, GovernedBatch]:
        """Each destination's share: suppressed users removed, then its consent requirements.
        A changed suppression list is re-read first; pending deletions run on ``warehouses``."""
        from .consent import destination_batch

        if self.suppression.refresh() and warehouses:
            self.suppression.run_pending(warehouses)
        common = self.suppression.apply(batch)
        return {name: destination_batch(self.cfg, name, common) for name in destinations}

    def reload(self, cfg: Config) -> None:
        """Govern by a newly applied config from the next batch on."""
        from ..regulations import SuppressionFilter

        policy = build_policy(cfg)  # raises before anything changes if it does not compile
        self.cfg, self.policy = cfg, policy
        self.suppression = SuppressionFilter(cfg)
