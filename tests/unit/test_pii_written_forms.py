"""PII in the written forms the detectors must see through, end to end through the govern stage:
non-ASCII emails, percent-encoded URLs, labelled IPv6, bracketed phone area codes, secret keys
with a number or confirmation suffix; and look-alikes that must stay (signed decimals,
`conversion` beside an address is not a version)."""

from __future__ import annotations

import json

import pytest

from tidegate import _core
from tidegate.stages import decode_messages, govern

HASH_KEY = b"k" * 32


def note_after(value: str, default: str = "redact", key: str = "note") -> object:
    """`value` under `properties.<key>` after the PII policy (every class `default`)."""
    policy = _core.Governance([], [], (list(_core.DEFAULT_SENSITIVE_KEYS), [], default, HASH_KEY))
    event = {"type": "track", "event": "Contact", "userId": "u1", "messageId": "m1",
             "receivedAt": "2026-11-26T05:30:44.000Z", "properties": {key: value}}
    envelope = json.dumps({"v": 1, "source": "web", "receivedAt": "2026-11-26T05:30:44.000Z", "events": [event]})
    batch = govern(decode_messages([(envelope.encode(), 0, None)]), policy=policy)
    return batch.tables["contact"][_core.snake_case(key)][0]


@pytest.mark.parametrize(("text", "expected"), [
    ("contact müller@example.de", "contact [REDACTED:email]"),
    ("contact françois.dupont@example.fr", "contact [REDACTED:email]"),
    ("josé@example.com", "[REDACTED:email]"),
    ("user@münchen.de", "[REDACTED:email]"),
    ("info@bücher.example", "[REDACTED:email]"),
    ("https://shop.example.com/reset?email=jane.doe%40example.com&phone=%2B14155550123",
     "https://shop.example.com/reset?email=[REDACTED:email]&phone=[REDACTED:phone]"),
    ("https://x.example/?e=jane%2Btag%40example.com", "https://x.example/?e=[REDACTED:email]"),
    ("ip:2001:db8::1", "ip:[REDACTED:ipv6]"),
    ("remote_addr:fe80::1ff:fe23:4567:890a", "remote_addr:[REDACTED:ipv6]"),
    ("conversion from 203.0.113.77", "conversion from [REDACTED:ipv4]"),
    ("call +1(415)555-0123", "call [REDACTED:phone]"),
    ("+1(415) 555-0123", "[REDACTED:phone]"),
    ("+44(20)7946 0958", "[REDACTED:phone]"),
    ("iban GB82-WEST-1234-5698-7654-32", "iban [REDACTED:iban]"),
    ("card 4111.1111.1111.1111", "card [REDACTED:credit_card]"),
])
def test_pii_in_other_written_forms_is_redacted(text: str, expected: str) -> None:
    assert note_after(text) == expected


@pytest.mark.parametrize("text", ["+40.712776,-74.005974", "+48.858370 +2.294481", "delta +12.345678",
                                  "build 10.4.22.1", "100%40 off"])
def test_look_alikes_are_left_alone(text: str) -> None:
    assert note_after(text) == text


@pytest.mark.parametrize("key", ["secretKey", "secret_key", "stripe_secret_key", "password_confirmation",
                                 "passwordConfirm", "password2", "cvv2"])
def test_secret_keys_with_a_suffix_are_sensitive(key: str) -> None:
    assert note_after("hunter2-Secret!", key=key) == "[REDACTED:key_name]"


@pytest.mark.parametrize("key", ["secretary", "tokenizer_version", "password_confirmed_at", "token_count2"])
def test_look_alike_keys_are_not(key: str) -> None:
    assert note_after("hunter2-Secret!", key=key) == "hunter2-Secret!"


def test_a_key_named_like_conversion_is_not_a_version() -> None:
    assert note_after("203.0.113.77", key="conversion_ip") == "[REDACTED:ipv4]"
    assert note_after("10.4.22.1", key="app_version") == "10.4.22.1"


@pytest.mark.parametrize(("a", "b"), [
    ("+44 20 7946 0958", "+44 (0)20 7946 0958"),
    ("+49 30 1234567", "+49 (0)30 1234567"),
    ("?phone=%2B14155550123", "?phone=+1 415 555 0123"),
    ("?e=jane%2Btag%40example.com", "?e=jane+tag@example.com"),
])
def test_one_value_written_two_ways_hashes_alike(a: str, b: str) -> None:
    assert note_after(a, default="hash") == note_after(b, default="hash")
