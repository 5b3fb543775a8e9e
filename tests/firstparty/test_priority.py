"""The server's helper threads: niceness, the idle class, and whether it can be left again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from firstparty.priority import idle_is_reversible
from tests.conftest import WITHOUT_SYS_NICE, needs_dropping

# Run in a child process: the classes of its threads are what the test looks at, and the test
# process must keep its own.
CHILD = """
import os, threading, time
from firstparty.priority import idle_is_reversible, set_helper_threads
ready = threading.Event()
helper = threading.Thread(target=lambda: (ready.set(), time.sleep(30)), daemon=True)
helper.start()
ready.wait()
tid = helper.native_id
def state():
    return (os.sched_getscheduler(tid) == os.SCHED_IDLE, os.getpriority(os.PRIO_PROCESS, tid))
print("reversible", idle_is_reversible())
set_helper_threads(idle=True)
print("idle", state())
set_helper_threads(idle=False)
print("lifted", state())
print("main", os.sched_getscheduler(0) == os.SCHED_IDLE, os.getpriority(os.PRIO_PROCESS, 0))
"""


def child(prefix: list[str]) -> dict[str, str]:
    run = subprocess.run(
        [*prefix, sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    )
    return dict(line.split(" ", 1) for line in run.stdout.splitlines())


@pytest.mark.skipif(
    not idle_is_reversible(), reason="this test process may not leave the idle class"
)
def test_with_the_right_the_helper_threads_go_into_the_idle_class_and_out_again() -> None:
    out = child([])
    assert out == {
        "reversible": "True",
        "idle": "(True, 10)",
        "lifted": "(False, 10)",
        "main": "False 0",
    }


@needs_dropping
def test_without_cap_sys_nice_nor_rlimit_nice_the_idle_class_is_for_good() -> None:
    out = child(WITHOUT_SYS_NICE)
    assert out["reversible"] == "False"
    assert out["idle"] == "(True, 10)"
    assert out["lifted"] == "(True, 10)"  # refused, and nothing else broke
    assert out["main"] == "False 0"
