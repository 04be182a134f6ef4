"""The end-to-end baseline: a plain Quix Streams application that governs every event in Python
(json + fastjsonschema + ``re`` + hashlib, see ``baseline.py``), lays it out as Segment warehouse
rows in Python and writes them through the same DuckDB sink Tidegate uses (same tables, same
idempotent ``INSERT OR IGNORE``). Started by ``e2e.py`` as a subprocess::

    python bench/baseline_app.py --bootstrap 127.0.0.1:9092 --topic T --group G \\
        --duckdb out.duckdb --status status.json [--input singles|envelopes]

``--input singles`` (what a plain user app consumes: one event per Kafka message) or
``envelopes`` (Tidegate's batched raw-topic messages, unpacked in Python). After every sink
write the app rewrites ``--status`` with ``{"delivered": n, "rejected": n}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl  # noqa: E402

with warnings.catch_warnings(record=True):
    from quixstreams import Application  # noqa: E402
    from quixstreams.sinks import BatchingSink, SinkBatch  # noqa: E402

import baseline  # noqa: E402
import corpus  # noqa: E402
from tidegate.config import DuckDBDestination  # noqa: E402
from tidegate.sinks.duckdb import DuckDBSink  # noqa: E402
from tidegate.stages.govern import GovernedBatch  # noqa: E402

TIME_COLUMNS = ("sent_at", "timestamp", "received_at", "original_timestamp")


class BaselineSink(BatchingSink):
    """Rows gathered per checkpoint -> one polars frame per table -> the DuckDB sink."""

    def __init__(self, duckdb_path: str, status: Path):
        super().__init__()
        self.duck = DuckDBSink("baseline", DuckDBDestination(path=duckdb_path))
        self.status = status
        self.delivered = 0
        self.rejected = 0

    def setup(self) -> None:
        self.duck.setup()

    def write(self, batch: SinkBatch) -> None:
        tables: dict[str, list[dict[str, Any]]] = {}
        events = 0
        for item in batch:
            rows, n_events, n_rejected = item.value
            events += n_events
            self.rejected += n_rejected
            for table, row in rows:
                tables.setdefault(table, []).append(row)
        frames = {}
        for table, rows in tables.items():
            df = pl.from_dicts(rows, infer_schema_length=None, strict=False)
            casts = [pl.col(c).str.to_datetime(time_zone="UTC", strict=False) for c in TIME_COLUMNS
                     if c in df.columns and df.schema[c] == pl.String]
            frames[table] = df.with_columns(casts) if casts else df
        self.duck.write(GovernedBatch(tables=frames, events_in=events, accepted=events))
        self.delivered += events
        tmp = self.status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"delivered": self.delivered, "rejected": self.rejected, "time": time.time()}))
        os.replace(tmp, self.status)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--duckdb", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--state-dir", default="baseline-state")
    ap.add_argument("--input", choices=("singles", "envelopes"), default="singles")
    ap.add_argument("--plan", default=str(corpus.PLAN_PATH))
    ap.add_argument("--commit-interval", type=float, default=0.25)
    args = ap.parse_args(argv)

    gov = baseline.PythonGovernance(corpus.load_plan(args.plan))
    extra = {"tidegate_config_version": "baseline"}

    def govern_one(raw: bytes | dict[str, Any], source: str, rows: list[tuple[str, dict[str, Any]]]) -> int:
        g = gov.process(raw, source) if isinstance(raw, bytes) else gov.process_event(raw, source)
        if g.event is None or not isinstance(g.event.get("type"), str):
            return 1
        rows.extend(baseline.flatten_rows(g, source, extra))
        return 0

    def govern_single(value: bytes) -> tuple[list[tuple[str, dict[str, Any]]], int, int]:
        rows: list[tuple[str, dict[str, Any]]] = []
        rejected = govern_one(value, "web", rows)
        return rows, 1, rejected

    def govern_envelope(value: bytes) -> tuple[list[tuple[str, dict[str, Any]]], int, int]:
        # A user unpacking Tidegate's envelopes in Python: parse, then govern each event.
        env = json.loads(value)
        rows: list[tuple[str, dict[str, Any]]] = []
        rejected = 0
        source = env.get("source", "web")
        for event in env["events"]:
            rejected += govern_one(event, source, rows)
        return rows, len(env["events"]), rejected

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="WARNING",
        consumer_extra_config={"fetch.max.bytes": 64 * 1024 * 1024},
    )
    topic = app.topic(args.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(govern_single if args.input == "singles" else govern_envelope)
    sdf.sink(BaselineSink(args.duckdb, Path(args.status)))
    app.run()


if __name__ == "__main__":
    main()
