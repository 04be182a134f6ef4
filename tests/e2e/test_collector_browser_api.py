"""What the collector serves for SDKs beyond the event endpoints: CORS for browser origins,
``/sourceConfig`` for the RudderStack JavaScript SDK, and SDK-readable error bodies (``code``)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from support import Stack
from tidegate.collector import cors_headers, source_config

ORIGIN = "http://localhost:3000"


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@pytest.fixture
def collector(tmp_path: Path, kafka: str) -> Iterator[Stack]:
    s = Stack(tmp_path, kafka, extra_toml='[sources.retired]\nwrite_key = "retired-key"\nenabled = false\n')
    try:
        s.start_collector()
        yield s
    finally:
        s.stop()


def test_cors_headers_echo_the_origin_and_requested_headers() -> None:
    h = cors_headers(ORIGIN, "authorization,content-type,anonymousid")
    assert h["Access-Control-Allow-Origin"] == ORIGIN and h["Access-Control-Allow-Credentials"] == "true"
    assert h["Access-Control-Allow-Headers"] == "authorization,content-type,anonymousid"
    assert "POST" in h["Access-Control-Allow-Methods"] and h["Vary"] == "Origin"
    plain = cors_headers(None)
    assert plain["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in plain
    assert "Authorization" in plain["Access-Control-Allow-Headers"]


def test_source_config_has_the_shape_the_js_sdk_validates() -> None:
    doc = source_config("web", "k")
    src = doc["source"]
    assert src["id"] == "web" and src["enabled"] is True and src["destinations"] == []
    assert isinstance(src["config"], dict) and src["config"]["statsCollection"]["errors"]["enabled"] is False
    assert source_config("web", "k", enabled=False)["source"]["enabled"] is False


def test_preflight_and_cors_on_event_endpoints(collector: Stack) -> None:
    status, headers, body = request(collector.url + "/v1/track", "OPTIONS", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,anonymousid"})
    assert status == 204, body
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Headers"] == "authorization,content-type,anonymousid"
    event = json.dumps({"type": "track", "event": "X", "anonymousId": "a"}).encode()
    status, headers, body = request(collector.url + "/v1/track", "POST", {
        "Origin": ORIGIN, "Content-Type": "application/json", "Authorization": basic(Stack.WRITE_KEYS["web"])}, event)
    assert (status, body, headers["Access-Control-Allow-Origin"]) == (200, "OK", ORIGIN)
    # Errors carry CORS headers too, or the browser SDK could not read why it was refused.
    status, headers, body = request(collector.url + "/v1/track", "POST", {
        "Origin": ORIGIN, "Content-Type": "application/json", "Authorization": basic("nope")}, event)
    assert status == 401 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert json.loads(body) == {"error": "invalid_write_key", "code": "invalid_write_key", "message": json.loads(body)["message"]}


def test_source_config_endpoint(collector: Stack) -> None:
    key = Stack.WRITE_KEYS["web"]
    # What the SDK sends: a trailing slash, the write key in the query and as Basic auth.
    status, headers, body = request(f"{collector.url}/sourceConfig/?p=npm&v=3&writeKey={key}",
                                    headers={"Origin": ORIGIN, "Authorization": basic(key)})
    assert status == 200 and headers["Content-Type"].startswith("application/json"), body
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert json.loads(body) == source_config("web", key)
    assert json.loads(request(f"{collector.url}/sourceConfig?writeKey={key}")[2]) == source_config("web", key)
    assert json.loads(request(f"{collector.url}/sourceConfig", headers={"Authorization": basic(key)})[2]) \
        == source_config("web", key)
    status, _, body = request(f"{collector.url}/sourceConfig/?writeKey=nope")
    assert status == 401 and json.loads(body)["code"] == "invalid_write_key"
    status, _, body = request(f"{collector.url}/sourceConfig/")
    assert status == 401 and json.loads(body)["code"] == "missing_write_key"
    # A disabled source: the SDK reads enabled=false, logs it and sends nothing.
    status, _, body = request(f"{collector.url}/sourceConfig/?writeKey=retired-key")
    assert status == 200 and json.loads(body)["source"]["enabled"] is False
