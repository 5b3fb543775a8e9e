"""The dashboard in a real browser (Debian's chromium through Playwright), against a real server.

Log in, open a site with traffic sent through `/api/event`, check the numbers on screen equal
the Stats API's, click a source to filter, change the period, export CSV. Screenshots go to
`test-output/` for a reviewer.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "test-output"
CONFIG = """
[[site]]
domain = "example.com"

[[site]]
domain = "shop.example.org"

[[goal]]
name = "Signup"
event = "Signup"

[server]
trusted_proxies = ["127.0.0.1"]
"""
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
]
SOURCES = [
    "https://www.google.com/",
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "",
    "https://duckduckgo.com/",
    "https://www.google.com/",
]
PAGES = ["/", "/pricing", "/blog/launch", "/docs", "/about"]


def send_traffic(url: str, visitors: int = 36) -> int:
    """Beacons through the real collector; returns the pageviews sent."""
    sent = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        for v in range(visitors):
            headers = {
                "user-agent": UAS[v % len(UAS)],
                "x-forwarded-for": f"198.51.{v // 200}.{v % 200 + 1}",
                "content-type": "text/plain",
            }
            ref = SOURCES[v % len(SOURCES)]
            utm = "?utm_source=newsletter&utm_campaign=autumn" if v % 9 == 0 else ""
            for step in range(1 + v % 3):
                page = PAGES[(v + step) % len(PAGES)]
                body = {"n": "pageview", "u": f"https://example.com{page}{utm}", "d": "example.com"}
                if step == 0 and ref:
                    body["r"] = ref
                response = client.post("/api/event", json=body, headers=headers)
                assert response.status_code == 202, response.text
                assert "x-dropped" not in response.headers, response.headers["x-dropped"]
                sent += 1
            if v % 5 == 0:
                client.post(
                    "/api/event",
                    json={"n": "Signup", "u": "https://example.com/pricing", "d": "example.com"},
                    headers=headers,
                )
    return sent


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("browser")
    server = start_server(root / "srv", CONFIG)
    try:
        created = server.cli("users", "add", "admin@example.com", "--role", "admin")
        assert created.returncode == 0, created.stderr
        password = created.stdout.strip().splitlines()[-1]
        key = server.cli("keys", "create", "--site", "example.com").stdout.strip().splitlines()[-1]
        pageviews = send_traffic(server.url)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        body = {"site_id": "example.com", "metrics": ["pageviews"], "date_range": [today, today]}
        deadline = time.monotonic() + 30
        got: object = None
        while got != pageviews:  # the writer drains the spool every half second
            assert time.monotonic() < deadline, f"{got} of {pageviews} pageviews stored in 30 s"
            time.sleep(0.2)
            got = api(server, key, body)["results"][0]["metrics"][0]  # type: ignore[index]
        # A month of realistic history (countries, campaigns, goals) through the real pipeline.
        demo = server.cli("demo-data", "--site", "example.com", "--events", "4000", "--seed", "7")
        assert demo.returncode == 0, demo.stderr
        yield server, password, key
    finally:
        server.stop()


def api(server: Server, key: str, body: dict[str, object]) -> dict[str, object]:
    response = httpx.post(
        server.url + "/api/v2/query", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_dashboard_in_a_browser(browser_server: tuple[Server, str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, password, key = browser_server
    OUT.mkdir(exist_ok=True)
    today = dt.datetime.now(dt.UTC).date()
    week_ago = (today - dt.timedelta(days=6)).isoformat()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Not logged in: the dashboard sends us to the login page.
            page.goto(server.url + "/sites/example.com?period=7d")
            expect(page.get_by_role("heading", name="Log in to your dashboard")).to_be_visible()
            page.screenshot(path=str(OUT / "dashboard-login.png"))
            page.get_by_label("Email").fill("admin@example.com")
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
            # The keyboard is enough: type the password and press Enter.
            page.get_by_label("Password").focus()
            page.keyboard.type(password)
            page.keyboard.press("Enter")

            # Back on the page we asked for, with the same numbers as the Stats API.
            expect(page).to_have_url(server.url + "/sites/example.com?period=7d")
            expected = api(
                server,
                key,
                {
                    "site_id": "example.com",
                    "metrics": ["visitors", "visits", "pageviews"],
                    "date_range": [week_ago, today.isoformat()],
                },
            )["results"][0]["metrics"]  # type: ignore[index]
            for metric, value in zip(["visitors", "visits", "pageviews"], expected, strict=True):
                expect(page.get_by_test_id(f"stat-{metric}")).to_have_attribute(
                    "data-value", str(value)
                )
                expect(page.get_by_test_id(f"stat-{metric}")).to_have_text(f"{value:,}")
            expect(page.locator("#chart canvas")).to_be_visible()
            page.screenshot(path=str(OUT / "dashboard-site.png"), full_page=True)

            # Click a source: the filter chip appears and the numbers follow the API's.
            page.get_by_role("link", name="Sources", exact=True).click()
            page.locator("#panel-sources").get_by_role("link", name="Google").click()
            expect(page.locator(".chip")).to_contain_text("Source is Google")
            google = api(
                server,
                key,
                {
                    "site_id": "example.com",
                    "metrics": ["visitors"],
                    "date_range": [week_ago, today.isoformat()],
                    "filters": [["is", "visit:source", ["Google"]]],
                },
            )["results"][0]["metrics"][0]  # type: ignore[index]
            expect(page.get_by_test_id("stat-visitors")).to_have_attribute(
                "data-value", str(google)
            )
            page.screenshot(path=str(OUT / "dashboard-filtered.png"), full_page=True)

            # Change the period: the filter stays, the range changes.
            page.get_by_label("Date range").select_option("day")
            expect(page).to_have_url(re.compile(r"^(?=.*period=day)(?=.*source=Google)"))
            expect(page.locator(".range-note")).to_contain_text(f"{today} to {today}")

            # Remove the filter with its chip (from the keyboard), then export pages as CSV.
            page.get_by_role("link", name="Remove filter Source is Google").focus()
            page.keyboard.press("Enter")
            expect(page.locator(".chip")).to_have_count(0)
            with page.expect_download() as download_info:
                page.locator("#panel-pages").get_by_role("link", name="Export CSV").click()
            csv_path = download_info.value.path()
            lines = Path(str(csv_path)).read_text().splitlines()
            assert lines[0] == "page,visitors,visits,pageviews"
            assert any(line.startswith("/pricing,") for line in lines[1:])

            # A phone-sized screen still shows the numbers, one column.
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.context.add_cookies(page.context.cookies())
            phone.goto(server.url + "/sites/example.com?period=7d")
            expect(phone.get_by_test_id("stat-visitors")).to_be_visible()
            phone.screenshot(path=str(OUT / "dashboard-phone.png"), full_page=True)

            page.goto(server.url + "/sites/example.com?period=30d&compare=1")
            expect(page.locator("#chart canvas")).to_be_visible()
            page.screenshot(path=str(OUT / "dashboard-30-days-compared.png"), full_page=True)

            page.goto(server.url + "/users")
            expect(page.get_by_role("cell", name="admin@example.com")).to_be_visible()
            page.screenshot(path=str(OUT / "dashboard-users.png"))

            page.goto(server.url + "/")
            expect(page.get_by_role("link", name="example.com").first).to_be_visible()
            page.screenshot(path=str(OUT / "dashboard-sites.png"))
            # No CSP violations or script errors (the wrong password's 401 is expected).
            errors = [e for e in errors if "status of 401" not in e]
            assert not errors, errors
        finally:
            browser.close()
