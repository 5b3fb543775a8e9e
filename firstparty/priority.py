"""The server process yields the CPU to its HTTP workers.

A 202 waits for the worker's pipeline and fsync, so a worker's latency is the beacon's. The
server process (the writer's inserts, the embedded engine's query and merge threads, the admin
socket) can wait: under contention on a small machine its bursts were the beacons' latency tail
(p99 at 5,000 beacons/s 11-17 ms, 9.6-10 ms with this). Linux sets niceness per thread and a
new thread inherits it, so every thread but the main one is lowered; the main thread keeps the
default, because the workers it starts (and restarts) inherit its niceness and an unprivileged
process could not raise theirs again. The engine creates threads as it needs them, so the
server calls `set_helper_threads` periodically.

In the `SCHED_IDLE` class those threads run only on a CPU nothing else wants: at 5,000
beacons/s on 2 cores that took p99 from a median of 14 ms to 8.4 ms (docs/benchmarks.md,
2026-12-05). But a thread in that class gets no CPU at all while others keep every CPU busy, so
the class is only safe if the server can take its threads out of it when the writer falls
behind (`firstparty/catchup.py`). Leaving the class is a lower niceness in the kernel's eyes
(sched(7)): it needs `CAP_SYS_NICE` or an `RLIMIT_NICE` of at least 20 - `NICENESS` (a
container's `ulimits: nice: 10`). `idle_is_reversible` finds out by trying.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

NICENESS = 10
# The values of FIRSTPARTY_ENGINE_PRIORITY; `auto`: `idle` where it is reversible, else `nice`.
PRIORITIES = ("auto", "nice", "idle")


def threads_of(pid: int) -> list[int]:
    """Every thread of `pid`, or none if it has ended (or this is not Linux)."""
    try:
        return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


def _set_class(tid: int, idle: bool, niceness: int) -> bool:
    """Put one thread at `niceness`, in or out of the idle class; whether anything changed."""
    changed = False
    # The niceness first, also for the idle class (which ignores it): leaving that class later
    # is allowed up to the thread's own niceness, so RLIMIT_NICE 20 - NICENESS suffices.
    if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
        changed = True
    in_idle = os.sched_getscheduler(tid) == os.SCHED_IDLE
    if idle and not in_idle:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        changed = True
    elif in_idle and not idle:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        changed = True
    return changed


def set_helper_threads(idle: bool = False, niceness: int = NICENESS) -> int:
    """Put every thread of this process but the main one at `niceness`, in the SCHED_IDLE
    class or (if allowed) out of it; returns how many changed."""
    main = os.getpid()
    changed = 0
    for tid in threads_of(main):  # none where per-thread scheduling is not available
        if tid == main:
            continue
        try:
            changed += _set_class(tid, idle, niceness)
        except OSError:  # the thread ended meanwhile, or it may not leave the idle class
            continue
    return changed


def idle_is_reversible(niceness: int = NICENESS) -> bool:
    """Whether this process may take a thread out of the idle class again (tried on a thread
    made for the purpose). Raises the soft RLIMIT_NICE to the hard one first, which needs no
    privilege, so that a limit given to the container or the service counts."""
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NICE)
        resource.setrlimit(resource.RLIMIT_NICE, (hard, hard))
    except (OSError, ValueError):
        pass
    result: list[bool] = []

    def attempt() -> None:
        tid = threading.get_native_id()
        try:
            _set_class(tid, True, niceness)
            _set_class(tid, False, niceness)
            result.append(os.sched_getscheduler(tid) != os.SCHED_IDLE)
        except (OSError, AttributeError):  # not permitted, or no such calls on this system
            result.append(False)

    probe = threading.Thread(target=attempt, name="priority-probe")
    probe.start()
    probe.join()
    return result == [True]
