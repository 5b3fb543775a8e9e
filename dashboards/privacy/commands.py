"""CLI commands for the privacy team: `audit`, `dsr`, `privacy-notice`, `records`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from firstparty.cli import command
from firstparty.config import Config
from store.base import Store


def _has_schema(store: Store) -> bool:
    from store import schema as schema_mod

    if schema_mod.current_version(store):
        return True
    print(
        f"error: {store.url} holds no firstparty schema yet: start `firstparty serve` once "
        "(or check --store / FIRSTPARTY_STORE)",
        file=sys.stderr,
    )
    return False


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
    from dashboards.privacy.model import Context, config_text
    from store import connect

    store = connect(config.store)
    try:
        if not _has_schema(store):
            return 2
        ctx = Context(
            store=store,
            config=config,
            now=dt.datetime.now(dt.UTC),
            log_files=[Path(p) for p in args.log],
            config_text=config_text(config),
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


def _dsr_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("export", "export every row still linked to a device ID (GDPR art. 15 and 20)"),
        ("delete", "physically delete every row still linked to a device ID (GDPR art. 17)"),
    ):
        child = sub.add_parser(name, help=text, description=text)
        child.add_argument("--site", required=True, help="the site's domain, as configured")
        who = child.add_mutually_exclusive_group(required=True)
        who.add_argument("--device-id", help="the device ID the app sent")
        who.add_argument(
            "--device-id-stdin",
            action="store_true",
            help="read the device ID from standard input (keeps it out of shell history)",
        )
        if name == "export":
            child.add_argument("--format", choices=["json", "csv"], default="json")
            child.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    explain = sub.add_parser(
        "explain",
        help="print the statement for visitors without a device ID (cookie-less)",
        description="print the statement the DPO can send to a cookie-less visitor",
    )
    explain.add_argument(
        "--date", type=dt.date.fromisoformat, help="the visit date the request is about"
    )


def _device_id(args: argparse.Namespace) -> str:
    value = sys.stdin.readline().strip() if args.device_id_stdin else str(args.device_id).strip()
    if not value:
        raise ValueError("the device ID is empty")
    return value


def _keep_receipt(config: Config, receipt: dict[str, object]) -> Path:
    import json

    folder = config.data_dir / "dsr"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "receipts.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(receipt) + "\n")
    return path


@command("dsr", "data-subject requests: export, delete, explain", _dsr_args)
def cmd_dsr(args: argparse.Namespace, config: Config) -> int:
    from ingest import dsr
    from store import connect

    now = dt.datetime.now(dt.UTC)
    store = connect(config.store)
    try:
        if not _has_schema(store):
            return 2
        if args.action == "explain":
            sys.stdout.write(dsr.explain(store, config, now, args.date))
            return 0
        if config.site(args.site) is None:
            print(f"error: {args.site} is not a configured site", file=sys.stderr)
            return 2
        try:
            device_id = _device_id(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ids = dsr.device_ids_hashes(store, args.site, device_id)
        receipt = dsr.new_receipt(args.action, args.site, len(ids), now)
        if args.action == "export":
            rows = dsr.find(store, args.site, ids)
            receipt.rows = {t: len(r) for t, r in rows.items()}
            text = (
                dsr.export_json(args.site, rows, receipt)
                if args.format == "json"
                else dsr.export_csv(rows)
            )
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
        else:
            found, remaining, rebuilt, mutations = dsr.delete(
                store, args.site, ids, now, config.privacy.raw_retention_days
            )
            receipt.rows, receipt.remaining, receipt.rebuilt = found, remaining, rebuilt
            receipt.mutations = mutations
            receipt.notes.append(
                "the rows were removed by ALTER TABLE ... DELETE (data parts rewritten, "
                "mutations completed); superseded parts are erased by the engine within its "
                "old_parts_lifetime (8 minutes by default)"
            )
            if not ids:
                receipt.notes.append("no device key exists any more: nothing can be linked")
        kept = _keep_receipt(config, receipt.to_dict())
        out = sys.stderr if args.action == "export" and not args.output else sys.stdout
        out.write(receipt.text() + f"Receipt kept in {kept}\n")
        return 1 if any(receipt.remaining.values()) else 0
    finally:
        store.close()


def _notice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", choices=["en", "fr", "nl"], default="en", help="default: en")
    p.add_argument("--html", action="store_true", help="HTML instead of Markdown")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


@command(
    "privacy-notice",
    "print the analytics section of the privacy policy, from the live configuration",
    _notice_args,
)
def cmd_privacy_notice(args: argparse.Namespace, config: Config) -> int:
    from dashboards.privacy import document, notice

    blocks = notice.notice(config, args.lang)
    text = (
        document.to_html(blocks, notice.TITLES[args.lang], args.lang)
        if args.html
        else document.markdown(blocks)
    )
    _emit(text, args.output)
    return 0


def _records_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", action="store_true", help="HTML instead of Markdown")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--controller", help="the controller's name (e.g. your company)")
    p.add_argument("--contact", help="the controller's contact details")
    p.add_argument("--dpo", help="the data protection officer's contact")


@command(
    "records",
    "print the GDPR article 30 record of processing for the analytics, from the configuration",
    _records_args,
)
def cmd_records(args: argparse.Namespace, config: Config) -> int:
    from dashboards.privacy import document, records

    controller = records.Controller(
        name=args.controller or records.TO_COMPLETE,
        contact=args.contact or records.TO_COMPLETE,
        dpo=args.dpo or records.TO_COMPLETE,
    )
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    blocks = records.record(config, controller, when)
    text = (
        document.to_html(blocks, "Record of processing activities", "en")
        if args.html
        else document.markdown(blocks)
    )
    _emit(text, args.output)
    return 0
