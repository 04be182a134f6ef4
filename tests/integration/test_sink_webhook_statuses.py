"""Which HTTP statuses the webhook sink retries: the transient ones Segment and RudderStack retry
(408 Request Timeout, 429, 5xx), and not those that come back the same for the same request
(409 Conflict and the other 4xx)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from sink_support import Receiver, batch, mixed, receiver  # noqa: F401 (fixture)
from tidegate.config import WebhookDestination
from tidegate.errors import DeliveryError
from tidegate.sinks import WebhookSink, deliver


@pytest.fixture
def make_sink(receiver: Receiver) -> Callable[..., WebhookSink]:
    def make(**kw: Any) -> WebhookSink:
        cfg = WebhookDestination(url=receiver.url, backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5, **kw)
        s = WebhookSink("hook", cfg)
        s.setup()
        return s
    return make


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
