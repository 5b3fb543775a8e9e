"""Data-subject requests: export and physical deletion of a device's rows under every key still
in existence (events, sessions and the hourly rollups), and the cookie-less statement."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest

from firstparty.cli import main
from firstparty.config import parse
from ingest import dsr
from ingest.batch import to_arrow
from ingest.devices import DeviceKeys, device_hash
from ingest.event import Event
from ingest.salts import SaltKeeper
from store.base import Store

NOW = dt.datetime.now(dt.UTC).replace(minute=30, second=0, microsecond=0)
YESTERDAY = NOW - dt.timedelta(days=1)
OLD = NOW - dt.timedelta(days=3)
DEVICE = "app-install-7f3e"


def _event(site: str, at: dt.datetime, visitor: int, kind: str, path: str) -> Event:
    return Event(
        site_id=site,
        timestamp=at,
        name="pageview",
        visitor_id=visitor,
        visitor_kind=kind,
        session_id=(visitor ^ int(at.timestamp()) // 3600) >> 1,
        hostname=site,
        pathname=path,
        country_code="BE",
        browser="Chrome",
        browser_version="131",
        os="Android",
        device="mobile",
    )


@pytest.fixture
def linked(store: Store) -> dict[str, int]:
    """Rows of DEVICE under a destroyed key, yesterday's key and today's key, plus others."""
    keys = DeviceKeys(store)
    old = device_hash(keys.key(OLD), "example.com", DEVICE)
    keys.destroy_expired(YESTERDAY.replace(hour=12))  # OLD's key is gone: unlinkable now
    before = device_hash(keys.key(YESTERDAY), "example.com", DEVICE)
    today = device_hash(keys.key(NOW), "example.com", DEVICE)
    other_device = device_hash(keys.key(NOW), "example.com", "someone-else")
    other_site = device_hash(keys.key(NOW), "shop.example.org", DEVICE)
    events = [
        _event("example.com", OLD, old, "device", "/old"),
        _event("example.com", YESTERDAY, before, "device", "/a"),
        _event("example.com", YESTERDAY + dt.timedelta(minutes=5), before, "device", "/b"),
        _event("example.com", NOW - dt.timedelta(minutes=20), today, "device", "/c"),
        _event("example.com", NOW - dt.timedelta(minutes=10), today, "device", "/d"),
        _event("example.com", NOW - dt.timedelta(minutes=10), other_device, "device", "/e"),
        _event("example.com", NOW - dt.timedelta(minutes=10), today, "cookieless", "/f"),
        _event("shop.example.org", NOW - dt.timedelta(minutes=10), other_site, "device", "/g"),
    ]
    store.insert("events", to_arrow(events))
    return {"old": old, "yesterday": before, "today": today}


def test_hashes_under_every_existing_key_are_found(store: Store, linked: dict[str, int]) -> None:
    ids = dsr.device_ids_hashes(store, "example.com", DEVICE)
    assert sorted(ids) == sorted([linked["yesterday"], linked["today"]])
    rows = dsr.find(store, "example.com", ids)
    assert sorted(r["pathname"] for r in rows["events"]) == ["/a", "/b", "/c", "/d"]
    assert len(rows["sessions"]) == 2
    assert {r["entry_page"] for r in rows["sessions"]} == {"/a", "/c"}


def _rollup_pageviews(store: Store, site: str) -> dict[dt.datetime, int]:
    rows = store.query(
        "SELECT hour, sum(pageviews) AS n FROM rollup_hourly WHERE site_id = {s:String} "
        "AND dimension = '' GROUP BY hour ORDER BY hour",
        {"s": site},
    ).tuples()
    return {h: int(n) for h, n in rows}


def _event_pageviews(store: Store, site: str) -> dict[dt.datetime, int]:
    rows = store.query(
        "SELECT toStartOfHour(timestamp) AS hour, count() AS n FROM events "
        "WHERE site_id = {s:String} GROUP BY hour ORDER BY hour",
        {"s": site},
    ).tuples()
    return {h.replace(tzinfo=None) if hasattr(h, "tzinfo") else h: int(n) for h, n in rows}


def test_delete_is_physical_and_covers_sessions_and_rollups(
    store: Store, linked: dict[str, int]
) -> None:
    ids = dsr.device_ids_hashes(store, "example.com", DEVICE)
    assert sum(_rollup_pageviews(store, "example.com").values()) == 7
    found, remaining, rebuilt, mutations = dsr.delete(store, "example.com", ids)
    assert {t: n for t, n in found.items() if n} == {"events": 4, "sessions": 2}
    assert set(remaining.values()) == {0}
    assert rebuilt["rollup_hourly"] == 2
    assert {m.split(":")[0] for m in mutations} >= {"events", "sessions", "rollup_hourly"}

    # Physically gone: not even a masked row remains in the data parts.
    unmasked = store.query(
        "SELECT count() FROM events WHERE visitor_id IN {ids:Array(UInt64)} "
        "AND visitor_kind = 'device'",
        {"ids": ids},
        settings={"apply_deleted_mask": 0},
    ).scalar()
    assert unmasked == 0
    paths = sorted(store.query("SELECT pathname FROM events").column("pathname"))
    assert paths == ["/e", "/f", "/g", "/old"]  # others, and the unlinkable old row
    # The rollups now agree with the remaining events, hour by hour.
    rollup = _rollup_pageviews(store, "example.com")
    assert sum(rollup.values()) == 3
    assert {str(h)[:13] for h in rollup} == {
        str(h)[:13] for h in _event_pageviews(store, "example.com")
    }
    assert sum(_rollup_pageviews(store, "shop.example.org").values()) == 1
    assert not any(dsr.find(store, "example.com", ids).values())


def _cli(store: Store, tmp_path: Path, *args: str) -> int:
    config = tmp_path / "firstparty.toml"
    config.write_text(
        '[[site]]\ndomain = "example.com"\n[[site]]\ndomain = "shop.example.org"\n'
        f'[server]\ndata_dir = "{tmp_path}"\n'
    )
    return main(["--config", str(config), "--store", store.url, *args])


def test_cli_export_json_and_csv_then_delete_with_receipt(
    store: Store, linked: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    who = ["--site", "example.com", "--device-id", DEVICE]
    assert _cli(store, tmp_path, "dsr", "export", *who) == 0
    captured = capsys.readouterr()
    exported = json.loads(captured.out)
    assert exported["keys_in_existence"] == 2
    assert len(exported["tables"]["events"]) == 4
    assert DEVICE not in captured.out and DEVICE not in captured.err
    assert "events: 4 row(s) found" in captured.err

    out = tmp_path / "export.csv"
    assert (
        _cli(store, tmp_path, "dsr", "export", *who, "--format", "csv", "--output", str(out)) == 0
    )
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["table"] for r in table].count("events") == 4
    assert [r["table"] for r in table].count("sessions") == 2
    capsys.readouterr()

    assert _cli(store, tmp_path, "dsr", "delete", *who) == 0
    receipt = capsys.readouterr().out
    assert "events: 4 row(s) found, 0 remaining after deletion" in receipt
    assert "sessions: 2 row(s) found, 0 remaining after deletion" in receipt
    assert "rollup_hourly: 2 aggregate bucket(s) rebuilt" in receipt
    kept = (tmp_path / "dsr" / "receipts.jsonl").read_text()
    assert DEVICE not in kept and len(kept.splitlines()) == 3

    assert _cli(store, tmp_path, "dsr", "export", *who) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["events"] == []
    assert _cli(store, tmp_path, "dsr", "export", "--site", "nope.example", "--device-id", "x") == 2


def test_explain_states_when_the_salt_was_destroyed(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    salts = SaltKeeper(store)
    salts.salt(OLD.date())
    destroyed_at = OLD.replace(hour=0, minute=0) + dt.timedelta(days=1, minutes=45)
    salts.destroy_expired(destroyed_at)
    salts.salt(NOW.date())
    config = parse("[privacy]\nraw_retention_days = 14\n", env={})
    text = dsr.explain(store, config, NOW, OLD.date())
    assert f"The salt for {OLD.date().isoformat()} was destroyed at " in text
    assert destroyed_at.strftime("%Y-%m-%d %H:%M UTC") in text
    assert "deleted after 14 days" in text
    assert "Salts existing now: 1" in text
    assert "25 months" in text
    assert "still exists" in dsr.explain(store, config, NOW, NOW.date())
    assert _cli(store, tmp_path, "dsr", "explain", "--date", OLD.date().isoformat()) == 0
    assert "was destroyed at" in capsys.readouterr().out


def test_delete_drops_finalized_visit_days_for_refolding(store: Store) -> None:
    rollups = pytest.importorskip("dashboards.rollups")
    keys = DeviceKeys(store)
    at = (NOW - dt.timedelta(days=3)).replace(hour=10)
    mine = device_hash(keys.key(at), "example.com", DEVICE)
    other = device_hash(keys.key(at), "example.com", "someone-else")
    store.insert(
        "events",
        to_arrow(
            [
                _event("example.com", at, mine, "device", "/a"),
                _event("example.com", at + dt.timedelta(minutes=1), mine, "device", "/b"),
                _event("example.com", at, other, "device", "/c"),
            ]
        ),
    )
    day = at.date()
    assert rollups.finalize(store, "example.com", day, day + dt.timedelta(days=1), NOW, 30)

    def visits() -> int:
        return int(
            store.query(
                "SELECT sum(visits) FROM visits_daily FINAL WHERE site_id = 'example.com' "
                "AND dimension = '' AND day = {d:Date}",
                {"d": day},
            ).scalar()
            or 0
        )

    def paired() -> int:  # the same visits per pair of attributes
        return int(
            store.query(
                "SELECT sum(visits) FROM visit_pairs_daily FINAL WHERE site_id = 'example.com' "
                "AND filter = 'country' AND dimension = 'browser' AND day = {d:Date}",
                {"d": day},
            ).scalar()
            or 0
        )

    assert visits() == 2 and paired() == 2
    ids = dsr.device_ids_hashes(store, "example.com", DEVICE)
    found, remaining, rebuilt, _m = dsr.delete(store, "example.com", ids, NOW, 30)
    assert rebuilt["visits_daily"] == 1 and rebuilt["visit_pairs_daily"] == 1
    if "visit_facts" in found:  # the query layer's per-visit rows hold the visitor hash too
        assert found["visit_facts"] == 1 and remaining["visit_facts"] == 0
    assert visits() == 0 and paired() == 0  # dropped with their markers...
    assert rollups.finalize(store, "example.com", day, day + dt.timedelta(days=1), NOW, 30)
    assert visits() == 1 and paired() == 1  # ...and folded again from the remaining visit only
