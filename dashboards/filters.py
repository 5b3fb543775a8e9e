"""Filters (Plausible Stats API v2 syntax) parsed into a tree and compiled to SQL.

`["is", "visit:country", ["BE", "FR"]]`, `["contains", "event:page", ["/blog"]]`,
`["matches", "event:page", ["^/docs/.+"]]`, their `_not` forms, `["and"|"or", [...]]` and
`["not", filter]`. An optional fourth element `{"case_sensitive": false}` is honoured.

Filter values are always bound parameters; dimension names only pick SQL we wrote ourselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dashboards.metrics import Dimension, dimension
from firstparty.config import Goal

LEAF_OPS = ("is", "is_not", "contains", "contains_not", "matches", "matches_not")
MAX_VALUES = 100
MAX_DEPTH = 8


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Leaf:
    op: str
    dim: Dimension
    values: tuple[str, ...]
    case_sensitive: bool = True


@dataclass(frozen=True)
class Logic:
    op: str  # "and", "or", "not"
    children: tuple[Filter, ...]


Filter = Leaf | Logic


class Params:
    """Collects bound parameters; every value reaches ClickHouse as `{name:Type}`."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, type_: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "{" + name + ":" + type_ + "}"


def _where(path: str) -> str:
    return f"`filters{path}`"


def parse(raw: Any, goals: tuple[Goal, ...], path: str = "", depth: int = 0) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterError(f"{_where(path)} nests deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise FilterError(f"{_where(path)} must be a list like [operator, dimension, [values]]")
    op = raw[0]
    if op in ("and", "or"):
        if len(raw) != 2 or not isinstance(raw[1], list) or not raw[1]:
            raise FilterError(f"{_where(path)}: `{op}` takes one non-empty list of filters")
        children = tuple(
            parse(child, goals, f"{path}[1][{i}]", depth + 1) for i, child in enumerate(raw[1])
        )
        return Logic(op, children)
    if op == "not":
        if len(raw) != 2:
            raise FilterError(f"{_where(path)}: `not` takes exactly one filter")
        return Logic("not", (parse(raw[1], goals, f"{path}[1]", depth + 1),))
    if op not in LEAF_OPS:
        raise FilterError(
            f"{_where(path)}: unknown operator {op!r}; use one of "
            + ", ".join((*LEAF_OPS, "and", "or", "not"))
        )
    if len(raw) not in (3, 4) or not isinstance(raw[1], str):
        raise FilterError(f"{_where(path)} must be [operator, dimension, [values]]")
    dim = dimension(raw[1])
    if dim is None or dim.kind == "time":
        raise FilterError(f"{_where(path)}: unknown filter dimension {raw[1]!r}")
    values = raw[2]
    if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
        raise FilterError(
            f"{_where(path)}: the values must be a non-empty list of at most {MAX_VALUES}"
        )
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise FilterError(f"{_where(path)}: the values must be strings or integers")
    texts = tuple(str(v) for v in values)
    if any(len(v) > 2000 for v in texts):
        raise FilterError(f"{_where(path)}: a value is longer than 2000 characters")
    case_sensitive = True
    if len(raw) == 4:
        modifiers = raw[3]
        if not isinstance(modifiers, dict) or set(modifiers) - {"case_sensitive"}:
            raise FilterError(
                f'{_where(path)}: the fourth element may only be {{"case_sensitive": bool}}'
            )
        flag = modifiers.get("case_sensitive", True)
        if not isinstance(flag, bool):
            raise FilterError(f"{_where(path)}: case_sensitive must be true or false")
        case_sensitive = flag
    if dim.kind == "goal":
        if op not in ("is", "contains"):
            raise FilterError(
                f"{_where(path)}: event:goal can only be filtered with is or contains"
            )
        known = {g.name for g in goals}
        if op == "is":
            unknown = [v for v in texts if v not in known]
            if unknown:
                raise FilterError(
                    f"{_where(path)}: unknown goal {unknown[0]!r}; configured goals: "
                    + (", ".join(sorted(known)) or "none (add [[goal]] to the config)")
                )
    if op.startswith("matches"):
        for v in texts:
            try:
                re.compile(v)
            except re.error as exc:
                raise FilterError(
                    f"{_where(path)}: {v!r} is not a valid regular expression: {exc}"
                ) from None
    return Leaf(op, dim, texts, case_sensitive)


def leaves(tree: Filter) -> list[Leaf]:
    if isinstance(tree, Leaf):
        return [tree]
    return [leaf for child in tree.children for leaf in leaves(child)]


def glob_regex(pattern: str) -> str:
    """A page pattern (`/blog/**`, `/docs/*/intro`) as an anchored RE2 expression."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "^" + "".join(out) + "$"


def goal_condition(goal: Goal, params: Params) -> str:
    """The events that complete `goal`: a custom event name, or a pageview matching a path."""
    if goal.event:
        return f"(name = {params.add(goal.event, 'String')})"
    return f"(name = 'pageview' AND match(pathname, {params.add(glob_regex(goal.page), 'String')}))"


def leaf_sql(leaf: Leaf, expr: str, params: Params) -> str:
    """`leaf` applied to the SQL expression `expr`."""
    values = list(leaf.values)
    base = leaf.op.removesuffix("_not")
    negate = leaf.op.endswith("_not")
    if base == "is":
        if leaf.case_sensitive:
            sql = f"{expr} IN {params.add(values, 'Array(String)')}"
        else:
            sql = f"lowerUTF8({expr}) IN {params.add([v.lower() for v in values], 'Array(String)')}"
    elif base == "contains":
        fn = "multiSearchAny" if leaf.case_sensitive else "multiSearchAnyCaseInsensitiveUTF8"
        sql = f"{fn}({expr}, {params.add(values, 'Array(String)')})"
    else:
        patterns = values if leaf.case_sensitive else ["(?i)" + v for v in values]
        sql = f"arrayExists(r -> match({expr}, r), {params.add(patterns, 'Array(String)')})"
    return f"NOT ({sql})" if negate else f"({sql})"


def compile_tree(tree: Filter, leaf_fn: Callable[[Leaf], str]) -> str:
    if isinstance(tree, Leaf):
        return leaf_fn(tree)
    parts = [compile_tree(child, leaf_fn) for child in tree.children]
    if tree.op == "not":
        return f"NOT {parts[0]}"
    return "(" + f" {tree.op.upper()} ".join(parts) + ")"


def goals_matching(leaf: Leaf, goals: tuple[Goal, ...]) -> list[Goal]:
    if leaf.op == "is":
        return [g for g in goals if g.name in leaf.values]
    needles = leaf.values if leaf.case_sensitive else tuple(v.lower() for v in leaf.values)
    return [
        g
        for g in goals
        if any(n in (g.name if leaf.case_sensitive else g.name.lower()) for n in needles)
    ]
