"""Configuration as data: one TOML file decoded into frozen msgspec Structs.

``load_config(path)`` decodes and validates without I/O beyond reading the file; components
build their runtime objects from these Structs. Every field carries a one-line description,
from which ``tidegate config-reference`` prints the configuration reference.

Environment variables override file values: ``TIDEGATE__<SECTION>__<KEY>`` (double
underscores between levels), e.g. ``TIDEGATE__KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``TIDEGATE__SOURCES__WEB__WRITE_KEY=...``. Values are read as TOML literals when they parse as
one (``8080``, ``true``), as plain strings otherwise.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

import msgspec
import msgspec.inspect
from msgspec import Meta, Struct

from .errors import ConfigError

__all__ = [
    "Config",
    "KafkaConfig",
    "CollectorConfig",
    "PipelineConfig",
    "SourceConfig",
    "PlanConfig",
    "PiiConfig",
    "ViolationActions",
    "DuckDBDestination",
    "PostgresDestination",
    "DeltaDestination",
    "KafkaDestination",
    "WebhookDestination",
    "Destination",
    "ArchiveConfig",
    "AuditConfig",
    "ConsentConfig",
    "RegulationsConfig",
    "DeliveryConfig",
    "load_config",
    "config_reference",
]

ENV_PREFIX = "TIDEGATE__"


def _doc(text: str) -> Meta:
    return Meta(description=text)


class KafkaConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    bootstrap_servers: Annotated[str, _doc("Kafka bootstrap servers, comma separated.")] = "127.0.0.1:9092"
    raw_topic: Annotated[str, _doc("Topic the collector writes accepted events to (batched envelopes).")] = "tidegate.raw"
    partitions: Annotated[int, _doc("Partitions of the raw topic when Tidegate creates it; the ceiling on pipeline replicas."), Meta(ge=1)] = 4
    replication_factor: Annotated[int, _doc("Replication factor of topics Tidegate creates."), Meta(ge=1)] = 1
    consumer_group: Annotated[str, _doc("Consumer group of the pipeline; replicas with the same group share the partitions.")] = "tidegate-pipeline"
    auto_offset_reset: Annotated[Literal["earliest", "latest"], _doc("Where a new consumer group starts reading the raw topic.")] = "earliest"
    settings: Annotated[dict[str, str], _doc("Extra librdkafka settings for every client (security.protocol, sasl.*, ...).")] = {}


class CollectorConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: Annotated[str, _doc("Address the HTTP collector listens on.")] = "127.0.0.1"
    port: Annotated[int, _doc("Port of the HTTP collector."), Meta(ge=0, le=65535)] = 8080
    max_event_bytes: Annotated[int, _doc("Largest accepted event in bytes (413 beyond)."), Meta(ge=1024)] = 32 * 1024
    max_request_bytes: Annotated[int, _doc("Largest accepted request body in bytes, after gzip decoding (413 beyond)."), Meta(ge=1024)] = 4 * 1024 * 1024
    max_batch_events: Annotated[int, _doc("Most events in one /v1/batch request (413 beyond)."), Meta(ge=1)] = 10_000
    ack_timeout_s: Annotated[float, _doc("How long a request waits for Kafka to acknowledge (waiting out a full producer queue included) before answering 502 (503 when nothing of the request reached Kafka)."), Meta(gt=0)] = 30.0
    max_in_flight_requests: Annotated[int, _doc("Concurrent requests waiting for Kafka before new ones get 429."), Meta(ge=1)] = 2048


class PipelineConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    processing_guarantee: Annotated[Literal["at-least-once", "exactly-once"], _doc("Kafka processing guarantee of the pipeline's consumer.")] = "at-least-once"
    commit_interval_s: Annotated[float, _doc("Seconds between checkpoints: sinks flush and offsets commit at each. Shorter means lower latency and more, smaller destination writes (measured: p99 1.9 s at half the max rate with 0.25 over a 15 s load step; 2.3 s with 0.5 and 3.2 s with 1.0 on shorter steps)."), Meta(gt=0)] = 0.25
    max_commit_interval_s: Annotated[float, _doc("While the pipeline is behind (the newest message of a checkpoint is older than this, by its Kafka timestamp), each next checkpoint lasts twice as long, up to this; the first checkpoint that is not behind goes back to commit_interval_s. A checkpoint waits for all its writes before consumption goes on, so fewer checkpoints while catching up on a backlog mean fewer such pauses (measured on 300K-event drains: 44K instead of 41K events/s on average); at rates the pipeline keeps up with nothing changes. Equal to commit_interval_s turns it off."), Meta(gt=0)] = 2.0
    max_batch_messages: Annotated[int, _doc("Also checkpoint after this many Kafka messages, which bounds memory and latency when catching up on a backlog (0: time only)."), Meta(ge=0)] = 4000
    max_write_mb: Annotated[float, _doc("Messages go to the stages and destinations in writes of this many MB of raw events, each started as soon as it is consumed (what is left at a checkpoint is its last write). Larger writes pay each destination's per-statement cost less often; smaller ones bound memory (measured on a drain: 8 MB 34K events/s at 1.10 GB peak RSS, 16 MB 40K at 1.25 GB)."), Meta(gt=0)] = 16.0
    state_dir: Annotated[str, _doc("Directory of the pipeline's local state (Quix Streams state stores).")] = "data/state"
    metrics_port: Annotated[int, _doc("Port of the pipeline's /metrics, /healthz and /readyz (0: off)."), Meta(ge=0, le=65535)] = 9108
    metrics_host: Annotated[str, _doc("Address the pipeline's metrics server listens on.")] = "127.0.0.1"
    stall_timeout_s: Annotated[float, _doc("The pipeline's /healthz answers 503 (stalled, and why) while one of its writes, checkpoints or upkeep tasks has run longer than this, e.g. a destination that stopped answering inside a call: a liveness probe then restarts the process, which re-reads from the last commit. The gauge tidegate_pipeline_longest_task_seconds shows the running time. Keep it well above delivery.write_timeout_s and the slowest checkpoint you expect; 0 turns it off."), Meta(ge=0)] = 300.0
    dedupe_window_s: Annotated[float, _doc("Duplicates (same idempotency key) within this many seconds are dropped and counted; 0 turns dedupe off. The window's keys are also held in memory, ≈107 bytes each (measured RSS): 1,000 events/s for 24 h is ≈9 GB, for 1 h ≈390 MB."), Meta(ge=0)] = 86_400.0
    allowed_lateness_s: Annotated[float, _doc("Events more than this behind the partition's event-time watermark are delivered flagged `late`, and restate the hourly aggregates."), Meta(ge=0)] = 3600.0
    session_timeout_s: Annotated[float, _doc("Kafka consumer session timeout: how soon a dead replica's partitions move to the others."), Meta(ge=6, le=300)] = 10.0
    fetch_queue_mb: Annotated[int, _doc("Kafka consumer's pre-fetch queue (librdkafka queued.max.messages.kbytes): how many MB of raw messages wait beyond what the pipeline is working on. Measured on 300K-event drains: 16 gave peak RSS 1,041-1,054 MB against 1,116-1,144 MB with librdkafka's 64, at the same rate (41-43K vs 38-41K events/s)."), Meta(ge=1)] = 16


ViolationAction = Literal["forward", "drop"]


class ViolationActions(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What happens to an event with a violation of each type (RudderStack's types)."""

    unplanned_event: Annotated[ViolationAction, _doc("Unplanned-Event: a track event the plan does not name.")] = "forward"
    additional_properties: Annotated[ViolationAction, _doc("Additional-Properties: properties the schema does not allow.")] = "forward"
    required_missing: Annotated[ViolationAction, _doc("Required-Missing: a required property is absent.")] = "forward"
    datatype_mismatch: Annotated[ViolationAction, _doc("Datatype-Mismatch: a value of the wrong type.")] = "forward"
    advance_rules_violation: Annotated[ViolationAction, _doc("Advance-Rules-Violation: enum, pattern, min/max, length, format.")] = "forward"
    unknown_violation: Annotated[ViolationAction, _doc("Unknown-Violation: anything else.")] = "forward"

    def dropped(self) -> list[str]:
        """RudderStack names of the violation types that drop an event."""
        return [f.replace("_", " ").title().replace(" ", "-") for f in self.__struct_fields__ if getattr(self, f) == "drop"]


class SourceConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    write_key: Annotated[str, _doc("Write key SDKs send as the HTTP Basic username."), Meta(min_length=1)]
    enabled: Annotated[bool, _doc("A disabled source's requests get 404, as RudderStack does.")] = True
    tracking_plan: Annotated[str | None, _doc("Id of the [plans.<id>] this source's events are checked against.")] = None
    violations: Annotated[ViolationActions, _doc("Per violation type: forward (with context.violationErrors) or drop (to discarded_events).")] = ViolationActions()


class PlanConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A tracking plan: JSON Schema per event (see README, "Tracking plans")."""

    path: Annotated[str, _doc("JSON file of the plan: {id, version, events: {name: schema}, identify, page, screen, group, common}.")]


class IdentityConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Identifier normalisation and the identity graph (ids are always trimmed)."""

    lowercase_email_ids: Annotated[bool, _doc("Lower-case userId/anonymousId/previousId/groupId values that are email addresses.")] = True
    share_across_replicas: Annotated[bool, _doc("Share identity merges between pipeline replicas through the `<raw_topic>.identity` topic.")] = True


PiiActionName = Literal["allow", "redact", "hash", "drop_field", "block_event"]


class PiiConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """PII detection over every string at every depth, and what to do with each class."""

    enabled: Annotated[bool, _doc("Scan events for PII and apply the actions.")] = True
    sensitive_keys: Annotated[list[str] | None, _doc("Key names whose values are PII whatever they hold (default: password, passwd, ssn, token, secret, credit_card, ...).")] = None
    actions: Annotated[dict[str, PiiActionName], _doc("Action per class: email, phone, credit_card, ssn, iban, ipv4, ipv6, key_name. `redact` and `drop_field` leave identifiers (userId, anonymousId, previousId, groupId) as they are, since people are told apart and joined by them; `hash` hashes them too.")] = msgspec.field(
        default_factory=lambda: {"credit_card": "redact", "ssn": "redact", "iban": "redact", "key_name": "redact"})
    default_action: Annotated[PiiActionName, _doc("Action for classes not listed in `actions`.")] = "allow"
    hash_key_env: Annotated[str, _doc("Environment variable holding the HMAC key for `hash` (at least 16 bytes).")] = "TIDEGATE_PII_HASH_KEY"


ResolutionStrategy = Literal["and", "or"]


class ConsentConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Consent requirements of a destination (see README, "Consent and regulations"). The workspace's
    `[consent]` applies to every destination without a `consent` table of its own."""

    consents: Annotated[list[str], _doc("RudderStack consent ids (context.consentManagement.deniedConsentIds vocabulary) this destination needs.")] = []
    resolution_strategy: Annotated[ResolutionStrategy, _doc("For provider `custom` (or no provider): `and` drops an event if any of `consents` is denied, `or` only if all are; other providers' events carry their own strategy (default `and`).")] = "and"
    categories: Annotated[list[str], _doc("Segment consent categories (context.consent.categoryPreferences keys) the user must have granted, all of them; events without a consent object are not filtered.")] = []


class DestinationPii(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A destination's own PII actions, replacing the workspace's [pii] actions for it (detection
    and the hash key stay the workspace's)."""

    actions: Annotated[dict[str, PiiActionName], _doc("Action per class for this destination (email, phone, credit_card, ssn, iban, ipv4, ipv6, key_name).")] = {}
    default_action: Annotated[PiiActionName, _doc("Action for classes not listed in `actions`.")] = "allow"


class Rename(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="rename", tag_field="type"):
    """Rename a column."""

    from_: Annotated[str, _doc("Column to rename (warehouse name, e.g. `revenue`, `context_ip`)."), Meta(min_length=1)] = msgspec.field(name="from")
    to: Annotated[str, _doc("New column name."), Meta(min_length=1)]


class SetDefault(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="set_default", tag_field="type"):
    """Fill a column where it is missing or null."""

    column: Annotated[str, _doc("Column to fill."), Meta(min_length=1)]
    value: Annotated[str | int | float | bool, _doc("Value to fill with.")]
    tables: Annotated[list[str], _doc("Tables to apply it to (default: every event table).")] = []


class DropColumn(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="drop_field", tag_field="type"):
    """Remove a column."""

    column: Annotated[str, _doc("Column to remove."), Meta(min_length=1)]


class CopyColumn(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="copy", tag_field="type"):
    """Copy one column to another, or derive one by joining several."""

    from_: Annotated[list[str], _doc("Source column(s); several are joined with `separator`."), Meta(min_length=1)] = msgspec.field(name="from")
    to: Annotated[str, _doc("Target column."), Meta(min_length=1)]
    separator: Annotated[str, _doc("Separator between joined source columns.")] = " "


class Normalize(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="normalize", tag_field="type"):
    """Normalise a text column's case and whitespace."""

    column: Annotated[str, _doc("Text column to normalise."), Meta(min_length=1)]
    case: Annotated[Literal["lower", "upper", "keep"], _doc("Case to convert to.")] = "keep"
    whitespace: Annotated[bool, _doc("Trim and collapse runs of whitespace to one space.")] = True


class HashColumn(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="hash", tag_field="type"):
    """Replace a column's values by their keyed HMAC-SHA256 (the [pii] hash key)."""

    column: Annotated[str, _doc("Column to hash."), Meta(min_length=1)]


class Filter(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="filter", tag_field="type"):
    """Keep or drop whole events by type, name or a column's value."""

    action: Annotated[Literal["keep", "drop"], _doc("`keep`: only matching events go to this destination; `drop`: matching events do not.")] = "drop"
    event_types: Annotated[list[Literal["track", "identify", "page", "screen", "group", "alias"]], _doc("Match these types (track, identify, page, screen, group, alias).")] = []
    event_names: Annotated[list[str], _doc("Match these track event names.")] = []
    column: Annotated[str, _doc("Match rows whose `column` has one of `values`.")] = ""
    values: Annotated[list[str | int | float | bool], _doc("Values of `column` that match.")] = []


Transform = Union[Rename, SetDefault, DropColumn, CopyColumn, Normalize, HashColumn, Filter]


class DestinationPolicy(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What every destination can say about the events it receives."""

    sources: Annotated[list[str], _doc("Sources whose events this destination receives (default: every source).")] = []
    consent: Annotated[ConsentConfig | None, _doc("This destination's consent requirements, replacing the workspace's [consent] (same keys); unset: inherit.")] = None
    pii: Annotated[DestinationPii | None, _doc("This destination's PII actions, replacing the workspace's [pii] actions; unset: inherit.")] = None
    transforms: Annotated[list[Transform], _doc("Declarative transforms, applied in order: rename, set_default, drop_field, copy, normalize, hash, filter.")] = []
    transform_function: Annotated[str | None, _doc("`module:function` called as function(table_name, polars.DataFrame) -> DataFrame after the declarative transforms.")] = None


class DuckDBDestination(DestinationPolicy, tag="duckdb", tag_field="type"):
    """The embedded DuckDB warehouse (the default destination)."""

    path: Annotated[str, _doc("DuckDB database file; created with its directory if missing.")] = "data/tidegate.duckdb"
    schema: Annotated[str, _doc("Schema the tables are written to."), Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "main"
    checkpoint_threshold_mb: Annotated[int, _doc("Write-ahead log size at which DuckDB checkpoints; larger is faster for steady loads, slower to reopen after a crash."), Meta(ge=1)] = 256
    memory_limit_mb: Annotated[int, _doc("DuckDB's memory limit, which bounds what it caches of checkpointed data (without one the cache grows with the warehouse, up to 80% of the machine's memory). DuckDB also holds data not yet checkpointed (up to checkpoint_threshold_mb of WAL) and the `users` table's key index within it; a write that needs more is written again with a limit 1.5× higher (a warning says so, and `tidegate_sink_memory_limit_bytes` shows the limit). 0 keeps DuckDB's own. The default, 256, held 300K-event drains at a peak RSS of 979-1,044 MB (1,069-1,094 MB with 512) and a 1.5M-event drain at 1,180 MB (1,365 MB), for 4-6% less throughput; give it more where memory allows."), Meta(ge=0)] = 256
    idle_checkpoint_mb: Annotated[int, _doc("When no write is waiting, checkpoint once the write-ahead log holds this many MB (0: off, only at checkpoint_threshold_mb). Smaller, more frequent checkpoints in the pipeline's idle moments instead of one large one that stalls a write: with 64, 300K-event drains peaked at 792-819 MB RSS instead of 898-922 at the same rate (50.6/44.8/51.3/54.0K against 50.2/46.8/46.7/49.5K events/s, alternating), and at half the max rate p99 was 1.63/1.77/2.06 s (25.6K/24.8K/27.3K events/s offered) instead of 1.82-3.38 s (24.4-24.9K)."), Meta(ge=0)] = 64
    vacuum_every: Annotated[int, _doc("Let every Nth checkpoint Tidegate runs in an idle moment vacuum (DuckDB merges what was appended since the last checkpoint into the table's partly filled row group, rewriting it); the other checkpoints, DuckDB's own included, skip that, so each of them adds about its share of idle_checkpoint_mb to each table as a row group of its own. 0 (the default): only when closing and after a user's rows were deleted (regulations). 1: at every checkpoint, as DuckDB does by itself. Measured over 900K events in 18,750-event writes: with 1 a checkpoint's cost grew with the tables (1.4 µs per event over the first 300K, 5-10 µs after 450K), with 0 it stayed at 1.4-2.9; the file was 125 MB instead of 97 (tracks in 9 row groups instead of 5, queries as fast); with 8, every 8th checkpoint took ≈2.4 s. In the live benchmark 0 delivered 33.2K events/s at 75% of the max rate against 28.2K with 1."), Meta(ge=0)] = 0
    threads: Annotated[int, _doc("DuckDB's worker threads for the writes; 0 keeps DuckDB's own (one per core). The pipeline's own threads govern and archive while DuckDB writes, so one DuckDB thread measured fastest on 2 cores: a 20,000-event write took 221 ms with 1 thread, 259 ms with 2."), Meta(ge=0)] = 1


class PostgresDestination(DestinationPolicy, tag="postgres", tag_field="type"):
    """A PostgreSQL warehouse: the DuckDB layout and semantics, loaded with COPY."""

    dsn: Annotated[str, _doc("libpq connection string or URI, e.g. postgresql://user@host:5432/db (the password may come from PGPASSWORD)."), Meta(min_length=1)] = "postgresql://tidegate:tidegate@127.0.0.1:55432/tidegate"
    schema: Annotated[str, _doc("Schema the tables are written to; created if missing."), Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "public"
    connect_timeout_s: Annotated[int, _doc("Seconds to wait for a connection before the batch is retried later."), Meta(ge=1)] = 10


class DeltaDestination(DestinationPolicy, tag="delta", tag_field="type"):
    """Delta Lake tables (one per warehouse table) partitioned by event date, for the data lake."""

    path: Annotated[str, _doc("Local directory holding one Delta table per warehouse table; created if missing.")] = "data/delta"
    compact_after_files: Annotated[int, _doc("Compact a table (its small files rewritten into files of up to 64 MB, in the dates written since) once this many files were added to it since its last compaction; at most one table per write. Every write adds a file per table and date, and a write's cost grows with the files a table has (measured: 1,000-event writes 206 ms with 30 files per table, 748 ms with 180). Compaction leaves the replaced files for VACUUM, so time travel keeps working; 0 turns it off."), Meta(ge=0)] = 32


class KafkaDestination(DestinationPolicy, tag="kafka", tag_field="type"):
    """A Kafka topic of governed events for downstream consumers: one JSON message per event, keyed by id."""

    topic: Annotated[str, _doc("Topic the governed events are written to; created if missing."), Meta(min_length=1)] = "tidegate.governed"
    bootstrap_servers: Annotated[str, _doc("Kafka bootstrap servers of the destination cluster, comma separated.")] = "127.0.0.1:9092"
    partitions: Annotated[int, _doc("Partitions of the topic when Tidegate creates it."), Meta(ge=1)] = 4
    replication_factor: Annotated[int, _doc("Replication factor of the topic when Tidegate creates it."), Meta(ge=1)] = 1
    delivery_timeout_s: Annotated[float, _doc("How long a batch may wait for the broker's acknowledgements before it is retried."), Meta(gt=0)] = 30.0
    settings: Annotated[dict[str, str], _doc("Extra librdkafka producer settings (security.protocol, sasl.*, compression.type, ...).")] = {}


class WebhookDestination(DestinationPolicy, tag="webhook", tag_field="type"):
    """An HTTP endpoint that receives governed events as batched JSON POSTs."""

    url: Annotated[str, _doc("URL the batches are POSTed to."), Meta(pattern=r"^https?://")]
    headers: Annotated[dict[str, str], _doc("Extra HTTP headers sent with every request.")] = {}
    username: Annotated[str, _doc("HTTP Basic auth user name (empty: no Basic auth).")] = ""
    password_env: Annotated[str, _doc("Environment variable holding the HTTP Basic auth password.")] = ""
    token_env: Annotated[str, _doc("Environment variable holding a bearer token (sent as Authorization: Bearer ...).")] = ""
    max_batch_events: Annotated[int, _doc("Most events in one request; a larger batch is split."), Meta(ge=1)] = 500
    timeout_s: Annotated[float, _doc("Timeout of one request in seconds."), Meta(gt=0)] = 10.0
    max_retries: Annotated[int, _doc("Retries of a request after a 5xx, 408, 429 or connection error, before the batch fails. A 3xx is not followed (a POST would come back a GET without its body): it fails the batch at once, naming the Location; set `url` to the final URL."), Meta(ge=0)] = 5
    backoff_initial_s: Annotated[float, _doc("Upper bound of the first retry's jittered delay; doubles per retry."), Meta(ge=0)] = 0.5
    backoff_max_s: Annotated[float, _doc("Largest delay between retries."), Meta(ge=0)] = 30.0
    request_id_header: Annotated[str, _doc("Header carrying the request id, the same for every retry of the same events (for idempotency)."), Meta(min_length=1)] = "Idempotency-Key"


class ArchiveConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The raw archive: every accepted event as Parquet, partitioned by source, date and hour (see README, "Archive and replay")."""

    enabled: Annotated[bool, _doc("Archive every accepted raw event (needed by `tidegate replay` and the preview of `tidegate plan`).")] = True
    path: Annotated[str, _doc("Directory of the archive: source=<s>/date=YYYY-MM-DD/hour=HH/*.parquet, plus a crash-safe spool.")] = "data/archive"
    flush_events: Annotated[int, _doc("A Parquet file is written once this many events are buffered..."), Meta(ge=1)] = 100_000
    flush_seconds: Annotated[float, _doc("...or once the oldest buffered event waited this many seconds."), Meta(gt=0)] = 300.0


class AuditConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Configuration as code: where `tidegate apply` records applied versions (see README, "Configuration as code")."""

    path: Annotated[str, _doc("Directory of the hash-chained audit log (audit.jsonl) and the applied config copies.")] = "data/audit"


class RegulationsConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Suppression and deletion regulations (`tidegate regulate`; see README, "Consent and regulations")."""

    path: Annotated[str, _doc("Directory of the suppression list (suppressions.json, re-read by running pipelines when it changes) and the append-only deletion log (deletions.jsonl).")] = "data/regulations"


class DeliveryConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per-destination retries and dead letters (see README, "Dead letters")."""

    max_attempts: Annotated[int, _doc("Attempts of a destination's write within one checkpoint before its share of the batch is dead-lettered."), Meta(ge=1)] = 4
    backoff_initial_s: Annotated[float, _doc("Upper bound of the first retry's jittered delay; doubles per retry."), Meta(ge=0)] = 0.5
    backoff_max_s: Annotated[float, _doc("Largest delay between two attempts."), Meta(ge=0)] = 5.0
    dead_letter: Annotated[bool, _doc("Park a batch that exhausted its attempts in `<raw_topic>.dlq.<destination>` and go on; false: the whole partition backs off and re-reads instead.")] = True
    write_timeout_s: Annotated[float, _doc("With several destinations, a destination whose write takes longer is treated as failing for that batch (parked), so a slow destination does not hold back the others."), Meta(gt=0)] = 30.0


# A new sink is one file plus one member here; `type = "..."` in TOML picks it.
Destination = Union[DuckDBDestination, PostgresDestination, DeltaDestination, KafkaDestination, WebhookDestination]


class Config(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kafka: Annotated[KafkaConfig, _doc("Connection to Kafka and the raw topic.")] = KafkaConfig()
    collector: Annotated[CollectorConfig, _doc("The HTTP collector.")] = CollectorConfig()
    pipeline: Annotated[PipelineConfig, _doc("The consumer service.")] = PipelineConfig()
    sources: Annotated[dict[str, SourceConfig], _doc("Sources by id, each with its write key.")] = {}
    plans: Annotated[dict[str, PlanConfig], _doc("Tracking plans by id.")] = {}
    pii: Annotated[PiiConfig, _doc("PII detection and actions.")] = PiiConfig()
    identity: Annotated[IdentityConfig, _doc("Identifier normalisation.")] = IdentityConfig()
    destinations: Annotated[dict[str, Destination], _doc("Destinations by name; `type` picks the sink.")] = {}
    archive: Annotated[ArchiveConfig, _doc("The raw archive of accepted events.")] = ArchiveConfig()
    audit: Annotated[AuditConfig, _doc("The audit log of applied configurations.")] = AuditConfig()
    consent: Annotated[ConsentConfig, _doc("Workspace consent requirements, inherited by every destination without its own `consent`.")] = ConsentConfig()
    regulations: Annotated[RegulationsConfig, _doc("Suppression list and deletion log.")] = RegulationsConfig()
    delivery: Annotated[DeliveryConfig, _doc("Per-destination retries and dead letters.")] = DeliveryConfig()
    # Set by load_config, not read from the file.
    path: str = ""
    version: str = ""

    def source_by_write_key(self) -> dict[str, str]:
        """Map write key -> source id, enabled sources only."""
        return {s.write_key: name for name, s in self.sources.items() if s.enabled}


_NAMED_TABLES: dict[str, Any] = {"sources": SourceConfig, "destinations": Destination, "plans": PlanConfig}


def _resolve_relative(cfg: Config, base: Path) -> Config:
    def fix(p: str) -> str:
        return p if os.path.isabs(p) else str((base / p).resolve())

    dests = {
        name: msgspec.structs.replace(d, path=fix(d.path)) if hasattr(d, "path") else d
        for name, d in cfg.destinations.items()
    }
    pipeline = msgspec.structs.replace(cfg.pipeline, state_dir=fix(cfg.pipeline.state_dir))
    plans = {name: msgspec.structs.replace(p, path=fix(p.path)) for name, p in cfg.plans.items()}
    archive = msgspec.structs.replace(cfg.archive, path=fix(cfg.archive.path))
    audit = msgspec.structs.replace(cfg.audit, path=fix(cfg.audit.path))
    regulations = msgspec.structs.replace(cfg.regulations, path=fix(cfg.regulations.path))
    return msgspec.structs.replace(cfg, destinations=dests, pipeline=pipeline, plans=plans, archive=archive, audit=audit,
                                   regulations=regulations)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Read, decode and validate a TOML config; raise :class:`ConfigError` naming file, line, key.

    Relative paths inside the file are resolved against the file's directory, or ``base_dir``
    (a stored copy of an applied config resolves them as its original did).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.toml"
    >>> _ = p.write_text('[sources.web]\\nwrite_key = "k1"\\n[destinations.wh]\\ntype = "duckdb"\\n')
    >>> load_config(p, env={}).sources["web"].write_key
    'k1'
    >>> _ = p.write_text('[collector]\\nport = "eighty"\\n[sources.web]\\nwrite_key = "k"\\n')
    >>> load_config(p, env={})
    Traceback (most recent call last):
    ...
    tidegate.errors.ConfigError: ...t.toml:2: [collector.port] expected `int`, got `str`
    ...t.toml: [destinations] no destinations configured; add e.g. [destinations.warehouse] with type = "duckdb"
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found; pass an existing TOML file (the example is config/tidegate.toml)", file=str(file)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file: {e}", file=str(file)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else None
        raise ConfigError(f"not valid TOML: {str(e).split(' (at line')[0]}", file=str(file), line=line) from None
    from_env = _apply_env(raw, os.environ if env is None else env)

    def problem(message: str, key: str) -> ConfigError:
        """A decoding problem at ``key``, with its hints; a value an environment variable set is
        pointed to by the variable's name, not by a line of the file."""
        message += _unknown_field_hint(message, key, raw) + _enum_hint(message, key, raw)
        var = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
        if var is not None:
            return ConfigError(f"{message} (set by the environment variable {var})", file=str(file), key=key or None)
        return ConfigError(message, file=str(file), line=_locate(text, key), key=key or None)

    # Entries of named tables are checked one by one, and every other section on its own: msgspec
    # stops at the first problem of a document, and its error path for a dict value does not say
    # which entry failed. Every entry's and section's first problem is reported; a broken entry or
    # section is then left out, so that the rest (unknown top-level keys, the rules that span
    # fields) is still checked in the same run.
    problems: list[ConfigError] = []
    broken: set[str] = set()
    clean = dict(raw)
    for field in msgspec.structs.fields(Config):
        value = raw.get(field.encode_name)
        if value is None or field.name in ("path", "version"):
            continue
        entry_type = _NAMED_TABLES.get(field.name)
        if entry_type is not None and isinstance(value, dict):
            kept = {}
            for name, entry in value.items():
                try:
                    msgspec.convert(entry, entry_type)
                    kept[name] = entry
                except msgspec.ValidationError as e:
                    message, key = _split_msgspec_error(str(e), entry)
                    key = f"{field.name}.{name}" + (f".{key}" if key else "")
                    if field.name == "destinations" and message == "object missing required field `type`":
                        message += "; set it to one of " + ", ".join(repr(t) for t in destination_types())
                    problems.append(problem(message, key))
                    broken.add(f"{field.name}.{name}")
            clean[field.name] = kept
            continue
        try:
            msgspec.convert({field.encode_name: value}, Config)
        except msgspec.ValidationError as e:
            problems.append(problem(*_split_msgspec_error(str(e), raw)))
            broken.add(field.name)
            del clean[field.encode_name]
    while True:  # what is left: unknown top-level keys, one per round
        try:
            cfg = msgspec.convert(clean, Config)
            break
        except msgspec.ValidationError as e:
            message, key = _split_msgspec_error(str(e), clean)
            problems.append(problem(message, key))
            top = key.split(".")[0]
            if not key or top not in clean:
                raise ConfigError.of_all(problems) from None
            del clean[top]
            broken.add(top)
    cfg = _resolve_relative(cfg, Path(base_dir).resolve() if base_dir is not None else file.resolve().parent)
    version = hashlib.sha256(msgspec.json.encode(raw, order="sorted")).hexdigest()[:12]
    cfg = msgspec.structs.replace(cfg, path=str(file), version=version)
    problems += _check(cfg, text, broken)
    if problems:
        raise ConfigError.of_all(problems)
    return cfg


def _check(cfg: Config, text: str, broken: set[str]) -> list[ConfigError]:
    """Rules that span fields; every problem found. ``broken``: entries (``sources.web``) and
    sections left out of ``cfg`` because they have problems of their own; a rule does not report
    them again as missing."""
    file = cfg.path
    problems: list[ConfigError] = []

    def problem(message: str, key: str, *, locate: bool = True) -> None:
        problems.append(ConfigError(message, file=file, line=_locate(text, key) if locate else None, key=key))

    if not cfg.sources and not any(b.startswith("sources.") for b in broken):
        problem("no sources configured; add a [sources.<id>] table with a write_key", "sources", locate=False)
    seen: dict[str, str] = {}
    for name, src in cfg.sources.items():
        if src.write_key in seen:
            problem(f"write key is also used by source {seen[src.write_key]!r}; every source needs its own write key",
                    f"sources.{name}.write_key")
        seen[src.write_key] = name
        if (src.tracking_plan is not None and src.tracking_plan not in cfg.plans
                and f"plans.{src.tracking_plan}" not in broken):
            problem(f"tracking plan {src.tracking_plan!r} is not defined; add [plans.{src.tracking_plan}] with a path"
                    + (f" (defined: {', '.join(sorted(cfg.plans))})" if cfg.plans else ""),
                    f"sources.{name}.tracking_plan")
    if cfg.pipeline.max_commit_interval_s < cfg.pipeline.commit_interval_s:
        problem(f"must be at least pipeline.commit_interval_s ({cfg.pipeline.commit_interval_s:g}); set it "
                "equal to turn longer checkpoints while behind off", "pipeline.max_commit_interval_s")
    for dname, dest in cfg.destinations.items():
        unknown = [s for s in dest.sources if s not in cfg.sources and f"sources.{s}" not in broken]
        if unknown:
            configured = [*cfg.sources, *(b.split(".", 1)[1] for b in sorted(broken) if b.startswith("sources."))]
            problem(f"unknown source {', '.join(map(repr, unknown))}; configured sources: {', '.join(configured)}",
                    f"destinations.{dname}.sources")
    pii_classes = ("email", "phone", "credit_card", "ssn", "iban", "ipv4", "ipv6", "key_name")
    actions = [("pii.actions", cfg.pii.actions)] + [
        (f"destinations.{dname}.pii.actions", dest.pii.actions) for dname, dest in cfg.destinations.items() if dest.pii]
    for at, classes in actions:
        for cls in classes:
            if cls not in pii_classes:
                close = difflib.get_close_matches(cls, pii_classes, n=1)
                problem(f"unknown PII class {cls!r}; " + (f"did you mean {close[0]!r}? " if close else "")
                        + f"expected one of {', '.join(pii_classes)}", f"{at}.{cls}")
    if not cfg.destinations and not any(b.startswith("destinations.") for b in broken):
        problem('no destinations configured; add e.g. [destinations.warehouse] with type = "duckdb"', "destinations",
                locate=False)
    return problems


def _split_msgspec_error(text: str, raw: Any = None) -> tuple[str, str]:
    """msgspec says "Expected `int`, got `str` - at `$.collector.port`"; split message and key.
    For a value of a table of free keys msgspec says only ``[...]`` (``$.pii.actions[...]``): the
    entry is the one holding the refused value, looked up in ``raw``, else the table is named."""
    m = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", text, re.S)
    assert m is not None
    message, at = m.group(1), m.group(2) or ""
    if "[...]" in at:
        table, _, rest = at.partition("[...]")
        entries: Any = raw
        for part in (p for p in table.split(".") if p):
            entries = entries.get(part) if isinstance(entries, dict) else None
        quoted = re.search(r"value '(.*?)'|value (\S+)", message)
        value = next((g for g in quoted.groups() if g is not None), None) if quoted else None
        matches = [k for k, v in entries.items() if str(v) == value] if isinstance(entries, dict) and value else []
        if len(matches) == 1:
            at = f"{table}.{matches[0]}{rest}"
        else:
            at = table + rest
            message += " (in one of its entries)"
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]|\[['\"](.+?)['\"]\]", at)
    key = ".".join(a or b or c for a, b, c in parts)
    message = message[0].lower() + message[1:] if message else message
    if message.startswith("object contains unknown field"):
        field = re.search(r"`(.+?)`", message)
        if field:
            key = f"{key}.{field.group(1)}" if key else field.group(1)
    if (message.startswith("invalid value ") or "tag" in message) and key.split(".")[-1] == "type":
        # the `type` of a destination or of a transform picks its struct
        union, what = (Transform, "transform") if ".transforms." in f".{key}." else (Destination, "destination")
        message += f"; valid {what} types: " + ", ".join(repr(t) for t in _tags(union))
    return message, key


def _unknown_field_hint(message: str, key: str, raw: dict[str, Any]) -> str:
    """For an unknown key, the keys its table does take: the likely one first ("did you mean"),
    else all of them when they are few. ``key`` is the dotted path of the unknown key."""
    if not message.startswith("object contains unknown field"):
        return ""
    *table, unknown = key.split(".")
    reference = "the configuration reference: `tidegate config-reference`"
    known = _keys_of(table, raw)
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    close += [k for k in known if k not in close and len(unknown) >= 3 and (unknown in k or k in unknown)]
    if close:
        return f"; did you mean {' or '.join(f'`{k}`' for k in close[:2])}? ({reference})"
    if known and len(known) <= 12:
        return f"; [{'.'.join(table) or 'top level'}] takes {', '.join(f'`{k}`' for k in known)} ({reference})"
    return f"; check the spelling against {reference}"


def _keys_of(table: list[str], raw: Any) -> list[str]:
    """The keys of the config table at path ``table`` (a tagged union, such as a destination,
    resolved by the ``type`` the raw TOML gives it); [] if the path leads nowhere known."""
    info = _type_at(table, raw)
    if not isinstance(info, msgspec.inspect.StructType):
        return []
    keys = [f.encode_name for f in info.fields if not (info.cls is Config and f.encode_name in ("path", "version"))]
    return keys + ([info.tag_field] if info.tag_field else [])


def _type_at(path: list[str], raw: Any) -> Any:
    """The msgspec type of the config value at ``path`` (Annotated, Optional and tagged unions
    seen through); None if the path leads nowhere known."""
    info: Any = msgspec.inspect.type_info(Config)
    for part in path + [""]:
        while True:
            if isinstance(info, msgspec.inspect.Metadata):
                info = info.type
            elif isinstance(info, msgspec.inspect.UnionType):
                structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
                tag = raw.get("type") if isinstance(raw, dict) else None
                tagged = [t for t in structs if t.tag == tag] or structs[:1]
                others = [t for t in info.types if not isinstance(t, (msgspec.inspect.StructType, msgspec.inspect.NoneType))]
                if not tagged and not others:
                    return None
                info = tagged[0] if tagged else others[0]
            else:
                break
        if part == "":
            return info
        if isinstance(info, msgspec.inspect.StructType):
            field = next((f for f in info.fields if f.encode_name == part), None)
            if field is None:
                return None
            info, raw = field.type, raw.get(part) if isinstance(raw, dict) else None
        elif isinstance(info, msgspec.inspect.DictType):
            info, raw = info.value_type, raw.get(part) if isinstance(raw, dict) else None
        elif isinstance(info, msgspec.inspect.ListType) and part.isdigit():
            items = raw if isinstance(raw, list) else []
            info, raw = info.item_type, items[int(part)] if int(part) < len(items) else None
        else:
            return None
    return info


def _enum_hint(message: str, key: str, raw: dict[str, Any]) -> str:
    """For a value outside a fixed set, the values the key takes."""
    if not message.startswith("invalid enum value"):
        return ""
    info = _type_at(key.split("."), raw)
    if not isinstance(info, msgspec.inspect.LiteralType):
        return ""
    return "; expected one of " + ", ".join(repr(v) for v in info.values)


def destination_types() -> list[str]:
    return _tags(Destination)


def _tags(union: Any) -> list[str]:
    return [m.__struct_config__.tag for m in get_args(union) or (union,)]


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _norm_key(k: str) -> str:
    return ".".join(p.strip().strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', k))


def _locate(text: str, key: str) -> int | None:
    """Best line of ``key`` (dotted) in the TOML text: the key's own line, else its table's."""
    if not key:
        return None
    parts = key.split(".")
    table, leaf = ".".join(parts[:-1]), parts[-1]
    current = ""
    table_line = None
    for n, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h:
            current = _norm_key(h.group(1))
            if current == key:
                return n
            if current == table:
                table_line = n
            continue
        m = re.match(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=", line)
        if m:
            full = _norm_key(m.group(1))
            qualified = f"{current}.{full}" if current else full
            if qualified == key or (current == table and full == leaf):
                return n
    return table_line


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply the ``TIDEGATE__...`` overrides to ``raw``; return which dotted key each variable
    set. A value is read as a TOML literal (``8080``, ``true``, ``["a"]``) unless the key takes a
    string, which gets the text as it is (a write key ``123456`` stays a string)."""
    applied: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} sets a key inside a value that is not a table", key=".".join(path))
        if isinstance(_type_at(path, raw), msgspec.inspect.StrType):
            node[path[-1]] = value
        else:
            try:
                node[path[-1]] = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                node[path[-1]] = value
        applied[".".join(path)] = name
    return applied


def _describe(tp: Any) -> tuple[Any, str, list[Any]]:
    """(base type, description, metas) of an annotation."""
    desc = ""
    metas: list[Any] = []
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        for m in extra:
            if isinstance(m, Meta):
                metas.append(m)
                desc = m.description or desc
        return base, desc, metas
    return tp, desc, metas


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in get_args(tp))
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, Struct):
        return "table"
    args = get_args(tp)
    if (origin is Union or origin is types.UnionType) and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Union:
        return "table (tagged by `type`)"
    return getattr(tp, "__name__", str(tp))


def config_reference() -> str:
    """The configuration reference in Markdown, generated from the Structs' field docs."""
    out: list[str] = []

    def walk(struct: type[Struct], prefix: str) -> None:
        hints = get_type_hints(struct, include_extras=True)
        rows = []
        nested: list[tuple[str, Any]] = []
        defaults: dict[str, Any] = dict.fromkeys(struct.__struct_fields__, msgspec.NODEFAULT)
        for f, d in zip(struct.__struct_fields__[-len(struct.__struct_defaults__):] if struct.__struct_defaults__ else [], struct.__struct_defaults__):
            defaults[f] = d
        # The policy every destination shares is documented once, not under each type.
        shared = set(DestinationPolicy.__struct_fields__) if issubclass(struct, DestinationPolicy) and struct is not DestinationPolicy else set()
        for field in struct.__struct_fields__:
            if field in ("path", "version") and struct is Config or field in shared:
                continue
            base, desc, _ = _describe(hints[field])
            default = defaults.get(field)
            if isinstance(default, msgspec._core.Factory):  # noqa: SLF001 - dict/list defaults
                default = default.factory()
            shown = "required" if default is msgspec.NODEFAULT else "unset" if default is None else f"`{default!r}`"
            if isinstance(default, str):
                shown = f'`"{default}"`'
            if isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            if isinstance(default, Struct) or isinstance(default, dict) and not default:
                shown = "—"
            key = struct.__struct_encode_fields__[struct.__struct_fields__.index(field)]  # as written in TOML
            rows.append(f"| `{key}` | {_type_name(base)} | {shown} | {desc} |")
            if isinstance(base, type) and issubclass(base, Struct):
                nested.append((f"{prefix}{field}", base))
            elif get_origin(base) in (dict, list):
                val = get_args(base)[-1]
                members = get_args(val) if get_origin(val) is Union else (val,)
                slot = ".<name>" if get_origin(base) is dict else "[]"
                if any(isinstance(m, type) and issubclass(m, DestinationPolicy) for m in members):
                    nested.append((f"{prefix}{field}{slot}", DestinationPolicy))
                for m in members:
                    if isinstance(m, type) and issubclass(m, Struct):
                        tag = m.__struct_config__.tag
                        label = f"{prefix}{field}{slot}" + (f' (type = "{tag}")' if isinstance(tag, str) else "")
                        nested.append((label, m))
            elif get_origin(base) in (Union, types.UnionType):
                for m in get_args(base):
                    if isinstance(m, type) and issubclass(m, Struct):
                        nested.append((f"{prefix}{field}", m))
        out.append(f"### `[{prefix.rstrip('.') or 'top level'}]`\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        out.extend(rows)
        out.append("")
        for name, sub in nested:
            walk_named(sub, name)

    def walk_named(struct: type[Struct], name: str) -> None:
        # The docstring's first paragraph, as one line.
        doc = " ".join(line.strip() for line in (struct.__doc__ or "").strip().split("\n\n")[0].splitlines())
        start = len(out)
        walk(struct, name + ".")
        out[start] = f"### `[{name}]`\n" + (f"\n{doc}\n" if doc else "")

    walk(Config, "")
    return "\n".join(out)
