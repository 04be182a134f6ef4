"""The standard synthetic corpus every Tidegate benchmark runs on.

Realistic Segment-spec events (``track``, ``identify``, ``page``, ``screen``, ``group``,
``alias``) with ``context``, ``properties`` and ``traits``, deterministic for a seed, in two
sizes (≈700 B and ≈2 KB as the SDK sends them), with a configurable share of events carrying
PII (emails, phone numbers, Luhn-valid card numbers — in fields and inside free text) and a
configurable share violating the tracking plan shipped next to this file (``plan.json``).

The same events come in every form a stage consumes:

* ``events(...)``            -> list of dicts (what an SDK builds)
* ``ndjson(events)``         -> newline-delimited JSON bytes
* ``batch_bodies(events)``   -> collector ``POST /v1/batch`` bodies, 100 events each
* ``stamp(events, ...)``     -> events as the collector stamps them (``receivedAt``, ``timestamp``)
* ``envelopes(events, ...)`` -> pipeline envelopes, the raw-topic format the collector writes:
                                ``{"v":1,"source":S,"receivedAt":T,"events":[...]}``
* ``singles(events, ...)``   -> one stamped event per message (what another producer writes)

Non-PII events carry no email, phone, card or IP address (``context.ip`` is left out), so the
PII share is exactly the configured rate; ``labels(...)`` says which events carry what.

>>> evs = events(1000, seed=1)
>>> len(evs), len({e["messageId"] for e in evs})
(1000, 1000)
>>> 600 <= sorted(len(json.dumps(e)) for e in evs)[500] <= 800
True
"""

from __future__ import annotations

import json
import random
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from tidegate.sample import PRODUCTS

__all__ = [
    "PLAN_PATH", "SIZES", "Label", "load_plan", "parse_size_mix", "generate", "events", "labels",
    "ndjson", "batch_bodies", "stamp", "envelopes", "singles", "restamp", "iso", "RECEIVED_AT_PLACEHOLDER",
]

PLAN_PATH = Path(__file__).with_name("plan.json")
SIZES = {"small": 700, "large": 2048}
# Fixed clock so a seed always gives the same bytes; the e2e harness restamps receivedAt.
_EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
# Same length as any real receivedAt, so envelopes can be restamped with bytes.replace.
RECEIVED_AT_PLACEHOLDER = "2000-01-01T00:00:00.000Z"

_PRODUCTS = [
    *PRODUCTS,
    ("sku-1006", "Trekking Poles Carbon", "Gear", 149.0),
    ("sku-1007", "Ultralight Tent 2P", "Shelter", 459.0),
    ("sku-1008", "Down Jacket 800fp", "Apparel", 329.0),
]
_PAGES = [("/", "Home"), ("/shop", "Shop"), ("/shop/footwear", "Footwear"), ("/cart", "Cart"),
          ("/blog/ultra-tips", "Blog"), ("/account/orders", "Orders"), ("/search", "Search")]
_SCREENS = ["Home", "Product", "Checkout", "Orders", "Settings"]
_CITIES = [("Berlin", "DE"), ("Lisbon", "PT"), ("Austin", "US"), ("Toronto", "CA"), ("Osaka", "JP")]
_WORDS = ("trail ultra lightweight waterproof breathable durable summit ridge alpine grip cushion "
          "stride pace recovery layer insulated packable weather storm sunrise route descent climb "
          "comfortable fit sizing return exchange delivery great quality recommend").split()
_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
# (event name, share among track events)
_TRACKS = [("Product Viewed", 0.35), ("Product Added", 0.2), ("Checkout Started", 0.1),
           ("Order Completed", 0.1), ("Products Searched", 0.15), ("Signed Up", 0.05), ("Video Played", 0.05)]
# (type, share of all events)
_TYPES = [("track", 0.55), ("page", 0.2), ("identify", 0.1), ("screen", 0.08), ("group", 0.04), ("alias", 0.03)]


@dataclass(frozen=True)
class Label:
    """What was planted in one event: PII classes (with where) and the violation, if any."""

    pii: tuple[tuple[str, str], ...] = ()  # (class, JSON path)
    violation: str | None = None  # "Datatype-Mismatch" | "Required-Missing"
    size: str = "small"


@dataclass
class _Generated:
    events: list[dict[str, Any]] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


def iso(t: datetime) -> str:
    """Segment's timestamp form, millisecond precision."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def load_plan(path: str | Path = PLAN_PATH) -> dict[str, Any]:
    """The tracking plan the corpus is generated against."""
    return json.loads(Path(path).read_text())


def parse_size_mix(mix: str) -> list[tuple[str, float]]:
    """``"small"``, ``"large"``, or weights such as ``"small:0.8,large:0.2"``.

    >>> parse_size_mix("small:3,large:1")
    [('small', 0.75), ('large', 0.25)]
    """
    parts = []
    for item in mix.split(","):
        name, _, weight = item.strip().partition(":")
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r} in size mix {mix!r}; use small (≈700 B) or large (≈2 KB)")
        parts.append((name, float(weight or 1)))
    total = sum(w for _, w in parts)
    return [(n, w / total) for n, w in parts]


def _pick(rng: random.Random, table: list[tuple[str, float]]) -> str:
    r = rng.random()
    for name, share in table:
        r -= share
        if r < 0:
            return name
    return table[-1][0]


def _luhn_card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "52", "37", "6011"])
    length = 15 if prefix == "37" else 16
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    sep = rng.choice(["", " ", "-"])
    return sep.join(s[i:i + 4] for i in range(0, len(s), 4)) if sep else s


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"+1 ({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    return f"+49 30 {rng.randint(1000000, 9999999)}"


def _email(rng: random.Random, u: int) -> str:
    return f"{rng.choice(['ana', 'li', 'sam', 'jo', 'kai'])}.{u}@{rng.choice(['example.com', 'mail.example.org', 'corp.example.net'])}"


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _context(rng: random.Random, mobile: bool, large: bool) -> dict[str, Any]:
    if mobile:
        ctx: dict[str, Any] = {
            "library": {"name": "rudder-ios-library", "version": "1.31.0"},
            "app": {"name": "Trailhead", "version": "5.2.1", "build": "5210"},
            "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
            "os": {"name": "iOS", "version": "18.1"},
            "locale": "en-US",
        }
        if large:
            ctx["device"]["id"] = str(uuid.UUID(int=rng.getrandbits(128)))
            ctx["screen"] = {"width": 393, "height": 852, "density": 3}
            ctx["network"] = {"wifi": rng.random() < 0.6, "carrier": "T-Mobile"}
            ctx["timezone"] = "America/Chicago"
    else:
        path, title = rng.choice(_PAGES)
        ctx = {
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.2"},
            "page": {"path": path, "title": title, "url": f"https://shop.example.com{path}", "referrer": "https://www.google.com/"},
            "userAgent": rng.choice(_AGENTS),
            "locale": "en-US",
        }
        if large:
            ctx["screen"] = {"width": 1920, "height": 1080, "density": 1}
    if large:
        ctx["campaign"] = {"source": "newsletter", "medium": "email", "name": "winter-sale", "content": "hero-banner", "term": "trail shoes"}
        ctx["traits"] = {"plan": rng.choice(["free", "plus", "pro"]), "locale": "en-US", "segment": rng.choice(["runner", "hiker", "climber"])}
        ctx["instance_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    return ctx


def _track_properties(rng: random.Random, name: str, large: bool) -> dict[str, Any]:
    sku, pname, cat, price = rng.choice(_PRODUCTS)
    if name in ("Product Viewed", "Product Added"):
        props: dict[str, Any] = {"product_id": sku, "name": pname, "category": cat, "price": price, "currency": "EUR"}
        if large:
            props.update(brand="Trailhead", variant=rng.choice(["black", "blue", "red"]), url=f"https://shop.example.com/p/{sku}")
        if name == "Product Added":
            props["quantity"] = rng.randint(1, 3)
            props["cart_id"] = f"c-{rng.getrandbits(32):08x}"
    elif name in ("Checkout Started", "Order Completed"):
        n = rng.randint(2, 6) if large else 1
        items = [{"product_id": p[0], "name": p[1], "category": p[2], "price": p[3], "quantity": rng.randint(1, 2)}
                 for p in rng.sample(_PRODUCTS, n)]
        total = round(sum(i["price"] * i["quantity"] for i in items), 2)
        props = {"order_id": f"o-{rng.getrandbits(40):010x}", "total": total, "revenue": round(total / 1.19, 2),
                 "currency": "EUR", "products": items}
        if name == "Order Completed":
            props["coupon"] = rng.choice([None, "WINTER10"])
            props["shipping"] = rng.choice(["dhl", "ups", "pickup"])
    elif name == "Products Searched":
        props = {"query": " ".join(rng.sample(_WORDS, 3)), "results": rng.randint(0, 120), "page": rng.randint(1, 5)}
    elif name == "Signed Up":
        props = {"method": rng.choice(["email", "google", "apple"]), "plan": rng.choice(["free", "plus", "pro"]), "referrer": "newsletter"}
    else:  # Video Played
        props = {"video_id": f"v-{rng.getrandbits(24):06x}", "position": rng.randint(0, 600), "total_length": 612,
                 "quality": rng.choice(["720p", "1080p"]), "livestream": False}
    return props


def _plant_pii(rng: random.Random, ev: dict[str, Any], u: int) -> list[tuple[str, str]]:
    """Put one or two PII values into the event: as a field or inside free text."""
    where = "traits" if ev["type"] in ("identify", "group") else "properties"
    bag = ev.setdefault(where, {})
    found = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        kind = rng.choice(["email", "phone", "card"])
        value = {"email": lambda: _email(rng, u), "phone": lambda: _phone(rng), "card": lambda: _luhn_card(rng)}[kind]()
        style = rng.random()
        if style < 0.5:
            key = {"email": "email", "phone": "phone", "card": "payment_ref"}[kind]
            bag[key] = value
            found.append((kind, f"$.{where}.{key}"))
        else:
            template = rng.choice(["Please call me at {v} about my order.", "Contact: {v} (preferred)",
                                   "note from customer service - {v} - follow up"])
            bag["comment"] = template.format(v=value)
            found.append((kind, f"$.{where}.comment"))
    return found


# Fields PII and padding are planted in; violations leave them alone so labels stay exact.
_FREE_TEXT = frozenset({"email", "phone", "payment_ref", "comment", "description"})


def _plant_violation(rng: random.Random, ev: dict[str, Any], plan: dict[str, Any]) -> str | None:
    if ev["type"] == "track":
        schema = plan["events"].get(ev["event"])
    elif ev["type"] == "identify":
        schema = plan.get("identify")
    else:
        schema = None
    if schema is None:
        # Only track and identify are planned: give the event a wrong-typed common field instead.
        ev["context"]["library"]["version"] = 372
        return "Datatype-Mismatch"
    bag_name = "traits" if ev["type"] == "identify" else "properties"
    bag = ev.setdefault(bag_name, {})
    sub = schema["properties"][bag_name]
    required = [k for k in sub.get("required", []) if k in bag]
    if required and rng.random() < 0.5:
        del bag[rng.choice(required)]
        return "Required-Missing"
    typed = [k for k, s in sub["properties"].items()
             if k in bag and k not in _FREE_TEXT and s.get("type") in ("number", "integer", "string")]
    if not typed:
        return None
    k = rng.choice(typed)
    bag[k] = str(bag[k]) if sub["properties"][k]["type"] != "string" else rng.randint(1, 99)
    return "Datatype-Mismatch"


def _pad(rng: random.Random, ev: dict[str, Any], target: int) -> None:
    """Grow the event to ≈target bytes with free text where real events carry it."""
    size = len(json.dumps(ev, separators=(",", ":")))
    if size >= target - 20:
        return
    where = "traits" if ev["type"] in ("identify", "group") else "properties"
    if ev["type"] == "alias":
        where = "context"
    bag = ev.setdefault(where, {})
    words = []
    budget = target - size - len('"description":"",')
    while budget > 0:
        w = rng.choice(_WORDS)
        words.append(w)
        budget -= len(w) + 1
    bag["description"] = " ".join(words)[: max(1, target - size - len('"description":"",'))]


def generate(n: int, *, seed: int = 7, size_mix: str = "small", pii_rate: float = 0.10,
             violation_rate: float = 0.05, plan: dict[str, Any] | None = None, users: int | None = None) -> _Generated:
    """Events and their labels. Deterministic for a given seed and parameters."""
    plan = plan or load_plan()
    rng = random.Random(seed)
    mix = parse_size_mix(size_mix)
    n_users = users or max(10, n // 20)
    out = _Generated()
    anon_ids: dict[int, str] = {}
    for i in range(n):
        size = _pick(rng, mix)
        large = size == "large"
        u = rng.randrange(n_users)
        mobile = rng.random() < 0.3
        kind = _pick(rng, _TYPES)
        anon = anon_ids.get(u)
        if anon is None:
            anon = anon_ids[u] = str(uuid.UUID(int=random.Random(seed * 1_000_003 + u).getrandbits(128), version=4))
        user_id = f"user-{u:06d}"
        ev: dict[str, Any] = {"type": kind, "anonymousId": anon, "channel": "mobile" if mobile else "web",
                              "context": _context(rng, mobile, large)}
        if rng.random() < 0.6 or kind in ("identify", "group", "alias"):
            ev["userId"] = user_id
        if kind == "track":
            name = _pick(rng, _TRACKS)
            ev["event"] = name
            ev["properties"] = _track_properties(rng, name, large)
        elif kind == "page":
            path, title = rng.choice(_PAGES)
            ev["name"] = title
            ev["properties"] = {"path": path, "title": title, "url": f"https://shop.example.com{path}",
                                "referrer": "https://www.google.com/", "search": ""}
        elif kind == "screen":
            ev["name"] = rng.choice(_SCREENS)
            ev["properties"] = {"referrer": rng.choice(["push", "deeplink", "organic"]), "tab": rng.randint(0, 4)}
        elif kind == "identify":
            city, country = rng.choice(_CITIES)
            ev["traits"] = {"name": f"Runner {u}", "plan": rng.choice(["free", "plus", "pro"]),
                            "address": {"city": city, "country": country},
                            "createdAt": iso(_EPOCH - timedelta(days=rng.randrange(1, 900))),
                            "orders": rng.randint(0, 40), "newsletter": rng.random() < 0.5}
        elif kind == "group":
            ev["groupId"] = f"team-{u % 97}"
            ev["traits"] = {"name": f"Running Club {u % 97}", "employees": 10 + u % 50, "industry": "Sports"}
        else:  # alias
            ev["previousId"] = anon
        pii = tuple(_plant_pii(rng, ev, u)) if rng.random() < pii_rate else ()
        violation = _plant_violation(rng, ev, plan) if rng.random() < violation_rate else None
        ev["messageId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        t = _EPOCH + timedelta(milliseconds=i * 37)
        ev["originalTimestamp"] = iso(t)
        ev["sentAt"] = iso(t + timedelta(milliseconds=rng.randrange(5, 900)))
        _pad(rng, ev, SIZES[size])
        out.events.append(ev)
        out.labels.append(Label(pii=pii, violation=violation, size=size))
    return out


def events(n: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``n`` events as dicts, as an SDK sends them (see :func:`generate` for the options)."""
    return generate(n, **kwargs).events


def labels(n: int, **kwargs: Any) -> list[Label]:
    return generate(n, **kwargs).labels


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def ndjson(evs: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(_dumps(e) + b"\n" for e in evs)


def batch_bodies(evs: list[dict[str, Any]], per_request: int = 100) -> list[bytes]:
    """Collector ``/v1/batch`` request bodies of ``per_request`` events."""
    out = []
    for i in range(0, len(evs), per_request):
        chunk = evs[i:i + per_request]
        out.append(_dumps({"batch": chunk, "sentAt": chunk[-1].get("sentAt")}))
    return out


def stamp(evs: Iterable[dict[str, Any]], received_at: str = RECEIVED_AT_PLACEHOLDER) -> list[dict[str, Any]]:
    """Events as the collector stamps them: ``receivedAt`` set, ``timestamp`` derived (no skew)."""
    out = []
    for e in evs:
        e = dict(e)
        e.setdefault("timestamp", e.get("originalTimestamp") or received_at)
        e["receivedAt"] = received_at
        out.append(e)
    return out


def _partition(ev: dict[str, Any], partitions: int) -> int:
    key = ev.get("anonymousId") or ev.get("userId") or ""
    return zlib.crc32(str(key).encode()) % partitions


def envelopes(evs: list[dict[str, Any]], *, source: str = "web", per_request: int = 100, partitions: int = 1,
              received_at: str = RECEIVED_AT_PLACEHOLDER) -> list[tuple[int, int, bytes]]:
    """Raw-topic envelopes ``(partition, event_count, payload)`` as the collector writes them:
    each request of ``per_request`` events is split by partition, one envelope per partition.

    With the default ``received_at`` placeholder, restamp a payload at send time with
    ``payload.replace(RECEIVED_AT_PLACEHOLDER.encode(), now.encode())``.

    >>> [(p, n) for p, n, _ in envelopes(events(3, seed=2))]
    [(0, 3)]
    """
    out = []
    stamped = stamp(evs, received_at)
    head = b'{"v":1,"source":' + _dumps(source) + b',"receivedAt":' + _dumps(received_at) + b',"events":['
    for i in range(0, len(stamped), per_request):
        by_partition: dict[int, list[bytes]] = {}
        for e in stamped[i:i + per_request]:
            by_partition.setdefault(_partition(e, partitions), []).append(_dumps(e))
        for p in sorted(by_partition):
            out.append((p, len(by_partition[p]), head + b",".join(by_partition[p]) + b"]}"))
    return out


def singles(evs: list[dict[str, Any]], *, partitions: int = 1,
            received_at: str = RECEIVED_AT_PLACEHOLDER) -> list[tuple[int, bytes]]:
    """One stamped event per message ``(partition, payload)``: what a plain producer writes."""
    return [(_partition(e, partitions), _dumps(e)) for e in stamp(evs, received_at)]





def restamp(payload: bytes, received_at: str) -> bytes:
    """Replace the placeholder ``receivedAt`` of a payload made by :func:`envelopes`/:func:`singles`."""
    return payload.replace(RECEIVED_AT_PLACEHOLDER.encode(), received_at.encode())


if __name__ == "__main__":  # a quick look: python bench/corpus.py [n] [size_mix]
    import statistics
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    g = generate(n, size_mix=sys.argv[2] if len(sys.argv) > 2 else "small")
    sizes = [len(_dumps(e)) for e in g.events]
    print(f"{n} events; bytes median {statistics.median(sizes):.0f}, mean {statistics.mean(sizes):.0f}; "
          f"PII {sum(bool(l.pii) for l in g.labels) / n:.1%}; violations {sum(l.violation is not None for l in g.labels) / n:.1%}")
    from collections import Counter
    print(Counter(e["type"] for e in g.events))
    print(json.dumps(g.events[0], indent=1)[:1500])
