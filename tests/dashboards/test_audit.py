"""`firstparty audit`: passes on a clean store with realistic data, fails and names each planted
violation (raw IP, old salt, query string with an e-mail, table without TTL, ...)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import shutil
import threading
from pathlib import Path

import pytest

from dashboards.privacy import report, scans
from dashboards.privacy.model import Context
from firstparty.cli import main
from firstparty.config import Config, parse
from ingest.batch import to_arrow
from ingest.event import Event
from ingest.salts import SaltKeeper, visitor_hash
from store.base import Store

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PAGES = ["/", "/pricing", "/blog/2024/05/launch", "/docs/getting-started", "/contact"]
AGENTS = [
    ("Chrome", "131", "Windows", "10", "desktop"),
    ("Firefox", "133", "Linux", "", "desktop"),
    ("Safari", "17", "iOS", "17.5", "mobile"),
    ("Samsung Internet", "25", "Android", "14", "mobile"),
]


def config_for(tmp_path: Path, extra: str = "") -> Config:
    text = f"""
[[site]]
domain = "example.com"
[server]
data_dir = "{tmp_path / "data"}"
{extra}
"""
    return parse(text, str(tmp_path / "firstparty.toml"), env={})


def realistic_events(store: Store, count: int = 60) -> list[Event]:
    """Events as the pipeline writes them: hashed visitors under today's real salt."""
    salt = SaltKeeper(store).salt(NOW.date())
    events = []
    for i in range(count):
        browser, version, os_, os_version, device = AGENTS[i % len(AGENTS)]
        visitor = visitor_hash(salt, "example.com", f"198.51.100.{i % 20}", browser)
        events.append(
            Event(
                site_id="example.com",
                timestamp=NOW - dt.timedelta(minutes=3 * i),
                name="pageview" if i % 5 else "Signup",
                visitor_id=visitor,
                session_id=visitor >> 1,
                hostname="example.com",
                pathname=PAGES[i % len(PAGES)],
                referrer="https://news.ycombinator.com/item" if i % 3 == 0 else "",
                referrer_source="news.ycombinator.com" if i % 3 == 0 else "",
                channel="Referral" if i % 3 == 0 else "Direct",
                utm_source="newsletter" if i % 4 == 0 else "",
                utm_campaign="spring-sale" if i % 4 == 0 else "",
                click_id="gclid" if i % 7 == 0 else "",
                country_code=["BE", "FR", "NL"][i % 3],
                browser=browser,
                browser_version=version,
                os=os_,
                os_version=os_version,
                device=device,
                props={"plan": "pro"} if i % 5 == 0 else {},
            )
        )
    store.insert("events", to_arrow(events))
    return events


def audit(store: Store, config: Config, logs: list[Path] | None = None) -> report.Report:
    return report.run(Context(store, config, NOW, log_files=logs or []))


def check(result: report.Report, check_id: str) -> tuple[str, str]:
    found = next(c for c in result.checks if c.id == check_id)
    return found.status, "\n".join(found.findings)


def plant(store: Store, **fields: object) -> None:
    base: dict[str, object] = {
        "site_id": "example.com",
        "timestamp": NOW,
        "name": "pageview",
        "visitor_id": 42,
        "session_id": 42,
    }
    store.insert("events", to_arrow([Event(**(base | fields))]))  # type: ignore[arg-type]


@pytest.fixture
def clean(store: Store, tmp_path: Path) -> Config:
    realistic_events(store)
    return config_for(tmp_path)


def test_clean_store_with_real_data_passes(store: Store, clean: Config) -> None:
    result = audit(store, clean)
    assert result.failed == [], report.to_text(result)
    statuses = {c.id: c.status for c in result.checks}
    assert statuses["no_raw_ip"] == "pass"
    assert statuses["url_hygiene"] == "pass"
    assert statuses["salts"] == "pass"
    assert statuses["no_raw_identifiers"] == "pass"
    assert statuses["inventory"] in ("pass", "review")
    inv = next(c for c in result.checks if c.id == "inventory").evidence
    events = next(t for t in inv["tables"] if t["table"] == "events")
    assert events["rows"] == 60
    assert events["ttl_in_force"] == "30 days"
    assert events["columns"]["visitor_id"] == "pseudonymous"
    assert events["columns"]["ip_prefix"] == "truncated"
    assert events["columns"]["browser"] == "enum"
    salts = next(c for c in result.checks if c.id == "salts").evidence
    assert salts["count"] == 1 and salts["salts"][0]["hex_chars"] == 32


def test_raw_ip_in_any_textual_form_fails_and_names_the_column(store: Store, clean: Config) -> None:
    plant(store, utm_campaign="visitor-198.51.100.23")
    plant(store, pathname="/lookup/2001%3Adb8%3A85a3%3A%3A8a2e%3A370%3A7334")
    plant(store, props={"client": "::ffff:203.0.113.9"})
    status, findings = check(audit(store, clean), "no_raw_ip")
    assert status == "fail"
    assert "events.utm_campaign" in findings
    assert "events.pathname" in findings
    assert "events.props" in findings
    assert "198.51.100.23" not in findings  # the report masks what it finds
    assert "198.51.x.x" in findings


def test_prefix_column_must_hold_networks_at_the_configured_length(
    store: Store, tmp_path: Path
) -> None:
    config = config_for(tmp_path, "[privacy]\nkeep_ip_prefix = true\n")
    plant(store, ip_prefix="203.0.113.0/24")
    plant(store, ip_prefix="2001:db8:85a3::/48")
    assert check(audit(store, config), "no_raw_ip")[0] == "pass"
    plant(store, ip_prefix="203.0.113.77/32")
    status, findings = check(audit(store, config), "no_raw_ip")
    assert status == "fail" and "events.ip_prefix" in findings
    # With keep_ip_prefix off, any stored prefix is a violation.
    status, findings = check(audit(store, config_for(tmp_path)), "no_raw_ip")
    assert "privacy.keep_ip_prefix is false" in findings


def test_raw_ip_in_spool_and_log_files_fails(store: Store, clean: Config, tmp_path: Path) -> None:
    spool = clean.data_dir / "spool"
    spool.mkdir(parents=True)
    (spool / "w0-1.seg").write_bytes(b'\x00\x00\x00\x10....{"ip":"192.0.2.45"}')
    log = tmp_path / "server.log"
    log.write_text("firstparty is serving on http://127.0.0.1:8000/\nhit from 2001:db8::77\n")
    status, findings = check(audit(store, clean, [log]), "no_raw_ip")
    assert status == "fail"
    assert "spool file w0-1.seg" in findings
    assert "log file server.log" in findings
    assert "127.0" not in findings  # the listen address is not a visitor's


def test_files_created_and_deleted_meanwhile_do_not_stop_the_file_scan(
    store: Store, clean: Config
) -> None:
    # A live engine creates and removes temporary part directories all the time (and the
    # writer deletes stored segments): a walk that meets one vanishing goes on.
    parts = clean.data_dir / "clickhouse" / "store"
    parts.mkdir(parents=True)
    (clean.data_dir / "server.log").write_text("hit from 192.0.2.45\n")
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            part = parts / f"tmp_insert_{i}"
            (part / "a" / "b").mkdir(parents=True)
            (part / "a" / "b" / "x.log").write_text("x")
            shutil.rmtree(part)
            i += 1

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        ctx = Context(store, clean, NOW)
        for _ in range(300):
            found = {(kind, path.name) for kind, path, _text in scans.files(ctx)}
            assert ("log", "server.log") in found
    finally:
        stop.set()
        churner.join()


def test_unexpired_old_salt_fails(store: Store, clean: Config) -> None:
    old = NOW.date() - dt.timedelta(days=3)
    store.command(
        "INSERT INTO salts (day, salt) VALUES ({d:Date}, {s:String})",
        {"d": old, "s": secrets.token_hex(16)},
    )
    status, findings = check(audit(store, clean), "salts")
    assert status == "fail"
    assert f"salt of {old.isoformat()} still exists (3 days old)" in findings


def test_salt_derived_from_its_date_or_leaked_to_a_log_fails(
    store: Store, clean: Config, tmp_path: Path
) -> None:
    yesterday = NOW.date() - dt.timedelta(days=1)
    weak = hashlib.sha256(yesterday.isoformat().encode()).hexdigest()[:32]
    store.command(
        "INSERT INTO salts (day, salt) VALUES ({d:Date}, {s:String})", {"d": yesterday, "s": weak}
    )
    today_salt = store.query(
        "SELECT salt FROM salts WHERE day = {d:Date}", {"d": NOW.date()}
    ).scalar()
    log = tmp_path / "debug.log"
    log.write_text(f"salt loaded: {today_salt}\n")
    result = audit(store, clean, [log])
    status, findings = check(result, "salts")
    assert status == "fail"
    assert f"salt of {yesterday.isoformat()} is derivable from its date" in findings
    assert f"salt of {NOW.date().isoformat()} appears in {log}" in findings
    assert today_salt not in report.to_json(result)


def test_query_string_with_an_email_fails(store: Store, clean: Config) -> None:
    plant(store, pathname="/signup?email=jane.doe@example.org")
    plant(store, props={"order": "/orders/98765432"})
    plant(store, referrer="https://mail.example.net/inbox?token=abc", utm_content="session")
    status, findings = check(audit(store, clean), "url_hygiene")
    assert status == "fail"
    assert "email in events.pathname" in findings
    assert "query string in events.pathname" in findings
    assert "query string in events.referrer" in findings
    assert "id number in events.props" in findings
    assert "jane.doe" not in findings


def test_allow_listed_campaign_keys_pass(store: Store, clean: Config) -> None:
    plant(store, pathname="/landing?utm_source=news&ref=partner")
    assert check(audit(store, clean), "url_hygiene")[0] == "pass"


def test_table_without_ttl_and_ttl_not_following_config_fail(
    store: Store, clean: Config, tmp_path: Path
) -> None:
    store.command(
        "CREATE TABLE planted_rollup (site_id String, day Date, visitors UInt64) "
        "ENGINE = SummingMergeTree ORDER BY (site_id, day)"
    )
    store.command("INSERT INTO planted_rollup VALUES ('example.com', today(), 3)")
    store.command("ALTER TABLE sessions REMOVE TTL")
    status, findings = check(audit(store, clean), "inventory")
    assert status == "fail"
    assert "table planted_rollup holds usage data but has no TTL" in findings
    assert "table sessions holds usage data but has no TTL" in findings

    seven = config_for(tmp_path, "[privacy]\nraw_retention_days = 7\n")
    status, findings = check(audit(store, seven), "inventory")
    assert "table events: TTL in force is 30 days, the config asks for" in findings
    cnil = next(c for c in audit(store, seven).checks if c.id == "cnil_exemption")
    assert cnil.status == "fail"


def test_rows_older_than_the_retention_fail(store: Store, clean: Config) -> None:
    # An expired row the TTL has not removed yet (as between background merges): inserted
    # while the TTL was longer, then the TTL restored without materializing it.
    store.command("ALTER TABLE events MODIFY TTL toDateTime(timestamp) + INTERVAL 400 DAY")
    plant(store, timestamp=NOW - dt.timedelta(days=45))
    store.command(
        "ALTER TABLE events MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY",
        settings={"materialize_ttl_after_modify": 0},
    )
    assert store.query("SELECT count() FROM events").scalar() == 61
    status, findings = check(audit(store, clean), "inventory")
    assert status == "fail"
    assert "table events: oldest row is 45 days old, beyond the 30-day retention" in findings


def test_user_agent_or_device_uuid_in_a_column_fails(store: Store, clean: Config) -> None:
    plant(store, utm_term="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36")
    plant(store, props={"device": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"})
    plant(store, props={"idfa": "AEBE52E7", "user_id": ":id"})  # redacted values are fine
    status, findings = check(audit(store, clean), "no_raw_identifiers")
    assert status == "fail"
    assert "events.props has keys named like identifiers: idfa" in findings
    assert "user_id" not in findings
    assert "user-agent string in events.utm_term" in findings
    assert "UUID-like identifier in events.props" in findings


def test_k_anonymity_and_reidentification_figure(store: Store, tmp_path: Path) -> None:
    realistic_events(store, count=8)
    status, findings = check(audit(store, config_for(tmp_path)), "k_anonymity")
    assert status == "review" and "privacy.min_visitors is 1" in findings
    result = audit(store, config_for(tmp_path, "[privacy]\nmin_visitors = 5\n"))
    k = next(c for c in result.checks if c.id == "k_anonymity")
    assert k.status == "pass"
    risk = k.evidence["reidentification"]
    sessions = store.query("SELECT uniqExact(session_id) FROM events").scalar()
    assert risk["sessions"] == sessions
    # 4 user-agent profiles x 3 countries over 8 events: computed by hand from AGENTS.
    assert 0 < risk["share_unique"] <= 1
    assert k.evidence["suppression_self_test"]["smallest_shown"] >= 5


def test_cnil_criteria_follow_the_configuration(
    store: Store, clean: Config, tmp_path: Path
) -> None:
    result = audit(store, clean)
    cnil = next(c for c in result.checks if c.id == "cnil_exemption")
    assert cnil.status == "review"
    marks = {c["criterion"]: c["status"] for c in cnil.evidence["criteria"]}
    assert marks["geolocation no finer than the city"] == "met"
    assert marks["purpose strictly limited to audience measurement"] == "needs a human decision"
    assert marks["opt-out available and honoured"] == "met"
    no_gpc = config_for(tmp_path, "[privacy]\nhonour_gpc = false\n")
    cnil = next(c for c in audit(store, no_gpc).checks if c.id == "cnil_exemption")
    marks = {c["criterion"]: c["status"] for c in cnil.evidence["criteria"]}
    assert marks["opt-out available and honoured"] == "needs a human decision"


def test_digest_is_stable_and_diff_names_what_changed(store: Store, clean: Config) -> None:
    first = audit(store, clean)
    second = audit(store, clean)
    assert first.digest == second.digest
    previous = json.loads(report.to_json(first))
    assert report.diff(previous, second)["same_digest"] is True
    plant(store, utm_campaign="from 192.0.2.99")
    third = audit(store, clean)
    changes = report.diff(previous, third)
    assert changes["same_digest"] is False
    assert {"check": "no_raw_ip", "change": "status", "from": "pass", "to": "fail"} in changes[
        "changes"
    ]


def test_cli_audit_json_html_exit_status_and_saved_baseline(
    store: Store, clean: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "firstparty.toml"
    config_file.write_text(f'[[site]]\ndomain = "example.com"\n[server]\ndata_dir = "{tmp_path}"\n')
    base = ["--config", str(config_file), "--store", store.url, "audit"]
    html_file = tmp_path / "audit.html"
    assert main([*base, "--json", "--html", str(html_file)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] in ("pass", "review") and first["failed"] == []
    assert "Privacy audit" in html_file.read_text()
    assert (tmp_path / "audit" / "last-report.json").exists()

    plant(store, pathname="/u/jane@example.org")
    assert main([*base, "--json"]) == 1
    second = json.loads(capsys.readouterr().out)
    assert second["failed"] == ["url_hygiene"]
    assert second["diff"]["previous"]["digest"] == first["digest"]
    assert any(c["check"] == "url_hygiene" for c in second["diff"]["changes"])
    assert main(base) == 1
    text = capsys.readouterr().out
    assert "[  FAIL] URL, referrer and property hygiene" in text


def test_previous_salt_is_allowed_until_its_sessions_close(store: Store, clean: Config) -> None:
    yesterday = NOW.date() - dt.timedelta(days=1)
    store.command(
        "INSERT INTO salts (day, salt) VALUES ({d:Date}, {s:String})",
        {"d": yesterday, "s": secrets.token_hex(16)},
    )
    midnight = dt.datetime.combine(NOW.date(), dt.time(0), dt.UTC)
    early = report.run(Context(store, clean, midnight + dt.timedelta(minutes=20)))
    assert check(early, "salts")[0] == "pass"
    late = report.run(Context(store, clean, midnight + dt.timedelta(hours=6)))
    status, findings = check(late, "salts")
    assert status == "review"
    assert f"yesterday's salt ({yesterday.isoformat()}) still exists" in findings


def test_cli_refuses_a_store_without_the_schema(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not store.url.startswith("chdb://"):
        pytest.skip("an empty embedded database is enough to show it")
    empty = store.url.rsplit("=", 1)[0] + "=t_empty_audit"
    try:
        assert main(["--store", empty, "audit"]) == 2
        assert "holds no firstparty schema yet" in capsys.readouterr().err
    finally:
        store.command("DROP DATABASE IF EXISTS t_empty_audit")
