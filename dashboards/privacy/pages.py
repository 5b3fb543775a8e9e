"""The privacy team's page in the dashboard: the audit, run live, for `privacy` and `admin` users.

`GET /privacy/audit` renders the same report as `firstparty audit --html`; `/privacy/audit.json`
is its JSON twin. Viewing does not replace the CLI's saved baseline (a GET changes nothing); the
page shows the difference from that baseline.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dashboards.auth import get_auth
from dashboards.privacy import report as report_mod
from dashboards.privacy.model import Context, config_text
from firstparty.config import Config
from store.aio import AsyncStore
from store.base import Store


def _run(store: Store, config: Config) -> report_mod.Report:
    now = dt.datetime.now(dt.UTC)
    result = report_mod.run(Context(store, config, now, config_text=config_text(config)))
    result.diff = report_mod.diff(report_mod.load_previous(config.data_dir), result)
    return result


def privacy_routes(config: Config, store: AsyncStore) -> list[BaseRoute]:
    async def audit(request: Request) -> Response:
        as_json = request.url.path.endswith(".json")
        who = await get_auth(config, store).session_principal(request)
        if who is None:
            if as_json:
                return JSONResponse({"error": "login required"}, status_code=401)
            return RedirectResponse("/login?next=/privacy/audit", status_code=303)
        if not who.is_privacy:
            message = "The privacy audit is for the privacy and admin roles."
            if as_json:
                return JSONResponse({"error": message}, status_code=403)
            return HTMLResponse(f"<!doctype html><p>{message}</p>", status_code=403)
        result = await store.sync_call(_run, config)
        if as_json:
            return Response(report_mod.to_json(result), media_type="application/json")
        return HTMLResponse(report_mod.to_html(result, stylesheet="/privacy/audit.css"))

    async def stylesheet(request: Request) -> Response:
        return Response(report_mod.css(), media_type="text/css")

    return [
        Route("/privacy/audit", audit, methods=["GET"]),
        Route("/privacy/audit.json", audit, methods=["GET"]),
        Route("/privacy/audit.css", stylesheet, methods=["GET"]),
    ]
