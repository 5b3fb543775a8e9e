"""The server process yields the CPU to its HTTP workers.

A 202 waits for the worker's pipeline and fsync, so a worker's latency is the beacon's. The
server process (the writer's inserts, the embedded engine's query and merge threads, the admin
socket) can wait: under contention on a small machine its bursts were the beacons' latency tail
(p99 at 5,000 beacons/s 11-17 ms, 9.6-10 ms with this). Linux sets niceness per thread and a
new thread inherits it, so every thread but the main one is lowered; the main thread keeps the
default, because the workers it starts (and restarts) inherit its niceness and an unprivileged
process could not raise theirs again. The engine creates threads as it needs them, so the
server calls `lower_helper_threads` periodically.

`idle` (opt-in, `FIRSTPARTY_ENGINE_PRIORITY=idle`) puts those threads in the `SCHED_IDLE`
class instead: they run only on a CPU nothing else wants. At 5,000 beacons/s on 2 cores that
took p99 from 24-29 ms to 10.3-10.8 ms (docs/benchmarks.md, 2026-12-05). The price: when the
workers saturate every CPU the writer gets almost no CPU time (28k of 226k accepted events
stored over 15 s), and no unprivileged process can take a thread out of that class again. So
while the writer is behind, the workers leave it a CPU (`firstparty/catchup.py`); other
programs that keep every CPU busy still starve it, and with one CPU `idle` falls back to `nice`.
"""

from __future__ import annotations

import os
from pathlib import Path

NICENESS = 10
PRIORITIES = ("nice", "idle")  # the values of FIRSTPARTY_ENGINE_PRIORITY


def threads_of(pid: int) -> list[int]:
    """Every thread of `pid`, or none if it has ended (or this is not Linux)."""
    try:
        return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


def lower_helper_threads(niceness: int = NICENESS, idle: bool = False) -> int:
    """Set `niceness` (or, with `idle`, the SCHED_IDLE class) on every thread of this process
    but the main one; returns how many changed."""
    main = os.getpid()
    changed = 0
    for tid in threads_of(main):  # none where per-thread niceness is not available
        if tid == main:
            continue
        try:
            if idle:
                if os.sched_getscheduler(tid) != os.SCHED_IDLE:
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                    changed += 1
            elif os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed += 1
        except OSError:  # the thread ended meanwhile
            continue
    return changed
