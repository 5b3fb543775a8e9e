"""The cluster form of the schema, generated from the single-node `schema.sql`.

There is one schema. A ClickHouse cluster gets it transformed, statement by statement, so a
table added to `schema.sql` gets its cluster form without anyone keeping a second copy:

- A MergeTree-family table that holds visitor data (it has `site_id` and `visitor_id`), or that a
  materialized view fills from such a table, is *sharded*: `NAME_local` with the Replicated
  engine on every node (`{shard}`/`{replica}` macros, one Keeper path per table) and `NAME`, a
  `Distributed` table over them. The sharding key keeps one site's visitor on one shard, so a
  visitor's events and sessions live together and per-shard unique counts add up exactly.
- Any other MergeTree-family table (salts, keys, users, schema version: small and read often)
  is *replicated everywhere*: `NAME` itself is Replicated with one Keeper path for the whole
  cluster, so every node holds all of it and a `DELETE` (salt destruction) reaches every replica.
- Materialized views are created on every node and read the local tables: a view fires on the
  replica that receives an insert, and Keeper replicates what it wrote.
- Other engines (Null, Memory, ...) and plain views are created as they are on every node; a
  plain view keeps reading the unsuffixed names, which are the Distributed tables.

The names the application uses (`events`, `sessions`, `salts`, ...) exist on every node, so the
same collectors and dashboards run unchanged against any node of the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

LOCAL_SUFFIX = "_local"
SHARDING_COLUMNS = ("site_id", "visitor_id")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(", re.I)
_CREATE_MV = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s+TO\s+(\w+)\s+AS\s+(.*)$",
    re.I | re.S,
)
_CREATE_VIEW = re.compile(
    r"^CREATE\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s+AS\s+(.*)$", re.I | re.S
)
_ENGINE = re.compile(r"^ENGINE\s*=\s*(\w+)", re.I)
_MERGE_TREE = re.compile(r"^(\w*)MergeTree$")
_TABLE_REFERENCE = re.compile(r"\b(FROM|JOIN)(\s+)(\w+)\b(?![\w.(])", re.I)
_COLUMN_EXTRAS = re.compile(r"^(INDEX|PROJECTION|CONSTRAINT)\b", re.I)


class ClusterSchemaError(ValueError):
    """A statement of schema.sql has no cluster form; the message says which and why."""


@dataclass(frozen=True)
class Table:
    name: str
    if_not_exists: bool
    elements: tuple[str, ...]  # column definitions, then INDEX/PROJECTION/CONSTRAINT lines
    engine: str  # the engine name, e.g. "AggregatingMergeTree"
    engine_args: str  # the text inside the engine's parentheses, "" when it has none
    tail: str  # PARTITION BY / ORDER BY / TTL / SETTINGS ..., as written

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(e for e in self.elements if not _COLUMN_EXTRAS.match(e))

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column_name(c) for c in self.columns)

    @property
    def merge_tree(self) -> bool:
        return _MERGE_TREE.match(self.engine) is not None and not self.engine.startswith(
            "Replicated"
        )


@dataclass(frozen=True)
class View:
    name: str
    if_not_exists: bool
    target: str  # the TO table of a materialized view; "" for a plain view
    select: str

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(m.group(3) for m in _TABLE_REFERENCE.finditer(self.select))


Statement = Table | View | str


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) of each character outside quoted
    strings and identifiers, from `start`."""
    depth = 0
    quote = ""
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "'`\"":
            quote = ch
            continue
        depth += 1 if ch == "(" else -1 if ch == ")" else 0
        yield i, ch, depth


def _closing(text: str, start: int) -> int:
    """Index of the parenthesis closing the one at `start`, skipping quoted strings."""
    for i, ch, depth in _unquoted(text, start):
        if ch == ")" and depth == 0:
            return i
    raise ClusterSchemaError(f"unbalanced parentheses in: {text[:80]}...")


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at separators outside parentheses and quotes."""
    cuts = [i for i, ch, depth in _unquoted(text) if ch == separator and depth == 0]
    bounds = zip([-1, *cuts], [*cuts, len(text)], strict=True)
    parts = [text[a + 1 : b].strip() for a, b in bounds]
    return [part for part in parts if part]


def column_name(definition: str) -> str:
    name = definition.split(None, 1)[0]
    return name.strip('`"')


def column_type(definition: str) -> str:
    """The type of a column definition: everything up to DEFAULT/CODEC/TTL/COMMENT..."""
    rest = definition.split(None, 1)[1]
    words = re.compile(
        r"\s+(DEFAULT|MATERIALIZED|EPHEMERAL|ALIAS|CODEC|COMMENT|TTL|STATISTICS|SETTINGS)\b", re.I
    )
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and words.match(rest, i):
            return rest[:i].strip()
    return rest.strip()


def parse(sql: str) -> Statement:
    """Parse one single-node statement; what is not a table or a view stays text."""
    sql = sql.strip().rstrip(";").strip()
    table = _CREATE_TABLE.match(sql)
    if table:
        open_at = table.end() - 1
        close_at = _closing(sql, open_at)
        rest = sql[close_at + 1 :].strip()
        engine = _ENGINE.match(rest)
        if engine is None:
            raise ClusterSchemaError(f"table {table.group(2)} has no ENGINE clause")
        after = rest[engine.end() :]
        args = ""
        stripped = after.lstrip()
        if stripped.startswith("("):
            offset = len(after) - len(stripped)
            end = _closing(after, offset)
            args = after[offset + 1 : end].strip()
            after = after[end + 1 :]
        return Table(
            name=table.group(2),
            if_not_exists=table.group(1) is not None,
            elements=tuple(split_top_level(sql[open_at + 1 : close_at])),
            engine=engine.group(1),
            engine_args=args,
            tail=after.strip(),
        )
    view = _CREATE_MV.match(sql)
    if view:
        return View(view.group(2), view.group(1) is not None, view.group(3), view.group(4).strip())
    plain = _CREATE_VIEW.match(sql)
    if plain:
        return View(plain.group(2), plain.group(1) is not None, "", plain.group(3).strip())
    if re.match(r"^CREATE\s+MATERIALIZED\s+VIEW\b", sql, re.I):
        raise ClusterSchemaError(
            "a materialized view without `TO table` has no cluster form; give it a TO table: "
            + sql[:80]
        )
    return sql


def sharded_tables(parsed: Sequence[Statement]) -> set[str]:
    """MergeTree tables with visitor data, and the targets of views fed from them."""
    tables = {s.name: s for s in parsed if isinstance(s, Table) and s.merge_tree}
    sharded = {
        name for name, t in tables.items() if all(c in t.column_names for c in SHARDING_COLUMNS)
    }
    views = [s for s in parsed if isinstance(s, View) and s.target]
    changed = True
    while changed:
        changed = False
        for view in views:
            if view.target in tables and view.target not in sharded:
                if any(source in sharded for source in view.sources):
                    sharded.add(view.target)
                    changed = True
    return sharded


def sharding_key(table: Table) -> str:
    names = table.column_names
    if all(c in names for c in SHARDING_COLUMNS):
        return f"cityHash64({', '.join(SHARDING_COLUMNS)})"
    if "site_id" in names:
        return "cityHash64(site_id)"
    return "rand()"


def _replicated_tail(tail: str) -> str:
    # Replicated tables deduplicate inserts through Keeper; the single-node window setting
    # has no effect there, so its value moves to the replicated one (same retry guarantee).
    return re.sub(
        r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", tail
    )


def _distributed_column(definition: str) -> str:
    # A Distributed table stores nothing: codecs and column TTLs belong to the local table.
    out = definition
    codec = re.search(r"\s+CODEC\s*\(", out, re.I)
    if codec:
        end = _closing(out, codec.end() - 1)
        out = out[: codec.start()] + out[end + 1 :]
    ttl = re.search(r"\s+TTL\s+", out, re.I)
    if ttl:
        out = out[: ttl.start()]
    return out.strip()


def _create(kind: str, table: Table | View, name: str, cluster: str) -> str:
    exists = "IF NOT EXISTS " if table.if_not_exists else ""
    return f"CREATE {kind} {exists}{name} ON CLUSTER {cluster}"


def _elements(elements: Sequence[str]) -> str:
    return "(\n    " + ",\n    ".join(elements) + "\n)"


def _engine(table: Table, name: str, path_shard: str) -> str:
    prefix = _MERGE_TREE.match(table.engine)
    assert prefix is not None
    args = [f"'/clickhouse/tables/{path_shard}/{{database}}/{name}'", "'{replica}'"]
    if table.engine_args:
        args.append(table.engine_args)
    return f"ENGINE = Replicated{prefix.group(1)}MergeTree({', '.join(args)})"


def _rewrite_references(select: str, database: str, tables: set[str], sharded: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(3)
        if name not in tables:
            return match.group(0)
        local = name + LOCAL_SUFFIX if name in sharded else name
        return f"{match.group(1)}{match.group(2)}{database}.{local}"

    return _TABLE_REFERENCE.sub(replace, select)


def cluster_statements(statements: Sequence[str], cluster: str, database: str) -> list[str]:
    """The cluster DDL for the single-node `statements` (as `store.schema.statements` gives)."""
    for what, value in (("cluster", cluster), ("database", database)):
        if not _IDENTIFIER.match(value):
            raise ClusterSchemaError(f"{what} name {value!r} must be letters, digits and _")
    parsed = [parse(s) for s in statements]
    sharded = sharded_tables(parsed)
    tables = {s.name for s in parsed if isinstance(s, Table)}
    out = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"]
    for item in parsed:
        if isinstance(item, Table):
            out.extend(_table(item, cluster, database, item.name in sharded))
        elif isinstance(item, View):
            out.append(_view(item, cluster, database, tables, sharded))
        else:
            out.append(_other(item, cluster))
    return out


def _table(table: Table, cluster: str, database: str, sharded: bool) -> list[str]:
    if not table.merge_tree:
        engine = table.engine + (f"({table.engine_args})" if table.engine_args else "")
        return [
            f"{_create('TABLE', table, f'{database}.{table.name}', cluster)} "
            f"{_elements(table.elements)}\nENGINE = {engine}\n{table.tail}".rstrip()
        ]
    if not sharded:
        return [
            f"{_create('TABLE', table, f'{database}.{table.name}', cluster)} "
            f"{_elements(table.elements)}\n{_engine(table, table.name, 'all')}\n"
            f"{_replicated_tail(table.tail)}".rstrip()
        ]
    local = table.name + LOCAL_SUFFIX
    columns = [_distributed_column(c) for c in table.columns]
    return [
        f"{_create('TABLE', table, f'{database}.{local}', cluster)} "
        f"{_elements(table.elements)}\n{_engine(table, local, '{shard}')}\n"
        f"{_replicated_tail(table.tail)}".rstrip(),
        f"{_create('TABLE', table, f'{database}.{table.name}', cluster)} {_elements(columns)}\n"
        f"ENGINE = Distributed('{cluster}', '{database}', '{local}', {sharding_key(table)})",
    ]


def _view(view: View, cluster: str, database: str, tables: set[str], sharded: set[str]) -> str:
    if not view.target:
        # A plain view reads the unsuffixed names: the Distributed tables, the whole cluster.
        select = _rewrite_references(view.select, database, tables, set())
        return f"{_create('VIEW', view, f'{database}.{view.name}', cluster)} AS\n{select}"
    target = view.target + LOCAL_SUFFIX if view.target in sharded else view.target
    select = _rewrite_references(view.select, database, tables, sharded)
    return (
        f"{_create('MATERIALIZED VIEW', view, f'{database}.{view.name}', cluster)} "
        f"TO {database}.{target} AS\n{select}"
    )


def _other(sql: str, cluster: str) -> str:
    match = re.match(
        r"^(CREATE\s+(?:FUNCTION|DICTIONARY)\s+(?:IF\s+NOT\s+EXISTS\s+)?\w+)", sql, re.I
    )
    if match is None:
        raise ClusterSchemaError(
            "schema.sql holds a statement store/cluster.py cannot give a cluster form: " + sql[:80]
        )
    return f"{match.group(1)} ON CLUSTER {cluster}{sql[match.end() :]}"
