"""What the collector says of a batch event whose `type` is missing or not a string, and of a
`batch` that is not an array (through the Python binding of `_core.ingest`)."""

from __future__ import annotations

import json

import pytest

from tidegate import RequestRejected, _core

LIMITS = (32 * 1024, 4 * 1024 * 1024, 10_000)
EXPECTED = "track, identify, page, screen, group or alias"


def refusal(body: object) -> RequestRejected:
    with pytest.raises(RequestRejected) as e:
        _core.ingest(json.dumps(body).encode(), "batch", "web", 0, 4, *LIMITS)
    return e.value


@pytest.mark.parametrize(("event", "says"), [
    ({"userId": "u", "messageId": "m-1"}, f'event 1 of the batch (messageId "m-1") has no `type`; set it to one of {EXPECTED}'),
    ({"type": 123, "userId": "u", "messageId": "m-1"},
     f'event 1 of the batch (messageId "m-1") has type 123, not a string; set it to one of {EXPECTED}'),
    ({"type": ["track"], "userId": "u"}, f'event 1 of the batch has type ["track"], not a string; set it to one of {EXPECTED}'),
    ({"type": "Track", "userId": "u", "messageId": 42}, f'event 1 of the batch (messageId "42") has type "Track"; expected one of {EXPECTED}'),
])
def test_a_bad_type_is_named_as_sent_with_the_message_id(event: dict[str, object], says: str) -> None:
    e = refusal({"batch": [{"type": "track", "userId": "u"}, event]})
    assert (e.status, e.code, e.message) == (400, "unknown_type", says)


def test_a_batch_that_is_an_object_must_be_an_array() -> None:
    e = refusal({"batch": {"type": "track", "userId": "u"}})
    assert (e.status, e.code) == (400, "batch_not_an_array")
    assert e.message == '`batch` is an object, not an array; send {"batch": [event, ...]}, even for one event'


@pytest.mark.parametrize("body", [{"batch": []}, {"batch": None}, {"sentAt": "x"}, [[{"type": "track", "userId": "u"}]]])
def test_an_empty_or_missing_batch_is_empty_batch(body: object) -> None:
    assert refusal(body).code == "empty_batch"
