"""The workers leave the writer a CPU while it is behind: real processes, real affinities."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from firstparty.catchup import CatchUp, allowed_cpus
from firstparty.priority import threads_of
from tests.conftest import ready_child

CPUS = allowed_cpus()
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs or more")

# A worker stand-in: a process with a few threads, started by the tests' own process.
THREADED = """
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def worker() -> Iterator[int]:
    with ready_child(THREADED) as pid:
        yield pid


def placement(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(tid)) for tid in threads_of(pid)}


def test_the_writer_takes_a_cpu_after_start_after_and_gives_it_back_below_stop_below() -> None:
    catch_up = CatchUp(start_after=3.0, stop_below=1.0, cpus=frozenset({0, 1}))
    assert catch_up.update(2.9, healthy=True, workers=[]) is None
    assert not catch_up.active
    assert "the oldest event waits 3.0s" in (catch_up.update(3.0, True, []) or "")
    assert catch_up.active
    # Between the two thresholds it keeps whatever it was doing.
    assert catch_up.update(1.5, True, []) is None and catch_up.active
    caught_up = "writer: caught up; HTTP workers run on every CPU again"
    assert catch_up.update(0.9, True, []) == caught_up
    assert not catch_up.active
    assert catch_up.update(2.0, True, []) is None and not catch_up.active
    assert catch_up.started == 1


def test_a_store_that_refuses_inserts_gets_no_cpu_and_one_cpu_has_none_to_give() -> None:
    catch_up = CatchUp(start_after=3.0, stop_below=1.0, cpus=frozenset({0, 1}))
    assert catch_up.update(60.0, healthy=False, workers=[]) is None
    assert not catch_up.active
    catch_up.update(60.0, True, [])
    assert catch_up.update(60.0, False, []) is not None  # the store went away: give it back
    assert not catch_up.active
    single = CatchUp(start_after=3.0, stop_below=1.0, cpus=frozenset({0}))
    assert not single.possible
    assert single.update(60.0, True, []) is None and not single.active


@needs_two_cpus
def test_every_thread_of_every_worker_leaves_one_cpu_and_gets_it_back(worker: int) -> None:
    assert len(threads_of(worker)) == 4
    catch_up = CatchUp(start_after=3.0, stop_below=1.0)
    catch_up.update(5.0, True, [worker])
    assert placement(worker) == {CPUS - {max(CPUS)}}
    catch_up.update(0.5, True, [worker])
    assert placement(worker) == {CPUS}


@needs_two_cpus
def test_a_worker_that_ended_meanwhile_is_skipped(worker: int) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    catch_up = CatchUp(start_after=3.0, stop_below=1.0)
    catch_up.update(5.0, True, [ended.pid, worker])
    assert placement(worker) == {CPUS - {max(CPUS)}}


def test_where_the_idle_class_can_be_left_the_writer_leaves_it_instead(worker: int) -> None:
    # One CPU is enough: nothing has to be left free for it.
    catch_up = CatchUp(start_after=2.0, stop_below=1.0, cpus=frozenset({0}), lift=True)
    assert catch_up.possible and not catch_up.lifting
    before = placement(worker)
    line = catch_up.update(2.0, True, [worker], now=0.0)
    lifted = "the writer and the engine leave the idle class for now"
    assert line == f"writer: the oldest event waits 2.0s; {lifted}"
    assert catch_up.lifting
    assert placement(worker) == before  # the workers keep every CPU
    assert catch_up.update(1.5, True, [worker], now=1.0) is None and catch_up.lifting
    back = "writer: caught up; the writer and the engine are back in the idle class"
    assert catch_up.update(0.5, True, [worker], now=2.0) == back
    assert not catch_up.lifting
    assert catch_up.update(60.0, False, [worker], now=3.0) is None  # a failing store


def test_threads_starved_of_cpu_leave_the_idle_class_for_the_hold_time() -> None:
    catch_up = CatchUp(start_after=2.0, stop_below=1.0, lift=True, hold=10.0)
    assert catch_up.update(0.0, True, [], starved=0.5, now=100.0) is None
    line = catch_up.update(0.0, True, [], starved=1.0, now=100.5)
    assert line is not None and "the engine's threads have waited 1.0s for a CPU" in line
    # Out of the idle class they are not starved any more; they stay out for the hold time.
    assert catch_up.update(0.0, True, [], starved=0.0, now=110.4) is None and catch_up.lifting
    assert "back in the idle class" in (catch_up.update(0.0, True, [], now=110.6) or "")
    # Without the right to leave the class, starving is the backlog's business alone.
    pinned = CatchUp(start_after=3.0, stop_below=1.0, cpus=frozenset({0, 1}))
    assert pinned.update(0.0, True, [], starved=5.0, now=0.0) is None and not pinned.active
