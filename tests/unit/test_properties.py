"""Property tests: the Rust core against plain-Python reference implementations of the same rules,
on hypothesis-generated events (idempotency keys, JSON Schema validation, PII detection)."""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import jsonschema
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidegate import _core

settings.register_profile("tidegate", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tidegate")

# -- idempotency keys ----------------------------------------------------------------------------
TRANSPORT = {"sentAt", "receivedAt", "messageId", "requestIp", "writeKey"}


def _str(h: Any, s: str) -> None:
    b = s.encode()
    h.update(struct.pack("<Q", len(b)))
    h.update(b)


def _canonical(h: Any, v: Any) -> None:
    if v is None:
        h.update(b"n")
    elif isinstance(v, bool):
        h.update(b"t" if v else b"f")
    elif isinstance(v, (int, float)):
        h.update(b"#")
        f = float(v)
        if f.is_integer() and abs(f) < 9.0e15:
            h.update(struct.pack("<q", int(f)))
        else:
            h.update(str(v).encode())
    elif isinstance(v, str):
        h.update(b"s")
        _str(h, v)
    elif isinstance(v, list):
        h.update(b"[")
        for item in v:
            _canonical(h, item)
        h.update(b"]")
    else:
        h.update(b"{")
        for k in sorted(v):
            _str(h, k)
            _canonical(h, v[k])
        h.update(b"}")


def reference_key(source: str, event: dict[str, Any]) -> str:
    """The documented key: messageId scoped by source, else the canonical-content hash."""
    mid = event.get("messageId")
    if isinstance(mid, str) and mid:
        return xxhash.xxh3_128(b"m\0" + source.encode() + b"\0" + mid.encode()).hexdigest()
    h = xxhash.xxh3_128()
    h.update(b"c\0" + source.encode() + b"\0{")
    for k in sorted(k for k in event if k not in TRANSPORT):
        _str(h, k)
        _canonical(h, event[k])
    h.update(b"}")
    return h.hexdigest()


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                    st.integers(-10**6, 10**6).map(lambda i: i / 8), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "identify"]), "userId": st.text(min_size=1, max_size=8)},
    optional={"messageId": st.text(max_size=10), "properties": st.dictionaries(st.text(max_size=8), values, max_size=5),
              "sentAt": st.text(max_size=5), "event": st.text(max_size=10)})


@given(source=st.text(max_size=8), event=events)
def test_idempotency_key_matches_reference(source: str, event: dict[str, Any]) -> None:
    assert _core.idempotency_key(source, json.dumps(event).encode()) == reference_key(source, event)


@given(event=events, noise=st.text(max_size=5))
def test_content_key_ignores_key_order_and_transport(event: dict[str, Any], noise: str) -> None:
    event.pop("messageId", None)
    shuffled = dict(reversed(list(event.items())))
    shuffled["sentAt"] = noise
    shuffled["receivedAt"] = noise
    a = _core.idempotency_key("s", json.dumps(event).encode())
    assert a == _core.idempotency_key("s", json.dumps(shuffled).encode())


# -- JSON Schema validation ----------------------------------------------------------------------
leaf_schemas = st.one_of(
    st.builds(lambda t: {"type": t}, st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])),
    st.builds(lambda ts: {"type": ts}, st.lists(st.sampled_from(["string", "integer", "null"]), min_size=1, max_size=2, unique=True)),
    st.builds(lambda e: {"enum": e}, st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"])), min_size=1, max_size=3)),
    st.builds(lambda m: {"minimum": m}, st.integers(-5, 5)),
    st.builds(lambda m: {"maximum": m}, st.integers(-5, 5)),
    st.builds(lambda m: {"maxLength": m}, st.integers(0, 4)),
    st.builds(lambda m: {"minLength": m}, st.integers(0, 4)),
    st.builds(lambda p: {"pattern": p}, st.sampled_from(["^a", "b$", "^[a-c]+$", "[0-9]"])),
    st.builds(lambda c: {"const": c}, st.one_of(st.integers(-2, 2), st.just("a"))),
)
schemas = st.recursive(
    leaf_schemas,
    lambda inner: st.one_of(
        st.builds(lambda props, req, extra: {"type": "object", "properties": props,
                                             "required": sorted(set(req) & set(props)), "additionalProperties": extra},
                  st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
                  st.lists(st.sampled_from(["a", "b", "c"]), max_size=3), st.booleans()),
        st.builds(lambda items, n: {"type": "array", "items": items, "maxItems": n}, inner, st.integers(0, 3)),
    ),
    max_leaves=6,
)
instances = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-6, 6), st.floats(-6, 6, allow_nan=False).map(lambda f: round(f, 1)),
              st.text(alphabet="abc019", max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), inner, max_size=4)),
    max_leaves=8,
)


@given(schema=schemas, instance=instances)
def test_validator_agrees_with_reference(schema: dict[str, Any], instance: Any) -> None:
    plan = {"id": "p", "version": 1, "events": {"E": {"properties": {"properties": schema}}}}
    gov = _core.Governance([("p", json.dumps(plan).encode())], [("s", "p", [])], None)
    event = {"type": "track", "event": "E", "userId": "u", "properties": instance}
    result = _core.process_batch([("s", 0, json.dumps(event).encode(), b"", b"")], None, gov)
    rust_valid = not result.violation_counts
    assert rust_valid == jsonschema.Draft7Validator(schema).is_valid(instance), (schema, instance, result.violation_counts)


# -- PII ------------------------------------------------------------------------------------------
def luhn_complete(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 0:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
    return digits + str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(number)):
        n = int(d)
        if i % 2 == 1:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
    return total % 10 == 0


def iban_complete(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def url_decoded(text: str) -> str:
    """The escapes the scanner decodes in URLs: `%40` and `%2B`."""
    return re.sub("%40", "@", re.sub("%2[Bb]", "+", text))


REFERENCE = {
    # \w is Unicode: letters of any script in the local part and the domain.
    "email": lambda t: re.search(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}\b", url_decoded(t)) is not None,
    "credit_card": lambda t: any(luhn_ok(re.sub(r"[ .-]", "", m)) for m in re.findall(r"\b\d(?:[ .-]?\d){12,18}\b", t)),
    "ssn": lambda t: any(not (a in ("000", "666") or a >= "900" or g == "00" or s == "0000")
                         for a, g, s in re.findall(r"\b(\d{3})-(\d{2})-(\d{4})\b", t)),
    "ipv4": lambda t: any(all(int(o) < 256 for o in m.split(".")) for m in re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", t)),
    "iban": lambda t: any((lambda s: int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1)(re.sub(r"[ -]", "", m))
                          for m in re.findall(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,30}\b", t)),
}


def grouped(value: str, sep: str) -> str:
    """`value` printed in groups of four joined by `sep` (`""` leaves it compact)."""
    return sep.join(value[i:i + 4] for i in range(0, len(value), 4)) if sep else value

words = st.lists(st.sampled_from(["hello", "order", "please", "call", "me", "about", "the", "invoice", "thanks",
                                  "conversion", "müller"]),
                 min_size=0, max_size=5).map(" ".join)
pii_values = st.one_of(
    st.tuples(st.just("email"), st.builds(lambda u, d, encoded: f"{u}%40{d}.com" if encoded else f"{u}@{d}.com",
                                          st.text("abcxyzéüø", min_size=1, max_size=6),
                                          st.text("abcdefäç", min_size=2, max_size=6), st.booleans())),
    st.tuples(st.just("credit_card"), st.builds(lambda body, sep: grouped(luhn_complete("4" + body), sep),
                                                st.text("0123456789", min_size=14, max_size=14), st.sampled_from(["", " ", "-", "."]))),
    st.tuples(st.just("ssn"), st.builds(lambda a, g, s: f"{a:03d}-{g:02d}-{s:04d}", st.integers(1, 665), st.integers(1, 99), st.integers(1, 9999))),
    st.tuples(st.just("ipv4"), st.builds(lambda o: ".".join(map(str, o)), st.lists(st.integers(1, 254), min_size=4, max_size=4))),
    st.tuples(st.just("iban"), st.builds(lambda bban, sep: grouped(iban_complete("DE", bban), sep),
                                         st.text("0123456789", min_size=18, max_size=18), st.sampled_from(["", " ", "-"]))),
)


def rust_classes(text: str) -> set[str]:
    gov = _core.Governance([], [], ([], [], "redact", b""))
    event = {"type": "track", "event": "E", "userId": "u", "properties": {"note": text}}
    result = _core.process_batch([("s", 0, json.dumps(event).encode(), b"", b"")], None, gov)
    return {cls for cls, _action, _n in result.pii_counts}


@given(before=words, pii=pii_values, after=words)
def test_pii_in_free_text_found_like_reference(before: str, pii: tuple[str, str], after: str) -> None:
    cls, value = pii
    text = f"{before} {value} {after}".strip()
    assert REFERENCE[cls](text), "the generator made a value the reference rejects"
    assert cls in rust_classes(text), (cls, text)


@given(text=words)
def test_plain_words_have_no_pii(text: str) -> None:
    assert not any(ref(text) for ref in REFERENCE.values())
    assert rust_classes(text) == set()


# -- reconcile: the Rust arithmetic against the numpy formulation it replaced -----------------
def _lateness_reference(times: list[int], kafka_us: int, watermark: int | None, allowed_us: int,
                        max_future_us: int) -> tuple[list[int], int | None]:
    import numpy as np

    if not times:
        return [], watermark
    ts = np.asarray(times, dtype=np.int64)
    usable = np.minimum(ts, kafka_us + max_future_us)
    start = int(usable[0]) if watermark is None else int(watermark)
    before = np.maximum.accumulate(np.concatenate(([start], usable)))[:-1]
    behind = before - ts
    late = np.where(behind > allowed_us, behind // 1000, 0)
    return late.tolist(), max(start, int(usable.max()))


_US = st.integers(min_value=1_700_000_000_000_000, max_value=1_900_000_000_000_000)


@given(times=st.lists(_US, max_size=40), kafka_us=_US, watermark=st.none() | _US,
       allowed_us=st.integers(min_value=0, max_value=7 * 86_400_000_000),
       max_future_us=st.integers(min_value=0, max_value=86_400_000_000))
def test_lateness_matches_the_reference(times: list[int], kafka_us: int, watermark: int | None, allowed_us: int,
                                        max_future_us: int) -> None:
    raw = struct.pack(f"<{len(times)}q", *times)
    late, new_watermark = _core.lateness(raw, kafka_us, watermark, allowed_us, max_future_us)
    expected_late, expected_watermark = _lateness_reference(times, kafka_us, watermark, allowed_us, max_future_us)
    assert list(struct.unpack(f"<{len(times)}q", late)) == expected_late
    assert new_watermark == expected_watermark
