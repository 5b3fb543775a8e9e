"""Checks on the configuration in force: k-suppression and re-identification risk, CNIL criteria."""

from __future__ import annotations

from typing import Any

from dashboards.privacy.model import Check, Context, Status
from store.base import StoreError
from store.url import parse_store_url

QUASI_IDENTIFIERS = ("country_code", "region", "browser", "browser_version", "os", "os_version")
QUASI_ALL = (*QUASI_IDENTIFIERS, "device")
RISK_REVIEW_SHARE = 0.05  # above this share of unique sessions, a person should look


def _suppression_self_test(k: int) -> dict[str, Any]:
    """Run the dashboards' own suppression on cells below k and report what a reader would see."""
    try:
        from dashboards.suppression import Row, fold
    except ImportError:
        return {"available": False}
    rows = [Row([f"cell{i}"], {"visitors": v}) for i, v in enumerate((k + 5, 1, max(k - 1, 1)))]
    out, folded = fold(rows, k, [0])
    shown = [r.metrics.get("visitors") for r in out]
    return {
        "available": True,
        "input_visitors": [r.metrics["visitors"] for r in rows],
        "shown_visitors": shown,
        "cells_folded": folded,
        "smallest_shown": min((v for v in shown if v is not None), default=None),
    }


LIVE_DIMENSIONS = ("event:page", "visit:country", "visit:browser", "visit:source")


def _live_breakdowns(ctx: Context, k: int) -> dict[str, Any]:
    """Ask the query layer (the code the dashboards and the API use) for breakdowns of the last
    30 days, and report the smallest group it shows."""
    try:
        from dashboards.query import QueryError, parse_query, run_query
    except ImportError:
        return {"available": False}
    shown: dict[str, Any] = {}
    for site in [s.domain for s in ctx.config.sites][:5]:
        for dim in LIVE_DIMENSIONS:
            body = {"site_id": site, "metrics": ["visitors"], "date_range": "30d"}
            try:
                spec = parse_query(body | {"dimensions": [dim]}, ctx.config, ctx.now)
                result = run_query(ctx.store, ctx.config, spec, ctx.now)
            except (QueryError, StoreError) as exc:
                shown[f"{site} {dim}"] = {"error": str(exc)[:200]}
                continue
            values = [r["metrics"][0] for r in result["results"]]
            visible = [v for v in values if v is not None]
            shown[f"{site} {dim}"] = {
                "rows": len(values),
                "smallest_visible": min(visible, default=None),
            }
    return {"available": True, "breakdowns": shown}


def k_anonymity(ctx: Context) -> Check:
    k = ctx.config.privacy.min_visitors
    findings: list[str] = []
    evidence: dict[str, Any] = {"min_visitors": k}
    table = ctx.table("sessions")
    if table is not None and table.rows:
        cols = [c for c in QUASI_ALL if any(col.name == c for col in table.columns)]
        picked = ", ".join(f"any(`{c}`) AS `{c}`" for c in cols)
        row = ctx.store.query(
            "SELECT count() AS groups, sum(n) AS sessions, sumIf(n, n = 1) AS unique_sessions, "
            f"sumIf(n, n < {{k:UInt32}}) AS below_k FROM (SELECT count() AS n FROM ("
            f"SELECT site_id, session_id, {picked} FROM sessions GROUP BY site_id, session_id"
            f") GROUP BY site_id, {', '.join(f'`{c}`' for c in cols)})",
            {"k": max(k, 2)},
        ).dicts()[0]
        sessions = int(row["sessions"] or 0)
        share = round(int(row["unique_sessions"] or 0) / sessions, 4) if sessions else 0.0
        evidence["reidentification"] = {
            "quasi_identifiers": cols,
            "sessions": sessions,
            "distinct_combinations": int(row["groups"] or 0),
            "sessions_unique_on_quasi_identifiers": int(row["unique_sessions"] or 0),
            "share_unique": share,
            f"sessions_in_groups_below_{max(k, 2)}": int(row["below_k"] or 0),
        }
        if share > RISK_REVIEW_SHARE and k < 2:
            findings.append(
                f"{share:.1%} of sessions are unique on {', '.join(cols)} and k-suppression is "
                "off (privacy.min_visitors = 1): consider raising min_visitors"
            )
    else:
        evidence["reidentification"] = {"sessions": 0}
    evidence["suppression_self_test"] = _suppression_self_test(max(k, 2))
    status: Status = "pass"
    if k < 2:
        status = "review"
        findings.insert(
            0,
            "privacy.min_visitors is 1: dashboard and API cells are not suppressed; a person must "
            "decide whether that is acceptable for these sites",
        )
    live = _live_breakdowns(ctx, k)
    evidence["live_breakdowns"] = live
    unanswered = [n for n, s in live.get("breakdowns", {}).items() if "error" in s]
    if unanswered:
        status = "review"
        findings.append("the query layer could not answer: " + ", ".join(unanswered))
    if k >= 2:
        for name, seen in live.get("breakdowns", {}).items():
            smallest = seen.get("smallest_visible")
            if smallest is not None and smallest < k:
                status = "fail"
                findings.append(f"the query layer shows a group of {smallest} visitors ({name})")
    test = evidence["suppression_self_test"]
    if test.get("available") and k >= 2 and (test.get("smallest_shown") or k) < k:
        status = "fail"
        findings.append("the suppression routine showed a cell below k")
    return Check(
        id="k_anonymity",
        title="k-suppression and re-identification risk",
        status=status,
        verified=(
            "Dashboard and API breakdown cells below privacy.min_visitors visitors are folded "
            "into '(other)' or withheld; the share of sessions unique on their quasi-identifiers "
            "(country, region, browser and version, OS and version, device) is measured."
        ),
        method=(
            "Read privacy.min_visitors from the configuration; ran the dashboards' suppression "
            "routine on cells below k; asked the query layer for the last 30 days broken down "
            f"by {', '.join(LIVE_DIMENSIONS)} and took the smallest group shown; grouped the "
            "live sessions table by its quasi-identifiers per site and counted the sessions "
            "alone in their group."
        ),
        evidence=evidence,
        findings=findings,
    )


def cnil(ctx: Context, retention_ok: bool) -> Check:
    """The CNIL conditions for audience measurement exempt from consent (deliberation 2020-091,
    art. 5, and its 2021 guidance), each evaluated from the configuration in force."""
    p, cfg = ctx.config.privacy, ctx.config
    target = parse_store_url(cfg.store)
    local = target.kind == "chdb" or (target.host or "") in ("localhost", "127.0.0.1", "::1")
    criteria: list[dict[str, str]] = []

    def add(name: str, status: str, evidence: str) -> None:
        criteria.append({"criterion": name, "status": status, "evidence": evidence})

    add(
        "purpose strictly limited to audience measurement",
        "needs a human decision",
        "the system computes only traffic statistics (no advertising, no profile, no export "
        "feed); whether the data is used for anything else is an organisational fact",
    )
    add(
        "no cross-site tracking; identifier limited to one site",
        "met",
        "visitor hash = keyed hash of (site, IP, user agent) computed in memory with a "
        "daily salt: the same person on two sites gets unrelated identifiers",
    )
    add(
        f"identifier lifetime at most 13 months (device IDs rotate {p.visitor_id_rotation})",
        "met" if p.visitor_id_rotation in ("daily", "weekly", "monthly", "13months") else "not met",
        f"privacy.visitor_id_rotation = {p.visitor_id_rotation}; cookie-less visitors: daily salt",
    )
    add(
        "geolocation no finer than the city",
        "met",
        f"country{' and region' if p.store_region else ''} only (privacy.store_region = "
        f"{str(p.store_region).lower()}); IP truncated to /{p.ipv4_prefix} and /{p.ipv6_prefix}"
        f", prefix {'kept' if p.keep_ip_prefix else 'not stored'}",
    )
    add(
        "collected data kept at most 25 months",
        "met" if retention_ok and p.aggregate_retention_months <= 25 else "not met",
        f"raw events {p.raw_retention_days} days, aggregates {p.aggregate_retention_months} "
        f"months; live TTLs {'match' if retention_ok else 'do NOT match'} (see inventory)",
    )
    add(
        "opt-out available and honoured",
        "met" if p.honour_dnt and p.honour_gpc else "needs a human decision",
        f"honour_gpc = {str(p.honour_gpc).lower()}, honour_dnt = {str(p.honour_dnt).lower()}; "
        "opted-out requests write nothing; publish the opt-out link in the privacy notice",
    )
    add(
        "data not shared with third parties; no transfer outside the EU",
        "met" if local else "needs a human decision",
        f"store {'embedded on this host' if local else 'on ' + (target.host or '?')}; the "
        "tracker calls only this first-party endpoint"
        + ("" if local else "; confirm the ClickHouse host is yours or under a processor contract"),
    )
    add(
        "users informed (privacy notice)",
        "needs a human decision",
        "publish the output of `firstparty privacy-notice` in the privacy policy",
    )
    statuses = {c["status"] for c in criteria}
    status: Status = (
        "fail"
        if "not met" in statuses
        else "review"
        if "needs a human decision" in statuses
        else "pass"
    )
    return Check(
        id="cnil_exemption",
        title="CNIL consent-exemption criteria for audience measurement",
        status=status,
        verified="Each CNIL condition for exemption from consent, from the configuration in force.",
        method=(
            "Evaluated privacy.* and the store URL of the loaded configuration "
            f"({cfg.source}); retention from the live TTLs (inventory check)."
        ),
        evidence={"criteria": criteria},
        findings=[f"{c['criterion']}: {c['status']}" for c in criteria if c["status"] != "met"],
    )
