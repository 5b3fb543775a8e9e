"""Whether the server's helper threads get a CPU at all.

A thread in the SCHED_IDLE class that others keep from every CPU is runnable and does not run.
The kernel counts a thread's wait for a CPU only once it runs again (`schedstat`), so that
cannot show it; its state and CPU time can: runnable at one look and at the next, having run
for less than `share` of the time between.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from firstparty.priority import threads_of

_TICK = os.sysconf("SC_CLK_TCK")


def _state(pid: int, tid: int) -> tuple[str, int] | None:
    """A thread's state letter and CPU time in clock ticks; None once it has ended."""
    try:
        text = Path(f"/proc/{pid}/task/{tid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[11]) + int(fields[12])  # state, utime + stime (proc(5))


class Starvation:
    """Looks at every thread of `pid` but its main one, each time `check` is called."""

    def __init__(
        self,
        pid: int | None = None,
        share: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.share = share
        self.clock = clock
        self._seen: dict[int, tuple[str, int]] = {}
        self._seen_at = clock()
        self._since: float | None = None  # when the current stretch of starving began

    def _look(self) -> dict[int, tuple[str, int]]:
        out = {}
        for tid in threads_of(self.pid):
            if tid != self.pid and (state := _state(self.pid, tid)) is not None:
                out[tid] = state
        return out

    def check(self) -> float:
        """How long (seconds) some helper thread has been waiting for a CPU; 0 if none is."""
        now, seen = self.clock(), self._look()
        ticks = max(1.0, (now - self._seen_at) * _TICK * self.share)
        starving = any(
            state == "R" and before[0] == "R" and cpu - before[1] < ticks
            for tid, (state, cpu) in seen.items()
            if (before := self._seen.get(tid)) is not None
        )
        if not starving:
            self._since = None
        elif self._since is None:
            self._since = self._seen_at
        self._seen, self._seen_at = seen, now
        return 0.0 if self._since is None else now - self._since
