"""The `firstparty demo-data` command (kept apart from ingest.demo so the CLI starts fast)."""

from __future__ import annotations

import argparse
import sys

from firstparty.cli import command, open_store
from firstparty.config import Config


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", required=True, help="a configured site (see `firstparty sites`)")
    p.add_argument("--days", type=int, default=30, help="days of history ending today (default 30)")
    p.add_argument(
        "--events", type=int, default=20_000, help="about how many events (default 20000)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed, for repeatable data")


@command("demo-data", "generate realistic synthetic traffic through the real pipeline", _args)
def cmd_demo_data(args: argparse.Namespace, config: Config) -> int:
    if config.site(args.site) is None:
        print(
            f"error: {args.site} is not a configured site (see `firstparty sites`)", file=sys.stderr
        )
        return 2
    if not 1 <= args.days <= 400 or not 1 <= args.events <= 50_000_000:
        print("error: --days must be 1-400 and --events 1-50000000", file=sys.stderr)
        return 2
    from ingest.demo import generate  # the pipeline loads UA and GeoIP data: only when run

    store = open_store(config)
    try:
        stored, dropped = generate(store, config, args.site, args.days, args.events, seed=args.seed)
    finally:
        store.close()
    note = f" ({sum(dropped.values())} dropped by the pipeline)" if dropped else ""
    print(f"Stored {stored:,} demo events for {args.site} over {args.days} days{note}.")
    return 0
