"""The audit page in the dashboard: privacy and admin users only; HTML and a JSON twin."""

from __future__ import annotations

from tests.dashboards.web_fixtures import NOW, Dashboard, dashboard, traffic

__all__ = ["dashboard"]


def test_audit_page_is_for_privacy_and_admin_roles(dashboard: Dashboard) -> None:
    traffic(dashboard.store, NOW.date())
    anonymous = dashboard.client.get("/privacy/audit.json")
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "login required"}
    assert dashboard.client.get("/privacy/audit", follow_redirects=False).status_code == 303

    dashboard.login("viewer@example.com")
    refused = dashboard.client.get("/privacy/audit.json")
    assert refused.status_code == 403 and "privacy and admin" in refused.json()["error"]

    for email in ("privacy@example.com", "admin@example.com"):
        dashboard.client.cookies.clear()
        dashboard.login(email)
        page = dashboard.client.get("/privacy/audit")
        assert page.status_code == 200
        assert "<h1>Privacy audit</h1>" in page.text
        assert "<style>" not in page.text  # the strict CSP forbids inline styles
        assert "default-src" in page.headers["content-security-policy"]
        assert dashboard.client.get("/privacy/audit.css").status_code == 200
        report = dashboard.client.get("/privacy/audit.json").json()
        assert report["failed"] == []
        assert {c["id"] for c in report["checks"]} >= {"inventory", "no_raw_ip", "salts"}

    dashboard.store.command(
        "INSERT INTO events (site_id, timestamp, name, pathname) VALUES "
        "('example.com', now64(3), 'pageview', '/login?email=jane@example.org')"
    )
    report = dashboard.client.get("/privacy/audit.json").json()
    assert report["status"] == "fail" and report["failed"] == ["url_hygiene"]
