"""A real `firstparty serve`: SIGTERM flush, outages, quota, corrupt spool, metrics, health,
worker crashes, and a second collector joining the first one's store."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from firstparty.catchup import allowed_cpus
from firstparty.priority import NICENESS, idle_is_reversible, threads_of
from ingest.event import Event
from ingest.spool import SEALED, encode
from ingest.writer import FAULT_FILE
from store.remote import RemoteStore, socket_path
from tests.conftest import (
    SITE_CONFIG,
    WITHOUT_SYS_NICE,
    Server,
    busy_process,
    firstparty,
    needs_dropping,
    start_server,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CPUS = allowed_cpus()
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs or more")
needs_lifting = pytest.mark.skipif(
    not idle_is_reversible(), reason="this machine may not take threads out of the idle class"
)
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def page(n: int) -> str:
    """A pathname unique to `n`; letters only, so the ID redaction leaves it alone."""
    return "/e/x" + "".join(chr(ord("a") + int(d)) for d in str(n))


def post(client: httpx.Client, url: str, n: int, ua: str = CHROME) -> httpx.Response:
    body = {"n": "pageview", "u": f"https://example.com{page(n)}", "d": "example.com"}
    return client.post(
        url + "/api/event",
        content=json.dumps(body).encode(),
        headers={"content-type": "text/plain", "user-agent": ua},
    )


class Load:
    """Background senders; `acked` holds the numbers of the events answered 202."""

    def __init__(self, url: str, threads: int = 4, start: int = 0) -> None:
        self.url = url
        self.acked: set[int] = set()
        self.dropped: dict[int, str] = {}  # 202 with X-Dropped: accepted, on purpose not stored
        self.statuses: dict[int, int] = {}
        self._next = start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def wait_for_acks(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"no 202 within {timeout}s: {self.statuses}"
            time.sleep(0.01)

    @property
    def last(self) -> int:
        """The highest event number taken so far; the next `Load` starts after it."""
        return self._next

    def _take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                n = self._take()
                try:
                    response = post(client, self.url, n)
                except httpx.HTTPError:
                    continue  # not acknowledged: the server died under us
                status = response.status_code
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 202 and "x-dropped" in response.headers:
                        self.dropped[n] = response.headers["x-dropped"]
                    elif status == 202:
                        self.acked.add(n)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


@contextlib.contextmanager
def admin(root: Path) -> Iterator[RemoteStore]:
    """The store through the running server (the test process never opens the engine)."""
    store = RemoteStore(socket_path(root / "data" / "clickhouse"), "test")
    try:
        yield store
    finally:
        store.close()


def spool_files(root: Path) -> list[str]:
    spool = root / "data" / "spool"
    return sorted(p.name for p in spool.glob("*") if p.suffix in (".seg", ".open", ".json"))


def wait_drained(root: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while spool_files(root):
        assert time.monotonic() < deadline, f"spool not drained: {spool_files(root)}"
        time.sleep(0.05)


def page_counts(root: Path) -> dict[str, int]:
    with admin(root) as store:
        rows = store.query("SELECT pathname, count() AS n FROM events GROUP BY pathname").dicts()
    return {str(r["pathname"]): int(r["n"]) for r in rows}


def assert_exactly_once(root: Path, acked: set[int]) -> None:
    counts = page_counts(root)
    missing = [n for n in acked if counts.get(page(n), 0) == 0]
    doubled = {p: c for p, c in counts.items() if c > 1}
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    assert not doubled, f"stored more than once: {list(doubled.items())[:5]}"
    # The sessions view saw every event exactly once too.
    with admin(root) as store:
        total = int(store.query("SELECT count() FROM events").scalar())
        in_sessions = int(store.query("SELECT sum(events) FROM sessions").scalar() or 0)
    assert in_sessions == total


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "srv", workers=2)
    yield server
    server.stop()


def test_a_segment_that_cannot_be_sealed_for_a_while_is_sealed_once_it_can(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "srv")
    try:
        spool = server.root / "data" / "spool"
        with httpx.Client() as client:
            assert post(client, server.url, 1).status_code == 202
            # A directory where the sealed segment must go: each tick's rename fails, as on
            # a disk that refuses it.
            (segment,) = spool.glob("*.open")
            blocker = segment.with_suffix(SEALED)
            blocker.mkdir()
            deadline = time.monotonic() + 10
            while "sealing by age failed" not in server.output():
                assert time.monotonic() < deadline, "the failed tick was not reported"
                time.sleep(0.05)
            assert post(client, server.url, 2).status_code == 202
            blocker.rmdir()
        wait_drained(server.root)
        assert page_counts(server.root) == {page(1): 1, page(2): 1}
    finally:
        server.stop()


def test_sigterm_flushes_everything_acknowledged(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv", workers=2)
    with Load(server.url) as load:
        load.wait_for_acks(1)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    started = time.monotonic()
    output = server.stop()
    assert time.monotonic() - started < 30
    assert "stopped" in output
    assert load.acked
    assert spool_files(server.root) == [], "SIGTERM must flush the spool into the store"
    again = start_server(server.root, workers=1)
    try:
        assert_exactly_once(again.root, load.acked)
    finally:
        again.stop()


def test_metrics_sum_all_workers_and_never_label_an_ip(srv: Server) -> None:
    with httpx.Client() as client:
        for n in range(20):
            assert post(client, srv.url, n).status_code == 202
        dropped = post(client, srv.url, 99, ua=BOT)
        assert dropped.status_code == 202 and dropped.headers["x-dropped"]
    wait_drained(srv.root)
    deadline = time.monotonic() + 5
    while True:
        values = scrape(srv.url)
        done = values["firstparty_writer_rows_total"] == 20
        if (
            done and values["firstparty_events_accepted_total"] == 20
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    text = httpx.get(srv.url + "/metrics").text
    assert values["firstparty_events_accepted_total"] == 20
    assert values["firstparty_writer_rows_total"] == 20
    assert (
        sum(v for k, v in values.items() if k.startswith("firstparty_events_dropped_total{")) == 1
    )
    assert values["firstparty_writer_batch_rows_count"] >= 1
    assert values["firstparty_workers"] == 2
    assert "# TYPE firstparty_writer_flush_seconds histogram" in text
    assert "127.0.0.1" not in text and "Googlebot" not in text
    health = httpx.get(srv.url + "/healthz")
    assert health.status_code == 200
    assert health.json()["writer"]["state"] == "ok"


def test_store_outage_under_load_loses_nothing_and_stores_nothing_twice(srv: Server) -> None:
    fault = srv.root / "data" / FAULT_FILE
    with Load(srv.url) as load:
        load.wait_for_acks(1)
        time.sleep(0.3)
        fault.touch()
        deadline = time.monotonic() + 10
        while (health := httpx.get(srv.url + "/healthz")).status_code == 200:
            assert time.monotonic() < deadline, "the writer never reported the outage"
            time.sleep(0.1)
        time.sleep(0.5)
        fault.unlink()
        time.sleep(0.3)
    assert health.status_code == 503 and health.json()["writer"]["state"] == "failing"
    assert load.statuses.get(202, 0) == sum(load.statuses.values()), load.statuses
    wait_drained(srv.root)
    assert_exactly_once(srv.root, load.acked)
    deadline = time.monotonic() + 5
    while httpx.get(srv.url + "/healthz").status_code != 200:
        assert time.monotonic() < deadline, "health did not recover with the store"
        time.sleep(0.1)
    assert scrape(srv.url)["firstparty_writer_insert_errors_total"] >= 1


def test_spool_quota_answers_503_with_retry_after_then_recovers(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "srv", workers=1, extra_env={"FIRSTPARTY_SERVER_SPOOL_QUOTA_MB": "1"}
    )
    try:
        fault = server.root / "data" / FAULT_FILE
        fault.touch()
        deadline = time.monotonic() + 60
        with Load(server.url, threads=6) as load:
            while not load.statuses.get(503):
                assert time.monotonic() < deadline, "the quota was never reached"
                time.sleep(0.05)
        assert set(load.statuses) == {202, 503}
        acked = load.acked
        with httpx.Client() as client:
            # The load's refused appends were group commits of several beacons: one beacon
            # alone may still fit under the quota, until the spool is full to the byte.
            for n in range(50_000, 51_000):
                refused = post(client, server.url, n)
                if refused.status_code != 202:
                    break
                acked.add(n)
        assert 1000 < len(acked) < 5000  # about 1 MB of spooled events
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        assert "error" in refused.json()
        fault.unlink()
        wait_drained(server.root)
        deadline = time.monotonic() + 10
        with httpx.Client() as client:  # the workers rescan the spool's size every 0.1 s
            for n in range(30_000, 40_000):
                if post(client, server.url, n).status_code == 202:
                    acked.add(n)
                    break
                assert time.monotonic() < deadline, "still refused after the spool drained"
                time.sleep(0.05)
        wait_drained(server.root)
        assert_exactly_once(server.root, acked)
        assert scrape(server.url)["firstparty_spool_rejected_total"] >= 2
    finally:
        server.stop()


def test_corrupt_and_torn_segments_at_start_up_keep_good_records(tmp_path: Path) -> None:
    import datetime as dt

    root = tmp_path / "srv"
    spool = root / "data" / "spool"
    spool.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)

    def ev(n: int) -> bytes:
        return encode(
            Event(
                site_id="example.com",
                timestamp=now,
                name="pageview",
                visitor_id=n,
                pathname=page(n),
            )
        )

    flipped = bytearray(b"".join(ev(n) for n in range(0, 5)))
    flipped[len(ev(0)) + 12] ^= 0x20  # record 1
    (spool / f"{time.time_ns():020d}-w0_1-000001{SEALED}").write_bytes(bytes(flipped))
    torn = b"".join(ev(n) for n in range(10, 14))
    (spool / f"{time.time_ns():020d}-w1_2-000001.open").write_bytes(torn[:-9])
    server = start_server(root, workers=1)
    try:
        wait_drained(root)
        pages = page_counts(root)
        assert pages == {page(n): 1 for n in (0, 2, 3, 4, 10, 11, 12)}
        quarantined = sorted(p.name for p in (spool / "quarantine").iterdir())
        assert len(quarantined) == 2
        assert "quarantine" in server.output()
    finally:
        server.stop()


def child_pids(pid: int) -> list[int]:
    """The HTTP worker processes of a server (not multiprocessing's helper processes)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    out = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def test_a_killed_worker_is_replaced(srv: Server) -> None:
    workers = child_pids(srv.process.pid)
    assert len(workers) == 2
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    with httpx.Client() as client:
        while True:
            alive = [p for p in child_pids(srv.process.pid) if p != victim]
            ok = post(client, srv.url, 1).status_code == 202
            if ok and len(alive) >= len(workers):
                break
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.2)
    assert "starting a new one" in srv.output()


def test_beacons_wait_while_the_only_worker_is_replaced(tmp_path: Path) -> None:
    # The server's own listening socket outlives its workers: a beacon sent while no worker
    # runs waits in its queue for the replacement instead of being refused.
    server = start_server(tmp_path, workers=1)
    try:
        (victim,) = child_pids(server.process.pid)
        os.kill(victim, signal.SIGKILL)
        while Path(f"/proc/{victim}").exists() and victim in child_pids(server.process.pid):
            time.sleep(0.01)
        with httpx.Client(timeout=30) as client:
            assert post(client, server.url, 1).status_code == 202
        (replacement,) = child_pids(server.process.pid)
        assert replacement != victim
    finally:
        server.stop()


def test_a_second_serve_joins_the_first_as_an_extra_collector(tmp_path: Path) -> None:
    first = start_server(tmp_path / "a", workers=1)
    engine = f"chdb://{first.root / 'data' / 'clickhouse'}"
    second = start_server(
        tmp_path / "b", SITE_CONFIG, workers=1, extra_env={"FIRSTPARTY_STORE": engine}
    )
    try:
        assert "joined as an extra collector" in second.output()
        with httpx.Client() as client:
            for n in range(30):
                target = first if n % 2 else second
                assert post(client, target.url, n).status_code == 202
        wait_drained(second.root)
        wait_drained(first.root)
        assert_exactly_once(first.root, set(range(30)))
        assert sum(page_counts(first.root).values()) == 30
    finally:
        second.stop()
        first.stop()


def test_concurrent_requests_share_fsyncs(srv: Server) -> None:
    with (
        concurrent.futures.ThreadPoolExecutor(16) as pool,
        httpx.Client(limits=httpx.Limits(max_connections=32)) as client,
    ):
        statuses = list(pool.map(lambda n: post(client, srv.url, n).status_code, range(400)))
    assert statuses == [202] * 400
    deadline = time.monotonic() + 5
    while True:  # each worker reports every 0.5 s
        values = scrape(srv.url)
        if values["firstparty_events_accepted_total"] == 400:
            break
        assert time.monotonic() < deadline, values["firstparty_events_accepted_total"]
        time.sleep(0.1)
    assert values["firstparty_spool_fsyncs_total"] < 400


def niceness(pid: int, tid: int) -> int:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of proc(5), counted after the command name


def test_the_server_yields_the_cpu_to_its_workers(srv: Server) -> None:
    # The writer's and the engine's threads run at a lower priority than the HTTP workers
    # (whose latency is the beacons'); the main thread, which starts workers, keeps the default.
    pid = srv.process.pid
    deadline = time.monotonic() + 10
    while True:
        threads = {tid: niceness(pid, tid) for tid in threads_of(pid)}
        helpers = {tid: nice for tid, nice in threads.items() if tid != pid}
        if helpers and all(nice == 10 for nice in helpers.values()):
            break
        assert time.monotonic() < deadline, f"helper threads not lowered: {helpers}"
        time.sleep(0.1)
    assert threads[pid] == 0
    for worker in child_pids(pid):
        assert niceness(worker, worker) == 0


def policy(pid: int, tid: int) -> int:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[38])  # field 41 of proc(5): the scheduling policy


def wait_idle_class(server: Server, timeout: float = 10) -> None:
    wait_for(
        lambda: helper_policies(server) == {os.SCHED_IDLE},
        "helper threads in the idle class",
        timeout,
    )


def test_the_engine_can_run_only_on_cpu_time_nobody_else_wants(tmp_path: Path) -> None:
    server = start_server(tmp_path / "srv", extra_env={"FIRSTPARTY_ENGINE_PRIORITY": "idle"})
    try:
        with httpx.Client() as client:
            assert post(client, server.url, 1).status_code == 202
        wait_drained(server.root)
        assert page_counts(server.root) == {page(1): 1}
        wait_idle_class(server)
        pid = server.process.pid
        assert policy(pid, pid) == os.SCHED_OTHER
        for worker in child_pids(pid):
            assert policy(worker, worker) == os.SCHED_OTHER
    finally:
        server.stop()


def placements(pid: int) -> set[frozenset[int]]:
    """The CPU sets that the threads of a server's HTTP workers may run on."""
    workers = child_pids(pid)
    assert workers
    return {frozenset(os.sched_getaffinity(t)) for w in workers for t in threads_of(w)}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.1)


def helper_policies(server: Server) -> set[int]:
    pid = server.process.pid
    return {policy(pid, t) for t in threads_of(pid) if t != pid}


def busy_processes() -> list[subprocess.Popen[bytes]]:
    """One process per CPU at the default priority that never sleeps."""
    return [busy_process() for _ in CPUS]


@needs_lifting
def test_by_default_the_engine_leaves_the_idle_class_when_other_programs_take_every_cpu(
    tmp_path: Path,
) -> None:
    # Other programs keep every CPU busy: in the idle class the writer would get nothing. It
    # leaves the class, stores the event while they still run, and goes back after they end.
    server = start_server(tmp_path / "srv", workers=2)
    busy: list[subprocess.Popen[bytes]] = []
    try:
        assert "engine priority: the writer and the engine run in the idle class" in (
            server.output()
        )
        wait_idle_class(server)
        placed = placements(server.process.pid)
        busy = busy_processes()
        with httpx.Client(timeout=30) as client:
            assert post(client, server.url, 1).status_code == 202
            wait_for(lambda: helper_policies(server) == {os.SCHED_OTHER}, "out of the idle class")
            assert "the writer and the engine leave the idle class for now" in server.output()
            wait_for(
                lambda: scrape(server.url).get("firstparty_writer_catching_up") == 1.0,
                "the catching-up gauge",
            )
            wait_drained(server.root)
        assert page_counts(server.root) == {page(1): 1}
        assert placements(server.process.pid) == placed  # the workers kept their CPUs
        pid = server.process.pid
        assert all(niceness(pid, t) == 10 for t in threads_of(pid) if t != pid)
        for proc in busy:
            proc.kill()
        wait_idle_class(server, timeout=30)
        assert "caught up; the writer and the engine are back in the idle class" in (
            server.output()
        )
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        server.stop()


def wait_helpers_at_niceness(server: Server) -> None:
    pid = server.process.pid
    wait_for(
        lambda: all(niceness(pid, t) == NICENESS for t in threads_of(pid) if t != pid),
        f"helper threads at niceness {NICENESS}",
    )


@needs_dropping
def test_by_default_without_the_right_to_leave_the_idle_class_the_engine_runs_at_niceness(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "srv", wrap=WITHOUT_SYS_NICE)
    try:
        assert "engine priority: the writer and the engine run at niceness 10" in server.output()
        wait_helpers_at_niceness(server)
        assert helper_policies(server) == {os.SCHED_OTHER}
    finally:
        server.stop()


@needs_two_cpus
@needs_dropping
def test_workers_leave_a_starved_writer_a_cpu_until_it_has_caught_up(tmp_path: Path) -> None:
    # Busy processes at the default priority take every CPU, so the idle-class writer gets
    # none and its backlog ages: the workers then leave it one CPU, and take it back once the
    # event is stored. (The busy processes are not workers, so here the writer stays behind
    # until they end: what the log and the gauge say is what is tested.)
    server = start_server(
        tmp_path / "srv",
        workers=2,
        extra_env={"FIRSTPARTY_ENGINE_PRIORITY": "idle"},
        wrap=WITHOUT_SYS_NICE,
    )
    busy: list[subprocess.Popen[bytes]] = []
    try:
        wait_idle_class(server)
        pid = server.process.pid
        assert placements(pid) == {CPUS}
        busy = busy_processes()
        with httpx.Client(timeout=30) as client:
            assert post(client, server.url, 1).status_code == 202
            wait_for(lambda: placements(pid) == {CPUS - {max(CPUS)}}, "workers off a CPU")
            assert f"HTTP workers leave CPU {max(CPUS)} to the writer" in server.output()
            wait_for(
                lambda: scrape(server.url).get("firstparty_writer_catching_up") == 1.0,
                "the catching-up gauge",
            )
            assert helper_policies(server) == {os.SCHED_IDLE}
        for proc in busy:
            proc.kill()
        wait_for(lambda: placements(pid) == {CPUS}, "workers back on every CPU")
        assert "caught up; HTTP workers run on every CPU again" in server.output()
        wait_drained(server.root)
        assert page_counts(server.root) == {page(1): 1}
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        server.stop()


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(
            WITHOUT_SYS_NICE, marks=[needs_two_cpus, needs_dropping], id="workers-leave-a-cpu"
        ),
        pytest.param([], marks=needs_lifting, id="threads-leave-the-idle-class"),
    ],
)
def test_a_store_that_refuses_inserts_is_not_given_more_cpu(
    tmp_path: Path, wrap: list[str]
) -> None:
    server = start_server(
        tmp_path / "srv", workers=2, extra_env={"FIRSTPARTY_ENGINE_PRIORITY": "idle"}, wrap=wrap
    )
    fault = server.root / "data" / FAULT_FILE
    try:
        wait_idle_class(server)
        fault.touch()
        with httpx.Client() as client:
            assert post(client, server.url, 1).status_code == 202
            wait_for(
                lambda: scrape(server.url)["firstparty_oldest_unflushed_event_age_seconds"] > 4,
                "a backlog older than the catch-up threshold",
            )
        metrics = scrape(server.url)
        assert metrics["firstparty_writer_healthy"] == 0.0
        assert metrics["firstparty_writer_catching_up"] == 0.0
        assert placements(server.process.pid) == {CPUS}
        assert helper_policies(server) == {os.SCHED_IDLE}
        fault.unlink()
        wait_drained(server.root)
        assert page_counts(server.root) == {page(1): 1}
    finally:
        server.stop()


@needs_dropping
def test_the_idle_class_for_good_needs_two_cpus_and_falls_back_to_niceness(
    tmp_path: Path,
) -> None:
    # With one CPU and no right to leave the idle class, there is no way to help a writer that
    # falls behind: `nice` instead.
    os.sched_setaffinity(0, {min(CPUS)})
    try:
        server = start_server(
            tmp_path / "srv",
            extra_env={"FIRSTPARTY_ENGINE_PRIORITY": "idle"},
            wrap=WITHOUT_SYS_NICE,
        )
    finally:
        os.sched_setaffinity(0, CPUS)
    try:
        assert "FIRSTPARTY_ENGINE_PRIORITY=idle needs 2 CPUs or more" in server.output()
        wait_helpers_at_niceness(server)
        pid = server.process.pid
        assert all(policy(pid, t) == os.SCHED_OTHER for t in threads_of(pid))
    finally:
        server.stop()


def test_an_unknown_engine_priority_is_refused_before_start(tmp_path: Path) -> None:
    env = {**os.environ, "FIRSTPARTY_ENGINE_PRIORITY": "realtime"}
    run = firstparty("serve", "--port", "0", cwd=tmp_path, env=env)
    assert run.returncode != 0
    assert "FIRSTPARTY_ENGINE_PRIORITY must be one of auto, nice, idle, not 'realtime'" in (
        run.stderr
    )


def test_workers_leave_pyarrow_and_the_engine_to_the_server(srv: Server) -> None:
    # Workers parse, anonymise and spool beacons and read small results through the admin
    # socket; Arrow and the engine (~40 MB and ~330 MB) belong to the server process alone.
    with httpx.Client() as client:
        for n in range(20):
            assert post(client, srv.url, n).status_code == 202
        assert client.get(srv.url + "/healthz").status_code == 200
    workers = child_pids(srv.process.pid)
    assert workers
    for worker in workers:
        mapped = Path(f"/proc/{worker}/maps").read_text()
        assert "libarrow" not in mapped and "chdb" not in mapped
    assert "libarrow" in Path(f"/proc/{srv.process.pid}/maps").read_text()
