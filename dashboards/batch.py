"""Queries asked together: one read shared by the breakdowns of a dashboard page.

A site page asks for several visit breakdowns at once (sources, countries, browsers...), all
with the same period and filters. Each one alone folds the same visits again; asked as a
`Batch`, the first to need them reads them once for every breakdown of the batch (one
`GROUP BY GROUPING SETS`), and the others take their share of that answer. The answers are the
ones each query would get alone: only the number of reads changes.

A batch lives for one page (its data is as of that page's clock reading), and is safe to
share between the threads that answer the page's queries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

from dashboards.metrics import Dimension, dimension

T = TypeVar("T")


class Batch(Generic[T]):
    def __init__(self, dimensions: list[str], totals: bool = False) -> None:
        """`dimensions`: the breakdowns asked together; `totals`: the page's top stats too,
        which join the read of today's visits when a filter makes the breakdowns read them."""
        dims = [dimension(name) for name in dimensions]
        # Only breakdowns by one visit attribute share a read: their rows are one per visit.
        self.dims: list[Dimension] = [
            d for d in dims if d is not None and d.kind in ("visit", "session")
        ]
        self.totals = totals
        self._lock = threading.Lock()
        self._answers: dict[Hashable, Future[T]] = {}

    def once(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()` the first time `key` is asked; every later ask (from any thread) gets
        the same answer, or the same error."""
        with self._lock:
            answer = self._answers.get(key)
            mine = answer is None
            if answer is None:
                answer = self._answers[key] = Future()
        if mine:
            try:
                answer.set_result(compute())
            except BaseException as exc:  # noqa: BLE001 - the waiting threads get it too
                answer.set_exception(exc)
        return answer.result()
