"""HTTP webhook sink: governed events as batched JSON POSTs.

A request body is ``{"batch": [event, ...]}`` with at most ``max_batch_events`` events (see
:mod:`.outbound` for an event's shape). A 5xx, a 408 (Request Timeout), a 429 or a connection
error is retried with exponential backoff and full jitter (a ``Retry-After`` is honoured up to
``backoff_max_s``), as Segment and RudderStack retry them; any other 4xx (409 Conflict included)
fails the batch at once with the response text, since sending the same request again cannot
succeed. So does a 3xx, naming its ``Location`` to configure as ``url``: urllib would
re-send the POST as a GET without its body (and count a 200 on that GET as delivered), and a
redirect does not go away by itself. Every request carries a request id derived from its events'
ids, the same on every retry, so the receiver can recognise a repeat.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request

from ..config import WebhookDestination
from ..errors import ConfigError, DeliveryError
from ..stages.govern import GovernedBatch
from .base import Sink
from .outbound import OutboundEvent, outbound_events

__all__ = ["WebhookSink", "backoff_delay", "is_transient", "request_id"]


def backoff_delay(attempt: int, initial: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first): full jitter over an
    exponentially growing bound, or the server's ``Retry-After`` if longer; never above ``cap``.

    >>> all(0 <= backoff_delay(a, 0.5, 30) <= min(30, 0.5 * 2 ** a) for a in range(10))
    True
    >>> backoff_delay(0, 0.5, 30, retry_after=3)
    3.0
    >>> backoff_delay(0, 0.5, 30, retry_after=900)
    30.0
    """
    delay = random.uniform(0, min(cap, initial * 2 ** attempt))
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return float(min(delay, cap))


def request_id(events: list[OutboundEvent]) -> str:
    """Stable id of a request: the same events give the same id.

    >>> e = [OutboundEvent("pages", "m1", b"{}"), OutboundEvent("pages", "m2", b"{}")]
    >>> request_id(e) == request_id(list(e)) != request_id(e[:1])
    True
    """
    h = hashlib.sha256()
    for e in events:
        h.update(e.table.encode() + b"\0" + e.id.encode() + b"\n")
    return h.hexdigest()[:32]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date; the computed backoff is used instead
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: urllib re-sends a redirected POST as a GET without its body. The
    3xx then comes back as an ``HTTPError``, like any other status that is not 2xx."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)

# Statuses that say "not now" rather than "never": the server timed out reading the request
# (408) or asks the client to slow down (429). A 409 Conflict comes back the same for the same
# request, so it is permanent like the other 4xx.
_TRANSIENT_4XX = frozenset({408, 429})


def is_transient(status: int) -> bool:
    """Whether an HTTP error status is worth retrying.

    >>> [s for s in (400, 401, 404, 408, 409, 413, 422, 429, 500, 502, 503) if is_transient(s)]
    [408, 429, 500, 502, 503]
    """
    return status >= 500 or status in _TRANSIENT_4XX


class WebhookSink(Sink):
    def __init__(self, name: str, cfg: WebhookDestination):
        super().__init__(name)
        self.cfg = cfg
        self._headers: dict[str, str] | None = None

    def setup(self) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "tidegate", **self.cfg.headers}
        if self.cfg.username:
            password = self._secret(self.cfg.password_env) if self.cfg.password_env else ""
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.cfg.username}:{password}".encode()).decode()
        if self.cfg.token_env:
            headers["Authorization"] = "Bearer " + self._secret(self.cfg.token_env)
        self._headers = headers

    def _secret(self, env: str) -> str:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"destination {self.name!r} reads its credential from ${env}, which is not set; export it",
                              key=f"destinations.{self.name}")
        return value

    def ready(self) -> bool:
        return self._headers is not None

    def write(self, batch: GovernedBatch) -> None:
        if self._headers is None:
            self.setup()
        events = outbound_events(batch)
        size = self.cfg.max_batch_events
        for start in range(0, len(events), size):
            chunk = events[start:start + size]
            self._post(b'{"batch":[' + b",".join(e.json for e in chunk) + b"]}", request_id(chunk))

    def _post(self, body: bytes, rid: str) -> None:
        assert self._headers is not None
        headers = {**self._headers, self.cfg.request_id_header: rid}
        last = ""
        retry_after: float | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, retry_after))
            retry_after = None
            request = urllib.request.Request(self.cfg.url, data=body, headers=headers, method="POST")
            try:
                with _OPENER.open(request, timeout=self.cfg.timeout_s) as response:
                    response.read()
                    return
            except urllib.error.HTTPError as e:
                text = e.read().decode(errors="replace")[:1000]
                if 300 <= e.code < 400:
                    location = e.headers.get("Location")
                    to = (f"redirecting to {urllib.parse.urljoin(self.cfg.url, location)}" if location
                          else "without a Location header")
                    raise DeliveryError(
                        f"destination {self.name!r}: {self.cfg.url} answered HTTP {e.code} {to}; "
                        "redirects are not followed (a POST would be re-sent as a GET without its body): "
                        "configure the final URL as the destination's url"
                    ) from None
                if not is_transient(e.code):
                    raise DeliveryError(
                        f"destination {self.name!r}: {self.cfg.url} refused the batch with HTTP {e.code}: {text}"
                    ) from None
                retry_after = _retry_after(e.headers.get("Retry-After"))
                last = f"HTTP {e.code}: {text}"
            except (urllib.error.URLError, OSError) as e:
                last = str(getattr(e, "reason", e))
        raise DeliveryError(
            f"destination {self.name!r}: {self.cfg.url} failed {self.cfg.max_retries + 1} times (last: {last})"
        )
