"""The tracker in a real browser (Debian's Chromium through Playwright) against `firstparty serve`.

A small fixture site is served on http://example.com:PORT and the collector on
http://stats.example.com:PORT (both mapped to 127.0.0.1 by Chromium's resolver rules, so the
pipeline's localhost drop does not apply). Assertions are on what reaches the store.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import store
from collector.tracker import build
from tests.collector.conftest import CHROME
from tests.conftest import Server, start_server

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

QUEUE_SNIPPET = (
    "<script>window.firstparty=window.firstparty||function(){"
    "(firstparty.q=firstparty.q||[]).push(arguments)}</script>"
)


def page_html(script: str, body: str, attrs: str = "") -> bytes:
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>fixture</title>"
        f"{QUEUE_SNIPPET}"
        f'<script defer data-domain="example.com" {attrs} src="{script}"></script>'
        f"</head><body style='margin:0'>{body}</body></html>"
    ).encode()


@dataclass
class Site:
    """The fixture site: pages are generated per path, all including the tracker."""

    script: str
    collector: str  # where the first-party path /p/ forwards to, like the site's nginx would
    server: ThreadingHTTPServer | None = None
    port: int = 0
    pages: dict[str, bytes] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://example.com:{self.port}"


def serve_site(site: Site) -> None:
    class Handler(BaseHTTPRequestHandler):
        def forward(self, method: str) -> None:
            """The site's reverse proxy: /p/... goes to the collector, with X-Forwarded-For."""
            length = int(self.headers.get("content-length") or 0)
            response = httpx.request(
                method,
                site.collector + self.path.removeprefix("/p"),
                content=self.rfile.read(length) if length else None,
                headers={
                    "content-type": self.headers.get("content-type", ""),
                    "user-agent": self.headers.get("user-agent", ""),
                    "x-forwarded-for": self.client_address[0],
                },
            )
            self.send_response(response.status_code)
            for name in ("content-type", "x-dropped", "cache-control"):
                if name in response.headers:
                    self.send_header(name, response.headers[name])
            self.send_header("content-length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def do_POST(self) -> None:
            self.forward("POST")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/p/"):
                return self.forward("GET")
            if path.endswith(".pdf"):
                self.send_response(200)
                self.send_header("content-type", "application/pdf")
                self.send_header("content-disposition", "attachment; filename=report.pdf")
                self.end_headers()
                self.wfile.write(b"%PDF-1.4\n%%EOF\n")
                return
            body = site.pages.get(path) or site.pages["*"]
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    site.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.port = site.server.server_address[1]
    threading.Thread(target=site.server.serve_forever, daemon=True).start()


@dataclass
class Env:
    collector: Server
    site: Site
    browser: Any

    @property
    def collector_origin(self) -> str:
        return "http://stats.example.com:" + str(urlsplit(self.collector.url).port)

    def rows(self, prefix: str, expect: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Stored events whose path starts with `prefix`, waiting for `expect` of them."""
        deadline = time.monotonic() + timeout
        while True:
            db = store.connect(self.collector.env["FIRSTPARTY_STORE"])
            try:
                rows = db.query(
                    "SELECT name, pathname, props, engagement_ms, scroll_depth, interactive"
                    " FROM events WHERE startsWith(pathname, {p:String})"
                    " ORDER BY timestamp, name",
                    {"p": prefix},
                ).dicts()
            finally:
                db.close()
            for row in rows:
                row["props"] = dict(row["props"])
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.15)


BODY = """
<div id=content style="height:3000px">
<a id=outbound href="http://elsewhere.example.net/landing?token=secret">partner</a>
<a id=download href="/files/report.pdf?sig=secret">report</a>
<button id=tagged class="big firstparty-event-name=Signup firstparty-event-plan=pro+plus"
 >join</button>
<button id=custom onclick="firstparty('Custom',{props:{color:'blue',n:3}})">custom</button>
<button id=spa onclick="history.pushState({},'',location.pathname+'/step1')">next</button>
<button id=same onclick="history.replaceState({},'',location.pathname)">same</button>
<a id=hash1 href="#/one">one</a> <a id=hash2 href="#/two">two</a>
</div>
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root: Path = tmp_path_factory.mktemp("browser") / "srv"
    collector = start_server(root)
    port = urlsplit(collector.url).port
    site = Site(
        script=f"http://stats.example.com:{port}/js/script.full.js", collector=collector.url
    )
    site.pages["*"] = page_html(site.script, BODY, 'data-exclude="/admin/**, /drafts/*"')
    site.pages["/hashapp"] = page_html(site.script, BODY, "data-hash")
    serve_site(site)
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--host-resolver-rules=MAP example.com 127.0.0.1, MAP stats.example.com 127.0.0.1",
        ],
    )
    try:
        yield Env(collector, site, browser)
    finally:
        browser.close()
        playwright.stop()
        assert site.server is not None
        site.server.shutdown()
        site.server.server_close()
        collector.stop()


@dataclass
class Visit:
    page: Any
    requests: list[Any]
    errors: list[str]


@pytest.fixture
def visit(env: Env) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_context(**options: Any) -> Visit:
        context = env.browser.new_context(user_agent=CHROME, **options)
        contexts.append(context)
        # A user's click to another site is answered here with 204, so the page stays.
        context.route("http://elsewhere.example.net/**", lambda route: route.fulfill(status=204))
        requests: list[Any] = []
        errors: list[str] = []
        context.on("request", lambda request: requests.append(request))
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return Visit(page, requests, errors)

    yield open_context
    for context in contexts:
        context.close()


def unique(prefix: str = "/t") -> str:
    return f"{prefix}-u{uuid.uuid4().hex[:8]}"  # a letter first: 8 digits are redacted as an ID


def assert_clean(env: Env, v: Visit) -> None:
    """No cookies, no storage, no exceptions, and no request beyond the two origins."""
    state = v.page.evaluate(
        """async () => ({
            cookie: document.cookie,
            local: localStorage.length,
            session: sessionStorage.length,
            idb: (await indexedDB.databases()).length,
        })"""
    )
    assert state == {"cookie": "", "local": 0, "session": 0, "idb": 0}
    assert v.page.context.cookies() == []
    allowed = {env.site.origin, env.collector_origin}
    for request in v.requests:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(request.url))
        user_navigation = request.is_navigation_request() and "elsewhere" in origin
        assert origin in allowed or user_navigation, request.url
    assert v.errors == []


def test_pageviews_spa_back_forward_events_and_clicks(env: Env, visit: Any) -> None:
    base = unique()
    v = visit()
    v.page.goto(env.site.origin + base)
    assert v.page.evaluate("typeof window.firstparty") == "function"
    v.page.click("#spa")  # pushState -> /base/step1
    v.page.click("#same")  # replaceState to the same URL: no second pageview
    v.page.go_back()  # popstate -> /base (a new pageview of the first page)
    v.page.go_forward()  # popstate -> /base/step1
    v.page.click("#custom")
    v.page.click("#tagged")
    v.page.click("#download")
    v.page.click("#outbound")
    rows = env.rows(base, 10)
    pageviews = [r["pathname"] for r in rows if r["name"] == "pageview"]
    assert pageviews == [base, base + "/step1", base, base + "/step1"]
    events = {r["name"]: r["props"] for r in rows if r["name"] not in ("pageview", "engagement")}
    assert events["Custom"] == {"color": "blue", "n": "3"}
    assert events["Signup"] == {"plan": "pro plus"}
    # Sent without its query (the pipeline's redaction may rewrite the fixture's port number).
    assert events["File Download"]["url"].startswith("http://example.com:")
    assert events["File Download"]["url"].endswith("/files/report.pdf")
    assert events["Outbound Link: Click"] == {"url": "http://elsewhere.example.net/landing"}
    # Each SPA navigation closed the previous page's engagement first.
    engagement = [r for r in rows if r["name"] == "engagement"]
    assert len(engagement) >= 3
    assert all(r["interactive"] == 0 and r["scroll_depth"] <= 100 for r in engagement)
    assert_clean(env, v)


def test_calls_made_before_the_script_loaded_are_sent(env: Env, visit: Any) -> None:
    path = unique("/queued")
    v = visit()
    html = page_html(
        env.site.script,
        "<script>firstparty('Early',{props:{when:'before load'}})</script>",
    )
    env.site.pages[path] = html
    v.page.goto(env.site.origin + path)
    rows = env.rows(path, 2)
    assert {r["name"]: r["props"] for r in rows} == {
        "pageview": {},
        "Early": {"when": "before load"},
    }
    assert_clean(env, v)


def test_hash_routing(env: Env, visit: Any) -> None:
    v = visit()
    v.page.goto(env.site.origin + "/hashapp")
    marker = "m" + uuid.uuid4().hex[:8]  # a letter first: 8 digits are redacted as an ID
    v.page.evaluate(f"location.hash = '#/one-{marker}'")
    v.page.evaluate(f"location.hash = '#/two-{marker}'")
    v.page.go_back()
    one = env.rows(f"/one-{marker}", 3)  # pageview, engagement on leaving, pageview again
    two = env.rows(f"/two-{marker}", 2)
    assert [r["name"] for r in one if r["name"] == "pageview"] == ["pageview", "pageview"]
    assert [r["name"] for r in two if r["name"] == "pageview"] == ["pageview"]
    assert_clean(env, v)


def test_engagement_on_tab_hide_and_close(env: Env, visit: Any) -> None:
    path = unique("/long-read")
    v = visit(viewport={"width": 800, "height": 600})
    v.page.goto(env.site.origin + path)
    v.page.mouse.wheel(0, 1200)
    v.page.wait_for_function("window.scrollY >= 1200")
    v.page.wait_for_timeout(300)
    # The tab goes to the background: the page sees visibilitychange with document.hidden.
    v.page.evaluate(
        """() => {
            const hidden = (name, value) =>
                Object.defineProperty(document, name, {value: value, configurable: true});
            hidden('hidden', true);
            hidden('visibilityState', 'hidden');
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    rows = env.rows(path, 2)
    engagement = [r for r in rows if r["name"] == "engagement"]
    assert len(engagement) == 1
    # 1200 px scrolled + 600 px viewport of a 3000 px page.
    assert engagement[0]["scroll_depth"] == 60
    assert engagement[0]["engagement_ms"] >= 200
    # Hidden again with nothing grown: no second engagement event.
    v.page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    assert_clean(env, v)
    # Back to the foreground, a deeper scroll, then the tab is closed: pagehide sends the rest.
    v.page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', {value: false, configurable: true});
            document.dispatchEvent(new Event('visibilitychange'));
            window.scrollTo(0, 2400);
        }"""
    )
    v.page.wait_for_function("window.scrollY >= 2400")
    v.page.close(run_before_unload=True)
    rows = env.rows(path, 3)
    engagement = [r for r in rows if r["name"] == "engagement"]
    assert len(engagement) == 2
    assert engagement[1]["scroll_depth"] == 100


@pytest.mark.parametrize("header", ["DNT", "Sec-GPC"])
def test_do_not_track_and_gpc_store_nothing(env: Env, visit: Any, header: str) -> None:
    path = unique("/private")
    v = visit(extra_http_headers={header: "1"})
    v.page.goto(env.site.origin + path)
    v.page.click("#custom")
    v.page.click("#spa")
    with v.page.expect_request(lambda r: r.url.endswith("/api/event")) as sent:
        v.page.click("#custom")
    assert sent.value.headers.get(header.lower()) == "1"
    # The last beacon of this visit has been sent; a control visit proves the pipe is flowing.
    control = unique("/control")
    other = visit()
    other.page.goto(env.site.origin + control)
    assert len(env.rows(control, 1)) == 1
    time.sleep(0.5)
    assert env.rows(path, 1, timeout=0.5) == []
    assert_clean(env, v)


def test_excluded_paths_opt_out_and_localhost_send_nothing(env: Env, visit: Any) -> None:
    v = visit()
    excluded = ["/admin" + unique() + "/users/7", unique("/drafts/x")]
    for path in excluded:
        v.page.goto(env.site.origin + path)
        v.page.wait_for_function("typeof window.firstparty === 'function'")
    # The opt-out page shipped for sites, on the site's origin: one click switches counting off.
    env.site.pages["/privacy"] = (build.HERE / "optout.html").read_bytes()
    o = visit()
    o.page.goto(env.site.origin + "/privacy")
    o.page.click("#firstparty-optout-toggle")
    assert "NOT counted" in o.page.inner_text("#firstparty-optout-status")
    opted = unique("/opted")
    o.page.goto(env.site.origin + opted)
    o.page.wait_for_function("typeof window.firstparty === 'function'")
    o.page.click("#custom")
    # On localhost the tracker stays silent unless data-allow-localhost is set.
    local = visit()
    local_path = unique("/local")
    local.page.goto(f"http://127.0.0.1:{env.site.port}{local_path}")
    local.page.wait_for_function("typeof window.firstparty === 'function'")
    local.page.click("#custom")
    # A control visit after these proves beacons are flowing.
    control = unique("/control")
    c = visit()
    c.page.goto(env.site.origin + control)
    assert len(env.rows(control, 1)) == 1
    time.sleep(0.5)
    for path in [*excluded, opted]:
        assert env.rows(path, 1, timeout=0.3) == []
    for silent in (v, o, local):
        assert not [r for r in silent.requests if r.url.endswith("/api/event")]
    assert_clean(env, v)


def test_a_failing_endpoint_never_breaks_the_page(env: Env, visit: Any) -> None:
    v = visit()
    path = unique("/broken")
    env.site.pages[path] = page_html(
        env.site.script, BODY, 'data-api="http://stats.example.com:9/api/event"'
    )
    v.page.goto(env.site.origin + path)
    v.page.click("#custom")
    v.page.click("#spa")
    assert v.page.evaluate("1 + 1") == 2
    assert v.errors == []


def test_first_party_path_through_the_sites_proxy(env: Env, visit: Any) -> None:
    path = unique("/first-party")
    env.site.pages[path] = page_html("/p/js/script.js", BODY)
    v = visit()
    v.page.goto(env.site.origin + path)
    v.page.click("#custom")
    rows = env.rows(path, 2)
    assert sorted(r["name"] for r in rows) == ["Custom", "pageview"]
    # Script and beacons went to the site's own origin only.
    origins = {"{0.scheme}://{0.netloc}".format(urlsplit(r.url)) for r in v.requests}
    assert origins == {env.site.origin}
    assert any(r.url == env.site.origin + "/p/api/event" for r in v.requests)
    assert_clean(env, v)


def test_allow_localhost_sends_and_the_collector_drops_it(env: Env, visit: Any) -> None:
    path = unique("/dev")
    env.site.pages[path] = page_html(env.site.script, BODY, "data-allow-localhost")
    v = visit()
    with v.page.expect_request(lambda r: r.url.endswith("/api/event")) as sent:
        v.page.goto(f"http://localhost:{env.site.port}{path}")
    assert path in (sent.value.post_data or "")
    # The collector's pipeline drops localhost pages (counted, not stored).
    deadline = time.monotonic() + 5
    while 'reason="localhost"' not in httpx.get(env.collector.url + "/metrics").text:
        assert time.monotonic() < deadline, "no localhost drop was counted"
        time.sleep(0.1)
    assert env.rows(path, 1, timeout=0.3) == []
