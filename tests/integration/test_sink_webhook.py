"""The webhook sink against a real local HTTP server (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import base64
from typing import Any, Callable

import pytest

from sink_support import Receiver, assert_standard_metrics, batch, event, mixed, receiver  # noqa: F401 (fixture)
from support import free_port
from tidegate.config import WebhookDestination
from tidegate.errors import ConfigError, DeliveryError
from tidegate.sinks import WebhookSink, deliver


@pytest.fixture
def make_sink(receiver: Receiver) -> Callable[..., WebhookSink]:
    def make(**kw: Any) -> WebhookSink:
        cfg = WebhookDestination(url=receiver.url, backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5, **kw)
        s = WebhookSink("hook", cfg)
        s.setup()
        return s
    return make


def test_batches_are_split_and_carry_every_event_once(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    s = make_sink(max_batch_events=8, headers={"X-Team": "growth"})
    deliver(s, batch(mixed(30)))
    assert [len(body["batch"]) for _, body in receiver.requests] == [8, 8, 8, 6]
    got = receiver.events()
    assert sorted(e["id"] for e in got) == sorted(f"msg-{i}" for i in range(30))
    order = next(e for e in got if e["id"] == "msg-0")
    assert order["tidegate_table"] == "order_completed" and order["total"] == 0.5 and order["event_text"] == "Order Completed"
    assert order["received_at"] == "2026-11-26T05:30:44.000000Z"
    headers = receiver.requests[0][0]
    assert headers["X-Team"] == "growth" and headers["Content-Type"] == "application/json"
    assert len({h["Idempotency-Key"] for h, _ in receiver.requests}) == 4
    assert_standard_metrics("hook")


def test_outage_500_then_ok_is_retried_with_the_same_request_id(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    receiver.answers = [500, 503, 429]
    deliver(make_sink(), batch(mixed(5)))
    assert len(receiver.requests) == 4
    assert len({h["Idempotency-Key"] for h, _ in receiver.requests}) == 1  # one request, retried
    assert receiver.requests[-1][1] == receiver.requests[0][1]


def test_4xx_is_not_retried_and_says_why(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    receiver.answers = [400]
    with pytest.raises(DeliveryError, match="HTTP 400: scripted 400: bad payload"):
        deliver(make_sink(), batch(mixed(5)))
    assert len(receiver.requests) == 1


def test_408_request_timeout_is_retried_with_the_same_request(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    receiver.answers = [408, 408]
    deliver(make_sink(), batch(mixed(5)))
    assert receiver.statuses == [408, 408, 200]
    assert len({h["Idempotency-Key"] for h, _ in receiver.requests}) == 1


def test_409_conflict_is_permanent(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    receiver.answers = [409]
    with pytest.raises(DeliveryError, match="refused the batch with HTTP 409"):
        deliver(make_sink(), batch(mixed(5)))
    assert receiver.statuses == [409]


def test_retry_budget_exhausted_fails_the_batch(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    receiver.answers = [500] * 10
    with pytest.raises(DeliveryError, match="failed 3 times .*HTTP 500"):
        deliver(make_sink(max_retries=2), batch(mixed(5)))
    assert len(receiver.requests) == 3


def test_connection_refused_is_retried_then_fails() -> None:
    s = WebhookSink("hook", WebhookDestination(url=f"http://127.0.0.1:{free_port()}/hook", max_retries=1,
                                               backoff_initial_s=0.01, timeout_s=2))
    with pytest.raises(DeliveryError, match="failed 2 times"):
        deliver(s, batch(mixed(3)))


def test_basic_and_bearer_auth(receiver: Receiver, make_sink: Callable[..., WebhookSink], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_PASSWORD", "s3cret")
    monkeypatch.setenv("HOOK_TOKEN", "tok-123")
    deliver(make_sink(username="tidegate", password_env="HOOK_PASSWORD"), batch([event(1)]))
    deliver(make_sink(token_env="HOOK_TOKEN"), batch([event(2)]))
    basic, bearer = (h["Authorization"] for h, _ in receiver.requests)
    assert basic == "Basic " + base64.b64encode(b"tidegate:s3cret").decode()
    assert bearer == "Bearer tok-123"
    monkeypatch.delenv("HOOK_TOKEN")
    with pytest.raises(ConfigError, match=r"\$HOOK_TOKEN"):
        make_sink(token_env="HOOK_TOKEN")


def test_nothing_to_send_sends_nothing(receiver: Receiver, make_sink: Callable[..., WebhookSink]) -> None:
    deliver(make_sink(), batch([{"type": "track", "event": "x", "messageId": "bad-1"}]))  # only a rejected event
    assert receiver.requests == []
