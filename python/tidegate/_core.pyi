# Type stubs of the compiled module tidegate._core (rust/src/python.rs), checked against the
# built extension by `python -m mypy.stubtest tidegate._core` in scripts/test.

from collections.abc import Sequence
from typing import TypeAlias, final

from msgspec import Raw

# What the batch calls read without a copy: bytes, or any contiguous buffer of bytes.
_Bytes: TypeAlias = bytes | bytearray | memoryview | Raw

__all__ = [
    "__version__",
    "DEFAULT_SENSITIVE_KEYS",
    "SUPPORTED_KEYWORDS",
    "RESERVED_TABLES",
    "ingest",
    "BatchResult",
    "Buffer",
    "Governance",
    "process_batch",
    "message_index",
    "lateness",
    "archive_rows",
    "DedupeIndex",
    "IdentityGraph",
    "hmac_column",
    "normalized_id",
    "snake_case",
    "event_table",
    "idempotency_key",
]

__version__: str
DEFAULT_SENSITIVE_KEYS: list[str]
SUPPORTED_KEYWORDS: list[str]
RESERVED_TABLES: list[str]

def ingest(
    body: bytes,
    endpoint: str | None,
    source: str,
    received_at_us: int,
    partitions: int,
    max_event_bytes: int,
    max_request_bytes: int,
    max_batch_events: int,
) -> list[tuple[int, int, bytes]]:
    """Normalise one collector request into `(partition, event_count, envelope)` per partition;
    raises `tidegate.RequestRejected` (status, code, message)."""

@final
class Buffer:
    """Bytes owned by the core, read through the buffer protocol (``memoryview``, ``pa.py_buffer``)."""
    def __len__(self) -> int: ...

@final
class BatchResult:
    @property
    def events_in(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def late(self) -> int: ...
    @property
    def tables(self) -> list[tuple[str, list[tuple[str, str]], list[tuple[Buffer | None, Buffer, Buffer | None]], int]]: ...
    @property
    def discards(self) -> bytes: ...
    @property
    def discard_count(self) -> int: ...
    @property
    def rejected(self) -> bytes: ...
    @property
    def rejected_reasons(self) -> dict[str, int]: ...
    @property
    def keys(self) -> bytes: ...
    @property
    def violation_counts(self) -> list[tuple[str, str, str, int]]: ...
    @property
    def pii_counts(self) -> list[tuple[str, str, int]]: ...

@final
class Governance:
    def __new__(
        cls,
        plans: list[tuple[str, bytes]],
        sources: list[tuple[str, str, list[str]]],
        pii: tuple[list[str], list[tuple[str, str]], str, bytes] | None = None,
        lowercase_email_ids: bool = True,
        keep_identifiers: bool = False,
    ) -> Governance: ...

def process_batch(
    messages: Sequence[tuple[str, int, _Bytes, bytes, bytes]],
    extra: list[tuple[str, str | None]] | None = None,
    governance: Governance | None = None,
) -> BatchResult: ...
def message_index(source: str, events_json: _Bytes, kafka_time_us: int) -> tuple[bytes, bytes]: ...
def lateness(times: bytes, kafka_time_us: int, watermark: int | None, allowed_us: int, max_future_us: int) -> tuple[bytes, int | None]: ...
def archive_rows(
    messages: Sequence[_Bytes],
) -> tuple[tuple[Buffer | None, Buffer, Buffer], bytes, tuple[Buffer | None, Buffer, Buffer], bytes]: ...

@final
class DedupeIndex:
    def __new__(cls, window_us: int) -> DedupeIndex: ...
    def check(self, keys: bytes, now_us: int) -> tuple[bytes, bytes]: ...
    def load(self, keys: bytes, seen_at_us: int, now_us: int) -> None: ...
    def __len__(self) -> int: ...

@final
class IdentityGraph:
    def __new__(cls) -> IdentityGraph: ...
    def link(self, left: list[str], right: list[str]) -> list[str]: ...
    def resolve(self, nodes: list[str]) -> list[str]: ...
    def observe(self, nodes: list[str]) -> tuple[list[str], list[bool]]: ...
    def __len__(self) -> int: ...

def hmac_column(values: list[str | None], key: bytes) -> list[str | None]: ...
def normalized_id(id: str, lowercase_emails: bool = True) -> str: ...
def snake_case(name: str) -> str: ...
def event_table(name: str) -> str: ...
def idempotency_key(source: str, event_json: bytes) -> str: ...
