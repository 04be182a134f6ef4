"""Prometheus metrics of every stage. Names follow `tidegate_<component>_<what>_<unit>`.

Each stage and sink registers its standard metrics here so that one test can check that all of
them emit: see ``STANDARD`` and tests/unit/test_metrics.py.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import threads

__all__ = ["REGISTRY", "collector", "pipeline", "policy", "sink", "observe_many"]

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_BATCH_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 50_000, 100_000)


class _Collector:
    requests = Counter("tidegate_collector_requests", "HTTP requests by source, endpoint and status.",
                       ["source", "endpoint", "status"], registry=REGISTRY)
    events = Counter("tidegate_collector_events", "Events by source and outcome (accepted, or the rejection code).",
                     ["source", "outcome"], registry=REGISTRY)
    request_seconds = Histogram("tidegate_collector_request_seconds", "Request time including the Kafka acknowledgement.",
                                ["endpoint"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
    in_flight = Gauge("tidegate_collector_in_flight_requests", "Requests waiting for Kafka.", registry=REGISTRY)


class _Pipeline:
    batches = Counter("tidegate_pipeline_batches", "Batches processed.", registry=REGISTRY)
    messages = Counter("tidegate_pipeline_messages", "Kafka messages by kind (envelope, single, undecodable).",
                       ["kind"], registry=REGISTRY)
    events = Counter("tidegate_pipeline_events", "Events by stage and outcome.", ["stage", "outcome"], registry=REGISTRY)
    batch_events = Histogram("tidegate_pipeline_batch_events", "Events per processed batch.",
                             buckets=_BATCH_BUCKETS, registry=REGISTRY)
    identity_merges = Counter("tidegate_pipeline_identity_merges",
                              "Ids whose canonical id changed because identities merged.", registry=REGISTRY)
    commit_interval = Gauge("tidegate_pipeline_commit_interval_seconds",
                            "Length of the current checkpoint (longer while the pipeline is behind).", registry=REGISTRY)
    consumer_lag = Gauge("tidegate_pipeline_consumer_lag",
                         "Messages of the raw topic not yet committed by the consumer group, per partition.",
                         ["partition"], registry=REGISTRY)
    dedupe_recoveries = Counter("tidegate_pipeline_dedupe_recoveries",
                                "Times a partition's dedupe index was rebuilt from its state store.", registry=REGISTRY)
    longest_task = Gauge("tidegate_pipeline_longest_task_seconds",
                         "How long the pipeline's longest-running write, checkpoint or upkeep task has run so far "
                         "(0 when none runs); /healthz fails past pipeline.stall_timeout_s.", registry=REGISTRY)
    stage_seconds = Histogram("tidegate_pipeline_stage_seconds", "Time per batch in each stage.", ["stage"],
                              buckets=_LATENCY_BUCKETS, registry=REGISTRY)


class _Policy:
    violations = Counter("tidegate_policy_violations", "Tracking-plan violations by source, type and action taken.",
                         ["source", "type", "action"], registry=REGISTRY)
    pii_actions = Counter("tidegate_pii_actions", "PII actions taken by class and action.", ["class", "action"],
                          registry=REGISTRY)
    pii_destination_actions = Counter(
        "tidegate_pii_destination_actions",
        "PII actions of destinations with their own `pii` actions, by destination, class and action.",
        ["destination", "class", "action"], registry=REGISTRY)
    consent_drops = Counter("tidegate_consent_drops", "Events not delivered to a destination for lack of consent.",
                            ["destination"], registry=REGISTRY)
    suppressed = Counter("tidegate_suppressed_events", "Events of suppressed users (regulations), delivered nowhere.",
                         registry=REGISTRY)


class _Sink:
    events = Counter("tidegate_sink_events", "Events by destination and outcome (delivered, failed).",
                     ["destination", "outcome"], registry=REGISTRY)
    rows = Counter("tidegate_sink_rows", "Rows written by destination and table.", ["destination", "table"],
                   registry=REGISTRY)
    discards = Counter("tidegate_sink_discards", "Values that could not be stored, written to `discards`.",
                       ["destination"], registry=REGISTRY)
    write_seconds = Histogram("tidegate_sink_write_seconds", "Time per batch write.", ["destination"],
                              buckets=_LATENCY_BUCKETS, registry=REGISTRY)
    checkpoint_seconds = Histogram("tidegate_sink_checkpoint_seconds",
                                   "Time per checkpoint storing the rows its writes kept back (DuckDB's users, "
                                   "accounts and identity_map upserts).", ["destination"],
                                   buckets=_LATENCY_BUCKETS, registry=REGISTRY)
    held_rows = Gauge("tidegate_sink_held_rows", "Rows kept back by writes until the checkpoint stores them.",
                      ["destination"], registry=REGISTRY)
    retries = Counter("tidegate_sink_retries", "Retried destination writes within a checkpoint.", ["destination"],
                      registry=REGISTRY)
    memory_limit_bytes = Gauge("tidegate_sink_memory_limit_bytes",
                               "An embedded database's memory limit (DuckDB), raised when a write needed more.",
                               ["destination"], registry=REGISTRY)
    compactions = Counter("tidegate_sink_compactions", "Delta Lake tables compacted (small files rewritten into larger ones).",
                          ["destination"], registry=REGISTRY)
    rows_skipped = Counter("tidegate_sink_rows_skipped",
                           "Warehouse event rows not inserted because their id was stored already (a re-read after a crash or a backoff, or a replay).",
                           ["destination"], registry=REGISTRY)
    dead_lettered = Counter("tidegate_sink_dead_lettered_events",
                            "Events parked in a destination's dead-letter topic after the retry budget.",
                            ["destination"], registry=REGISTRY)
    dlq_replayed = Counter("tidegate_sink_dlq_replayed_events", "Events re-delivered from a dead-letter topic.",
                           ["destination"], registry=REGISTRY)
    freshness_seconds = Histogram("tidegate_freshness_seconds",
                                  "Age of the data when stored: from the event's timestamp to committed at the destination.",
                                  ["destination"], buckets=_LATENCY_BUCKETS + (6 * 3600.0, 86400.0, 7 * 86400.0),
                                  registry=REGISTRY)
    latency_seconds = Histogram("tidegate_end_to_end_latency_seconds",
                                "From receivedAt to committed at the destination.", ["destination"],
                                buckets=_LATENCY_BUCKETS, registry=REGISTRY)


collector = _Collector()
pipeline = _Pipeline()
pipeline.longest_task.set_function(lambda: (threads.longest_task() or ("", 0.0))[1])
policy = _Policy()
sink = _Sink()


def observe_many(histogram: Histogram, values: "pl.Series") -> None:
    """Record a whole column of observations at once.

    prometheus-client observes one value per call; a batch of 100,000 latencies would be a
    per-event Python loop. Bucket counts are computed on the column instead.
    """
    values = values.drop_nulls()
    if values.len() == 0:
        return
    arr = np.sort(values.to_numpy())
    upper = np.asarray(histogram._upper_bounds)  # noqa: SLF001 - prometheus-client has no bulk API
    cumulative = np.searchsorted(arr, upper, side="right")
    per_bucket = np.diff(cumulative, prepend=0)
    for i, n in enumerate(per_bucket.tolist()):
        if n:
            histogram._buckets[i].inc(n)  # noqa: SLF001
    histogram._sum.inc(float(arr.sum()))  # noqa: SLF001
