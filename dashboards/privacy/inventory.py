"""Inventory and retention: every table and column, its classification and the TTL in force."""

from __future__ import annotations

import re
from typing import Any

from dashboards.privacy.model import (
    CONFIG_TABLES,
    SECRET_TABLES,
    Check,
    Column,
    Context,
    Status,
    Table,
)
from store import retention

PSEUDONYMOUS = {"visitor_id", "session_id"}
TRUNCATED = {"ip_prefix"}
REDACTED_TEXT = {
    "pathname",
    "referrer",
    "entry_page",
    "exit_page",
    "page",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "props",
    "prop_key",
    "prop_value",
    "value",  # a rollup's dimension value: a page, referrer, UTM value...
}
# Grace beyond the retention before a row counts as overdue: TTL deletes happen in background
# merges (merge_with_ttl_timeout is 4 hours by default).
GRACE_DAYS = 1

_TTL_COLUMN = re.compile(r"(?:\w+\()?`?(\w+)`?\)?\s*\+\s*toInterval")


def classify(table: Table, column: Column) -> str:
    """aggregate, pseudonymous, truncated, enum, redacted-text, time, measure, config, secret."""
    if table.kind in ("config", "secret"):
        return table.kind
    # The query layer's visit rows prefix session columns with `s_` (s_visitor_id...).
    name, base = column.name.removeprefix("s_"), column.base_type
    if name in PSEUDONYMOUS:
        return "pseudonymous"
    if name in TRUNCATED or base.startswith(("IPv4", "IPv6")):
        return "truncated"
    if column.is_aggregate_state:
        return "aggregate"
    if column.is_time:
        return "time"
    if name in REDACTED_TEXT:
        return "redacted-text"
    if column.is_low_cardinality or base.startswith("Enum") or name in ("site_id", "dimension"):
        return "enum"
    if base.startswith(("UInt", "Int", "Float", "Decimal")):
        return "measure"
    return "unclassified"


def policy_days(ctx: Context, table: Table) -> tuple[str, float] | None:
    """The config setting that governs `table` and the retention it asks for, in days."""
    policy = retention.policies().get(table.base_name)
    p = ctx.config.privacy
    if policy is not None:
        if policy.setting == "raw_retention_days":
            return "privacy.raw_retention_days", float(p.raw_retention_days)
        return "privacy.aggregate_retention_months", float(p.aggregate_retention_months * 31)
    if table.kind == "raw":
        return "privacy.raw_retention_days", float(p.raw_retention_days)
    if table.kind == "aggregate":
        return "privacy.aggregate_retention_months", float(p.aggregate_retention_months * 31)
    return None


def time_column(table: Table) -> str | None:
    if table.ttl and table.ttl.expression:
        match = _TTL_COLUMN.search(table.ttl.expression)
        if match and any(c.name == match.group(1) for c in table.columns):
            return match.group(1)
    for column in table.columns:
        if column.is_time and not column.is_aggregate_state:
            return column.name
    return None


def oldest_age_days(ctx: Context, table: Table, column: str) -> float | None:
    expr = f"toDateTime(`{column}`)"
    value = ctx.store.query(
        f"SELECT dateDiff('second', min({expr}), toDateTime({{now:UInt32}}, 'UTC')) "
        f"FROM `{table.name}` HAVING count() > 0",
        {"now": int(ctx.now.timestamp())},
    ).scalar()
    # Whole days, so two runs minutes apart produce the same digest.
    return None if value is None else float(int(value) // 86400)


def inventory(ctx: Context) -> Check:
    tables: list[dict[str, Any]] = []
    findings: list[str] = []
    unclassified: list[str] = []
    for table in ctx.tables:
        columns = {c.name: classify(table, c) for c in table.columns}
        unclassified += [f"{table.name}.{n}" for n, k in columns.items() if k == "unclassified"]
        entry: dict[str, Any] = {
            "table": table.name,
            "engine": table.engine,
            "kind": table.kind,
            "purpose": CONFIG_TABLES.get(table.name) or SECRET_TABLES.get(table.name) or "",
            "rows": table.rows,
            "ttl_in_force": table.ttl.describe() if table.ttl else "not a MergeTree table",
            "columns": columns,
        }
        if not table.stores_rows:
            entry["ttl_in_force"] = f"routes to {table.name}_local (Distributed: stores nothing)"
        wanted = policy_days(ctx, table) if table.usage and table.stores_rows else None
        if wanted is not None:
            setting, days = wanted
            entry["policy"] = f"{setting} = {days:g} days"
            if table.ttl is None or not table.ttl.expression:
                findings.append(
                    f"table {table.name} holds usage data but has no TTL (policy: {setting})"
                )
            elif abs(table.ttl.days - days) > 0.5:
                findings.append(
                    f"table {table.name}: TTL in force is {table.ttl.describe()}, "
                    f"the config asks for {setting} = {days:g} days"
                )
            column = time_column(table)
            if column is not None and table.rows:
                age = oldest_age_days(ctx, table, column)
                entry["oldest_row_age_days"] = age
                entry["oldest_row_column"] = column
                if age is not None and age > days + GRACE_DAYS:
                    findings.append(
                        f"table {table.name}: oldest row is {age:g} days old, beyond the "
                        f"{days:g}-day retention ({setting})"
                    )
        tables.append(entry)
    status: Status = "fail" if findings else "review" if unclassified else "pass"
    if unclassified:
        findings.append("columns without a classification: " + ", ".join(unclassified))
    return Check(
        id="inventory",
        title="Inventory and retention",
        status=status,
        verified=(
            "Every table and column of the store is listed with its classification; every table "
            "holding usage data has a TTL equal to the configured retention, and no row is older "
            f"than that retention (plus {GRACE_DAYS} day for background merges)."
        ),
        method=(
            f"Read system.tables and system.columns of database {ctx.database}; parsed the TTL "
            "from each table's live engine definition (engine_full); compared it with "
            "privacy.raw_retention_days / privacy.aggregate_retention_months; queried min() of "
            "each table's TTL column."
        ),
        evidence={
            "database": ctx.database,
            "store": ctx.store.url,
            "raw_retention_days": ctx.config.privacy.raw_retention_days,
            "aggregate_retention_months": ctx.config.privacy.aggregate_retention_months,
            "tables": tables,
        },
        findings=findings,
    )
