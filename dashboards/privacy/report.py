"""Run every audit check, digest the result, compare with the previous run, render it.

The digest covers what the checks found (statuses, evidence, findings), not when they ran, so
two runs over an unchanged store and config have the same digest. The previous report is kept
in `<data_dir>/audit/last-report.json`; each run's digest is appended to `history.jsonl`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards.privacy import inventory, policychecks, saltcheck, scans
from dashboards.privacy.model import Check, Context
from firstparty import __version__

CHECKS: list[tuple[str, Callable[[Context], Check]]] = [
    ("inventory", inventory.inventory),
    ("no_raw_ip", scans.no_raw_ip),
    ("no_raw_identifiers", scans.no_raw_identifiers),
    ("url_hygiene", scans.url_hygiene),
    ("salts", saltcheck.salts),
    ("k_anonymity", policychecks.k_anonymity),
]


@dataclass
class Report:
    generated_at: str
    store: str
    config_source: str
    checks: list[Check]
    diff: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def status(self) -> str:
        if self.failed:
            return "fail"
        return "review" if any(c.status == "review" for c in self.checks) else "pass"

    def comparable(self) -> dict[str, Any]:
        return {"checks": [c.to_dict() for c in self.checks]}

    @property
    def digest(self) -> str:
        text = json.dumps(self.comparable(), sort_keys=True, default=str, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "firstparty_version": __version__,
            "generated_at": self.generated_at,
            "store": self.store,
            "config": self.config_source,
            "status": self.status,
            "failed": [c.id for c in self.failed],
            "digest": self.digest,
            "diff": self.diff,
            "checks": [c.to_dict() for c in self.checks],
        }


def run(ctx: Context) -> Report:
    checks: list[Check] = []
    for check_id, fn in CHECKS:
        try:
            checks.append(fn(ctx))
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, not a crash
            checks.append(
                Check(
                    id=check_id,
                    title=check_id,
                    status="fail",
                    verified="(the check could not run)",
                    method="",
                    evidence={"error": f"{type(exc).__name__}: {str(exc)[:300]}"},
                    findings=[f"check {check_id} could not run: {str(exc)[:200]}"],
                )
            )
    inv = next(c for c in checks if c.id == "inventory")
    retention_ok = not any("TTL" in f or "retention" in f for f in inv.findings)
    checks.append(policychecks.cnil(ctx, retention_ok))
    return Report(
        generated_at=ctx.now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        store=ctx.store.url,
        config_source=ctx.config.source,
        checks=checks,
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: value}


def diff(previous: dict[str, Any] | None, current: Report) -> dict[str, Any]:
    """What changed since the previous report: statuses, findings and evidence values."""
    if previous is None:
        return {"previous": None}
    before = {c["id"]: c for c in previous.get("checks", [])}
    changes: list[dict[str, Any]] = []
    for check in current.checks:
        old = before.pop(check.id, None)
        if old is None:
            changes.append({"check": check.id, "change": "new check", "status": check.status})
            continue
        if old["status"] != check.status:
            changes.append(
                {"check": check.id, "change": "status", "from": old["status"], "to": check.status}
            )
        new_f, old_f = set(check.findings), set(old.get("findings", []))
        if new_f - old_f:
            changes.append(
                {"check": check.id, "change": "new findings", "items": sorted(new_f - old_f)}
            )
        if old_f - new_f:
            changes.append(
                {"check": check.id, "change": "resolved findings", "items": sorted(old_f - new_f)}
            )
        a, b = _flatten(old.get("evidence", {})), _flatten(check.evidence)
        moved = {
            k: {"from": a.get(k), "to": b.get(k)}
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        }
        if moved:
            changes.append({"check": check.id, "change": "evidence", "values": moved})
    for check_id in before:
        changes.append({"check": check_id, "change": "check removed"})
    return {
        "previous": {
            "generated_at": previous.get("generated_at"),
            "digest": previous.get("digest"),
            "status": previous.get("status"),
        },
        "same_digest": previous.get("digest") == current.digest,
        "changes": changes,
    }


def audit_dir(data_dir: Path) -> Path:
    return data_dir / "audit"


def load_previous(data_dir: Path) -> dict[str, Any] | None:
    path = audit_dir(data_dir) / "last-report.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def save(report: Report, data_dir: Path) -> Path:
    folder = audit_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "last-report.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    with open(folder / "history.jsonl", "a", encoding="utf-8") as f:
        line = {
            "generated_at": report.generated_at,
            "digest": report.digest,
            "status": report.status,
        }
        f.write(json.dumps(line) + "\n")
    return path


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


_BADGE = {"pass": "PASS", "fail": "FAIL", "review": "REVIEW"}


def to_text(report: Report) -> str:
    """The terminal summary: one line per check, then each finding."""
    lines = [
        f"firstparty privacy audit - {report.generated_at}",
        f"store {report.store}, config {report.config_source}",
        "",
    ]
    for check in report.checks:
        lines.append(f"[{_BADGE[check.status]:>6}] {check.title}")
        lines += [f"         - {f}" for f in check.findings]
    lines += ["", f"Result: {report.status.upper()}   digest {report.digest}"]
    prev = report.diff.get("previous")
    if prev:
        same = "unchanged" if report.diff.get("same_digest") else "changed"
        lines.append(
            f"Since the previous audit ({prev['generated_at']}): {same}, "
            f"{len(report.diff.get('changes', []))} change(s)"
        )
    return "\n".join(lines) + "\n"


def _evidence_html(value: Any) -> str:
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_evidence_html(v)}</td></tr>"
            for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{_evidence_html(v.get(k, ''))}</td>" for k in keys) + "</tr>"
                for v in value
            )
            return f"<table><tr>{head}</tr>{body}</table>"
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}
.check{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.pass .badge{background:#1b7f3b}.fail .badge{background:#b3261e}.review .badge{background:#9a6700}
.badge{color:#fff;border-radius:4px;padding:.1rem .5rem;font-size:.8rem;font-weight:600}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}
th,td{border:1px solid #e3e3e3;padding:.15rem .4rem;text-align:left;vertical-align:top}
.findings li{color:#b3261e} details summary{cursor:pointer;color:#555}
"""


def css() -> str:
    return _CSS


def to_html(report: Report, stylesheet: str = "") -> str:
    """A standalone page (inline style), or one that links `stylesheet` (for a strict CSP)."""
    style = (
        f"<link rel='stylesheet' href='{html.escape(stylesheet)}'>"
        if stylesheet
        else f"<style>{_CSS}</style>"
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Privacy audit</title>",
        f"{style}</head><body>",
        "<h1>Privacy audit</h1>",
        f"<p>Generated {html.escape(report.generated_at)} on store "
        f"<code>{html.escape(report.store)}</code> with config "
        f"<code>{html.escape(report.config_source)}</code>.</p>",
        f"<p class='{report.status}'>Result: <span class='badge'>{_BADGE[report.status]}</span> "
        f"&nbsp;digest <code>{report.digest}</code></p>",
    ]
    prev = report.diff.get("previous")
    if prev:
        same = "unchanged" if report.diff.get("same_digest") else "changed"
        parts.append(
            f"<p>Compared with the previous audit of {html.escape(str(prev['generated_at']))}: "
            f"{same}.</p><details><summary>Changes</summary>"
            f"{_evidence_html(report.diff.get('changes', []))}</details>"
        )
    for check in report.checks:
        findings = "".join(f"<li>{html.escape(f)}</li>" for f in check.findings)
        parts.append(
            f"<section class='check {check.status}' id='{check.id}'>"
            f"<h2><span class='badge'>{_BADGE[check.status]}</span> {html.escape(check.title)}</h2>"
            f"<p><b>Verified:</b> {html.escape(check.verified)}</p>"
            f"<p><b>How:</b> {html.escape(check.method)}</p>"
            + (f"<ul class='findings'>{findings}</ul>" if findings else "")
            + f"<details><summary>Evidence</summary>{_evidence_html(check.evidence)}</details>"
            "</section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(report: Report) -> str:
    lines = [
        "# Privacy audit",
        "",
        f"Generated {report.generated_at} on `{report.store}` with `{report.config_source}`.",
        f"Result: **{report.status.upper()}**, digest `{report.digest}`.",
        "",
    ]
    for check in report.checks:
        lines += [
            f"## {_BADGE[check.status]}: {check.title}",
            "",
            f"*Verified:* {check.verified}",
            "",
            f"*How:* {check.method}",
            "",
        ]
        lines += [f"- {f}" for f in check.findings]
        lines += ["", "```json", json.dumps(check.evidence, indent=1, default=str), "```", ""]
    return "\n".join(lines)
