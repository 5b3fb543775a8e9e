"""Retention TTLs that follow the configuration.

`schema.sql` declares each table's TTL with a config placeholder, e.g.
`TTL toDateTime(timestamp) + INTERVAL {{raw_retention_days}} DAY`. `CREATE TABLE IF NOT EXISTS`
never touches an existing table, so when the operator changes a retention setting the live TTL
would silently keep the old value. `sync` reads the TTL in force from `system.tables` and runs
`ALTER TABLE ... MODIFY TTL` where it differs from what the schema and config ask for; the
engine then re-evaluates existing parts, so a shorter retention takes effect at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from store.base import Store

_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)
# A TTL clause in schema.sql: the expression up to SETTINGS or the end of the statement.
_SCHEMA_TTL = re.compile(r"^\s*TTL\s+(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_UNIT = re.compile(r"INTERVAL\s+\{\{\w+\}\}\s+(\w+)", re.IGNORECASE)
# How ClickHouse prints a TTL in `engine_full`: `TTL toDateTime(ts) + toIntervalDay(30) SETTINGS`.
_LIVE_TTL = re.compile(r"\bTTL\s+(.+?)(?:\s+SETTINGS\s|$)")
_LIVE_INTERVAL = re.compile(r"toInterval(\w+)\((\d+)\)")


@dataclass(frozen=True)
class Policy:
    """What schema.sql asks for one table: `expression` with `setting` filled in."""

    table: str
    setting: str  # the config key, e.g. raw_retention_days
    unit: str  # DAY or MONTH
    template: str  # the TTL expression with its `{{setting}}` placeholder

    def expression(self, values: Mapping[str, int]) -> str:
        value = values[self.setting]
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"retention setting {self.setting} must be an integer")
        return _PLACEHOLDER.sub(str(value), self.template)


@dataclass(frozen=True)
class LiveTTL:
    """The TTL in force on a table, as the engine reports it."""

    table: str
    expression: str  # "" when the table has no TTL
    unit: str  # DAY/MONTH/... of the first interval, "" when none
    amount: int  # its number, 0 when none

    @property
    def days(self) -> float:
        """The retention in days (months count as 31 so 'within N months' stays conservative)."""
        per = {"SECOND": 1 / 86400, "MINUTE": 1 / 1440, "HOUR": 1 / 24, "DAY": 1, "WEEK": 7}
        per |= {"MONTH": 31, "QUARTER": 92, "YEAR": 366}
        return self.amount * per.get(self.unit, 0)

    def describe(self) -> str:
        if not self.expression:
            return "no TTL"
        return f"{self.amount} {self.unit.lower()}{'s' if self.amount != 1 else ''}"


def policies(schema_text: str | None = None) -> dict[str, Policy]:
    """Each table of schema.sql whose TTL is bound to a config setting."""
    if schema_text is None:
        from store.schema import schema_text as read_schema

        schema_text = read_schema()
    found: dict[str, Policy] = {}
    for statement in schema_text.split(";\n"):
        lines = [line.split(" --", 1)[0] for line in statement.splitlines()]
        body = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
        create = _CREATE.search(body)
        ttl = _SCHEMA_TTL.search(body)
        if not create or not ttl:
            continue
        template = ttl.group(1).rstrip(";").strip()
        setting = _PLACEHOLDER.search(template)
        unit = _UNIT.search(template)
        if setting and unit:
            found[create.group(1)] = Policy(
                create.group(1), setting.group(1), unit.group(1).upper(), template
            )
    return found


def live(store: Store) -> dict[str, LiveTTL]:
    """The TTL in force on every MergeTree-family table of the current database."""
    rows = store.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND engine LIKE '%MergeTree%' ORDER BY name"
    ).tuples()
    result: dict[str, LiveTTL] = {}
    for name, engine_full in rows:
        match = _LIVE_TTL.search(engine_full or "")
        if not match:
            result[name] = LiveTTL(name, "", "", 0)
            continue
        interval = _LIVE_INTERVAL.search(match.group(1))
        unit, amount = (interval.group(1).upper(), int(interval.group(2))) if interval else ("", 0)
        result[name] = LiveTTL(name, match.group(1).strip(), unit, amount)
    return result


def sync(store: Store, values: Mapping[str, int], schema_text: str | None = None) -> list[str]:
    """Make every live TTL match schema.sql and the config; returns what was changed."""
    in_force = live(store)
    changed: list[str] = []
    for name, policy in policies(schema_text).items():
        # On a cluster the rows (and the TTL) live in NAME_local (store/cluster.py).
        table = name if name in in_force else f"{name}_local"
        current = in_force.get(table)
        if current is None:
            continue  # not created (yet): CREATE TABLE brings the right TTL
        wanted = int(values[policy.setting])
        if current.expression and current.unit == policy.unit and current.amount == wanted:
            continue
        # The table name comes from schema.sql and the value is a validated integer; DDL
        # cannot take bound parameters.
        store.command(
            f"ALTER TABLE `{table}` MODIFY TTL {policy.expression(values)}",
            settings={"mutations_sync": 2},
        )
        changed.append(
            f"{table}: retention {current.describe()} -> {wanted} {policy.unit.lower()}s"
        )
    return changed


def force(store: Store, table: str) -> None:
    """Apply the TTL now (tests, and `firstparty audit --enforce`): drop every expired row."""
    names = set(live(store))
    if table not in names:
        raise ValueError(f"no MergeTree table named {table!r}")
    store.command(f"ALTER TABLE `{table}` MATERIALIZE TTL", settings={"mutations_sync": 2})
    store.command(f"OPTIMIZE TABLE `{table}` FINAL")
