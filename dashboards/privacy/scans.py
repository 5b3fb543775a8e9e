"""Content scans: raw IPs, raw device IDs and user agents, and URL hygiene, in tables and files."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dashboards.privacy import patterns
from dashboards.privacy.inventory import REDACTED_TEXT
from dashboards.privacy.model import Check, Column, Context, Table

SAMPLE = 500  # distinct candidates fetched per column and pattern
URL_COLUMNS = {"pathname", "referrer", "entry_page", "exit_page", "page"}
MAX_FILE_BYTES = 64 * 1024 * 1024


def ip_policy(ctx: Context) -> patterns.IpPolicy:
    p, s = ctx.config.privacy, ctx.config.server
    return patterns.IpPolicy(p.ipv4_prefix, p.ipv6_prefix, (s.host, *s.trusted_proxies))


def _text_columns(table: Table) -> list[Column]:
    return [c for c in table.columns if c.is_text]


def _candidates(ctx: Context, table: Table, columns: list[Column]) -> dict[str, list[str]]:
    """Distinct IPv4/IPv6-looking substrings per column, URL-decoded first."""
    if not columns or not table.rows:
        return {}
    parts = []
    for i, col in enumerate(columns):
        text = f"decodeURLComponent({col.text_sql()})"
        parts.append(f"groupUniqArrayArray({SAMPLE})(extractAll({text}, {{v4:String}})) AS c{i}4")
        parts.append(f"groupUniqArrayArray({SAMPLE})(extractAll({text}, {{v6:String}})) AS c{i}6")
    row = ctx.store.query(
        f"SELECT {', '.join(parts)} FROM `{table.name}`",
        {"v4": patterns.IPV4_RE2, "v6": patterns.IPV6_RE2},
    ).dicts()[0]
    return {col.name: list(row[f"c{i}4"]) + list(row[f"c{i}6"]) for i, col in enumerate(columns)}


def files(ctx: Context) -> Iterator[tuple[str, Path, str]]:
    """(kind, path, text) of the spool files and the log files.

    A live server creates and deletes files while this walks: the writer deletes the spool
    segments it stored (their events are in the tables, scanned there), the engine its
    temporary parts. What vanishes before it is read is skipped, not an error.
    """
    seen: set[Path] = set()
    for kind, path in [
        *(("spool", p) for p in _tree(ctx.spool_dir)),
        *(("log", p) for p in ctx.log_files),
        *(("log", p) for p in _tree(ctx.config.data_dir, ".log")),
    ]:
        if path in seen:
            continue
        seen.add(path)
        try:
            text = read_text(path)
        except (FileNotFoundError, IsADirectoryError):
            continue
        yield kind, path, text


def _tree(directory: Path, suffix: str = "") -> list[Path]:
    """The files under `directory` ending in `suffix`, sorted; os.walk skips a directory that
    disappears while it walks (Path.rglob raises)."""
    return sorted(
        Path(root) / name
        for root, _dirs, names in os.walk(directory)
        for name in names
        if name.endswith(suffix)
    )


def read_text(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")


def no_raw_ip(ctx: Context) -> Check:
    policy = ip_policy(ctx)
    findings: list[str] = []
    scanned: list[str] = []
    prefix_columns: dict[str, Any] = {}
    ignored = 0
    for table in ctx.tables:
        if table.kind == "secret":
            continue
        columns = _text_columns(table)
        prefix_cols = [c for c in columns if c.name == "ip_prefix"]
        typed = [c for c in table.columns if c.base_type in ("IPv4", "IPv6")]
        scanned += [f"{table.name}.{c.name}" for c in columns]
        for name, values in _candidates(ctx, table, columns).items():
            if name == "ip_prefix":
                continue
            hits = [f for v in values if (f := patterns.classify_ip(v, policy)) is not None]
            ignored += sum(1 for f in hits if f.infrastructure and table.kind == "config")
            bad = [f for f in hits if not (f.infrastructure and table.kind == "config")]
            if bad:
                masked = sorted({f.masked for f in bad})[:3]
                findings.append(
                    f"raw IP address in {table.name}.{name}: {len(bad)} distinct value(s), "
                    f"e.g. {', '.join(masked)}"
                )
        for col in prefix_cols:
            values = ctx.store.query(
                f"SELECT DISTINCT `{col.name}` AS v FROM `{table.name}` LIMIT 100000"
            ).column("v")
            stored = [v for v in values if v]
            wrong = [v for v in stored if not patterns.prefix_ok(v, policy)]
            prefix_columns[f"{table.name}.{col.name}"] = {
                "distinct_values": len(stored),
                "not_truncated_at_policy": len(wrong),
            }
            if wrong:
                findings.append(
                    f"{table.name}.{col.name} holds {len(wrong)} value(s) that are not networks "
                    f"at /{policy.ipv4_prefix} (IPv4) or /{policy.ipv6_prefix} (IPv6), e.g. "
                    + ", ".join(sorted({patterns.mask_ip(v) for v in wrong})[:3])
                )
            if stored and not ctx.config.privacy.keep_ip_prefix:
                findings.append(
                    f"{table.name}.{col.name} holds {len(stored)} prefix(es) although "
                    "privacy.keep_ip_prefix is false"
                )
        for col in typed:
            bits = policy.ipv4_prefix if col.base_type == "IPv4" else policy.ipv6_prefix
            fn = "IPv4CIDRToRange" if col.base_type == "IPv4" else "IPv6CIDRToRange"
            n = ctx.store.query(
                f"SELECT countIf(`{col.name}` != tupleElement({fn}(`{col.name}`, {bits}), 1)) "
                f"FROM `{table.name}`"
            ).scalar()
            prefix_columns[f"{table.name}.{col.name}"] = {"host_bits_set": int(n or 0)}
            if n:
                findings.append(
                    f"{table.name}.{col.name} ({col.base_type}) has {n} row(s) with host bits "
                    f"below /{bits}: raw addresses"
                )
    scanned_files: dict[str, int] = {"spool": 0, "log": 0}
    for kind, path, text in files(ctx):
        scanned_files[kind] += 1
        found = patterns.find_ips(text, policy)
        hits = [f for f in found if not f.infrastructure]
        ignored += len(found) - len(hits)
        if hits:
            findings.append(
                f"raw IP address in {kind} file {path.name}: {len(hits)} occurrence(s), e.g. "
                + ", ".join(sorted({f.masked for f in hits})[:3])
            )
    return Check(
        id="no_raw_ip",
        title="No raw IP address stored",
        status="fail" if findings else "pass",
        verified=(
            "No IPv4 or IPv6 address (dotted, compressed, expanded, IPv4-mapped, URL-encoded) "
            "appears in any text column of any table, in the spool or in the log files; "
            "IP-prefix and IP-typed columns hold only networks at the configured prefix lengths."
        ),
        method=(
            "For every String/Map/Array/aggregate-state column: URL-decode, extract candidates "
            "with RE2 patterns in ClickHouse, validate each with Python's ipaddress (networks at "
            f"most /{policy.ipv4_prefix} or /{policy.ipv6_prefix} are allowed). Prefix columns: "
            "each distinct value must be a network exactly at the configured length. Files: the "
            "same patterns over the spool segments and *.log files. Loopback, the listen address "
            "and trusted proxies are not visitors: ignored in config tables and files, counted."
        ),
        evidence={
            "columns_scanned": len(scanned),
            "columns": scanned,
            "prefix_columns": prefix_columns,
            "ipv4_prefix": policy.ipv4_prefix,
            "ipv6_prefix": policy.ipv6_prefix,
            "keep_ip_prefix": ctx.config.privacy.keep_ip_prefix,
            "files_scanned": scanned_files,
            "infrastructure_addresses_ignored": ignored,
        },
        findings=findings,
    )


def _match_counts(ctx: Context, table: Table, columns: list[Column], regex: str) -> dict[str, int]:
    if not columns or not table.rows:
        return {}
    parts = [
        f"countIf(match({c.text_sql()}, {{re:String}})) AS c{i}" for i, c in enumerate(columns)
    ]
    row = ctx.store.query(f"SELECT {', '.join(parts)} FROM `{table.name}`", {"re": regex}).dicts()
    return {c.name: int(row[0][f"c{i}"]) for i, c in enumerate(columns)}


# Property names that say they carry an identifier, whatever its format.
_IDENTIFIER_KEY = re.compile(
    r"(?i)(?:device_?id|did|idfa|idfv|gaid|aaid|android_?id|advertising_?id|user_?id|uid|"
    r"client_?id|ip|ip_?address|user_?agent|ua|e-?mail|phone)"
)
ENUM_LIMITS = {"browser": 200, "os": 100, "device": 20, "browser_version": 500, "os_version": 500}
_VERSION = r"^[0-9][0-9._]{0,11}$|^$"


def no_raw_identifiers(ctx: Context) -> Check:
    findings: list[str] = []
    evidence: dict[str, Any] = {
        "user_agent_matches": {},
        "device_id_like": {},
        "identifier_named_keys": {},
        "enums": {},
    }
    for table in ctx.tables:
        if not table.usage:
            continue
        columns = _text_columns(table)
        for name, n in _match_counts(ctx, table, columns, patterns.USER_AGENT_RE2).items():
            evidence["user_agent_matches"][f"{table.name}.{name}"] = n
            if n:
                findings.append(f"user-agent string in {table.name}.{name}: {n} row(s)")
        for name, n in _match_counts(ctx, table, columns, patterns.UUID_RE2).items():
            evidence["device_id_like"][f"{table.name}.{name}"] = n
            if n:
                findings.append(f"UUID-like identifier in {table.name}.{name}: {n} row(s)")
        for col in columns:
            if not col.base_type.startswith("Map(") or not table.rows:
                continue
            keys = ctx.store.query(
                f"SELECT groupUniqArrayArray(1000)(mapKeys(`{col.name}`)) FROM `{table.name}`"
            ).scalar()
            named = []
            for key in sorted(k for k in keys or [] if _IDENTIFIER_KEY.fullmatch(str(k))):
                # Values the pipeline already redacted (":ip", ":id"...) carry nothing.
                live = ctx.store.query(
                    f"SELECT countIf(mapContains(`{col.name}`, {{k:String}}) AND "
                    f"`{col.name}`[{{k:String}}] NOT IN ('', ':ip', ':id', ':email', ':token')) "
                    f"FROM `{table.name}`",
                    {"k": key},
                ).scalar()
                if live:
                    named.append(str(key))
            evidence["identifier_named_keys"][f"{table.name}.{col.name}"] = named
            if named:
                findings.append(
                    f"{table.name}.{col.name} has keys named like identifiers: {', '.join(named)}"
                )
        for col in table.columns:
            if col.name in ("visitor_id", "s_visitor_id") and not col.base_type.startswith("UInt"):
                findings.append(f"{table.name}.{col.name} is {col.type}, not a 64-bit hash")
            short = col.name.removeprefix("s_")
            if short not in ENUM_LIMITS or not table.rows:
                continue
            row = ctx.store.query(
                f"SELECT uniqExact(`{col.name}`) AS n, max(length(`{col.name}`)) AS longest, "
                f"countIf(NOT match(`{col.name}`, {{v:String}})) AS bad FROM `{table.name}`",
                {"v": _VERSION},
            ).dicts()[0]
            distinct, longest = int(row["n"]), int(row["longest"] or 0)
            evidence["enums"][f"{table.name}.{col.name}"] = {"distinct": distinct}
            if distinct > ENUM_LIMITS[short] or longest > 40:
                findings.append(
                    f"{table.name}.{col.name} has {distinct} distinct values (longest {longest} "
                    f"chars): not a parsed enum (limit {ENUM_LIMITS[short]})"
                )
            if short.endswith("_version") and row["bad"]:
                findings.append(
                    f"{table.name}.{col.name}: {row['bad']} row(s) are not a plain version number"
                )
    spool_hits = 0
    for kind, path, text in files(ctx):
        if kind == "spool" and patterns.USER_AGENT.search(text):
            spool_hits += 1
            findings.append(f"user-agent string in spool file {path.name}")
    evidence["spool_files_with_user_agents"] = spool_hits
    return Check(
        id="no_raw_identifiers",
        title="No raw device IDs or user agents",
        status="fail" if findings else "pass",
        verified=(
            "Visitor and device identifiers are stored only as 64-bit keyed hashes; no text column "
            "of a usage table or spool file holds a user-agent string or a UUID-like device ID; "
            "browser/OS/device columns hold short parsed enums, versions are plain numbers."
        ),
        method=(
            "Column types from system.columns; RE2 user-agent and UUID patterns counted per column "
            "with match(); property keys compared with identifier names (device_id, idfa, "
            "user_id, ip, email...); distinct counts and lengths of the parsed UA columns; the "
            "spool segments read as text."
        ),
        evidence=evidence,
        findings=findings,
    )


def url_hygiene(ctx: Context) -> Check:
    findings: list[str] = []
    scanned: dict[str, int] = {}
    loose = "|".join(
        [
            patterns.EMAIL_RE2,
            patterns.UUID_RE2,
            patterns.TOKEN_RE2,
            patterns.ID_NUMBER_RE2,
            r"\?",
        ]
    )
    for table in ctx.tables:
        if not table.usage or not table.rows:
            continue
        for col in _text_columns(table):
            if col.name.removeprefix("s_") not in REDACTED_TEXT:
                continue
            values = ctx.store.query(
                f"SELECT DISTINCT {col.text_sql()} AS v FROM `{table.name}` "
                f"WHERE match(v, {{re:String}}) LIMIT {SAMPLE * 20}",
                {"re": loose},
            ).column("v")
            scanned[f"{table.name}.{col.name}"] = len(values)
            is_url = col.name.removeprefix("s_") in URL_COLUMNS
            ids = is_url or col.name == "props"
            kinds: dict[str, list[str]] = {}
            for value in values:
                for f in patterns.text_findings(value, url=is_url, ids=ids):
                    kinds.setdefault(f.kind, []).append(f.redacted)
            for kind, samples in sorted(kinds.items()):
                label = kind.replace("_", " ")
                findings.append(
                    f"{label} in {table.name}.{col.name}: {len(samples)} distinct value(s), "
                    f"e.g. {samples[0]!r}"
                )
    return Check(
        id="url_hygiene",
        title="URL, referrer and property hygiene",
        status="fail" if findings else "pass",
        verified=(
            "Paths, referrers, entry/exit pages, UTM values and event properties carry no query "
            "string beyond the allow-list (utm_*, ref, source), no e-mail address, no UUID, no "
            "long token and (in paths, referrers and properties) no ID-like number of 5+ digits."
        ),
        method=(
            "A loose RE2 pre-filter in ClickHouse over the distinct values of each such column, "
            "then exact checks in Python; samples are shown redacted."
        ),
        evidence={"suspicious_distinct_values_per_column": scanned},
        findings=findings,
    )
