"""`tidegate replay`'s summary accounts for every event read, per destination (delivered,
suppressed, not for it, refused), and says which tables its new rows went to and how many events
were already stored."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from tidegate import load_config
from tidegate.archive import ArchiveWriter
from tidegate.regulations import suppress
from tidegate.replay import replay
from tidegate.stages import decode_messages

T0 = datetime(2026, 11, 26, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 27, 0, tzinfo=timezone.utc)


def write_config(tmp: Path) -> Path:
    p = tmp / "tidegate.toml"
    p.write_text("""
[sources.web]
write_key = "k1"
[regulations]
path = "reg"
[pii.actions]
email = "block_event"
[destinations.warehouse]
type = "duckdb"
path = "warehouse.duckdb"
[destinations.ads]
type = "duckdb"
path = "ads.duckdb"
consent = { consents = ["ads"] }
""")
    return p


def track(mid: str, user: str = "u1", denied: tuple[str, ...] = (), **props: object) -> dict:
    return {"type": "track", "event": "Clicked", "userId": user, "messageId": mid,
            "receivedAt": "2026-11-26T08:00:00.000Z", "properties": props,
            "context": {"consentManagement": {"deniedConsentIds": list(denied)}}}


def archive(cfg, events: list[dict]) -> None:
    w = ArchiveWriter(cfg.archive, start_timer=False)
    envelope = json.dumps({"v": 1, "source": "web", "receivedAt": "x", "events": events}).encode()
    w.add(decode_messages([(envelope, 0, None)]).messages)
    w.close()


def test_every_event_is_accounted_for_per_destination(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), env={})
    archive(cfg, [track(f"m{i}", denied=("ads",) if i < 2 else ()) for i in range(5)] + [track("s1", user="gone"), track("s2", user="gone")]
            + [track("p1", contact="ana@example.com")])
    suppress(cfg, "gone")
    s = replay(cfg, T0, T1, destinations=["warehouse", "ads"])
    assert (s.read, s.accepted, s.refused) == (8, 7, {"pii_blocked": 1})
    assert s.delivered == {"warehouse": 5, "ads": 3}
    assert s.suppressed == {"warehouse": 2, "ads": 2} and s.not_for == {"warehouse": 0, "ads": 2}
    text = s.render()
    assert "destination 'warehouse': of 8 events, 5 delivered, 2 suppressed (`tidegate regulate list`), " \
           "1 refused by policy" in text
    assert "destination 'ads': of 8 events, 3 delivered, 2 suppressed (`tidegate regulate list`), " \
           "2 not for it (consent or its filters), 1 refused by policy" in text
    # Which tables the new rows went to; nothing was stored before.
    assert s.new_rows["warehouse"] == {"tracks": 5, "clicked": 5, "identity_map": 1, "event_counts_hourly": 1,
                                      "discarded_events": 1}
    assert "    13 new rows (clicked 5, tracks 5, discarded_events 1, event_counts_hourly 1, identity_map 1); " \
           "already stored and kept as they were: 0 events" in text


def test_a_repeat_says_the_events_were_already_stored(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), env={})
    archive(cfg, [track(f"m{i}") for i in range(3)] + [track("p1", contact="ana@example.com")])
    replay(cfg, T0, T1, destinations=["warehouse"])
    again = replay(cfg, T0, T1, destinations=["warehouse"]).render()
    assert "destination 'warehouse': of 4 events, 3 delivered, 1 refused by policy" in again
    assert "    0 new rows; already stored and kept as they were: 3 events and 1 refused event" in again
