"""While the writer falls behind, the HTTP workers leave it a CPU.

With `FIRSTPARTY_ENGINE_PRIORITY=idle` the server's helper threads (the writer and the embedded
engine) run in the SCHED_IDLE class, only on CPU time nothing else wants: that keeps the
engine's insert bursts out of the beacons' latency, but when the workers keep every CPU busy
the writer gets almost nothing (28,000 of 226,000 accepted events stored in 15 s of
saturation). An unprivileged process cannot take a thread out of that class again, yet it may
say where its own processes run: while the oldest unstored event is older than `start_after`
seconds, every thread of every worker is kept off one CPU, which the idle-class threads then
have to themselves; once the backlog is younger than `stop_below`, the workers get every CPU
back. A store that refuses inserts is not helped by a CPU, so an unhealthy writer never takes
one. Threads and workers that start while the workers are kept off are moved on the next call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from firstparty.priority import threads_of


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may run on (a container's or taskset's limit included)."""
    return frozenset(os.sched_getaffinity(0))


def place(pids: Iterable[int], cpus: frozenset[int]) -> None:
    """Let every thread of `pids` run only on `cpus`."""
    for pid in pids:
        for tid in threads_of(pid):
            with contextlib.suppress(OSError):  # the thread ended meanwhile
                os.sched_setaffinity(tid, cpus)


class CatchUp:
    """Decides, on each report of the writer's backlog, where the workers may run."""

    def __init__(
        self, start_after: float, stop_below: float, cpus: frozenset[int] | None = None
    ) -> None:
        self.start_after = start_after
        self.stop_below = stop_below
        self.cpus = allowed_cpus() if cpus is None else cpus
        self.writer_cpu = max(self.cpus)
        self.active = False
        self.started = 0  # how many times the workers left a CPU to the writer

    @property
    def possible(self) -> bool:
        return len(self.cpus) > 1

    def behind(self, backlog_age: float, healthy: bool) -> bool:
        """Whether the workers should leave the writer a CPU now (with hysteresis)."""
        if not healthy or not self.possible:
            return False
        return backlog_age >= (self.stop_below if self.active else self.start_after)

    def update(self, backlog_age: float, healthy: bool, workers: Iterable[int]) -> str | None:
        """Place the workers; returns a line for the log when the state changes."""
        was = self.active
        self.active = self.behind(backlog_age, healthy)
        if self.active:
            place(workers, self.cpus - {self.writer_cpu})
        elif was:
            place(workers, self.cpus)
        if self.active == was:
            return None
        if self.active:
            self.started += 1
            return (
                f"writer: the oldest event waits {backlog_age:.1f}s; HTTP workers leave CPU "
                f"{self.writer_cpu} to the writer until it has caught up"
            )
        return "writer: caught up; HTTP workers run on every CPU again"
