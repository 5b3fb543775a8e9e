"""The web dashboard over real HTTP: pages, JSON twins, filters, CSV, roles and share links."""

from __future__ import annotations

import datetime as dt

from dashboards.shares import create_share, revoke_share, share_for_token
from dashboards.users import add_user
from dashboards.web.stats import _answer
from tests.dashboards.web_fixtures import NOW, Dashboard, dashboard, traffic

__all__ = ["dashboard"]

TODAY = NOW.date()


def _csrf(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _api(d: Dashboard, **body: object) -> list[object]:
    query = {"site_id": "example.com", "date_range": [TODAY.isoformat()] * 2, **body}
    return list(_answer(d.store, d.config, query, NOW)["results"])


def test_site_page_shows_the_query_layers_numbers(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    dashboard.login("viewer@example.com")
    c = dashboard.client
    view = c.get("/sites/example.com.json?period=day").json()
    assert view == c.get("/sites/example.com?period=day&format=json").json()
    stats = {s["metric"]: s["value"] for s in view["top_stats"]}
    expected = _api(dashboard, metrics=["visitors", "visits", "pageviews"])[0]["metrics"]  # type: ignore[index]
    assert [stats["visitors"], stats["visits"], stats["pageviews"]] == expected == [5, 5, 6]
    assert stats["bounce_rate"] == 80  # 4 of 5 visits saw one page and did nothing else
    assert sum(view["chart"]["series"]["pageviews"]) == 6
    sources = next(p for p in view["panels"] if p["key"] == "sources")
    top = sources["rows"][0]
    assert (top["label"], top["metrics"]["visitors"]) == (
        "Organic Search",
        3,
    )
    entry = c.get("/sites/example.com.json?period=day&tab_pages=entry").json()
    pages = next(p for p in entry["panels"] if p["key"] == "pages")
    assert pages["dimension"] == "visit:entry_page"
    assert {r["label"]: r["metrics"]["visitors"] for r in pages["rows"]} == {"/": 4, "/blog": 1}
    assert view["goals"]["rows"][0]["label"] == "Signup"
    assert view["goals"]["rows"][0]["metrics"]["conversion_rate"] == 20  # 1 of 5 visitors
    html = c.get("/sites/example.com?period=day").text
    assert 'data-testid="stat-visitors" data-value="5">5<' in html
    assert 'data-testid="stat-pageviews" data-value="6">6<' in html


def test_clicking_a_row_filters_and_chips_remove_filters(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    dashboard.login("viewer@example.com")
    c = dashboard.client
    view = c.get("/sites/example.com.json?period=day&tab_sources=sources").json()
    sources = next(p for p in view["panels"] if p["key"] == "sources")
    google = next(r for r in sources["rows"] if r["label"] == "Google")
    filtered = c.get(f"/sites/example.com.json?{google['filter']}").json()
    assert (
        filtered["filters"][0]["label"] == "Source" and filtered["filters"][0]["value"] == "Google"
    )
    assert {s["metric"]: s["value"] for s in filtered["top_stats"]}["visitors"] == 3
    html = c.get(f"/sites/example.com?{google['filter']}").text
    assert "Remove filter Source is Google" in html
    cleared = c.get(f"/sites/example.com.json?{filtered['filters'][0]['remove']}").json()
    assert cleared["filters"] == []
    # A filter value that looks like SQL is a literal.
    evil = c.get("/sites/example.com.json", params={"period": "day", "source": "' OR 1=1 --"})
    assert evil.status_code == 200
    assert {s["metric"]: s["value"] for s in evil.json()["top_stats"]}["visitors"] == 0


def test_periods_and_comparison(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    traffic(dashboard.store, TODAY - dt.timedelta(days=1))
    dashboard.login("viewer@example.com")
    c = dashboard.client
    view = c.get("/sites/example.com.json?period=day&compare=1").json()
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    assert view["period"]["previous"] == {"from": yesterday, "to": yesterday}
    visitors = next(s for s in view["top_stats"] if s["metric"] == "visitors")
    assert visitors["previous"] == 5 and visitors["change"]["text"] == "0%"
    # Hourly, up to the current hour (the future has no visitors yet): 23:30 is the 24th.
    assert view["chart"]["interval"] == "hour" and len(view["chart"]["labels"]) == NOW.hour + 1
    custom = c.get(
        "/sites/example.com.json",
        params={"period": "custom", "from": yesterday, "to": TODAY.isoformat(), "interval": "day"},
    ).json()
    assert custom["period"]["from"] == yesterday and len(custom["chart"]["labels"]) == 2
    assert {s["metric"]: s["value"] for s in custom["top_stats"]}["pageviews"] == 12


def test_csv_export_of_a_breakdown(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    dashboard.login("viewer@example.com")
    response = dashboard.client.get(
        "/sites/example.com/export.csv", params={"period": "day", "dimension": "event:page"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0] == "page,visitors,visits,pageviews"
    assert "/,4,4,4" in lines
    bad = dashboard.client.get("/sites/example.com/export.csv", params={"dimension": "x; DROP"})
    assert bad.status_code == 400 and "error" in bad.json()


def test_site_list_with_sparklines(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    dashboard.login("viewer@example.com")
    sites = dashboard.client.get("/sites.json").json()["sites"]
    assert [s["site"] for s in sites] == ["example.com", "shop.example.org"]
    assert (
        sites[0]["visitors"] == 5 and len(sites[0]["series"]) == 30 and sites[0]["series"][-1] == 5
    )
    html = dashboard.client.get("/").text
    assert "<polyline" in html and 'href="/sites/shop.example.org"' in html


def test_scoped_user_sees_only_their_site(dashboard: Dashboard) -> None:
    add_user(
        dashboard.store, "shop@example.com", "viewer", "correct horse battery", ["shop.example.org"]
    )
    dashboard.login("shop@example.com")
    c = dashboard.client
    assert [s["site"] for s in c.get("/sites.json").json()["sites"]] == ["shop.example.org"]
    assert c.get("/sites/example.com").status_code == 404
    assert c.get("/sites/nope.example").status_code == 404


def test_only_admins_manage_share_links(dashboard: Dashboard) -> None:
    for email in ("viewer@example.com", "privacy@example.com"):
        dashboard.client.cookies.clear()
        dashboard.login(email)
        assert dashboard.client.get("/sites/example.com/shares").status_code == 403
    dashboard.client.cookies.clear()
    dashboard.login("admin@example.com")
    c = dashboard.client
    page = c.get("/sites/example.com/shares")
    assert page.status_code == 200
    created = c.post(
        "/sites/example.com/shares",
        data={"label": "board", "expires_days": "7", "csrf_token": _csrf(page.text)},
    )
    assert created.status_code == 201
    url = created.text.split('data-testid="new-share-link"', 1)[0].rsplit('value="', 1)[1]
    path = "/" + url.split('"', 1)[0].split("://", 1)[1].split("/", 1)[1]
    assert path.startswith("/share/") and "board" in created.text
    traffic(dashboard.store, TODAY)
    c.cookies.clear()
    shared = c.get(path + "?period=day")
    assert shared.status_code == 200 and "read-only link" in shared.text
    assert "Log out" not in shared.text and "/shares" not in shared.text
    assert c.get(path + ".json?period=day").json()["site"] == "example.com"
    # Revoke it from the dashboard: the link stops working.
    c2 = dashboard.client
    dashboard.login("admin@example.com")
    listing = c2.get("/sites/example.com/shares").text
    revoke_path = listing.split('action="/sites/example.com/shares/', 1)[1].split('"', 1)[0]
    revoked = c2.post(
        f"/sites/example.com/shares/{revoke_path}",
        data={"csrf_token": _csrf(listing)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    c2.cookies.clear()
    assert c2.get(path).status_code == 404


def test_share_link_is_read_only_and_one_site(dashboard: Dashboard) -> None:
    traffic(dashboard.store, TODAY)
    token, link = create_share(dashboard.store, "example.com", "test")
    c = dashboard.client
    view = c.get(f"/share/{token}.json?period=day").json()
    assert {s["metric"]: s["value"] for s in view["top_stats"]}["visitors"] == 5
    csv = c.get(f"/share/{token}/export.csv", params={"period": "day", "dimension": "visit:source"})
    assert csv.status_code == 200 and csv.text.startswith("source,visitors")
    assert c.get(f"/share/{token}/realtime.json").json() == {"visitors": 0}
    # The token opens nothing else: not the site list, not another site, not the API.
    assert c.get("/sites.json").status_code == 401
    assert c.get("/sites/shop.example.org.json").status_code == 401
    assert c.post("/sites/example.com/shares", data={}, follow_redirects=False).status_code == 303
    assert revoke_share(dashboard.store, link.link_id)
    assert c.get(f"/share/{token}.json").status_code == 404
    assert c.get(f"/share/{token}/export.csv?dimension=visit:source").status_code == 404


def test_share_link_expires(dashboard: Dashboard) -> None:
    now = NOW
    token, link = create_share(
        dashboard.store, "example.com", "t", expires_at=now + dt.timedelta(hours=1)
    )
    assert dashboard.client.get(f"/share/{token}.json").status_code == 200
    live = share_for_token(dashboard.store, token, now + dt.timedelta(minutes=59))
    assert live is not None and live.link_id == link.link_id
    assert share_for_token(dashboard.store, token, now + dt.timedelta(hours=1)) is None
    past, _ = create_share(
        dashboard.store, "example.com", "t", expires_at=now - dt.timedelta(seconds=1)
    )
    assert dashboard.client.get(f"/share/{past}.json").status_code == 404
    assert dashboard.client.get(f"/share/{past}").status_code == 404
    assert dashboard.client.get("/share/not-a-token").status_code == 404


def test_small_groups_are_folded_and_not_clickable(dashboard: Dashboard) -> None:
    from dataclasses import replace

    import httpx
    from starlette.applications import Starlette

    from dashboards.web.pages import web_routes
    from store.aio import AsyncStore
    from tests.dashboards.web_fixtures import serving

    traffic(dashboard.store, TODAY)
    config = dashboard.config
    k2 = replace(config, privacy=replace(config.privacy, min_visitors=2))
    app = Starlette(routes=web_routes(k2, AsyncStore(dashboard.store), lambda: NOW))
    with serving(app) as url, httpx.Client(base_url=url) as c:
        page = c.get("/login")
        c.post(
            "/login",
            data={
                "email": "viewer@example.com",
                "password": "correct horse battery",
                "csrf_token": page.text.split('name="csrf_token" value="', 1)[1].split('"')[0],
            },
        )
        view = c.get("/sites/example.com.json?period=day&tab_sources=sources").json()
        sources = next(p for p in view["panels"] if p["key"] == "sources")
        labels = {r["label"]: r for r in sources["rows"]}
        assert labels["Google"]["metrics"]["visitors"] == 3
        assert "Newsletter" not in labels  # 1 visitor: below k = 2
        if "(other)" in labels:
            assert labels["(other)"]["filter"] is None
        assert sources["suppression"]
        assert "Privacy: " in c.get("/sites/example.com?period=day&tab_sources=sources").text
        # Multi-day totals say how daily visitor hashes count people.
        week = c.get("/sites/example.com.json?period=7d").json()
        assert any("once per day" in note for note in week["notes"])


def test_admins_manage_users_from_the_dashboard(dashboard: Dashboard) -> None:
    import httpx

    c = dashboard.client
    dashboard.login("viewer@example.com")
    assert c.get("/users").status_code == 403
    c.cookies.clear()
    dashboard.login("admin@example.com")
    page = c.get("/users")
    assert page.status_code == 200 and "viewer@example.com" in page.text
    forged = c.post("/users", data={"email": "x@example.com", "role": "viewer"})
    assert forged.status_code == 403
    added = c.post(
        "/users",
        data={
            "email": "New@Example.com",
            "role": "viewer",
            "site": "shop.example.org",
            "csrf_token": _csrf(page.text),
        },
    )
    assert added.status_code == 201
    password = added.text.split('data-testid="new-password"', 1)[0].rsplit('value="', 1)[1]
    password = password.split('"', 1)[0]
    bad = c.post(
        "/users", data={"email": "y@example.com", "role": "owner", "csrf_token": _csrf(page.text)}
    )
    assert bad.status_code == 400 and "role must be one of" in bad.text
    # The new user logs in with the password shown once, and sees only their site.
    with httpx.Client(base_url=str(c.base_url)) as newcomer:
        login = newcomer.get("/login")
        newcomer.post(
            "/login",
            data={
                "email": "new@example.com",
                "password": password,
                "csrf_token": _csrf(login.text),
            },
        )
        assert [s["site"] for s in newcomer.get("/sites.json").json()["sites"]] == [
            "shop.example.org"
        ]
        # Removing them ends their session at once; an admin cannot remove themselves.
        self_removal = c.post(
            "/users/remove", data={"email": "admin@example.com", "csrf_token": _csrf(page.text)}
        )
        assert self_removal.status_code == 400
        removed = c.post(
            "/users/remove",
            data={"email": "new@example.com", "csrf_token": _csrf(page.text)},
            follow_redirects=False,
        )
        assert removed.status_code == 303
        assert newcomer.get("/sites.json").status_code == 401
