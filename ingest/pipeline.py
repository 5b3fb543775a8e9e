"""Ingestion as a pipeline of small named steps, each of which may drop the event with a reason.

A step receives the `Hit` (raw, in memory only) and the `Event` being built (what may be
stored), fills in its part, and returns a drop reason or None. The first reason ends the run.
Steps compute from memory. A step that may call the store (the visitor salts) tells whether it
can answer from memory for given hits (`in_memory`), because the collector runs the pipeline on
its event loop only when it can.

Drop reasons are short, stable snake_case names: they appear in the `X-Dropped` header and in
/metrics (`pipeline.dropped`); redactions are counted by kind (`pipeline.redactions`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ingest.event import Event
from ingest.hit import Hit

log = logging.getLogger("firstparty.ingest")

Step = Callable[[Hit, Event], str | None]
Previous = Callable[[Hit, Event], int]
InMemory = Callable[[Iterable[Hit]], bool]


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    event: Event
    # The visitor hash under the previous day's salt, set just after midnight so the writer can
    # continue a session that spans it; 0 otherwise. Spooled, never stored in a table.
    prev_visitor_id: int = 0


class Pipeline:
    def __init__(
        self,
        steps: Sequence[tuple[str, Step]],
        previous: Previous | None = None,
        redactions: Counter[str] | None = None,
        in_memory: InMemory | None = None,
    ) -> None:
        self.steps = list(steps)
        self.previous = previous
        self._in_memory = in_memory
        self.dropped: Counter[str] = Counter()
        self.redactions: Counter[str] = Counter() if redactions is None else redactions
        self.accepted = 0

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def in_memory(self, hits: Iterable[Hit]) -> bool:
        """Whether processing `hits` needs no store call (and so cannot wait on one)."""
        return self._in_memory is None or self._in_memory(hits)

    def process(self, hit: Hit) -> Accepted | Dropped:
        event = Event(site_id=hit.domain, timestamp=hit.received_at, name=hit.name, visitor_id=0)
        for name, step in self.steps:
            try:
                reason = step(hit, event)
            except Exception as exc:  # noqa: BLE001 - a bug must not become a 500 or a leak
                # The type only: a message could quote the raw input.
                log.error("ingest step %s failed (%s); event dropped", name, type(exc).__name__)
                reason = "internal_error"
            if reason is not None:
                self.dropped[reason] += 1
                return Dropped(reason)
        self.accepted += 1
        prev = self.previous(hit, event) if self.previous is not None else 0
        return Accepted(event, prev if prev != event.visitor_id else 0)
