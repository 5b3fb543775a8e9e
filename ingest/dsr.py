"""Data-subject requests (GDPR articles 15, 17 and 20) for device IDs, and the statement for
cookie-less visitors.

A device ID is never stored; its rows carry `visitor_id = device_hash(key, site, device_id)`
under whichever rotating key was current. `ingest.devices.device_hashes` recomputes that hash
under every key still in existence, which finds every row that can still be linked to the
device. Rows made under a destroyed key cannot be linked by anyone, including us.

Deletion is physical: `ALTER TABLE ... DELETE` rewrites the data parts without the rows
(a lightweight DELETE only masks them), waits for the mutation (`mutations_sync = 2`), and is
verified by counting again. Rollups fed from the events by a materialized view hold no visitor
column (only HLL sketches and counts), so the buckets the device contributed to are rebuilt
from the remaining events instead.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from firstparty.config import Config
from store.base import Store

# Columns holding a visitor hash: raw events and sessions, and the query layer's visit rows.
VISITOR_COLUMNS = ("visitor_id", "s_visitor_id")
_TTL_COLUMN = re.compile(r"TTL\s+(?:\w+\()?`?(\w+)`?\)?\s*\+")
_MV_TARGET = re.compile(r"\bTO\s+`?(\w+)`?\.`?(\w+)`?")


@dataclass(frozen=True)
class LinkedTable:
    name: str
    engine: str
    columns: list[tuple[str, str]]
    has_kind: bool  # a visitor_kind column: only 'device' rows can match a device ID
    visitor_column: str = "visitor_id"  # `s_visitor_id` in the query layer's visit_facts


@dataclass(frozen=True)
class Rollup:
    """An aggregate table fed from `events` by a materialized view, without a visitor column."""

    name: str
    view: str
    select: str  # the view's SELECT, reading from `<db>.events`
    time_column: str
    columns: list[str]


@dataclass
class Receipt:
    request_id: str
    action: str  # export or delete
    site: str
    at: str
    keys_in_existence: int
    rows: dict[str, int] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)
    rebuilt: dict[str, int] = field(default_factory=dict)
    mutations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def text(self) -> str:
        lines = [
            f"Data-subject request {self.request_id}: {self.action} for one device ID on "
            f"{self.site}, {self.at}",
            f"Device keys still in existence (each one checked): {self.keys_in_existence}",
        ]
        for table, n in self.rows.items():
            line = f"  {table}: {n} row(s) found"
            if self.action == "delete":
                line += f", {self.remaining.get(table, 0)} remaining after deletion"
            lines.append(line)
        for table, n in self.rebuilt.items():
            how = "dropped, re-folded on next use" if table in REFOLDED else "rebuilt"
            lines.append(f"  {table}: {n} aggregate bucket(s) {how} without the device's data")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def device_ids_hashes(store: Store, site: str, device_id: str) -> list[int]:
    from ingest.devices import device_hashes

    return sorted(set(device_hashes(store, site, device_id)))


def linked_tables(store: Store) -> list[LinkedTable]:
    """Every table of the current database with a site_id and a visitor hash column."""
    engines = dict(
        store.query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase() "
            "AND engine LIKE '%MergeTree%'"
        ).tuples()
    )
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in store.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
        "ORDER BY table, position"
    ).tuples():
        columns.setdefault(str(table), []).append((str(name), str(type_)))
    found = []
    for table, cols in sorted(columns.items()):
        names = {n for n, _ in cols}
        visitor = next((c for c in VISITOR_COLUMNS if c in names), None)
        if table in engines and "site_id" in names and visitor is not None:
            found.append(
                LinkedTable(table, str(engines[table]), cols, "visitor_kind" in names, visitor)
            )
    return found


def rollups(store: Store) -> list[Rollup]:
    """Aggregate tables fed from events by a view, that cannot be filtered by visitor."""
    linked = {t.name for t in linked_tables(store)}
    database = str(store.query("SELECT currentDatabase()").scalar())
    views = store.query(
        "SELECT name, as_select, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
    ).dicts()
    found = []
    for view in views:
        target = _MV_TARGET.search(view["create_table_query"] or "")
        source = f"FROM {database}.events"
        if not target or target.group(2) in linked or source not in view["as_select"]:
            continue
        name = target.group(2)
        engine_full = store.query(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
            "AND name = {t:String}",
            {"t": name},
        ).scalar()
        ttl = _TTL_COLUMN.search(engine_full or "")
        if not ttl:
            continue
        columns = store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            "AND table = {t:String} ORDER BY position",
            {"t": name},
        ).column("name")
        found.append(Rollup(name, view["name"], view["as_select"], ttl.group(1), columns))
    return found


def _where(table: LinkedTable) -> str:
    kind = " AND visitor_kind = 'device'" if table.has_kind else ""
    return (
        f"WHERE site_id = {{site:String}} AND `{table.visitor_column}` IN "
        f"{{ids:Array(UInt64)}}{kind}"
    )


def _select_list(table: LinkedTable) -> str:
    parts = []
    for name, type_ in table.columns:
        if type_.startswith("AggregateFunction("):
            parts.append(f"finalizeAggregation(`{name}`) AS `{name}`")
        else:
            parts.append(f"`{name}`")
    return ", ".join(parts)


def find(store: Store, site: str, ids: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every linked table that belong to the hashed device IDs."""
    result: dict[str, list[dict[str, Any]]] = {}
    params = {"site": site, "ids": list(ids)}
    for table in linked_tables(store):
        final = "" if table.engine == "MergeTree" else " FINAL"
        rows = (
            store.query(
                f"SELECT {_select_list(table)} FROM `{table.name}`{final} {_where(table)}", params
            ).dicts()
            if ids
            else []
        )
        result[table.name] = rows
    return result


def _rebuild_source(rollup: Rollup, database: str, filtered: str) -> str:
    return rollup.select.replace(f"FROM {database}.events", f"FROM ({filtered})", 1)


def _buckets(store: Store, rollup: Rollup, database: str, site: str, ids: list[int]) -> list[Any]:
    mine = (
        f"SELECT * FROM {database}.events WHERE site_id = {{site:String}} "
        "AND visitor_id IN {ids:Array(UInt64)} AND visitor_kind = 'device'"
    )
    return store.query(
        f"SELECT DISTINCT `{rollup.time_column}` AS b "
        f"FROM ({_rebuild_source(rollup, database, mine)})",
        {"site": site, "ids": ids},
    ).column("b")


# Aggregates a finalizer folds from `sessions` once a day's visits have closed
# (dashboards/rollups.py), with the table recording which days are done. No visitor column and
# no view to replay: the device's days are dropped with their markers, and the finalizer folds
# them again from the remaining sessions when a query next needs them.
REFOLDED = {"visits_daily": "visits_daily_done", "visit_pairs_daily": "visit_pairs_done"}


def _refold(
    store: Store, site: str, days: list[dt.date], oldest: dt.date, mutations: list[str]
) -> dict[str, int]:
    names = set(
        store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").column(
            "name"
        )
    )
    # Older days can no longer be folded (their sessions are past the raw retention): they
    # keep their counts and sketches, which hold no visitor id.
    days = [d for d in days if d >= oldest]
    done: dict[str, int] = {}
    for table, marker in REFOLDED.items():
        if table not in names or marker not in names or not days:
            continue
        params = {"site": site, "days": days}
        for name in (marker, table):
            store.command(
                f"ALTER TABLE `{name}` DELETE WHERE site_id = {{site:String}} "
                "AND day IN {days:Array(Date)}",
                params,
                settings={"mutations_sync": 2},
            )
            mutations += _check_mutations(store, name)
        done[table] = len(days)
    return done


def delete(
    store: Store,
    site: str,
    ids: Sequence[int],
    now: dt.datetime | None = None,
    raw_retention_days: int = 30,
) -> tuple[dict[str, int], dict[str, int], dict[str, int], list[str]]:
    """Physically delete the device's rows; returns (found, remaining, rebuilt, mutation ids).

    `rebuilt` counts, per aggregate table, the buckets (hours, days) rebuilt or dropped for
    re-folding without the device's data."""
    now = now or dt.datetime.now(dt.UTC)
    ids = list(ids)
    params = {"site": site, "ids": ids}
    database = str(store.query("SELECT currentDatabase()").scalar())
    tables = linked_tables(store)
    found: dict[str, int] = {}
    remaining: dict[str, int] = {}
    rebuilt: dict[str, int] = {}
    mutations: list[str] = []
    if not ids:
        return {t.name: 0 for t in tables}, {t.name: 0 for t in tables}, {}, []
    pending_rollups = [(r, _buckets(store, r, database, site, ids)) for r in rollups(store)]
    visit_days: list[dt.date] = []
    if any(t.name == "sessions" for t in tables):
        visit_days = store.query(
            "SELECT DISTINCT toDate(start) AS d FROM sessions WHERE site_id = {site:String} "
            "AND visitor_id IN {ids:Array(UInt64)}",
            params,
        ).column("d")
    for table in tables:
        count = f"SELECT count() FROM `{table.name}` {_where(table)}"
        found[table.name] = int(store.query(count, params).scalar() or 0)
        if found[table.name]:
            store.command(
                f"ALTER TABLE `{table.name}` DELETE {_where(table)}",
                params,
                settings={"mutations_sync": 2},
            )
            mutations += _check_mutations(store, table.name)
        remaining[table.name] = int(store.query(count, params).scalar() or 0)
    for rollup, buckets in pending_rollups:
        if not buckets:
            continue
        bucket_params = {"site": site, "buckets": buckets}
        bucket_type = str(
            store.query(
                "SELECT type FROM system.columns WHERE database = currentDatabase() "
                "AND table = {t:String} AND name = {c:String}",
                {"t": rollup.name, "c": rollup.time_column},
            ).scalar()
        )
        in_buckets = (
            f"site_id = {{site:String}} AND `{rollup.time_column}` IN "
            f"{{buckets:Array({bucket_type})}}"
        )
        store.command(
            f"ALTER TABLE `{rollup.name}` DELETE WHERE {in_buckets}",
            bucket_params,
            settings={"mutations_sync": 2},
        )
        mutations += _check_mutations(store, rollup.name)
        site_events = f"SELECT * FROM {database}.events WHERE site_id = {{site:String}}"
        cols = ", ".join(f"`{c}`" for c in rollup.columns)
        store.command(
            f"INSERT INTO `{rollup.name}` ({cols}) SELECT {cols} FROM "
            f"({_rebuild_source(rollup, database, site_events)}) WHERE {in_buckets}",
            bucket_params,
            # The rebuilt block must not be taken for a retried insert and dropped.
            settings={"insert_deduplicate": 0},
        )
        rebuilt[rollup.name] = len(buckets)
    oldest = now.astimezone(dt.UTC).date() - dt.timedelta(days=raw_retention_days - 1)
    rebuilt |= _refold(store, site, visit_days, oldest, mutations)
    return found, remaining, rebuilt, mutations


def _check_mutations(store: Store, table: str) -> list[str]:
    rows = store.query(
        "SELECT mutation_id, is_done, latest_fail_reason FROM system.mutations "
        "WHERE database = currentDatabase() AND table = {t:String} "
        "ORDER BY create_time DESC LIMIT 1",
        {"t": table},
    ).dicts()
    for row in rows:
        if not row["is_done"] or row["latest_fail_reason"]:
            raise RuntimeError(
                f"the deletion in {table} did not complete: "
                f"{row['latest_fail_reason'] or 'pending'}"
            )
    return [f"{table}:{row['mutation_id']}" for row in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def export_json(site: str, rows: dict[str, list[dict[str, Any]]], receipt: Receipt) -> str:
    return json.dumps(
        {
            "request_id": receipt.request_id,
            "site": site,
            "generated_at": receipt.at,
            "keys_in_existence": receipt.keys_in_existence,
            "explanation": (
                "Rows stored about this device ID on this site. The device ID itself is not "
                "stored: it is recognised through its keyed hashes (visitor_id) under every key "
                "that still exists."
            ),
            "tables": {t: [_jsonable(r) for r in rs] for t, rs in rows.items()},
        },
        indent=2,
        ensure_ascii=False,
    )


def export_csv(rows: dict[str, list[dict[str, Any]]]) -> str:
    """One CSV: a `table` column, then the union of the tables' columns."""
    header = ["table"]
    for table_rows in rows.values():
        for row in table_rows:
            header += [k for k in row if k not in header]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for table, table_rows in rows.items():
        for row in table_rows:
            flat = {
                k: json.dumps(_jsonable(v)) if isinstance(v, dict | list) else _jsonable(v)
                for k, v in row.items()
            }
            writer.writerow({"table": table, **flat})
    return out.getvalue()


def new_receipt(action: str, site: str, keys: int, now: dt.datetime) -> Receipt:
    return Receipt(
        request_id=str(uuid.uuid4()),
        action=action,
        site=site,
        at=now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        keys_in_existence=keys,
    )


def salt_history(store: Store, kind: str = "visitor_salt") -> list[dict[str, Any]]:
    """Creation and destruction times of salts or device keys (the log holds no values)."""
    exists = store.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'salt_log'"
    ).scalar()
    if not exists:
        return []
    return store.query(
        "SELECT period, rotation, minIf(at, action = 'created') AS created, "
        "minIf(at, action = 'destroyed') AS destroyed, countIf(action = 'destroyed') AS n "
        "FROM salt_log WHERE kind = {kind:String} GROUP BY period, rotation ORDER BY period",
        {"kind": kind},
    ).dicts()


def explain(store: Store, config: Config, now: dt.datetime, day: dt.date | None = None) -> str:
    """The statement a DPO can send to a visitor who used no app device ID."""
    p = config.privacy
    history = salt_history(store)
    destroyed = [h for h in history if h["n"]]
    existing = store.query("SELECT DISTINCT day FROM salts ORDER BY day").column("day")
    geo = "country and region" if p.store_region else "country"
    lines = [
        "About your request concerning our website analytics",
        "",
        "What we store. When you visit our website without an app that sends a device "
        "identifier, our own analytics system (hosted by us, no third party) stores for each "
        "page view: the page address without its query string, the referring site, campaign "
        f"tags, your {geo} (derived from your IP address, which is not stored"
        + (
            f"; only the network prefix /{p.ipv4_prefix} for IPv4 or /{p.ipv6_prefix} for IPv6 is"
            " kept"
            if p.keep_ip_prefix
            else ""
        )
        + "), your browser and operating system family and major version, the device class, "
        "the time, and a visitor code.",
        "",
        "Why it cannot be linked to you. The visitor code is a keyed hash of the website, your "
        "IP address and your browser's user agent, computed with a random secret (a salt) that "
        "is created for one day and then destroyed. Your IP address and user agent are not "
        "kept. Once the salt of a day has been destroyed, nobody, including us, can compute "
        "your visitor code for that day again, so we cannot find which records are yours. "
        "Under GDPR article 11(2) we are therefore not able to identify you in this data; "
        "articles 15 to 20 apply only if you provide additional information that allows that "
        "identification, which for this data does not exist.",
        "",
    ]
    if day is not None:
        match = next((h for h in destroyed if h["period"] == day), None)
        if match is not None:
            lines.append(
                f"The salt for {day.isoformat()} was destroyed at {_when(match['destroyed'])}."
            )
        elif day in existing:
            lines.append(
                f"The salt for {day.isoformat()} still exists (today's or yesterday's); it "
                "will be destroyed automatically after the day and its last open visits end."
            )
        else:
            lines.append(
                f"No salt for {day.isoformat()} exists any more"
                + ("; it was destroyed before the current rotation log begins" if history else "")
                + "."
            )
    if destroyed:
        last = destroyed[-1]
        lines.append(
            f"Salts are destroyed daily; the most recent destruction was of the salt for "
            f"{last['period'].isoformat()}, at {_when(last['destroyed'])} "
            f"({len(destroyed)} destructions recorded)."
        )
    lines += [
        f"Salts existing now: {len(existing)} (at most today's and yesterday's).",
        "",
        f"How long. These records are deleted after {p.raw_retention_days} days; statistics "
        f"aggregated from them (counts per page, source, country, browser, ...) are kept for "
        f"{p.aggregate_retention_months} months and contain no visitor code.",
        "",
        "Your choices. Our analytics ignores browsers that send a Global Privacy Control or "
        "Do Not Track signal"
        if p.honour_gpc or p.honour_dnt
        else "Your choices.",
    ]
    lines[-1] += (
        "; such visits are not recorded at all. You may also use the opt-out described in our "
        "privacy policy, and you may lodge a complaint with a supervisory authority (in "
        "Belgium: the Data Protection Authority, www.dataprotectionauthority.be)."
    )
    lines += ["", f"Statement generated {now.astimezone(dt.UTC).isoformat(timespec='seconds')}."]
    return "\n".join(lines) + "\n"


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return str(value)
