"""kill -9 a real server under load at random moments, many times: after the last restart every
acknowledged event is stored exactly once, in `events` and in the sessions view."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Server, start_server
from tests.firstparty.test_server_ingest import (
    Load,
    assert_exactly_once,
    child_pids,
    page_counts,
    wait_drained,
)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def kill_server(server: Server, whole_group: bool) -> None:
    """SIGKILL the server; its workers too, or let them die with it (PDEATHSIG)."""
    workers = child_pids(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    if whole_group:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 20
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their server"
        time.sleep(0.02)


def crash_rounds(root: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    acked: set[int] = set()
    sent = 0
    interrupted_batches = 0
    for _ in range(rounds):
        # Batches go in back to back (no waiting to grow), so most kills land in one.
        server = start_server(root, workers=1, extra_env={"FIRSTPARTY_WRITER_MAX_WAIT": "0.05"})
        with Load(server.url, threads=3, start=sent) as load:
            load.wait_for_acks(1)  # a fresh worker's first request compiles its regexes
            time.sleep(rng.uniform(0.05, 0.8))
            kill_server(server, whole_group=rng.random() < 0.5)
        acked |= load.acked
        assert not load.dropped, f"events dropped: {sorted(set(load.dropped.values()))}"
        sent = load.last
        if list((root / "data" / "spool").glob("batch-*.json")):
            interrupted_batches += 1
    assert len(acked) >= rounds * 10, "too little load to prove anything"
    final = start_server(root, workers=1)
    try:
        wait_drained(root, timeout=60)
        assert_exactly_once(root, acked)
        assert sum(page_counts(root).values()) >= len(acked)
    finally:
        final.stop()
    print(f"{rounds} kills, {interrupted_batches} during a batch, {len(acked)} events acknowledged")


def test_kill_9_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    crash_rounds(tmp_path / "srv", rounds=20, seed=5)


@pytest.mark.slow
def test_kill_9_many_more_times(tmp_path: Path) -> None:
    crash_rounds(tmp_path / "srv", rounds=100, seed=int(time.time()))
