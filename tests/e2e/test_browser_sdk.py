"""The RudderStack JavaScript SDK (``@rudderstack/analytics-js`` from npm, its bundled build —
no CDN) in a static page on localhost, in headless Debian Chromium driven by playwright-core:
it loads its source configuration from the collector's ``/sourceConfig`` (cross-origin, so CORS
preflights too) and its page() and track() calls land in ``pages`` and ``tracks``. A screenshot
of the page is kept in the test's tmp dir and in tests/e2e/artifacts/."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from e2e_support import E2E, collector_metric, settle
from support import Stack

BROWSER = E2E / "browser"
SDK_BUILD = BROWSER / "node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/esm/index.mjs"
ARTIFACTS = E2E / "artifacts"


@pytest.fixture
def static_site(browser_deps: None) -> Iterator[str]:
    """http://localhost:PORT serving the test page and the SDK's bundled npm build."""
    assert SDK_BUILD.is_file(), f"{SDK_BUILD} is missing: the npm package layout changed; update SDK_BUILD"
    files = {"/": (BROWSER / "index.html", "text/html; charset=utf-8"),
             "/sdk/analytics-js.mjs": (SDK_BUILD, "text/javascript; charset=utf-8")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            if path not in files:
                self.send_error(404)
                return
            file, content_type = files[path]
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drive(page_url: str, collector: str, screenshot: Path, types: list[str]) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(["node", str(BROWSER / "drive.mjs"), page_url, collector, str(screenshot), ",".join(types) or "-"],
                          capture_output=True, text=True, timeout=180, cwd=BROWSER)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"drive.mjs printed no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, report


def keep(screenshot: Path, name: str) -> None:
    assert screenshot.is_file() and screenshot.stat().st_size > 0, f"no screenshot at {screenshot}"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / name)


def test_rudderstack_js_sdk_page_and_track_land(running_stack: Stack, static_site: str, tmp_path: Path) -> None:
    stack = running_stack
    key = stack.WRITE_KEYS["web"]
    page_url = static_site + "/?" + urllib.parse.urlencode({"writeKey": key, "dataPlaneUrl": stack.url, "configUrl": stack.url})
    screenshot = tmp_path / "rudderstack-js-sdk.png"
    code, report = drive(page_url, stack.url, screenshot, ["page", "track"])
    (tmp_path / "rudderstack-js-sdk.json").write_text(json.dumps(report, indent=1))
    keep(screenshot, "rudderstack-js-sdk.png")
    summary = json.dumps(report, indent=1)[:6000]
    assert code == 0 and not report["pageErrors"] and not report["failed"], summary
    assert not [m for m in report["console"] if m.startswith("error")], summary

    by_path = {(r["method"], r["path"]): r for r in report["requests"]}
    config = by_path.get(("GET", "/sourceConfig/"))
    assert config and config["status"] == 200, summary
    assert urllib.parse.parse_qs(config["query"].lstrip("?"))["writeKey"] == [key], summary
    events = {}
    for kind in ("page", "track"):
        sent = by_path[("POST", f"/v1/{kind}")]
        assert sent["requestHeaders"]["authorization"] == "Basic " + base64.b64encode(f"{key}:".encode()).decode(), sent
        events[kind] = sent["body"]
    anon = report["pageState"]["anonymousId"]
    assert anon and all(e["anonymousId"] == anon for e in events.values()), summary

    settle(stack, 2, 2)
    stack.stop_pipeline()
    page = dict(zip(("id", "anonymous_id", "name", "section", "library", "path", "user_agent", "source"), stack.query(
        "SELECT id, anonymous_id, name, section, context_library_name, context_page_path, context_user_agent, "
        "context_source_id FROM pages")[0]))
    assert page["id"] == events["page"]["messageId"] and page["anonymous_id"] == anon, page
    assert (page["name"], page["section"], page["path"]) == ("Getting Started", "intro", "/"), page
    assert page["library"] == events["page"]["context"]["library"]["name"] == "RudderLabs JavaScript SDK", page
    assert "Chrome" in page["user_agent"] and page["source"] == "web", page
    track = stack.query("SELECT id, anonymous_id, event, event_text FROM tracks")
    assert track == [(events["track"]["messageId"], anon, "signup_clicked", "Signup Clicked")]
    assert stack.query("SELECT plan, seats, annual FROM signup_clicked") == [("pro", 3, True)]


def test_rudderstack_js_sdk_with_a_wrong_write_key_sends_nothing(running_stack: Stack, static_site: str,
                                                                  tmp_path: Path) -> None:
    """/sourceConfig refuses the key (401), the SDK reports it and never sends an event."""
    stack = running_stack
    page_url = static_site + "/?" + urllib.parse.urlencode({"writeKey": "not-a-tidegate-key", "dataPlaneUrl": stack.url})
    screenshot = tmp_path / "rudderstack-js-sdk-wrong-key.png"
    code, report = drive(page_url, stack.url, screenshot, [])
    keep(screenshot, "rudderstack-js-sdk-wrong-key.png")
    summary = json.dumps(report, indent=1)[:6000]
    assert code == 0 and not report["pageErrors"], summary
    assert [(r["method"], r["path"], r["status"]) for r in report["requests"]] == [("GET", "/sourceConfig/", 401)], summary
    assert any("error" in m.lower() for m in report["console"]), summary
    assert report["pageState"]["sdk"] == "loading", summary
    assert collector_metric(stack, "tidegate_collector_requests_total") == 0
