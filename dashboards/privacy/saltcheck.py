"""Salts and keys: how many exist and where, their ages, their randomness, and that they never leak.

The check handles salt values in memory only; the report names days, lengths and entropy,
never a value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from dashboards.privacy import patterns
from dashboards.privacy.model import Check, Context, Status
from dashboards.privacy.scans import files

MIN_HEX_CHARS = 32  # 128 bits
MIN_ENTROPY = 3.0  # bits per hex character; random 32-char hex averages about 3.6


def date_derivations(day: dt.date) -> set[str]:
    """What a salt looks like when it is derived from its date (the Umami counter-example)."""
    texts = {
        day.isoformat(),
        day.strftime("%Y%m%d"),
        day.strftime("%d/%m/%Y"),
        day.strftime("%m/%d/%Y"),
        str(day.toordinal()),
        str(int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())),
    }
    found = set()
    for text in texts:
        data = text.encode()
        found.add(data.hex())
        for name in ("md5", "sha1", "sha256", "sha512", "blake2b", "blake2s"):
            found.add(hashlib.new(name, data).hexdigest())
    return found


def _derived(salt: str, day: dt.date) -> bool:
    s = salt.lower()
    return any(s == d or d.startswith(s) or s in d for d in date_derivations(day))


def salts(ctx: Context) -> Check:
    findings: list[str] = []
    evidence: dict[str, Any] = {}
    rows: list[tuple[dt.date, str]] = []
    table = ctx.table("salts")
    if table is None:
        findings.append("the salts table does not exist in this store")
    else:
        rows = [
            (d, str(s))
            for d, s in ctx.store.query("SELECT day, salt FROM salts ORDER BY day").tuples()
        ]
        parts = ctx.store.query(
            "SELECT countIf(active) AS active_parts, countIf(NOT active) AS outdated_parts "
            "FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'salts'"
        ).dicts()[0]
        evidence["where"] = f"table salts of database {ctx.database} ({ctx.store.url})"
        evidence["parts"] = {k: int(v) for k, v in parts.items()}
    yesterday = ctx.today - dt.timedelta(days=1)
    evidence["count"] = len(rows)
    evidence["days"] = [d.isoformat() for d, _ in rows]
    evidence["rule"] = "at most today's and yesterday's salt (UTC days) exist"
    per_salt: list[dict[str, Any]] = []
    seen: dict[str, dt.date] = {}
    for day, salt in rows:
        age = (ctx.today - day).days
        entropy = round(patterns.entropy_bits_per_char(salt.lower()), 2)
        per_salt.append(
            {"day": day.isoformat(), "age_days": age, "hex_chars": len(salt), "entropy": entropy}
        )
        if day < yesterday:
            findings.append(
                f"salt of {day.isoformat()} still exists ({age} days old): only the current and "
                "the previous day's salt may exist"
            )
        if not re.fullmatch(r"[0-9a-fA-F]+", salt) or len(salt) < MIN_HEX_CHARS:
            findings.append(f"salt of {day.isoformat()} is shorter than 128 bits of hex")
        elif entropy < MIN_ENTROPY:
            findings.append(f"salt of {day.isoformat()} has low entropy ({entropy} bits/char)")
        if _derived(salt, day):
            findings.append(f"salt of {day.isoformat()} is derivable from its date")
        if salt.lower() in seen:
            findings.append(
                f"salt of {day.isoformat()} repeats the salt of {seen[salt.lower()].isoformat()}"
            )
        seen.setdefault(salt.lower(), day)
    evidence["salts"] = per_salt
    days_with_salt = {d for d, _ in rows}
    if len(days_with_salt) > 2:
        findings.append(f"{len(days_with_salt)} days have salts; the rule allows 2")

    keys = _device_keys(ctx, evidence, findings)
    # The previous salt should go once the sessions spanning midnight have closed; the keeper
    # destroys it on the next hit, so a quiet site may keep it longer: a person should look.
    notes: list[str] = []
    midnight = dt.datetime.combine(ctx.today, dt.time(0), dt.UTC)
    due = midnight + dt.timedelta(minutes=ctx.config.privacy.session_timeout_minutes + 30)
    if any(d == yesterday for d, _ in rows) and ctx.now > due:
        late = round((ctx.now - due).total_seconds() / 3600, 1)
        notes.append(
            f"yesterday's salt ({yesterday.isoformat()}) still exists {late} h after it was "
            "due for destruction (sessions close "
            f"{ctx.config.privacy.session_timeout_minutes} min after midnight); it is destroyed "
            "when the next hit arrives"
        )

    # Leaks: the values must appear in no log, spool file or config file.
    places = {str(path): text for _kind, path, text in files(ctx)}
    if ctx.config_text:
        places[ctx.config.source] = ctx.config_text
    leaks = 0
    secrets = [(f"salt of {d.isoformat()}", s) for d, s in rows] + keys
    for label, text in places.items():
        low = text.lower()
        for name, value in secrets:
            if value and value.lower() in low:
                leaks += 1
                findings.append(f"{name} appears in {label}")
    evidence["files_searched_for_salt_values"] = len(places)
    evidence["leaks"] = leaks
    evidence["rotation_log"] = _rotation_log(ctx, findings)
    status: Status = "fail" if findings else "review" if notes else "pass"
    return Check(
        id="salts",
        title="Salt lifecycle and randomness",
        status=status,
        verified=(
            "At most the current and the previous day's salt exist; each is at least 128 bits of "
            "random hex (not a hash or encoding of its date, no repeats, plausible entropy); no "
            "salt value appears in the log files, the spool or the config file; the rotation log "
            "holds times only."
        ),
        method=(
            "Read the salts table (values kept in memory only), compared days with today "
            f"({ctx.today.isoformat()} UTC); compared each salt with hex/MD5/SHA-1/SHA-2/BLAKE2 "
            "of several spellings of its date; Shannon entropy per character; substring search "
            "of each value in every scanned file; column types of the rotation log."
        ),
        evidence=evidence,
        findings=findings + notes,
    )


def _rotation_log(ctx: Context, findings: list[str]) -> dict[str, Any]:
    logs = [t for t in ctx.tables if "salt" in t.name and t.name != "salts"]
    result: dict[str, Any] = {}
    for table in logs:
        text_cols = [c for c in table.columns if c.is_text]
        long_hex = 0
        for col in text_cols:
            long_hex += int(
                ctx.store.query(
                    f"SELECT countIf(match({col.text_sql()}, {{re:String}})) FROM `{table.name}`",
                    {"re": "[0-9a-fA-F]{32,}"},
                ).scalar()
                or 0
            )
        result[table.name] = {"rows": table.rows, "text_columns": [c.name for c in text_cols]}
        if long_hex:
            findings.append(f"{table.name} holds {long_hex} value(s) that look like salts")
    return result


# How far back a device key may still exist: its own period and the previous one.
KEY_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "13months": 396}


def _device_keys(
    ctx: Context, evidence: dict[str, Any], findings: list[str]
) -> list[tuple[str, str]]:
    if ctx.table("device_keys") is None:
        evidence["device_keys"] = "no device_keys table"
        return []
    rows = ctx.store.query(
        "SELECT rotation, period, key FROM device_keys ORDER BY rotation, period"
    ).tuples()
    listed = []
    for rotation, period, key in rows:
        span = KEY_PERIOD_DAYS.get(str(rotation), 396)
        age = (ctx.today - period).days
        listed.append({"rotation": rotation, "period": period.isoformat(), "age_days": age})
        if age > 2 * span:
            findings.append(
                f"device key of {rotation} period {period.isoformat()} still exists ({age} days "
                "old): only the current and the previous period's key may exist"
            )
        if len(str(key)) < MIN_HEX_CHARS or _derived(str(key), period):
            findings.append(f"device key of {rotation} period {period.isoformat()} is weak")
    evidence["device_keys"] = {
        "count": len(rows),
        "configured_rotation": ctx.config.privacy.visitor_id_rotation,
        "keys": listed,
    }
    return [(f"device key of {r} period {p.isoformat()}", str(k)) for r, p, k in rows]
