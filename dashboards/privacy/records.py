"""The record of processing activities (GDPR article 30(1)) for the web analytics, generated
from the live configuration so it cannot drift from what the system does."""

from __future__ import annotations

from dataclasses import dataclass

from dashboards.privacy.document import Block, h, p, table
from dashboards.privacy.notice import ROTATION_WORDS
from firstparty import __version__
from firstparty.config import Config
from store.url import parse_store_url

TO_COMPLETE = "(to complete by the controller)"


@dataclass(frozen=True)
class Controller:
    name: str = TO_COMPLETE
    contact: str = TO_COMPLETE
    dpo: str = TO_COMPLETE


def record(config: Config, controller: Controller, generated_at: str) -> list[Block]:
    pv = config.privacy
    target = parse_store_url(config.store)
    where = (
        f"embedded ClickHouse (chDB) on the collector host, data directory {config.server.data_dir}"
        if target.kind == "chdb"
        else f"ClickHouse server {target.host}:{target.port}, database {target.database}"
    )
    sites = ", ".join(s.domain for s in config.sites) or "(no site configured)"
    return [
        h(1, "Record of processing activities: website audience measurement"),
        p(
            f"GDPR article 30(1). Generated {generated_at} by firstparty {__version__} from "
            f"the configuration `{config.source}`; regenerate it after every configuration "
            "change (`firstparty records`)."
        ),
        table(
            ("Controller", controller.name),
            ("Controller contact", controller.contact),
            ("Data protection officer", controller.dpo),
            ("Processing", f"Audience measurement of the websites and apps: {sites}"),
            (
                "Purposes",
                "Measuring the use of the websites (visits, pages, sources, campaigns, "
                "countries, devices, goals) to improve them. No advertising, profiling or "
                "combination with other data.",
            ),
            (
                "Legal basis",
                "Legitimate interest, GDPR art. 6(1)(f); configured to meet the consent "
                "exemption for audience measurement (see `firstparty audit`, CNIL criteria).",
            ),
            ("Categories of data subjects", "Visitors of the websites; users of the apps."),
            (
                "Categories of personal data",
                "Pseudonymous visitor code (keyed hash with a daily random salt, destroyed "
                "after the day); for apps a keyed hash of the device ID (key rotated every "
                f"{ROTATION_WORDS['en'][pv.visitor_id_rotation]}); page path and referrer with "
                "query strings and personal-looking parts removed; campaign tags; country"
                + (" and region" if pv.store_region else "")
                + "; browser, OS (name, major version), device class; time, engagement time, "
                "scroll depth, custom events and their properties. "
                + (
                    f"Truncated IP network (/{pv.ipv4_prefix} IPv4, /{pv.ipv6_prefix} IPv6). "
                    if pv.keep_ip_prefix
                    else "No IP address or part of one. "
                )
                + "Not stored: IP address, user agent, device ID, cookies.",
            ),
            ("Special categories", "None."),
            (
                "Recipients",
                "Internal staff with a dashboard account (roles viewer, privacy, admin) "
                "or a Stats API key; no third party.",
            ),
            ("Transfers to third countries", "None."),
            (
                "Time limits for erasure",
                f"Raw events and sessions: {pv.raw_retention_days} days; aggregates: "
                f"{pv.aggregate_retention_months} months; salts: end of the day plus "
                f"{pv.session_timeout_minutes} minutes; device keys: end of their period. "
                "Enforced by ClickHouse TTLs and key destruction, verified by `firstparty audit`.",
            ),
            (
                "Security measures (art. 32)",
                "IP used in memory only (geolocation, hash) then discarded; salts and keys from "
                "a CSPRNG, never logged; opt-out signals honoured (GPC "
                f"{'on' if pv.honour_gpc else 'off'}, DNT {'on' if pv.honour_dnt else 'off'}); "
                f"k-suppression of small groups (k = {pv.min_visitors}); dashboard accounts "
                "with hashed passwords and roles; API keys stored hashed; re-runnable audit "
                "with digest.",
            ),
            ("Storage location", where),
            (
                "Data-subject rights",
                "Device IDs: `firstparty dsr export|delete`; cookie-less visitors: "
                "`firstparty dsr explain` (GDPR art. 11).",
            ),
        ),
    ]
