"""The marketers' web dashboard: login, the site list, a page per site, share links.

Server-rendered HTML (Jinja2, autoescaped) with a little JavaScript; every page has a JSON twin
(the same URL with `.json`, or `?format=json`) built from the same view function. Every page
needs a dashboard session, an API key or a share link; every state change needs a CSRF token.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dashboards.api import Clock, utc_now
from dashboards.auth import CSRF_FIELD, LOGIN_COOKIE, Auth, Principal, get_auth
from dashboards.shares import ShareLink, create_share, list_shares, revoke_share, share_for_token
from dashboards.users import (
    ROLES,
    UserError,
    add_user,
    check_password,
    generate_password,
    list_users,
    remove_user,
)
from dashboards.web import stats
from dashboards.web.views import FILTERS, GOALS, State, parse_state, site_view, sparkline
from firstparty.config import Config
from store.aio import AsyncStore
from store.base import StoreError

log = logging.getLogger("firstparty.dashboard")
ASSET_VERSION = "1"
BUSY = "The numbers could not be computed in time; try a shorter range or fewer filters."
CSV_METRICS = ["visitors", "visits", "pageviews"]
GOAL_CSV_METRICS = ["visitors", "events", "conversion_rate"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("dashboards.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _merge(params: dict[str, str], **changes: str) -> str:
    """The page's query string with some parameters changed (a Jinja filter)."""
    return urlencode({**params, **changes})


def _ts(seconds: int, interval: str) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:00" if interval == "hour" else "%Y-%m-%d")


_ENV.filters["merge"] = _merge
_ENV.filters["ts"] = _ts


def _wants_json(request: Request, path_value: str) -> tuple[str, bool]:
    """Strip a `.json` suffix; JSON when it was there or `?format=json` is asked."""
    if path_value.endswith(".json"):
        return path_value[: -len(".json")], True
    return path_value, request.query_params.get("format") == "json"


def _html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    page = _ENV.get_template(template).render(asset_version=ASSET_VERSION, **context)
    return HTMLResponse(page, status_code=status)


def _error(request: Request, status: int, message: str, as_json: bool) -> Response:
    if as_json:
        return JSONResponse({"error": message}, status_code=status)
    return _html("error.html", status, title=f"{status}", message=message, principal=None)


def _local_next(value: str | None) -> str:
    """Only a path on this site (no `//host`, no scheme) may be a post-login destination."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()  # browsers drop tabs and newlines: "/\t/evil" is "//evil"
        and " " not in value
    ):
        return value
    return "/"


def web_routes(config: Config, store: AsyncStore, clock: Clock | None = None) -> list[BaseRoute]:
    now = clock or utc_now

    def auth() -> Auth:
        return get_auth(config, store)

    async def principal(request: Request) -> Principal | None:
        return await auth().authenticate(request)

    def login_redirect(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    # -- login / logout ------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        if await auth().session_principal(request) is not None:
            return RedirectResponse(_local_next(request.query_params.get("next")), 303)
        return _login_form(request)

    def _login_form(
        request: Request,
        error: str = "",
        status: int = 200,
        email: str = "",
        next_url: str | None = None,
    ) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = _html(
            "login.html",
            status,
            csrf=auth().csrf_for_login(nonce),
            next=_local_next(next_url or request.query_params.get("next")),
            error=error,
            email=email,
            principal=None,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=3600,
            httponly=True,
            samesite="lax",
            secure=auth().secure_cookies(request),
        )
        return response

    async def login(request: Request) -> Response:
        form = await request.form()
        email = str(form.get("email", ""))[:254]
        password = str(form.get("password", ""))[:1024]
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        next_url = _local_next(str(form.get("next", "")) or None)
        expected = auth().csrf_for_login(nonce) if nonce else ""
        if not expected or not secrets.compare_digest(expected, str(form.get(CSRF_FIELD, ""))):
            return _login_form(
                request, "Your login form expired; please try again.", 403, email, next_url
            )
        keys = auth().limiter_keys(request, email)
        wait = auth().limiter.retry_after(keys)
        if wait:
            response = _login_form(
                request,
                f"Too many failed logins; try again in {wait // 60 + 1} minutes.",
                status=429,
                email=email,
                next_url=next_url,
            )
            response.headers["retry-after"] = str(wait)
            return response
        user = await store.sync_call(check_password, email, password)
        if user is None:
            auth().limiter.failed(keys)
            return _login_form(request, "Wrong email or password.", 401, email, next_url)
        response = RedirectResponse(next_url, status_code=303)
        await auth().start_session(response, request, user)
        return response

    async def logout(request: Request) -> Response:
        who = await auth().session_principal(request)
        form = await request.form()
        if who is not None and not auth().csrf_ok(who, str(form.get(CSRF_FIELD, ""))):
            return _error(request, 403, "The form was not sent by this dashboard.", False)
        response = RedirectResponse("/login", status_code=303)
        await auth().end_session(response, request)
        return response

    # -- the site list ---------------------------------------------------------------------
    async def index(request: Request) -> Response:
        as_json = request.query_params.get("format") == "json" or request.url.path == "/sites.json"
        who = await principal(request)
        if who is None:
            if as_json:
                return _error(request, 401, "log in, or send an API key", True)
            return login_redirect(request)
        asked = now()
        lines = await asyncio.gather(*(sparkline(store, config, d, asked) for d in who.sites))
        sites = [
            {**line, "name": _site_name(config, domain)}
            for domain, line in zip(who.sites, lines, strict=True)
        ]
        if as_json:
            return JSONResponse({"sites": sites})
        return _html("index.html", sites=sites, principal=who, spark=_spark_points)

    # -- one site ----------------------------------------------------------------------------
    async def _site_page(
        request: Request, site: str, who: Principal, as_json: bool, base: str
    ) -> Response:
        state = parse_state(dict(request.query_params), now())
        try:
            view = await site_view(store, config, site, state)
        except StoreError:
            log.warning("dashboard queries for %s failed or hit their limits", site)
            return _error(request, 503, BUSY, as_json)
        if as_json:
            return JSONResponse(view)
        return _html(
            "site.html",
            view=view,
            principal=who,
            base=base,
            state_params=state.params(),
            filter_names=list(FILTERS),
            shared=who.kind == "share",
        )

    async def reader(request: Request, domain: str, as_json: bool) -> Principal | Response:
        """Who may read `domain`, or the answer for a visitor who may not (401/login, 404)."""
        who = await principal(request)
        if who is None:
            if as_json:
                return _error(request, 401, "log in, or send an API key", True)
            return login_redirect(request)
        if config.site(domain) is None or not who.can_read(domain):
            return _error(request, 404, f"There is no site {domain!r} you can read.", as_json)
        return who

    async def site(request: Request) -> Response:
        domain, as_json = _wants_json(request, request.path_params["domain"])
        who = await reader(request, domain, as_json)
        if isinstance(who, Response):
            return who
        return await _site_page(request, domain, who, as_json, f"/sites/{quote(domain)}")

    async def _csv_query(
        site: str, state: State, dimension: str, metrics: list[str]
    ) -> dict[str, Any]:
        return await stats.run(
            store,
            config,
            {
                "site_id": site,
                "metrics": metrics,
                "date_range": state.period.date_range(),
                "dimensions": [dimension],
                "filters": state.v2_filters(),
                "pagination": {"limit": 10000, "offset": 0},
            },
            state.now,
        )

    async def _csv(request: Request, site: str) -> Response:
        dimension = request.query_params.get("dimension", "")
        known = {d for d, _ in FILTERS.values()}
        if dimension not in known:
            return _error(
                request, 400, "`dimension`: choose one of " + ", ".join(sorted(known)), True
            )
        state = parse_state(dict(request.query_params), now())
        metrics = GOAL_CSV_METRICS if dimension == GOALS.dimension else CSV_METRICS
        try:
            response = await _csv_query(site, state, dimension, metrics)
        except StoreError:
            return _error(request, 503, BUSY, True)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([dimension.split(":", 1)[1], *metrics])
        for row in response["results"]:
            writer.writerow([*row["dimensions"], *row["metrics"]])
        name = f"{site}-{dimension.split(':', 1)[1]}-{state.period.start}-{state.period.end}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    async def site_csv(request: Request) -> Response:
        domain = request.path_params["domain"]
        who = await reader(request, domain, True)
        if isinstance(who, Response):
            return who
        return await _csv(request, domain)

    async def site_realtime(request: Request) -> Response:
        domain = request.path_params["domain"]
        who = await reader(request, domain, True)
        if isinstance(who, Response):
            return who
        return JSONResponse({"visitors": await stats.current_visitors(store, domain, now())})

    # -- share links -------------------------------------------------------------------------
    async def shared(request: Request) -> tuple[ShareLink | None, str]:
        token, _ = _wants_json(request, request.path_params["token"])
        link = await store.sync_call(share_for_token, token, now())
        if link is not None and config.site(link.site_id) is None:
            link = None
        return link, token

    async def share_page(request: Request) -> Response:
        _, as_json = _wants_json(request, request.path_params["token"])
        link, token = await shared(request)
        if link is None:
            return _error(request, 404, "This share link is unknown, revoked or expired.", as_json)
        who = Principal(kind="share", sites=(link.site_id,), share_token=token)
        return await _site_page(request, link.site_id, who, as_json, f"/share/{token}")

    async def share_csv(request: Request) -> Response:
        link, _ = await shared(request)
        if link is None:
            return _error(request, 404, "This share link is unknown, revoked or expired.", True)
        return await _csv(request, link.site_id)

    async def share_realtime(request: Request) -> Response:
        link, _ = await shared(request)
        if link is None:
            return _error(request, 404, "This share link is unknown, revoked or expired.", True)
        return JSONResponse({"visitors": await stats.current_visitors(store, link.site_id, now())})

    # -- managing share links (admins) -----------------------------------------------------
    async def _admin_for(request: Request) -> tuple[Principal | None, str, Response | None]:
        domain = request.path_params["domain"]
        who = await auth().session_principal(request)
        if who is None:
            return None, domain, login_redirect(request)
        if config.site(domain) is None or not who.can_read(domain):
            return None, domain, _error(request, 404, f"There is no site {domain!r}.", False)
        if not who.is_admin:
            return None, domain, _error(request, 403, "Only admins manage share links.", False)
        return who, domain, None

    async def _shares_page(
        request: Request, who: Principal, domain: str, new_link: str = "", status: int = 200
    ) -> Response:
        links = await store.sync_call(list_shares, domain)
        asked = now()
        return _html(
            "shares.html",
            status,
            principal=who,
            site=domain,
            links=[{"link": link, "expired": link.expired(asked)} for link in links],
            new_link=new_link,
        )

    async def shares_page(request: Request) -> Response:
        who, domain, refusal = await _admin_for(request)
        if refusal is not None or who is None:
            return refusal or _error(request, 403, "forbidden", False)
        return await _shares_page(request, who, domain)

    async def _checked_form(
        request: Request, who: Principal
    ) -> tuple[dict[str, str] | None, Response | None]:
        form = await request.form()
        if not auth().csrf_ok(who, str(form.get(CSRF_FIELD, ""))):
            return None, _error(request, 403, "The form was not sent by this dashboard.", False)
        return {k: str(v) for k, v in form.items()}, None

    async def shares_create(request: Request) -> Response:
        who, domain, refusal = await _admin_for(request)
        if refusal is not None or who is None:
            return refusal or _error(request, 403, "forbidden", False)
        form, refusal = await _checked_form(request, who)
        if refusal is not None or form is None:
            return refusal or _error(request, 403, "forbidden", False)
        days = form.get("expires_days", "").strip()
        expires = None
        if days:
            if not days.isdigit() or not 1 <= int(days) <= 3650:
                return _error(request, 400, "Expiry must be a number of days (1-3650).", False)
            expires = now() + dt.timedelta(days=int(days))
        token, _link = await store.sync_call(
            create_share, domain, who.email, form.get("label", "")[:200], expires
        )
        url = str(request.base_url).rstrip("/") + f"/share/{token}"
        return await _shares_page(request, who, domain, new_link=url, status=201)

    async def shares_revoke(request: Request) -> Response:
        who, domain, refusal = await _admin_for(request)
        if refusal is not None or who is None:
            return refusal or _error(request, 403, "forbidden", False)
        _form, refusal = await _checked_form(request, who)
        if refusal is not None:
            return refusal
        await store.sync_call(revoke_share, request.path_params["link_id"], domain)
        return RedirectResponse(f"/sites/{quote(domain)}/shares", status_code=303)

    # -- managing users (admins) ------------------------------------------------------------
    async def _users_admin(request: Request) -> tuple[Principal | None, Response | None]:
        who = await auth().session_principal(request)
        if who is None:
            return None, login_redirect(request)
        if not who.is_admin:
            return None, _error(request, 403, "Only admins manage users.", False)
        return who, None

    async def _users_page(
        who: Principal, created: dict[str, str] | None = None, error: str = "", status: int = 200
    ) -> Response:
        users = await store.sync_call(list_users)
        return _html(
            "users.html",
            status,
            principal=who,
            users=users,
            roles=ROLES,
            sites=[site.domain for site in config.sites],
            created=created,
            error=error,
        )

    async def users_page(request: Request) -> Response:
        who, refusal = await _users_admin(request)
        if who is None:
            return refusal or _error(request, 403, "forbidden", False)
        return await _users_page(who)

    async def users_add(request: Request) -> Response:
        who, refusal = await _users_admin(request)
        if who is None:
            return refusal or _error(request, 403, "forbidden", False)
        form, refusal = await _checked_form(request, who)
        if form is None:
            return refusal or _error(request, 403, "forbidden", False)
        site = form.get("site", "")
        if site and config.site(site) is None:
            return await _users_page(who, error=f"{site!r} is not a configured site", status=400)
        password = generate_password()
        try:
            user = await store.sync_call(
                add_user,
                form.get("email", ""),
                form.get("role", ""),
                password,
                [site] if site else [],
            )
        except UserError as exc:
            return await _users_page(who, error=str(exc), status=400)
        return await _users_page(who, {"email": user.email, "password": password}, status=201)

    async def users_remove(request: Request) -> Response:
        who, refusal = await _users_admin(request)
        if who is None:
            return refusal or _error(request, 403, "forbidden", False)
        form, refusal = await _checked_form(request, who)
        if form is None:
            return refusal or _error(request, 403, "forbidden", False)
        email = form.get("email", "").strip().lower()
        if email == who.email:
            return await _users_page(who, error="You cannot remove yourself.", status=400)
        try:
            await store.sync_call(remove_user, email)
        except UserError as exc:
            return await _users_page(who, error=str(exc), status=400)
        return RedirectResponse("/users", status_code=303)

    return [
        Route("/users", users_page, methods=["GET"]),
        Route("/users", users_add, methods=["POST"]),
        Route("/users/remove", users_remove, methods=["POST"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", index, methods=["GET"]),
        Route("/sites.json", index, methods=["GET"]),
        Route("/sites/{domain}/export.csv", site_csv, methods=["GET"]),
        Route("/sites/{domain}/realtime.json", site_realtime, methods=["GET"]),
        Route("/sites/{domain}/shares", shares_page, methods=["GET"]),
        Route("/sites/{domain}/shares", shares_create, methods=["POST"]),
        Route("/sites/{domain}/shares/{link_id}/revoke", shares_revoke, methods=["POST"]),
        Route("/sites/{domain}", site, methods=["GET"]),
        Route("/share/{token}/export.csv", share_csv, methods=["GET"]),
        Route("/share/{token}/realtime.json", share_realtime, methods=["GET"]),
        Route("/share/{token}", share_page, methods=["GET"]),
        Mount(
            "/assets",
            app=StaticFiles(packages=[("dashboards.web", "static")]),
            name="assets",
        ),
    ]


def _site_name(config: Config, domain: str) -> str:
    site = config.site(domain)
    return (site.name if site else "") or domain


def _spark_points(series: list[float], width: int = 120, height: int = 32) -> str:
    """An SVG polyline's points for a sparkline (server-side: no script needed)."""
    if not series:
        return ""
    top = max(series) or 1.0
    step = width / max(len(series) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}"
        for i, value in enumerate(series)
    )
