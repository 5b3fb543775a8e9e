"""CLI commands for the privacy team: `audit`, `dsr`, `privacy-notice`, `records`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from firstparty.cli import command
from firstparty.config import Config


def _config_text(config: Config) -> str:
    path = Path(config.source)
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError:
        return ""


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--html", metavar="FILE", help="also write the report as an HTML page")
    p.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    p.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="FILE",
        help="a log file to scan as well (repeat; *.log under the data dir are always scanned)",
    )
    p.add_argument(
        "--no-save",
        action="store_true",
        help="do not keep this report as the baseline for the next run's diff",
    )


@command(
    "audit",
    "audit anonymisation, retention and salts against the live store (exit 1 on a failed check)",
    _audit_args,
)
def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    from dashboards.privacy import report as report_mod
    from dashboards.privacy.model import Context
    from store import connect

    store = connect(config.store)
    try:
        ctx = Context(
            store=store,
            config=config,
            now=dt.datetime.now(dt.UTC),
            log_files=[Path(p) for p in args.log],
            config_text=_config_text(config),
        )
        report = report_mod.run(ctx)
    finally:
        store.close()
    report.diff = report_mod.diff(report_mod.load_previous(config.data_dir), report)
    if args.html:
        Path(args.html).write_text(report_mod.to_html(report), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(report_mod.to_markdown(report), encoding="utf-8")
    if not args.no_save:
        report_mod.save(report, config.data_dir)
    if args.json:
        sys.stdout.write(report_mod.to_json(report) + "\n")
    else:
        sys.stdout.write(report_mod.to_text(report))
    return 1 if report.failed else 0
