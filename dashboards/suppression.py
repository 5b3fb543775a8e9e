"""k-suppression: no breakdown cell shows fewer than `privacy.min_visitors` visitors.

Rows below k are folded into one "(other)" row. Folding alone is not enough: if a single small
row were folded, "(other)" would equal it, and `total - sum(visible rows)` would reveal it too.
So the fold always takes at least two rows and at least k visitors, pulling in the smallest
visible rows as complementary cells until both hold; and if even everything together stays
below k, the whole group is withheld (metrics null). The "(other)" row then only ever reveals
a sum of two or more rows that together reach k, from which no single row can be recovered.
Filtered aggregates (a filter narrows the population like a breakdown cell) below k are
withheld the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

OTHER = "(other)"

# How to combine folded rows: sums, and means weighted by what they are a mean of.
_SUMS = (
    "visitors",
    "visits",
    "pageviews",
    "events",
    "_exits",
    "_visits",
    "_bounces",
    "_duration",
    "percentage",
)
_WEIGHTED = {
    "time_on_page": "pageviews",
    "scroll_depth": "pageviews",
}


@dataclass
class Row:
    dims: list[Any]
    metrics: dict[str, Any] = field(default_factory=dict)

    def visitors(self) -> int:
        return int(self.metrics.get("visitors") or 0)


def _combine(rows: Sequence[Row], dims: list[Any]) -> Row:
    out = Row(dims, {})
    names = {name for row in rows for name in row.metrics}
    for name in names:
        if name in _SUMS:
            out.metrics[name] = sum(row.metrics.get(name) or 0 for row in rows)
        elif name in _WEIGHTED:
            weight = _WEIGHTED[name]
            total = sum(row.metrics.get(weight) or 0 for row in rows)
            value = sum(
                (row.metrics.get(name) or 0) * (row.metrics.get(weight) or 0) for row in rows
            )
            out.metrics[name] = round(value / total) if total else 0
        else:
            out.metrics[name] = None  # recomputed by the caller (ratios), or unknown
    return out


def fold(rows: list[Row], k: int, dim_index: list[int]) -> tuple[list[Row], int]:
    """Fold rows below k visitors into "(other)", per group of the dimensions not in `dim_index`
    (e.g. per time bucket). Returns the rows and how many were folded."""
    if k <= 1 or not dim_index:
        return rows, 0
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        key = tuple(v for i, v in enumerate(row.dims) if i not in dim_index)
        groups.setdefault(key, []).append(row)
    out: list[Row] = []
    folded = 0
    for group in groups.values():
        small = [r for r in group if r.visitors() < k]
        if not small:
            out.extend(group)
            continue
        big = sorted((r for r in group if r.visitors() >= k), key=Row.visitors)
        while (len(small) < 2 or sum(r.visitors() for r in small) < k) and big:
            small.append(big.pop(0))
        folded += len(small)
        dims = [OTHER if i in dim_index else v for i, v in enumerate(small[0].dims)]
        other = _combine(small, dims)
        if other.visitors() < k or len(small) < 2:
            other.metrics = {name: None for name in other.metrics}
        out.extend(big)
        out.append(other)
    return out, folded


def withhold_small(rows: list[Row], k: int) -> int:
    """Null the metrics of rows below k (filtered aggregates and time buckets)."""
    count = 0
    for row in rows:
        if k > 1 and 0 < row.visitors() < k:
            row.metrics = {name: None for name in row.metrics}
            count += 1
    return count
