"""Out-of-order traffic: order within lateness, flags beyond it, restated aggregates."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from support import Stack


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_out_of_order_generator(stack: Stack) -> None:
    rng = random.Random(7)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    stack.start_collector()
    stack.start_pipeline()

    def ev(i: int, t: datetime, sent: datetime | None = None, anon: str = "anon-1") -> dict:
        e = {"type": "track", "event": "Page Scrolled", "anonymousId": anon, "messageId": f"e{i}",
             "originalTimestamp": iso(t), "properties": {"i": i}}
        if sent is not None:
            e["sentAt"] = iso(sent)
        return e

    # 1. an hour reported on time: the first events the partition sees set its watermark
    two_hours_ago = now - timedelta(hours=2)
    first = [ev(300 + i, two_hours_ago) for i in range(10)]
    assert stack.post("/v1/batch", {"batch": first})[0] == 200
    # 2. current traffic, shuffled within 20 minutes (allowed lateness is 1 hour): in time
    on_time = [ev(i, now - timedelta(minutes=rng.uniform(0, 20))) for i in range(40)]
    rng.shuffle(on_time)
    assert stack.post("/v1/batch", {"batch": on_time})[0] == 200
    # 3. a device whose clock is a day ahead: skew correction keeps it in time
    skewed = [ev(100 + i, now + timedelta(days=1) - timedelta(seconds=5), sent=now + timedelta(days=1)) for i in range(5)]
    assert stack.post("/v1/batch", {"batch": skewed})[0] == 200
    # 4. stragglers for the hour of step 1, now 2 hours behind the watermark: delivered, flagged.
    # They arrive after that hour was stored (else one write holds the hour's every event, and
    # there is nothing to restate: it happened when the pipeline joined its group after step 3).
    stack.wait_processed(10 + 40 + 5)
    old = [ev(200 + i, two_hours_ago) for i in range(6)]
    assert stack.post("/v1/batch", {"batch": old})[0] == 200
    stack.wait_processed(10 + 40 + 5 + 6)
    stack.stop_pipeline()

    assert stack.query("select count(*) from page_scrolled") == [(61,)]
    assert stack.query("select count(*) from page_scrolled where late") == [(6,)]
    assert stack.query("select count(*) from page_scrolled where late and id like 'e2__'") == [(6,)]
    late_by = stack.query("select min(late_by_ms), max(late_by_ms) from page_scrolled where late")[0]
    assert 1.5 * 3600_000 < late_by[0] <= late_by[1] < 2.5 * 3600_000
    skew = stack.query("select max(abs(epoch(timestamp) - epoch(received_at))) from page_scrolled where id like 'e1__'")[0][0]
    assert skew < 60, "skew-corrected timestamps land near the receive time"
    # the hour of step 1 was restated with a new version, not silently changed
    hours = stack.query(
        "select version, event_count, restated from event_counts_hourly "
        f"where event = 'Page Scrolled' and hour_start = to_timestamp({int(two_hours_ago.timestamp()) // 3600 * 3600}) "
        "order by version")
    assert hours == [(1, 10, False), (2, 16, True)]
