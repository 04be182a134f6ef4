"""The consent matrix: every strategy × allowed/denied/missing × inherited/overridden, for
RudderStack's consentManagement and Segment's categoryPreferences."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sink_support import batch, event
from tidegate import metrics
from tidegate.config import Config, ConsentConfig, DuckDBDestination
from tidegate.stages.consent import destination_batch, requirements

OPPOSITE = {"and": "or", "or": "and"}
DENIED = {"allowed": ["unrelated"], "denied_one": ["ads"], "denied_all": ["ads", "analytics"], "missing": None}


def cfg_for(req: ConsentConfig, where: str) -> Config:
    """``req`` on the workspace (inherited) or on the destination over a different workspace one."""
    if where == "inherited":
        return Config(consent=req, destinations={"d": DuckDBDestination(), "optout": DuckDBDestination(consent=ConsentConfig())})
    decoy = ConsentConfig(consents=["something-else"], resolution_strategy=OPPOSITE[req.resolution_strategy],
                          categories=["Other"])
    return Config(consent=decoy, destinations={"d": DuckDBDestination(consent=req),
                                               "optout": DuckDBDestination(consent=ConsentConfig())})


def delivered(cfg: Config, events: list[dict[str, Any]], dest: str = "d") -> set[str]:
    out = destination_batch(cfg, dest, batch(events))
    ids: set[str] = set()
    for table in ("tracks", "identifies", "pages"):
        if table in out.tables:
            ids |= set(out.tables[table]["id"].to_list())
    return ids


def rudder_event(denied: list[str] | None, provider: str, event_strategy: str, kind: str = "track") -> dict[str, Any]:
    ctx: dict[str, Any] = {"library": {"name": "t"}}
    if denied is not None:
        ctx["consentManagement"] = {"provider": provider, "resolutionStrategy": event_strategy,
                                    "deniedConsentIds": denied, "allowedConsentIds": ["ads", "analytics"]}
    return event(1, kind, context=ctx)


@pytest.mark.parametrize("where", ["inherited", "overridden"])
@pytest.mark.parametrize("state", list(DENIED))
@pytest.mark.parametrize("strategy_from", ["destination", "event"])
@pytest.mark.parametrize("strategy", ["and", "or"])
def test_rudderstack_matrix(strategy: str, strategy_from: str, state: str, where: str) -> None:
    if strategy_from == "destination":
        # provider custom: the destination's strategy wins over what the event says
        req = ConsentConfig(consents=["ads", "analytics"], resolution_strategy=strategy)
        ev = rudder_event(DENIED[state], "custom", OPPOSITE[strategy])
    else:
        # another provider: the event's strategy wins over the destination's
        req = ConsentConfig(consents=["ads", "analytics"], resolution_strategy=OPPOSITE[strategy])
        ev = rudder_event(DENIED[state], "oneTrust", strategy)
    cfg = cfg_for(req, where)
    dropped = state == "denied_all" or (state == "denied_one" and strategy == "and")
    assert delivered(cfg, [ev]) == (set() if dropped else {"msg-1"})
    assert delivered(cfg, [ev], "optout") == {"msg-1"}  # `consent = {}` opts a destination out


def test_default_strategy_and_no_provider() -> None:
    req = ConsentConfig(consents=["ads", "analytics"])  # and
    cfg = cfg_for(req, "inherited")
    ev = event(1, context={"consentManagement": {"deniedConsentIds": ["ads"]}})  # no provider, no strategy
    assert delivered(cfg, [ev]) == set()
    ev = event(1, context={"consentManagement": {"provider": "ketch", "deniedConsentIds": ["ads"]}})  # event strategy absent: and
    assert delivered(cfg_for(ConsentConfig(consents=["ads", "analytics"], resolution_strategy="or"), "inherited"), [ev]) == set()


CATEGORIES = {
    "allowed": {"Marketing": True, "Analytics": True, "Other": False},
    "denied": {"Marketing": True, "Analytics": False},
    "absent": {"Marketing": True},  # a needed category the user never answered: not consented
    "missing": None,  # no consent object: not filtered
}


@pytest.mark.parametrize("where", ["inherited", "overridden"])
@pytest.mark.parametrize("state", list(CATEGORIES))
def test_segment_matrix(state: str, where: str) -> None:
    prefs = CATEGORIES[state]
    ctx: dict[str, Any] = {} if prefs is None else {"consent": {"categoryPreferences": prefs}}
    cfg = cfg_for(ConsentConfig(categories=["Marketing", "Analytics"]), where)
    events = [event(1, context=ctx), event(2, "identify", context=ctx)]
    got = delivered(cfg, events)
    assert got == (set() if state in ("denied", "absent") else {"msg-1", "msg-2"})
    assert delivered(cfg, events, "optout") == {"msg-1", "msg-2"}


def test_rows_of_dropped_events_leave_every_table_and_are_counted() -> None:
    cfg = cfg_for(ConsentConfig(consents=["ads"]), "inherited")
    denied = {"consentManagement": {"deniedConsentIds": ["ads"]}}
    b = batch([event(1, context=denied), event(2), event(3, "identify", context=denied), event(4, "identify"),
               event(5, "page", context=denied)])
    before = metrics.REGISTRY.get_sample_value("tidegate_consent_drops_total", {"destination": "d"}) or 0
    out = destination_batch(cfg, "d", b)
    assert out.tables["tracks"]["id"].to_list() == ["msg-2"]
    assert out.tables["order_completed"]["id"].to_list() == ["msg-2"]
    assert out.tables["identifies"]["id"].to_list() == ["msg-4"]
    assert "pages" not in out.tables
    assert out.tables["users"]["id"].to_list() == ["user-4"]  # user-3's traits came from a dropped identify
    assert out.accepted == 2 and out.hourly_counts["events"].sum() == 1
    assert (metrics.REGISTRY.get_sample_value("tidegate_consent_drops_total", {"destination": "d"}) or 0) - before == 3
    assert b.tables["tracks"].height == 2  # the shared batch is untouched: other destinations see it whole


def test_config_shape() -> None:
    raw = {"consent": {"consents": ["ads"]}, "destinations": {
        "a": {"type": "duckdb"}, "b": {"type": "webhook", "url": "http://x", "consent": {"categories": ["M"], "resolution_strategy": "or"}}}}
    cfg = msgspec.convert(raw, Config)
    assert requirements(cfg, "a") == ConsentConfig(consents=["ads"])
    assert requirements(cfg, "b") == ConsentConfig(categories=["M"], resolution_strategy="or")
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"consent": {"resolution_strategy": "xor"}}, Config)
