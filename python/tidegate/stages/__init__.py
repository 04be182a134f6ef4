"""Pipeline stages, one module each, in the order a batch goes through them:

``decode`` (Kafka messages -> envelopes, msgspec) -> ``govern`` (one Rust call per batch:
envelope checks, idempotency keys, warehouse rows) -> sinks.
"""

from .decode import DecodedBatch, decode_messages
from .govern import GovernedBatch, build_policy, govern

__all__ = ["DecodedBatch", "decode_messages", "GovernedBatch", "govern", "build_policy"]
