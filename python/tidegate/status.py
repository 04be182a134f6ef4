"""``tidegate status``: the operator's numbers in a terminal, for a person without Grafana.

Scrapes the collector's and the pipeline's ``/metrics`` (the same series the Grafana dashboard in
``deploy/grafana/`` uses) and, unless told not to, asks Kafka for the consumer group's lag. The
counters are totals since each process started.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

from .config import Config

__all__ = ["Samples", "StatusView", "gather", "render", "histogram_quantile", "consumer_lag"]


@dataclass
class Samples:
    """Parsed samples of one /metrics page: ``(name, labels, value)``."""

    rows: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Samples":
        out = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.rows.append((s.name, dict(s.labels), float(s.value)))
        return out

    def sum(self, name: str, by: str | None = None, **match: str) -> dict[str, float]:
        """Sum of ``name`` where labels match, grouped by label ``by`` (key "" without)."""
        out: dict[str, float] = {}
        for n, labels, v in self.rows:
            if n != name or any(labels.get(k) != want for k, want in match.items()):
                continue
            key = labels.get(by, "") if by else ""
            out[key] = out.get(key, 0.0) + v
        return out

    def total(self, name: str, **match: str) -> float:
        return self.sum(name, **match).get("", 0.0)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` buckets.

    >>> histogram_quantile(0.5, [(0.1, 10), (1.0, 30), (float("inf"), 30)])
    0.325
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == float("inf"):
                return lower
            if count == below:
                return upper
            return round(lower + (upper - lower) * (rank - below) / (count - below), 6)
        lower, below = upper, count
    return ordered[-1][0]


@dataclass
class StatusView:
    collector_url: str
    pipeline_url: str
    collector: Samples | None
    pipeline: Samples | None
    errors: list[str] = field(default_factory=list)
    lag: dict[int, int] | None = None

    @property
    def reachable(self) -> bool:
        return self.collector is not None or self.pipeline is not None


def _scrape(url: str, timeout: float = 3.0) -> tuple[Samples | None, str | None]:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as r:
            return Samples.parse(r.read().decode()), None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"{url}/metrics: {getattr(e, 'reason', e)}"


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def consumer_lag(cfg: Config, timeout: float = 5.0) -> dict[int, int]:
    """Messages of the raw topic not yet committed by the pipeline's group, per partition."""
    with warnings.catch_warnings(record=True):
        from confluent_kafka import Consumer, TopicPartition

    from .kafka import client_settings

    consumer = Consumer({**client_settings(cfg), "group.id": cfg.kafka.consumer_group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(cfg.kafka.raw_topic, timeout=timeout)
        topic = meta.topics.get(cfg.kafka.raw_topic)
        if topic is None or topic.error is not None:
            return {}
        parts = [TopicPartition(cfg.kafka.raw_topic, p) for p in sorted(topic.partitions)]
        committed = consumer.committed(parts, timeout=timeout)
        lag: dict[int, int] = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)
            done = tp.offset if tp.offset >= 0 else low
            lag[tp.partition] = max(high - done, 0)
        return lag
    finally:
        consumer.close()


def gather(cfg: Config, *, collector_url: str | None = None, pipeline_url: str | None = None, lag: bool = True) -> StatusView:
    c_url = collector_url or f"http://{_local(cfg.collector.host)}:{cfg.collector.port}"
    p_url = pipeline_url or f"http://{_local(cfg.pipeline.metrics_host)}:{cfg.pipeline.metrics_port}"
    view = StatusView(c_url, p_url, None, None)
    view.collector, err = _scrape(c_url)
    if err:
        view.errors.append(f"collector not reachable ({err})")
    view.pipeline, err = _scrape(p_url)
    if err:
        view.errors.append(f"pipeline not reachable ({err})")
    if lag:
        try:
            view.lag = consumer_lag(cfg)
        except Exception as e:  # noqa: BLE001 - shown, not fatal
            view.errors.append(f"consumer lag unknown ({e})")
    return view


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  " + "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header)] + [fmt(r) for r in rows]


def render(view: StatusView) -> str:
    out: list[str] = []
    c, p = view.collector, view.pipeline
    out.append(f"Tidegate status — collector {view.collector_url} · pipeline {view.pipeline_url}")
    out.append("")
    out.append("Sources (collector)")
    if c is None:
        out.append("  (collector not reachable)")
    else:
        events = c.sum("tidegate_collector_events_total", by="source")
        accepted = c.sum("tidegate_collector_events_total", by="source", outcome="accepted")
        violations = p.sum("tidegate_policy_violations_total", by="source") if p else {}
        rows = [[s, _n(events.get(s, 0)), _n(accepted.get(s, 0)), _n(events.get(s, 0) - accepted.get(s, 0)),
                 _n(violations.get(s, 0))] for s in sorted(set(events) | set(violations))]
        out.extend(_table(["source", "received", "accepted", "refused", "violations"], rows) if rows else ["  (no events yet)"])
        refused: dict[str, float] = {}
        for (name, labels, v) in c.rows:
            if name == "tidegate_collector_events_total" and labels.get("outcome") != "accepted" and v:
                refused[labels["outcome"]] = refused.get(labels["outcome"], 0) + v
        if refused:
            out.append("  refused by reason: " + ", ".join(f"{k} {_n(v)}" for k, v in sorted(refused.items())))
    out.append("")
    out.append("Destinations (pipeline)")
    if p is None:
        out.append("  (pipeline not reachable)")
    else:
        delivered = p.sum("tidegate_sink_events_total", by="destination", outcome="delivered")
        failed = p.sum("tidegate_sink_events_total", by="destination", outcome="failed")
        rows = []
        for d in sorted(set(delivered) | set(failed)):
            buckets = [(float(labels["le"]), v) for name, labels, v in p.rows
                       if name == "tidegate_end_to_end_latency_seconds_bucket" and labels.get("destination") == d]
            p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
            fmt = lambda x: "—" if x is None else f"{x:.3f}s"  # noqa: E731
            rows.append([d, _n(delivered.get(d, 0)), _n(failed.get(d, 0)), fmt(p50), fmt(p99)])
        out.extend(_table(["destination", "delivered", "failed", "latency p50", "p99"], rows) if rows else ["  (nothing delivered yet)"])
        out.append("")
        out.append("Policy (pipeline)")
        refused = {k: v for k, v in p.sum("tidegate_pipeline_events_total", by="outcome", stage="govern").items()
                   if k != "accepted" and v}
        accepted = p.total("tidegate_pipeline_events_total", stage="govern", outcome="accepted")
        dups = p.total("tidegate_pipeline_events_total", stage="dedupe", outcome="duplicate")
        out.append(f"  accepted {_n(accepted)} · duplicates dropped {_n(dups)} · refused "
                   + (", ".join(f"{k} {_n(v)}" for k, v in sorted(refused.items())) or "0"))
        by_type: dict[str, float] = {}
        pii: dict[str, float] = {}
        for name, labels, v in p.rows:
            if name == "tidegate_policy_violations_total" and v:
                key = f"{labels['type']} ({labels['action']})"
                by_type[key] = by_type.get(key, 0) + v
            if name == "tidegate_pii_actions_total" and v:
                key = f"{labels['class']}:{labels['action']}"
                pii[key] = pii.get(key, 0) + v
        out.append("  violations: " + (", ".join(f"{k} {_n(v)}" for k, v in sorted(by_type.items())) or "none"))
        out.append("  PII actions: " + (", ".join(f"{k} {_n(v)}" for k, v in sorted(pii.items())) or "none"))
        archived = p.total("tidegate_archive_events_total")
        if archived:
            out.append(f"  archived: {_n(archived)} events, {_n(p.total('tidegate_archive_files_total'))} Parquet files")
    if view.lag is not None:
        out.append("")
        total = sum(view.lag.values())
        parts = " ".join(f"p{k}:{v}" for k, v in sorted(view.lag.items()))
        out.append(f"Consumer lag: {_n(total)} messages ({parts or 'no partitions'})")
    if view.errors:
        out.append("")
        out.extend(f"! {e}" for e in view.errors)
    return "\n".join(out)
