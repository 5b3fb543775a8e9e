"""Ingest throughput and latency on loopback: the full pipeline against a bare Starlette endpoint.

    python -m bench ingest [--seconds 8] [--connections 64] [--rate 5000] [--json out.json]
    python -m bench ingest --profile      # where a worker's time goes, per beacon

One run measures, side by side on this machine:
1. `firstparty serve` (validation, bot/spam checks, UA parsing, geo, IP truncation, visitor hash,
   durable group-committed spool, the writer inserting into the embedded engine) with 1 and 2
   HTTP workers, and a bare Starlette app that only parses the JSON body, served by uvicorn with
   the same settings and worker counts: events/s and p50/p99 latency at saturation (a closed
   loop over `--connections` keep-alive connections), and the ratios.
2. p50/p99 latency at a fixed `--rate` (an open loop: latency counts from the moment a beacon
   was due, so a stall is not hidden by the generator waiting).
3. The writer alone: rows/s from sealed spool segments into a fresh embedded engine.
4. HTTP worker RSS before and after the load, and the cores the server's processes and the
   load generator used during each saturation run (they share the machine).
5. Whether the writer keeps up while the full servers are saturated: the oldest unstored
   event's age and stored / accepted events, sampled from `/metrics` every 0.5 s.

The load generator is a separate process (asyncio + uvloop, raw HTTP/1.1 on keep-alive sockets,
no client library in the hot path) replaying realistic beacons: real desktop and mobile user
agents, IPv4 and IPv6 visitors in `X-Forwarded-For` from a trusted proxy (127.0.0.1), referrers
and UTM tags. On a 2-core machine the generator shares the cores with the server; the ratios
are measured under the same handicap.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from firstparty.priority import PRIORITIES

USER_AGENTS = (
    # Desktop
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:132.0) Gecko/20100101 Firefox/132.0",
    # Mobile
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; M2101K6G) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
)
REFERRERS = (
    "",
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/item",
    "https://t.co/abc",
    "https://www.facebook.com/",
    "https://www.reddit.com/r/programming/",
    "https://github.com/someone/project",
)
PAGES = ("/", "/pricing", "/blog/privacy-first-analytics", "/docs/install", "/about", "/signup")
# A long tail: 40 % of page views are on one of 500 older posts.
POSTS = tuple(f"/blog/{2023 + n % 3}/post-{n}" for n in range(500))
UTM = (
    "",
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    "?utm_source=twitter&utm_medium=social",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=analytics",
)

SITE_CONFIG = """
[[site]]
domain = "example.com"

[server]
trusted_proxies = ["127.0.0.1"]
"""

BARE_APP = """
import json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def event(request: Request) -> Response:
    try:
        json.loads(await request.body())
    except ValueError:
        return Response(b'{"error":"bad json"}', status_code=400, media_type="application/json")
    return Response(b'{"ok":true}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/api/event", event, methods=["POST"])])
"""


def beacons(count: int, seed: int = 1) -> list[bytes]:
    """Raw HTTP/1.1 requests, as a tracker behind a trusted proxy sends them."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        if rng.random() < 0.3:
            a, b, c = rng.randrange(65536), rng.randrange(65536), rng.randrange(1, 65536)
            ip = f"2001:db8:{a:x}:{b:x}::{c:x}"
        else:
            a, b, c, d = (
                rng.randrange(1, 224),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            )
            ip = f"{a}.{b}.{c}.{d}"
        page = rng.choice(POSTS) if rng.random() < 0.4 else rng.choice(PAGES)
        utm = rng.choice(UTM)
        if "cpc" in utm:  # an ad click: Google Ads adds a unique click ID
            utm += "&gclid=" + "".join(rng.choices(string.ascii_letters + string.digits, k=40))
        elif "social" in utm and rng.random() < 0.5:
            utm += "&fbclid=IwAR" + "".join(rng.choices(string.ascii_letters + string.digits, k=56))
        body: dict[str, Any] = {
            "n": "pageview" if rng.random() < 0.85 else "Signup",
            "u": "https://example.com" + page + utm,
            "d": "example.com",
            "r": rng.choice(REFERRERS),
        }
        if body["n"] != "pageview":
            body["p"] = {"plan": rng.choice(["free", "pro"])}
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (
            "POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"User-Agent: {rng.choice(USER_AGENTS)}\r\nX-Forwarded-For: {ip}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        out.append(head.encode() + data)
    return out


# -- the load generator (its own process) ---------------------------------------------------

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    match = _LENGTH.search(head)
    if match:
        await reader.readexactly(int(match.group(1)))
    return int(head[9:12])


async def _closed_loop(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await _exchange(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            i += connections
        writer.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    # the cores the generator itself took from the server (they share the machine)
    return {**_summary(latencies, statuses, elapsed), "generator_cores": _cores(cpu, elapsed)}


def _cores(cpu_before: float, elapsed: float) -> float:
    return round((time.process_time() - cpu_before) / elapsed, 2)


async def _open_loop(
    port: int, requests: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Send at a fixed rate; latency counts from when each beacon was due."""
    latencies: list[float] = []
    dues: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    start = time.perf_counter() + 0.2

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            index, due = await queue.get()
            if index < 0:
                break
            status = await _exchange(reader, writer, requests[index % len(requests)])
            latencies.append(time.perf_counter() - due)
            dues.append(due - start)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(connections)]
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, due))
    for _ in tasks:
        queue.put_nowait((-1, 0.0))
    await asyncio.gather(*tasks)
    bursts = _tail_in_bursts(dues, latencies)  # first: `_summary` sorts `latencies` in place
    return {**_summary(latencies, statuses, time.perf_counter() - start), **bursts}


def _tail_in_bursts(dues: list[float], latencies: list[float]) -> dict[str, Any]:
    """Where the slowest 1 % of beacons were due: the share of them in their ten busiest
    100 ms windows. Near 1 when the tail is a few stalls (something took the CPUs for tens of
    milliseconds); near 10 windows' worth of an even spread when it is steady queueing."""
    if not latencies:
        return {}
    threshold = sorted(latencies)[int(0.99 * len(latencies))]
    windows = Counter(
        int(d * 10) for d, lat in zip(dues, latencies, strict=True) if lat >= threshold
    )
    slow = sum(windows.values())
    return {
        "tail_share_in_10_busiest_100ms": round(
            sum(n for _, n in windows.most_common(10)) / slow, 2
        ),
        "tail_windows": len(windows),
    }


def _summary(latencies: list[float], statuses: dict[int, int], elapsed: float) -> dict[str, Any]:
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "statuses": statuses,
    }


def _generator(kind: str, port: int, args: dict[str, Any], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    requests = beacons(4000)
    # The generator's own collector pauses would count as server latency (open loop).
    gc.collect()
    gc.freeze()
    if kind == "closed":
        result = asyncio.run(_closed_loop(port, requests, args["connections"], args["seconds"]))
    else:
        result = asyncio.run(
            _open_loop(port, requests, args["rate"], args["seconds"], args["connections"])
        )
    out.send(result)


def generate(kind: str, port: int, **args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_generator, args=(kind, port, args, child))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


# -- servers under test ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server under test exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(64):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server under test did not start")


def warm_up(port: int, workers: int) -> None:
    # Every worker compiles its parsers on its first beacon; keep that out of the numbers.
    generate("closed", port, connections=4 * workers, seconds=1.5)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def descendants(pid: int) -> list[int]:
    return [p for child in children(pid) for p in (child, *descendants(child))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of `pid` and every process under it, so far."""
    total = 0
    for p in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the name: 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text summed by metric name (labels dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
    return out


def scrape(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode())


class BacklogWatch(threading.Thread):
    """Samples the writer's backlog from `/metrics` while a saturation run lasts."""

    def __init__(self, port: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._done = threading.Event()

    def _sample(self) -> None:
        try:
            self.samples.append(scrape(self.port))
        except OSError:  # a scrape that waited behind the load: the next one counts
            pass

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def result(self) -> dict[str, Any]:
        """Stop, take a last sample, and sum up: the oldest event's age, stored / accepted."""
        self._done.set()
        self.join()
        self._sample()
        if not self.samples:
            return {}
        last = self.samples[-1]
        return {
            "max_age_s": max(
                s.get("firstparty_oldest_unflushed_event_age_seconds", 0.0) for s in self.samples
            ),
            "accepted_at_end": int(last.get("firstparty_events_accepted_total", 0)),
            "stored_at_end": int(last.get("firstparty_writer_rows_total", 0)),
            "catching_up_share": sum(
                s.get("firstparty_writer_catching_up", 0.0) for s in self.samples
            )
            / len(self.samples),
        }


def wait_drained(port: int, timeout: float = 120.0) -> float:
    """Wait until the writer has stored every accepted event; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        m = scrape(port)
        stored = m.get("firstparty_writer_rows_total", 0.0)
        if stored >= m.get("firstparty_events_accepted_total", 0.0) and not m.get(
            "firstparty_oldest_unflushed_event_age_seconds", 0.0
        ):
            return round(time.monotonic() - started, 1)
        time.sleep(0.2)
    raise RuntimeError(f"the writer did not store the backlog within {timeout:.0f} s")


def start_full(
    root: Path, workers: int, engine_priority: str = "auto"
) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "firstparty.toml").write_text(SITE_CONFIG)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTPARTY_")}
    env.update(
        {
            "FIRSTPARTY_CONFIG": str(root / "firstparty.toml"),
            "FIRSTPARTY_STORE": f"chdb://{root / 'data' / 'clickhouse'}",
            "FIRSTPARTY_SERVER_DATA_DIR": str(root / "data"),
            "FIRSTPARTY_SERVER_SPOOL_QUOTA_MB": "20000",
            "FIRSTPARTY_ENGINE_PRIORITY": engine_priority,
        }
    )
    cmd = [sys.executable, "-m", "firstparty", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_listening(port, proc)
    return proc, port


def start_bare(root: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    cmd += ["--no-server-header", "--no-proxy-headers"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stored_rows(root: Path) -> int:
    code = (
        "import sys; from store import open_owner; "
        f"s = open_owner('chdb://{root / 'data' / 'clickhouse'}'); "
        "print(s.query('SELECT count() FROM events').scalar())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


# -- the writer alone -----------------------------------------------------------------------


def writer_rows_per_second(
    root: Path, rows: int, visit_length: int = 1, base: Path | None = None
) -> dict[str, Any]:
    """Seal `rows` realistic events into a spool and time the writer draining them.

    `visit_length` 1: every event is a new visitor's first (the worst case for session
    assignment and for the `sessions` view: one new session per row). Larger: visits of about
    that many events, spread over the last hour like live traffic. `base`: an embedded store
    to copy and write into instead of a fresh one (the writer at a store's real size).
    """
    from firstparty.config import parse
    from firstparty.server import schema_values
    from ingest.event import Event
    from ingest.spool import SpoolWriter, encode
    from ingest.writer import Writer
    from store import open_owner
    from store import schema as schema_mod

    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    # Segments of the collector's default size, so batches are the writer's `max_rows` as in
    # service (a larger segment is taken whole, and made batches larger than that).
    spool = SpoolWriter(root / "spool", "bench")
    chunk: list[bytes] = []
    visitor, left, at = 0, 0, now
    for _ in range(rows):
        if left == 0:  # the next visitor: a visit of about `visit_length` events
            visitor = rng.getrandbits(63)
            left = 1 if visit_length == 1 else rng.randint(1, 2 * visit_length - 1)
            at = now - dt.timedelta(seconds=rng.randrange(3600))
        left -= 1
        at += dt.timedelta(seconds=rng.randrange(5, 90))
        ua = rng.choice(("Chrome", "Firefox", "Safari", "Edge", "Samsung Internet"))
        chunk.append(
            encode(
                Event(
                    site_id="example.com",
                    timestamp=at,
                    name="pageview",
                    visitor_id=visitor,
                    hostname="example.com",
                    pathname=rng.choice(PAGES),
                    referrer=rng.choice(REFERRERS),
                    referrer_source=rng.choice(("", "Google", "Bing", "Hacker News")),
                    channel=rng.choice(("Direct", "Organic Search", "Referral")),
                    country_code=rng.choice(("DE", "FR", "US", "BE", "NL")),
                    browser=ua,
                    browser_version="131",
                    os=rng.choice(("Windows", "macOS", "Android", "iOS")),
                    os_version="14",
                    device=rng.choice(("Desktop", "Mobile", "Tablet")),
                )
            )
        )
        if len(chunk) == 1000:
            spool.append(chunk)
            chunk = []
    if chunk:
        spool.append(chunk)
    spool.close()
    if base is not None:
        print(f"copying {base} ...", flush=True)
        shutil.copytree(base, root / "clickhouse", symlinks=True)  # the engine links its metadata
    store = open_owner(f"chdb://{root / 'clickhouse'}")
    schema_mod.apply(store, schema_values(parse("", env={})))
    before = int(store.query("SELECT count() FROM events").scalar())
    # As `firstparty serve` makes it for the embedded engine it owns: the only writer.
    writer = Writer(store, root / "spool", collector_id="bench", sole=store.exclusive)
    started = time.perf_counter()
    inserted = writer.drain_once()
    elapsed = time.perf_counter() - started
    stored = int(store.query("SELECT count() FROM events").scalar()) - before
    store.close()
    return {
        "rows": inserted,
        "stored": stored,
        "events_before": before,
        "seconds": elapsed,
        "rows_per_second": inserted / elapsed,
        "batches": writer.stats.batches,
    }


def _writer_child(root: Path, rows: int, visit_length: int, base: Path | None, out: Any) -> None:
    out.send(writer_rows_per_second(root, rows, visit_length, base))


def writer_bench(
    root: Path, rows: int, visit_length: int = 1, base: Path | None = None
) -> dict[str, Any]:
    # Its own process: the engine is loaded once per process and never in the generator.
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_writer_child, args=(root, rows, visit_length, base, child))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join()
    return result


# -- profile --------------------------------------------------------------------------------


def profile(rounds: int = 7) -> str:
    """A worker's per-beacon work without HTTP, best of `rounds` passes over the benchmark's
    beacons: the body parsed and validated and the `Hit`s built (as the endpoint does), then
    the pipeline and the spool encoding; then a cProfile of the latter. Run it in two
    checkouts, alternated, to compare code: it is far steadier than the HTTP runs."""
    import cProfile
    import io
    import pstats

    from collector.payload import hits, parse_payload
    from firstparty.config import parse
    from firstparty.server import schema_values
    from ingest.hit import Hit
    from ingest.ingestor import Ingestor
    from ingest.salts import SaltKeeper
    from ingest.spool import SpoolWriter
    from ingest.steps import build_pipeline
    from store import open_owner
    from store import schema as schema_mod

    tmp = Path(tempfile.mkdtemp(prefix="fp-bench-profile-"))
    config = parse(SITE_CONFIG, env={})
    store = open_owner(f"chdb://{tmp / 'clickhouse'}")
    schema_mod.apply(store, schema_values(config))
    ingestor = Ingestor(build_pipeline(config, SaltKeeper(store)), SpoolWriter(tmp / "spool", "p"))
    requests = []
    for request in beacons(4000):
        head, body = request.split(b"\r\n\r\n", 1)
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        requests.append((body, headers["X-Forwarded-For"], headers["User-Agent"]))
    now = dt.datetime.now(dt.UTC)

    def hits_of(body: bytes, ip: str, user_agent: str) -> list[Hit]:
        return hits(parse_payload(body), now, ip, user_agent)  # as the endpoint does

    groups = [hits_of(*r) for r in requests]
    ingestor._process([h for group in groups[:50] for h in group])  # warm the parsers' caches
    best = {"parse": float("inf"), "pipeline": float("inf")}
    for _ in range(rounds):
        started = time.perf_counter()
        for r in requests:
            hits_of(*r)
        best["parse"] = min(best["parse"], time.perf_counter() - started)
        started = time.perf_counter()
        for group in groups:
            ingestor._process(group)
        best["pipeline"] = min(best["pipeline"], time.perf_counter() - started)
    prof = cProfile.Profile()
    prof.enable()
    for group in groups:
        ingestor._process(group)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    us = {k: v / len(requests) * 1e6 for k, v in best.items()}
    return (
        f"per beacon, best of {rounds} passes over {len(requests):,} beacons: body and Hit "
        f"{us['parse']:.1f} us, pipeline + encode {us['pipeline']:.1f} us, together "
        f"{us['parse'] + us['pipeline']:.1f} us\n"
        f"{text.getvalue()}"
    )


def fsync_latency(directory: Path, count: int = 200) -> dict[str, float]:
    """The disk's fsync latency for a 600-byte append: the floor of a durable 202."""
    times = []
    with open(directory / "fsync-probe", "ab", buffering=0) as handle:
        for _ in range(count):
            started = time.perf_counter()
            handle.write(b"x" * 600)
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - started)
    times.sort()
    return {"p50_ms": times[count // 2] * 1000, "p99_ms": times[int(count * 0.99)] * 1000}


# -- the run --------------------------------------------------------------------------------


def measure(root: Path, kind: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One server at saturation (the full one with 2 workers first at the fixed rate)."""
    if kind == "full":
        proc, port = start_full(root, workers, args.engine_priority)
    else:
        proc, port = start_bare(root, workers)
    try:
        warm_up(port, workers)
        if kind == "full":
            pids = worker_pids(proc.pid)
        else:  # uvicorn runs a single worker in its own process
            pids = children(proc.pid) if workers > 1 else [proc.pid]
        rss_before = [rss_mb(p) for p in pids]
        # The process that holds the embedded engine (the writer, its session cache)
        engine_before = rss_mb(proc.pid) if kind == "full" else None
        fixed: dict[str, Any] | None = None
        drained = 0.0
        if kind == "full" and workers == 2:
            # Before the saturation run: after it, the engine goes on merging the parts of
            # the backlog it stored for many seconds, and the fixed rate would measure that
            # recovery (p99 14-39 ms against 8.4-10.3 ms on a fresh server, 2026-12-06).
            drained = wait_drained(port)
            fixed = generate(
                "open",
                port,
                rate=args.rate,
                seconds=args.seconds,
                connections=args.connections,
            )
        cpu, began = cpu_seconds(proc.pid), time.perf_counter()
        watch = BacklogWatch(port) if kind == "full" else None
        if watch is not None:
            watch.start()
        sat = generate("closed", port, connections=args.connections, seconds=args.seconds)
        if watch is not None:
            sat["backlog"] = watch.result()
        # includes the generator's start-up: a lower bound of the cores in use
        sat["server_cores"] = round(
            (cpu_seconds(proc.pid) - cpu) / (time.perf_counter() - began), 2
        )
        rss_after = [rss_mb(p) for p in pids]
        entry: dict[str, Any] = {"saturation": sat}
        entry["rss_mb_before"] = [round(x, 1) for x in rss_before]
        entry["rss_mb_after"] = [round(x, 1) for x in rss_after]
        if engine_before is not None:
            entry["engine_rss_mb"] = [round(engine_before), round(rss_mb(proc.pid))]
        if fixed is not None:
            entry["drained_after_s"] = drained
            entry["fixed_rate"] = fixed
    finally:
        stop(proc)
    if kind == "full":
        entry["accepted_measured"] = sum(
            v.get("statuses", {}).get(202, 0)
            for v in (entry["saturation"], entry.get("fixed_rate", {}))
        )
        entry["stored_rows"] = stored_rows(root)
    return entry


def median_round(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median events/s at saturation (the upper one of an even count)."""
    return sorted(entries, key=lambda e: float(e["saturation"]["per_second"]))[len(entries) // 2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="fp-bench-ingest-"))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "seconds": args.seconds,
        "connections": args.connections,
        "rounds": args.rounds,
        "engine_priority": args.engine_priority,
        "fsync": fsync_latency(base),
    }
    try:
        for round_ in range(args.rounds):
            for workers in (1, 2):
                # Alternated, so that a slow stretch of a shared machine does not always hit
                # the same side of a ratio.
                kinds = ("bare", "full") if round_ % 2 == 0 else ("full", "bare")
                for kind in kinds:
                    root = base / f"{kind}{workers}-{round_}"
                    entry = measure(root, kind, workers, args)
                    results.setdefault(f"{kind}_{workers}_rounds", []).append(entry)
                    print(f"round {round_ + 1}, {kind} x{workers}: {json.dumps(entry)}", flush=True)
                    shutil.rmtree(root, ignore_errors=True)
        for workers in (1, 2):
            for kind in ("bare", "full"):
                results[f"{kind}_{workers}"] = median_round(results[f"{kind}_{workers}_rounds"])
        results["writer"] = writer_bench(base / "writer", args.writer_rows)
        print(f"writer: {json.dumps(results['writer'])}", flush=True)
        results["writer_visits"] = writer_bench(base / "writer-visits", args.writer_rows, 4)
        print(f"writer, visits of ~4 events: {json.dumps(results['writer_visits'])}", flush=True)
        if args.writer_store:
            big = writer_bench(base / "writer-store", args.writer_rows, 4, Path(args.writer_store))
            results["writer_store"] = big
            print(f"writer into a copy of {args.writer_store}: {json.dumps(big)}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def report(r: dict[str, Any]) -> str:
    def eps(key: str) -> float:
        return float(r[key]["saturation"]["per_second"])

    lines = [
        f"Ingest benchmark, {r['date']}, {r['cpus']} CPUs "
        f"(load average {r['load_average_at_start']:.1f} at start), "
        f"{r['seconds']} s per measurement, {r['connections']} connections, "
        f"FIRSTPARTY_ENGINE_PRIORITY={r.get('engine_priority', 'nice')}; "
        f"disk fsync p50 {r['fsync']['p50_ms']:.2f} ms, p99 {r['fsync']['p99_ms']:.2f} ms",
        "",
        "| server | workers | events/s | p50 ms | p99 ms | worker RSS MB (before -> after) |",
        "|---|---|---|---|---|---|",
    ]
    for workers in (1, 2):
        for kind in ("bare", "full"):
            e = r[f"{kind}_{workers}"]
            s = e["saturation"]
            label = "bare Starlette (JSON parse only)" if kind == "bare" else "firstparty (full)"
            rss = f"{e['rss_mb_before']} -> {e['rss_mb_after']}"
            lines.append(
                f"| {label} | {workers} | {s['per_second']:.0f} | {s['p50_ms']:.2f} | "
                f"{s['p99_ms']:.2f} | {rss} |"
            )
    fixed = r["full_2"]["fixed_rate"]
    rounds = r.get("rounds", 1)
    per_round = {
        key: [e["saturation"]["per_second"] for e in r.get(f"{key}_rounds", [r[key]])]
        for key in ("bare_1", "full_1", "bare_2", "full_2")
    }
    p99s = sorted(e["fixed_rate"]["p99_ms"] for e in r.get("full_2_rounds", [r["full_2"]]))
    lines += [
        "",
        f"The table shows each server's median of {rounds} alternated rounds; per round:",
        *(
            f"- {key.replace('_', ' x')}: " + ", ".join(f"{v:,.0f}" for v in values) + " events/s"
            for key, values in per_round.items()
        ),
        "- full / bare per round, 1 worker: "
        + ", ".join(
            f"{f / b:.2f}" for f, b in zip(per_round["full_1"], per_round["bare_1"], strict=True)
        ),
        f"- p99 at the fixed rate per round (sorted): {', '.join(f'{v:.2f}' for v in p99s)} ms",
        "",
        f"- full / bare, 1 worker: {eps('full_1') / eps('bare_1'):.2f} (target >= 0.6)",
        f"- full / bare, 2 workers: {eps('full_2') / eps('bare_2'):.2f}",
        f"- full 2 workers / 1 worker: {eps('full_2') / eps('full_1'):.2f} (target >= 1.6)",
        f"- bare 2 workers / 1 worker: {eps('bare_2') / eps('bare_1'):.2f}",
        "- cores in use at saturation (server processes / load generator), of "
        f"{r['cpus']}: "
        + ", ".join(
            f"{kind} x{w} {r[f'{kind}_{w}']['saturation'].get('server_cores', 0):.2f} / "
            f"{r[f'{kind}_{w}']['saturation'].get('generator_cores', 0):.2f}"
            for w in (1, 2)
            for kind in ("bare", "full")
        ),
        f"- full pipeline, 2 workers, at {fixed['per_second']:.0f} events/s offered (before "
        "its saturation run, once the writer had stored the warm-up's events): "
        f"p50 {fixed['p50_ms']:.2f} ms, p99 {fixed['p99_ms']:.2f} ms (target p99 <= 10 ms); "
        f"{fixed.get('tail_share_in_10_busiest_100ms', 0):.0%} of the slowest 1 % were due "
        f"in 10 windows of 100 ms (of {fixed.get('tail_windows', 0)} holding any): "
        "near 100 % means stalls, not steady queueing",
        *(
            f"- the writer during the saturation run, full x{w}: oldest unstored event at "
            f"most {b['max_age_s']:.1f} s; {b['stored_at_end']:,} of {b['accepted_at_end']:,} "
            f"accepted events stored when the load stopped; the workers left it a CPU in "
            f"{b['catching_up_share']:.0%} of the samples"
            for w in (1, 2)
            if (b := r[f"full_{w}"]["saturation"].get("backlog"))
        ),
        f"- writer into the embedded engine: {r['writer']['rows_per_second']:.0f} rows/s "
        f"({r['writer']['rows']} rows in {r['writer']['batches']} batches, each row a new "
        "visitor: the worst case; target >= 200,000)",
        f"- writer, visits of ~4 events: {r['writer_visits']['rows_per_second']:.0f} rows/s",
        *(
            [
                f"- writer, visits of ~4 events, into a store already holding "
                f"{r['writer_store']['events_before']:,} events: "
                f"{r['writer_store']['rows_per_second']:.0f} rows/s"
            ]
            if "writer_store" in r
            else []
        ),
        "- the process holding the engine, RSS MB before -> after the saturation run: "
        + ", ".join(
            f"x{w} {r[f'full_{w}']['engine_rss_mb'][0]} -> {r[f'full_{w}']['engine_rss_mb'][1]}"
            for w in (1, 2)
            if "engine_rss_mb" in r[f"full_{w}"]
        )
        + " (target <= 1,000)",
        f"- every accepted event stored: full x1 {r['full_1']['stored_rows']} rows, "
        f"full x2 {r['full_2']['stored_rows']} rows",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every server this many times, alternated; the table shows the median "
        "round of each (this machine is shared: one round's ratio can be off by a third)",
    )
    # ten batches: a backlog draining, where the writer's pipeline (one batch prepared while
    # the one before is inserted) is in its steady state
    p.add_argument("--writer-rows", type=int, default=1_000_000)
    p.add_argument(
        "--writer-store",
        help="also time the writer (visits of ~4) into a copy of this embedded store, e.g. "
        "a dashboard benchmark's /tmp/fp-bench-dashboard/100000000: the writer at a real size",
    )
    p.add_argument(
        "--engine-priority",
        choices=PRIORITIES,
        default="auto",
        help="FIRSTPARTY_ENGINE_PRIORITY of the full servers (docs/operations.md)",
    )
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--profile", action="store_true", help="profile the per-beacon work instead")
    args = p.parse_args(argv)
    if args.profile:
        print(profile())
        return 0
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
