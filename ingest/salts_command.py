"""`firstparty salts`: the salt and device-key lifecycle (times only), and destroying what has
expired. For operators (run it from cron on a quiet site) and for the privacy team."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from firstparty.cli import command, open_store
from firstparty.config import Config


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--destroy-expired",
        action="store_true",
        help="destroy salts and device keys whose period and session timeout have passed",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("salts", "show when salts and device keys were created/destroyed (never values)", _args)
def cmd_salts(args: argparse.Namespace, config: Config) -> int:
    from ingest.devices import DeviceKeys
    from ingest.salts import SaltKeeper

    store = open_store(config)
    try:
        now = dt.datetime.now(dt.UTC)
        grace = dt.timedelta(minutes=config.privacy.session_timeout_minutes)
        destroyed: list[str] = []
        if args.destroy_expired:
            for ring in (
                SaltKeeper(store, grace),
                DeviceKeys(store, config.privacy.visitor_id_rotation, grace),
            ):
                destroyed += [p.isoformat() for p in ring.destroy_expired(now)]
        existing = store.query(
            "SELECT * FROM (SELECT 'visitor_salt' AS kind, 'daily' AS rotation, day AS period, "
            "min(created_at) AS created_at FROM salts GROUP BY day UNION ALL "
            "SELECT 'device_key' AS kind, rotation, period, min(created_at) AS created_at "
            "FROM device_keys GROUP BY rotation, period) ORDER BY kind, period"
        ).dicts()
        log = store.query(
            "SELECT kind, rotation, period, action, min(at) AS at FROM salt_log "
            "GROUP BY kind, rotation, period, action ORDER BY at DESC LIMIT 20"
        ).dicts()
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {"existing": existing, "recent_log": log, "destroyed_now": destroyed},
                default=str,
                indent=2,
            )
        )
        return 0
    print(f"Keys in the store now ({len(existing)}; values are never shown):")
    for row in existing:
        print(
            f"  {row['kind']:<13} {row['rotation']:<9} {row['period']}  created {row['created_at']}"
        )
    if destroyed:
        print(f"Destroyed now: {', '.join(destroyed)}")
    print("Recent lifecycle (salt_log):")
    for row in log:
        print(f"  {row['at']}  {row['kind']:<13} {row['period']}  {row['action']}")
    return 0
