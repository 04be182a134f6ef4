"""The real Python SDKs — rudder-sdk-python and segment-analytics-python, from PyPI, unchanged —
pointed at a Tidegate collector: every call type lands in the warehouse with the fields the SDK
set; a wrong write key is refused and nothing of it lands; the SDKs' retries on 503/429 do not
create duplicates."""

from __future__ import annotations

import importlib
import threading
import uuid
from datetime import datetime
from typing import Any, Callable

import pytest

from support import Stack

from e2e_support import collector_metric, settle

SDKS = {
    # name: (module, PyPI package, library name the SDK puts in context.library.name)
    "rudder": ("rudderstack.analytics", "rudder-sdk-python", "analytics-python"),
    "segment": ("segment.analytics", "segment-analytics-python", "analytics-python"),
}


class SDK:
    def __init__(self, name: str):
        self.name = name
        module, self.package, self.library = SDKS[name]
        self.module = importlib.import_module(module)
        self.version = importlib.import_module(module + ".version").VERSION
        self.errors: list[tuple[Exception, list[dict[str, Any]]]] = []
        self._lock = threading.Lock()

    def on_error(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self.errors.append((error, batch))

    def client(self, host: str, write_key: str, **options: Any) -> Any:
        """A client as a user configures it: host = the collector, the source's write key, the
        SDK's default batching; gzip on (rudder's default; segment's must be switched on)."""
        if self.name == "segment":
            options.setdefault("gzip", True)
        return self.module.Client(write_key, host=host, on_error=self.on_error, **options)


@pytest.fixture(params=sorted(SDKS))
def sdk(request: pytest.FixtureRequest, python_sdks: None) -> SDK:
    return SDK(request.param)


def send_every_call(client: Any, tag: str) -> dict[str, dict[str, Any]]:
    """One call of every type; returns the messages as the SDK built them, by type."""
    user, anon = f"user-{tag}", f"anon-{tag}"
    sent = {}
    for kind, call in [
        ("identify", lambda: client.identify(user_id=user, anonymous_id=anon,
                                             traits={"plan": "pro", "seats": 5, "beta": True})),
        ("track", lambda: client.track(user_id=user, event="Order Completed",
                                       properties={"order_id": f"o-{tag}", "revenue": 42.5, "items": 3},
                                       context={"app": {"name": "e2e", "build": "7"}})),
        ("page", lambda: client.page(anonymous_id=anon, category="Docs", name="Getting Started",
                                     properties={"path": "/docs/start", "section": "intro"})),
        ("screen", lambda: client.screen(user_id=user, name="Home", properties={"tab": "feed"})),
        ("group", lambda: client.group(user_id=user, group_id=f"acme-{tag}",
                                       traits={"industry": "tools", "employees": 120})),
        ("alias", lambda: client.alias(previous_id=anon, user_id=user)),
    ]:
        ok, msg = call()
        assert ok, f"{kind}: the SDK did not queue the message"
        sent[kind] = msg
    return sent


TABLE = {"identify": "identifies", "track": "tracks", "page": "pages", "screen": "screens",
         "group": "groups", "alias": "aliases"}


def rows(stack: Stack, table: str, where: str = "") -> list[dict[str, Any]]:
    cols = [r[0] for r in stack.query(
        f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position")]
    assert cols, f"no table {table!r} in the warehouse"
    exprs = [f'epoch_us("{c}") AS "{c}"' if c in ("timestamp", "sent_at", "received_at", "original_timestamp", "uuid_ts")
             else f'"{c}"' for c in cols]
    return [dict(zip(cols, r)) for r in stack.query(f'SELECT {", ".join(exprs)} FROM "{table}" {where}')]


def epoch_us(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def assert_landed(stack: Stack, sdk: SDK, sent: dict[str, dict[str, Any]]) -> None:
    """Each message is exactly one row of its table, carrying what the SDK set."""
    for kind, msg in sent.items():
        got = rows(stack, TABLE[kind], f"WHERE id = '{msg['messageId']}'")
        assert len(got) == 1, f"{sdk.name} {kind} {msg['messageId']}: {len(got)} rows in {TABLE[kind]}"
        row = got[0]
        where = f"{sdk.name} {kind} in {TABLE[kind]}: {row}"
        assert row.get("user_id") == msg.get("userId"), where
        assert row.get("anonymous_id") == msg.get("anonymousId"), where
        assert row["timestamp"] == epoch_us(msg["timestamp"]), where
        assert row["sent_at"] is not None and row["received_at"] is not None, where
        assert row["received_at"] >= row["sent_at"] - 60_000_000, where
        assert row["context_library_name"] == sdk.library, where
        assert row["context_library_version"] == sdk.version, where
        if kind == "identify":
            assert (row["plan"], row["seats"], row["beta"]) == ("pro", 5, True), where
        elif kind == "track":
            assert (row["event"], row["event_text"]) == ("order_completed", "Order Completed"), where
            assert (row["context_app_name"], row["context_app_build"]) == ("e2e", "7"), where
            (ev,) = rows(stack, "order_completed", f"WHERE id = '{msg['messageId']}'")
            assert (ev["order_id"], ev["revenue"], ev["items"]) == (msg["properties"]["order_id"], 42.5, 3), ev
        elif kind == "page":
            assert (row["name"], row["path"], row["section"]) == ("Getting Started", "/docs/start", "intro"), where
        elif kind == "screen":
            assert (row["name"], row["tab"]) == ("Home", "feed"), where
        elif kind == "group":
            assert (row["group_id"], row["industry"], row["employees"]) == (msg["groupId"], "tools", 120), where
        elif kind == "alias":
            assert row["previous_id"] == msg["previousId"], where
    (user,) = rows(stack, "users", f"WHERE id = '{sent['identify']['userId']}'")
    assert (user["plan"], user["seats"]) == ("pro", 5), user


def test_every_call_type_lands_with_the_fields_the_sdk_set(running_stack: Stack, sdk: SDK) -> None:
    stack = running_stack
    client = sdk.client(stack.url, stack.WRITE_KEYS["server"])
    sent = send_every_call(client, uuid.uuid4().hex[:8])
    client.flush()
    client.join()
    assert not sdk.errors, f"{sdk.package} reported errors: {sdk.errors}"
    assert collector_metric(stack, "tidegate_collector_events_total", outcome="accepted") == len(sent)
    assert collector_metric(stack, "tidegate_collector_requests_total", endpoint="batch", status="200") >= 1
    settle(stack, len(sent), len(sent))
    stack.stop_pipeline()
    assert_landed(stack, sdk, sent)
    assert {t: stack.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLE.values()} == dict.fromkeys(TABLE.values(), 1)


def test_wrong_write_key_is_refused_and_nothing_lands(running_stack: Stack, sdk: SDK) -> None:
    stack = running_stack
    bad = sdk.client(stack.url, "not-a-tidegate-key")
    _, refused = bad.track(user_id="intruder", event="Should Not Land", properties={"x": 1})
    bad.flush()
    bad.join()
    assert len(sdk.errors) == 1, f"{sdk.package} should report exactly one failed batch: {sdk.errors}"
    error, batch = sdk.errors[0]
    assert (getattr(error, "status", None), getattr(error, "code", None)) == (401, "invalid_write_key"), repr(error)
    assert [m["messageId"] for m in batch] == [refused["messageId"]]
    # 401 is final: the SDK gave up at once instead of retrying it.
    assert collector_metric(stack, "tidegate_collector_requests_total", endpoint="batch", status="401") == 1

    sdk.errors.clear()
    good = sdk.client(stack.url, stack.WRITE_KEYS["server"])
    _, marker = good.track(user_id="someone", event="Marker")
    good.flush()
    good.join()
    assert not sdk.errors, sdk.errors
    settle(stack, 1, 1)
    stack.stop_pipeline()
    assert stack.query("SELECT id FROM tracks") == [(marker["messageId"],)]
    assert not stack.query("SELECT table_name FROM information_schema.tables WHERE table_name = 'should_not_land'")


@pytest.mark.parametrize("faults", [["forward+503", "429"], ["503", "503", "forward+503"]],
                         ids=["lost-ack-then-429", "503-503-lost-ack"])
def test_retries_on_503_and_429_do_not_duplicate(running_stack: Stack, sdk: SDK, faulty_proxy: Callable[..., Any],
                                                 faults: list[str]) -> None:
    """The proxy lets the collector store the first batch but tells the SDK it failed, so the
    SDK's retry resends events Tidegate already has: they must land once."""
    stack = running_stack
    proxy = faulty_proxy(faults, retry_after="1")
    client = sdk.client(proxy.url, stack.WRITE_KEYS["server"])
    sent = send_every_call(client, uuid.uuid4().hex[:8])
    client.flush()
    client.join()
    assert not sdk.errors, f"{sdk.package} gave up: {sdk.errors}"
    answered = [s.answered for s in proxy.seen]
    assert answered[:len(faults)] == [int(f[-3:]) for f in faults] and set(answered[len(faults):]) == {200}, answered
    assert all(s.path == "/v1/batch" and s.headers.get("Content-Encoding") == "gzip" for s in proxy.seen), proxy.seen
    forwarded = sum(s.events for s in proxy.seen if s.forwarded)
    assert forwarded > len(sent), f"no event reached Tidegate twice; the test proved nothing: {proxy.seen}"
    assert collector_metric(stack, "tidegate_collector_events_total", outcome="accepted") == forwarded
    settle(stack, forwarded, len(sent))
    stack.stop_pipeline()
    assert_landed(stack, sdk, sent)
    for table in TABLE.values():
        assert stack.query(f"SELECT count(*), count(DISTINCT id) FROM {table}") == [(1, 1)], table
