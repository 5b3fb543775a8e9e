"""Login, logout, sessions, CSRF, rate limits and security headers, over real HTTP."""

from __future__ import annotations

import datetime as dt
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from dashboards.auth import SECRET_FILE, LoginLimiter, hashed_network, load_secret
from dashboards.keys import create_key
from dashboards.users import add_user, remove_user
from dashboards.web.pages import web_routes
from store.aio import AsyncStore
from tests.dashboards.web_fixtures import NOW, PASSWORD, Dashboard, dashboard, serving, traffic

__all__ = ["dashboard"]


def _csrf(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _post_login(client: httpx.Client, email: str, password: str, **kw: Any) -> httpx.Response:
    """The login form as a browser sends it: the page first (its CSRF token), then the post."""
    page = client.get("/login")
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": _csrf(page.text)},
        follow_redirects=False,
        **kw,
    )


def test_pages_and_data_need_a_session(dashboard: Dashboard) -> None:
    c = dashboard.client
    page = c.get("/sites/example.com?period=7d", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fsites%2Fexample.com%3Fperiod%3D7d"
    for url in (
        "/sites/example.com.json",
        "/sites/example.com?format=json",
        "/sites.json",
        "/sites/example.com/export.csv?dimension=visit:source",
        "/sites/example.com/realtime.json",
    ):
        response = c.get(url, follow_redirects=False)
        assert response.status_code == 401, url
        assert "error" in response.json()


def test_login_then_logout(dashboard: Dashboard) -> None:
    traffic(dashboard.store, NOW.date())
    c = dashboard.client
    dashboard.login("Admin@Example.com")
    cookie = next(ck for ck in c.cookies.jar if ck.name == "fp_session")
    page = c.get("/sites/example.com")
    assert page.status_code == 200
    assert "admin@example.com" in page.text
    # The cookie is HttpOnly and SameSite=Lax (checked on a fresh login's Set-Cookie).
    login_page = c.get("/login", follow_redirects=False)  # already logged in
    assert login_page.status_code == 303 and login_page.headers["location"] == "/"
    fresh = _fresh_login(dashboard)
    assert "httponly" in fresh.lower() and "samesite=lax" in fresh.lower()
    assert "secure" not in fresh.lower()  # plain http here; https or an https public_url sets it
    # Logging out ends the session on the server: the old cookie no longer works.
    csrf = _csrf(page.text)
    out = c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    c.cookies.set("fp_session", cookie.value or "")
    assert c.get("/sites/example.com", follow_redirects=False).status_code == 303


def _fresh_login(dashboard: Dashboard) -> str:
    import httpx

    with httpx.Client(base_url=str(dashboard.client.base_url)) as other:
        response = _post_login(other, "viewer@example.com", PASSWORD)
        assert response.status_code == 303
        return next(
            h for h in response.headers.get_list("set-cookie") if h.startswith("fp_session=")
        )


def test_wrong_password_and_unknown_user_are_refused_alike(dashboard: Dashboard) -> None:
    c = dashboard.client
    for email, password in (
        ("admin@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
    ):
        page = c.get("/login")
        response = c.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": _csrf(page.text)},
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "Wrong email or password." in response.text
        assert "fp_session" not in response.headers.get("set-cookie", "")


def test_login_without_its_csrf_token_is_refused(dashboard: Dashboard) -> None:
    c = dashboard.client
    c.get("/login")
    response = c.post(
        "/login",
        data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "fp_session" not in response.headers.get("set-cookie", "")


def test_state_changes_need_the_csrf_token(dashboard: Dashboard) -> None:
    c = dashboard.client
    dashboard.login("admin@example.com")
    forged = c.post("/sites/example.com/shares", data={"label": "x"}, follow_redirects=False)
    assert forged.status_code == 403
    wrong = c.post(
        "/sites/example.com/shares",
        data={"label": "x", "csrf_token": "0" * 40},
        follow_redirects=False,
    )
    assert wrong.status_code == 403
    out = c.post("/logout", data={}, follow_redirects=False)
    assert out.status_code == 403  # a cross-site form cannot log a user out either
    assert c.get("/sites/example.com", follow_redirects=False).status_code == 200


def test_security_headers_on_every_dashboard_response(dashboard: Dashboard) -> None:
    c = dashboard.client
    responses = [c.get("/login"), c.get("/sites.json"), c.get("/assets/app.js")]
    dashboard.login("admin@example.com")
    responses += [c.get("/"), c.get("/sites/example.com"), c.get("/sites/example.com.json")]
    for response in responses:
        h = response.headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        assert h["x-frame-options"] == "DENY"
        if response.url.path.startswith("/assets/"):
            assert "no-store" not in h["cache-control"]
        else:
            assert h["cache-control"] == "no-store"
    # No inline script or style attribute in the HTML (the CSP would block them anyway).
    page = c.get("/sites/example.com").text
    assert "style=" not in page and "onclick" not in page
    assert "<script>" not in page


def test_api_key_reads_json_twins_of_its_sites_only(dashboard: Dashboard) -> None:
    key = create_key(dashboard.store, ["example.com"])
    auth = {"authorization": f"Bearer {key}"}
    c = dashboard.client
    assert c.get("/sites/example.com.json", headers=auth).status_code == 200
    assert c.get("/sites/shop.example.org.json", headers=auth).status_code == 404
    assert (
        c.get("/sites/example.com.json", headers={"authorization": "Bearer fp_nope"}).status_code
        == 401
    )


def test_removed_user_loses_their_session(dashboard: Dashboard) -> None:
    dashboard.login("viewer@example.com")
    assert dashboard.client.get("/sites/example.com", follow_redirects=False).status_code == 200
    assert remove_user(dashboard.store, "viewer@example.com")
    assert dashboard.client.get("/sites/example.com", follow_redirects=False).status_code == 303


def test_a_password_reset_ends_the_users_sessions(dashboard: Dashboard) -> None:
    dashboard.login("viewer@example.com")
    assert dashboard.client.get("/sites/example.com", follow_redirects=False).status_code == 200
    add_user(dashboard.store, "viewer@example.com", "viewer", "a new password, long enough")
    assert dashboard.client.get("/sites/example.com", follow_redirects=False).status_code == 303


def test_forged_or_tampered_cookie_is_ignored(dashboard: Dashboard) -> None:
    c = dashboard.client
    dashboard.login("admin@example.com")
    value = next(ck.value for ck in c.cookies.jar if ck.name == "fp_session") or ""
    c.cookies.clear()
    c.cookies.set("fp_session", value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1])
    assert c.get("/sites/example.com", follow_redirects=False).status_code == 303


def test_login_rate_limit_holds_no_raw_ip(dashboard: Dashboard) -> None:
    c = dashboard.client
    for _ in range(10):
        r = _post_login(c, "admin@example.com", "nope-nope")
        assert r.status_code == 401
    limited = _post_login(c, "admin@example.com", PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    from dashboards.auth import _AUTHS

    held = [k for auth in _AUTHS.values() for k in auth.limiter.keys()]
    assert held and all("127.0.0" not in k and "example.com" not in k for k in held)


def test_limiter_window_slides_with_the_clock() -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed(["k"])
    assert limiter.retry_after(["k"]) == 61
    now[0] += 61
    assert limiter.retry_after(["k"]) == 0


def test_cookie_is_secure_behind_an_https_proxy(dashboard: Dashboard) -> None:
    config = dashboard.config
    trusting = replace(config, server=replace(config.server, trusted_proxies=("127.0.0.1",)))
    app = Starlette(routes=web_routes(trusting, AsyncStore(dashboard.store)))
    with serving(app) as url, httpx.Client(base_url=url) as behind_proxy:
        assert "secure" in _session_cookie(behind_proxy).lower()
    # A peer that is not a trusted proxy cannot claim https.
    assert "secure" not in _session_cookie(dashboard.client).lower()


def test_login_limit_counts_the_network_the_trusted_proxy_saw(dashboard: Dashboard) -> None:
    # Behind a trusted proxy, a client that writes its own X-Forwarded-For line (the proxy adds
    # the real one after it) cannot move its failures to a network of its choosing.
    config = dashboard.config
    trusting = replace(config, server=replace(config.server, trusted_proxies=("127.0.0.1",)))
    app = Starlette(routes=web_routes(trusting, AsyncStore(dashboard.store)))
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for n in range(10):
            refused = _post_login(
                client,
                f"nobody{n}@example.com",  # the email limit never trips
                "nope-nope",
                headers=[("x-forwarded-for", f"10.{n}.0.1"), ("x-forwarded-for", "192.0.2.7")],
            )
            assert refused.status_code == 401
        limited = _post_login(
            client, "admin@example.com", PASSWORD, headers={"x-forwarded-for": "192.0.2.7"}
        )
    assert limited.status_code == 429


def _session_cookie(client: httpx.Client) -> str:
    response = _post_login(
        client, "admin@example.com", PASSWORD, headers={"x-forwarded-proto": "https"}
    )
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith("fp_session="))


def test_network_hash_truncates_and_is_keyed() -> None:
    a = hashed_network(b"s" * 32, "203.0.113.7")
    assert a == hashed_network(b"s" * 32, "203.0.113.200")  # same /24
    assert a == hashed_network(b"s" * 32, "::ffff:203.0.113.9")  # IPv4-mapped is IPv4
    assert a != hashed_network(b"t" * 32, "203.0.113.7")
    assert "203" not in a


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_secret(tmp_path / "d")
    assert first == load_secret(tmp_path / "d") and len(first) == 32
    mode = stat.S_IMODE((tmp_path / "d" / SECRET_FILE).stat().st_mode)
    assert mode == 0o600


def test_login_only_redirects_to_this_site(dashboard: Dashboard) -> None:
    c = dashboard.client
    for target, expected in (
        ("/sites/example.com?period=7d", "/sites/example.com?period=7d"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        page = c.get("/login", params={"next": target})
        response = c.post(
            "/login",
            data={
                "email": "viewer@example.com",
                "password": PASSWORD,
                "csrf_token": _csrf(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected, target
        c.cookies.clear()


def test_sessions_expire_after_their_lifetime(dashboard: Dashboard, tmp_path: Path) -> None:
    import asyncio

    from starlette.requests import Request
    from starlette.responses import Response

    from dashboards.auth import SESSION_LIFETIME, Auth
    from dashboards.users import get_user

    now = [dt.datetime.now(dt.UTC)]
    auth = Auth(dashboard.config, AsyncStore(dashboard.store), b"k" * 32, clock=lambda: now[0])
    user = get_user(dashboard.store, "viewer@example.com")
    assert user is not None

    def request(cookie: str = "") -> Request:
        headers = [(b"cookie", cookie.encode())] if cookie else []
        return Request({"type": "http", "method": "GET", "headers": headers, "path": "/"})

    async def scenario() -> list[bool]:
        response = Response()
        await auth.start_session(response, request(), user)
        cookie = response.headers["set-cookie"].split(";", 1)[0]
        seen = [await auth.session_principal(request(cookie)) is not None]
        now[0] += SESSION_LIFETIME - dt.timedelta(minutes=1)
        seen.append(await auth.session_principal(request(cookie)) is not None)
        now[0] += dt.timedelta(minutes=2)
        seen.append(await auth.session_principal(request(cookie)) is not None)
        return seen

    assert asyncio.run(scenario()) == [True, True, False]
