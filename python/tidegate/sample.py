"""Built-in sample traffic: realistic Segment-spec sessions from web, mobile and server sources,
sent through the collector's HTTP API the way SDKs send it (``/v1/batch``, some gzip, some
single calls). Deterministic for a given seed."""

from __future__ import annotations

import base64
import gzip
import json
import random
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator

from .errors import TidegateError

if TYPE_CHECKING:
    from .config import Config

__all__ = ["sample_events", "post", "send_sample", "enabled_write_keys", "PRODUCTS"]

NO_SOURCE = "no enabled source to send sample events to; enable one under [sources]"

# (sku, name, category, price) of the sample shop; the benchmark corpus extends it.
PRODUCTS = [
    ("sku-1001", "Trail Running Shoe", "Footwear", 129.0),
    ("sku-1002", "Merino Base Layer", "Apparel", 79.5),
    ("sku-1003", "Headlamp 400lm", "Gear", 44.99),
    ("sku-1004", "Water Bottle 750ml", "Gear", 18.0),
    ("sku-1005", "Rain Shell", "Apparel", 219.0),
]
_PAGES = [("/", "Home"), ("/shop", "Shop"), ("/shop/footwear", "Footwear"), ("/cart", "Cart"), ("/blog/ultra-tips", "Blog")]
_CITIES = ["Berlin", "Lisbon", "Austin", "Toronto", "Osaka"]


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sample_events(n: int, *, seed: int = 7, users: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(source, event)`` pairs: sessions of page views, product events, identify, group,
    alias and mobile screens."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    n_users = users or max(3, n // 25)
    produced = 0
    while produced < n:
        u = rng.randrange(n_users)
        anon = str(uuid.UUID(int=rng.getrandbits(128)))
        user_id = f"user-{u:05d}"
        mobile = rng.random() < 0.3
        # Recent sessions; a few from devices that come back online hours later (late arrivals).
        t = now - timedelta(minutes=rng.randrange(0, 20) if rng.random() < 0.98 else rng.randrange(180, 600))
        if mobile:
            context: dict[str, Any] = {
                "library": {"name": "rudder-ios-library", "version": "1.31.0"},
                "app": {"name": "Trailhead", "version": "5.2.1", "build": "5210"},
                "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
                "os": {"name": "iOS", "version": "18.1"},
                "locale": "en-US", "timezone": "America/Chicago",
                "network": {"wifi": rng.random() < 0.6, "carrier": "T-Mobile"},
            }
            source = "web"
        else:
            path, title = rng.choice(_PAGES)
            context = {
                "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.2"},
                "page": {"path": path, "title": title, "url": f"https://shop.example.com{path}", "referrer": "https://www.google.com/"},
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
                "locale": "en-US", "ip": f"203.0.113.{rng.randrange(1, 255)}",
                "campaign": {"source": "newsletter", "medium": "email", "name": "winter-sale"} if rng.random() < 0.2 else {},
            }
            source = "web"
        base = {"anonymousId": anon, "context": context, "channel": "mobile" if mobile else "web"}
        session: list[dict[str, Any]] = []
        if mobile:
            session.append({"type": "screen", "name": rng.choice(["Home", "Product", "Checkout"]),
                            "properties": {"referrer": "push"}})
        else:
            path, title = rng.choice(_PAGES)
            session.append({"type": "page", "name": title, "properties": {"path": path, "title": title,
                            "url": f"https://shop.example.com{path}"}})
        sku, name, cat, price = rng.choice(PRODUCTS)
        # A few events break the tracking plan or carry PII, as real traffic does.
        shown_price: Any = f"{price:.2f}" if rng.random() < 0.03 else price
        session.append({"type": "track", "event": "Product Viewed",
                        "properties": {"product_id": sku, "name": name, "category": cat, "price": shown_price, "currency": "EUR"}})
        if rng.random() < 0.03:
            session.append({"type": "track", "event": "Wishlist Shared", "properties": {"product_id": sku}})
        if rng.random() < 0.05:
            note = rng.choice([f"call me on +1 415-555-{rng.randrange(1000, 9999)} after 5pm",
                               "my card 4111 1111 1111 1111 was charged twice",
                               f"reach me at runner{u}@example.org"])
            session.append({"type": "track", "event": "Support Requested", "properties": {"message": note, "topic": "billing"}})
        if rng.random() < 0.6:
            session.append({"type": "identify", "userId": user_id,
                            "traits": {"email": f"{user_id}@example.com", "name": f"Runner {u}",
                                       "plan": rng.choice(["free", "plus", "pro"]),
                                       "address": {"city": rng.choice(_CITIES), "country": "DE"},
                                       "createdAt": _iso(t - timedelta(days=rng.randrange(1, 900)))}})
            session.append({"type": "track", "event": "Product Added", "userId": user_id,
                            "properties": {"product_id": sku, "quantity": rng.randint(1, 3), "price": price, "cart_id": f"c-{rng.getrandbits(32):08x}"}})
            if rng.random() < 0.5:
                qty = rng.randint(1, 3)
                session.append({"type": "track", "event": "Order Completed", "userId": user_id,
                                "properties": {"order_id": f"o-{rng.getrandbits(40):010x}", "total": round(price * qty, 2),
                                               "revenue": round(price * qty / 1.19, 2), "currency": "EUR", "coupon": None,
                                               "products": [{"product_id": sku, "name": name, "price": price, "quantity": qty}]}})
            if rng.random() < 0.1:
                session.append({"type": "group", "userId": user_id, "groupId": f"team-{u % 7}",
                                "traits": {"name": f"Running Club {u % 7}", "employees": 10 + u % 50}})
            if rng.random() < 0.05:
                session.append({"type": "alias", "userId": user_id, "previousId": f"legacy-{u:05d}"})
        for i, ev in enumerate(session):
            if produced >= n:
                return
            event = {**base, **ev}
            if "userId" not in ev and rng.random() < 0.5 and len(session) > 2:
                event["userId"] = user_id
            event["messageId"] = str(uuid.uuid4())  # unique per run: a re-run is new traffic, not a retry
            event["originalTimestamp"] = _iso(t + timedelta(seconds=5 * i))
            # Orders are confirmed by the shop's backend, through the server source.
            yield ("server" if ev.get("event") == "Order Completed" else source), event
            produced += 1


def post(url: str, write_key: str, body: dict[str, Any] | list[Any], *, gzip_body: bool = False,
         timeout: float = 30.0) -> tuple[int, str]:
    """POST JSON to the collector with the write key as Basic username; return (status, text)."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    if gzip_body:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def enabled_write_keys(cfg: Config) -> dict[str, str]:
    """The write keys of the enabled sources, by source, to send sample events with."""
    keys = {name: s.write_key for name, s in cfg.sources.items() if s.enabled}
    if not keys:
        raise TidegateError(NO_SOURCE)
    return keys


def send_sample(base_url: str, write_keys: dict[str, str], n: int, *, seed: int = 7, batch_size: int = 50) -> int:
    """Send ``n`` sample events; return how many the collector accepted (200). Events of a source
    without a key in ``write_keys`` are sent with another source's key."""
    if not write_keys:
        raise TidegateError(NO_SOURCE)
    accepted = 0
    by_source: dict[str, list[dict[str, Any]]] = {}
    for source, event in sample_events(n, seed=seed):
        by_source.setdefault(source, []).append(event)
    for source, events in by_source.items():
        key = write_keys.get(source) or next(iter(write_keys.values()))
        i = 0
        while i < len(events):
            # Mostly batches, as SDKs send them; some single calls; every third batch gzipped.
            if i % 7 == 3:
                ev = events[i]
                status, text = post(f"{base_url}/v1/{ev['type']}", key, ev)
                accepted += status == 200
                i += 1
                continue
            chunk = events[i:i + batch_size]
            status, text = post(f"{base_url}/v1/batch", key, {"batch": chunk, "sentAt": _iso(datetime.now(timezone.utc))},
                                gzip_body=(i // batch_size) % 3 == 0)
            if status != 200:
                raise RuntimeError(f"collector answered {status}: {text}")
            accepted += len(chunk)
            i += batch_size
    return accepted
