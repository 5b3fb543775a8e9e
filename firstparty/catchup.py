"""While the writer falls behind, it gets more CPU.

With `FIRSTPARTY_ENGINE_PRIORITY=idle` (and `auto` where it means idle) the server's helper
threads (the writer and the embedded engine) run in the SCHED_IDLE class, only on CPU time
nothing else wants: that keeps the engine's insert bursts out of the beacons' latency, but when
the workers, or any other program, keep every CPU busy the writer gets almost nothing (28,000 of
226,000 accepted events stored in 15 s of saturation). So while the oldest unstored event is
older than `start_after` seconds, the writer is helped until the backlog is younger than
`stop_below`, in one of two ways:

- `lift`: the helper threads leave the idle class (at niceness 10, as `nice` runs them), where
  the server may do that (`priority.idle_is_reversible`). This helps against any load, so it
  also happens when a helper thread has waited `STARVED_AFTER` seconds for a CPU (a dashboard
  query, with no events arriving), for at least `hold` seconds.
- otherwise the workers leave it a CPU: every thread of every worker is kept off one CPU, which
  the idle-class threads then have to themselves. That helps only against the workers' load.

A store that refuses inserts is not helped by CPU time, so a backlog of an unhealthy writer
never counts. Threads and workers that start meanwhile are moved on the next call.
"""

from __future__ import annotations

import contextlib
import os
import time
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


# A helper thread that has waited this long (seconds) for a CPU gets out of the idle class.
STARVED_AFTER = 1.0


class CatchUp:
    """Decides, on each report of the writer's backlog, whether the writer needs help; with
    `lift` the caller applies it (`lifting`), otherwise this places the workers."""

    def __init__(
        self,
        start_after: float,
        stop_below: float,
        cpus: frozenset[int] | None = None,
        lift: bool = False,
        hold: float = 10.0,
    ) -> None:
        self.start_after = start_after
        self.stop_below = stop_below
        self.cpus = allowed_cpus() if cpus is None else cpus
        self.writer_cpu = max(self.cpus)
        self.lift = lift
        self.hold = hold
        self.active = False
        self.started = 0  # how many times the writer was helped
        self._held_until = 0.0

    @property
    def possible(self) -> bool:
        return self.lift or len(self.cpus) > 1

    @property
    def lifting(self) -> bool:
        """Whether the helper threads should be out of the idle class now."""
        return self.active and self.lift

    def behind(self, backlog_age: float, healthy: bool) -> bool:
        """Whether the backlog calls for help now (with hysteresis)."""
        if not healthy or not self.possible:
            return False
        return backlog_age >= (self.stop_below if self.active else self.start_after)

    def update(
        self,
        backlog_age: float,
        healthy: bool,
        workers: Iterable[int],
        starved: float = 0.0,
        now: float | None = None,
    ) -> str | None:
        """Help the writer or stop; returns a line for the log when that changes. `starved`:
        how long a helper thread has waited for a CPU (`starvation.Starvation`)."""
        now = time.monotonic() if now is None else now
        was = self.active
        hungry = self.lift and starved >= STARVED_AFTER
        if hungry:
            self._held_until = now + self.hold
        self.active = self.behind(backlog_age, healthy) or now < self._held_until
        if not self.lift:
            if self.active:
                place(workers, self.cpus - {self.writer_cpu})
            elif was:
                place(workers, self.cpus)
        if self.active == was:
            return None
        if not self.active:
            if self.lift:
                return "writer: caught up; the writer and the engine are back in the idle class"
            return "writer: caught up; HTTP workers run on every CPU again"
        self.started += 1
        if hungry and backlog_age < self.start_after:
            why = f"the engine's threads have waited {starved:.1f}s for a CPU"
        else:
            why = f"the oldest event waits {backlog_age:.1f}s"
        if self.lift:
            return f"writer: {why}; the writer and the engine leave the idle class for now"
        cpu = self.writer_cpu
        return f"writer: {why}; HTTP workers leave CPU {cpu} to the writer until it has caught up"
