"""Stage `dedupe`: drop events already delivered, by idempotency key, within a window.

Runs inside the pipeline's stateful admission step on each raw-topic message, before the batch
stages. The keys (``messageId`` scoped by source, or the content hash) come from the Rust core in
one call per message; each is looked up in the partition's state store (RocksDB, backed by a changelog
topic, so it moves with the partition on a rebalance and survives crashes) and new ones are
stored with a TTL of the window, which keeps the state bounded. The message goes on with one
flag byte per event; the govern stage skips flagged events and counts them.

State changes commit together with the consumer offsets at each checkpoint, after every sink
flushed: a crash before the commit forgets the keys *and* re-reads the messages, so nothing is
lost, and idempotent sink writes absorb the re-delivery.
"""

from __future__ import annotations

from datetime import timedelta
from quixstreams.state import State


__all__ = ["Dedupe"]


class Dedupe:
    def __init__(self, window_s: float):
        self.ttl = timedelta(seconds=window_s)

    def flags(self, keys: bytes, state: State) -> bytes:
        """One byte per 16-byte key: 1 if already seen within the window, else 0 (and remembered)."""
        flags = bytearray(len(keys) // 16)
        # One state lookup per event key: the state store has no multi-get.
        for i in range(len(flags)):
            k = keys[16 * i:16 * i + 16]
            if state.exists(k):
                flags[i] = 1
            else:
                state.set_bytes(k, b"", ttl=self.ttl)
        return bytes(flags)
