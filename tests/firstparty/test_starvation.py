"""Starvation: a helper thread that does not get a CPU, seen in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from firstparty.catchup import allowed_cpus
from firstparty.starvation import Starvation
from tests.conftest import busy_process, ready_child

# A thread in the idle class that always wants a CPU; the main thread sleeps.
SPINNER = """
import os, threading, time
def spin():
    os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
time.sleep(120)
"""
CPU = min(allowed_cpus())


def on_one_cpu() -> None:
    os.sched_setaffinity(0, {CPU})


@pytest.fixture
def spinner() -> Iterator[int]:
    with ready_child(SPINNER, preexec_fn=on_one_cpu) as pid:
        yield pid


def watch(starvation: Starvation, looks: int) -> list[float]:
    out = []
    for _ in range(looks):
        time.sleep(0.5)  # the kernel's accounting, not ours: it needs real time to pass
        out.append(starvation.check())
    return out


def test_a_thread_that_gets_its_cpu_is_not_starving(spinner: int) -> None:
    assert watch(Starvation(spinner), 3) == [0.0, 0.0, 0.0]


def test_a_thread_kept_from_its_cpu_is_starving_and_for_how_long(spinner: int) -> None:
    busy = busy_process(preexec_fn=on_one_cpu)
    try:
        looks = watch(Starvation(spinner), 4)
    finally:
        busy.kill()
        busy.wait()
    # The first look has nothing to compare with; then the time since the first look grows.
    assert looks[0] == 0.0 or looks[0] >= 0.4
    assert looks[-1] >= 1.0 and looks == sorted(looks)
    # Once the busy process is gone it runs again.
    starvation = Starvation(spinner)
    assert watch(starvation, 2)[-1] == 0.0


def test_the_main_thread_and_ended_processes_do_not_count() -> None:
    # A process whose only thread is busy is not starving (its main thread is not a helper),
    # and a process that has ended has no threads to look at.
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert watch(Starvation(ended.pid), 2) == [0.0, 0.0]
