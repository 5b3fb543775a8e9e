"""Shared fixtures: a real ClickHouse engine (chDB, or a server when CLICKHOUSE_URL is set) and
a real `firstparty serve` process on a free port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from firstparty.config import parse
from firstparty.server import schema_values
from store import open_owner
from store import schema as schema_mod
from store.base import Store

SITE_CONFIG = """
[[site]]
domain = "example.com"

[[site]]
domain = "shop.example.org"
hostnames = ["shop.example.org"]
"""


def store_urls(engine_dir: Path) -> list[str]:
    urls = [f"chdb://{engine_dir}?database=t_{uuid.uuid4().hex[:12]}"]
    server = os.environ.get("CLICKHOUSE_URL")
    if server:
        base = server.rstrip("/").rsplit("/", 1)[0] if server.count("/") > 2 else server
        urls.append(f"{base}/t_{uuid.uuid4().hex[:12]}")
    return urls


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded engine per test process (chDB admits one engine path per process)."""
    return tmp_path_factory.mktemp("engine") / "clickhouse"


# The server backend joins every store test when CLICKHOUSE_URL=clickhouse://user:pass@host:8123
# is set (e.g. against the docker-compose ClickHouse).
BACKENDS = ["chdb", "server"] if os.environ.get("CLICKHOUSE_URL") else ["chdb"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, engine_dir: Path) -> Iterator[Store]:
    """A fresh database with the schema applied, on every available backend."""
    url = store_urls(engine_dir)[0 if request.param == "chdb" else 1]
    s = open_owner(url)
    schema_mod.apply(s, schema_values(parse(SITE_CONFIG, env={})))
    yield s
    s.command(f"DROP DATABASE IF EXISTS {url.rsplit('=', 1)[-1].rsplit('/', 1)[-1]}")
    s.close()


def firstparty(
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the `firstparty` command as an operator would, in `cwd` with exactly `env`."""
    return subprocess.run(
        [sys.executable, "-m", "firstparty", *args],
        cwd=cwd,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Server:
    url: str
    root: Path
    config: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return firstparty(*args, cwd=self.root, env=self.env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server (SIGTERM by default) and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output()


# Runs a command without CAP_SYS_NICE (RLIMIT_NICE is 0 here): its threads cannot leave the
# idle CPU class again.
SETPRIV = shutil.which("setpriv")
WITHOUT_SYS_NICE = [SETPRIV or "setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
needs_dropping = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop CAP_SYS_NICE"
)


def busy_process(preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """A process at the default priority that never sleeps."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=preexec_fn)


@contextmanager
def ready_child(code: str, preexec_fn: Callable[[], None] | None = None) -> Iterator[int]:
    """A Python child running `code`, once it has printed `ready`; killed afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, preexec_fn=preexec_fn
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.communicate()


def start_server(
    root: Path,
    config_text: str = SITE_CONFIG,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    wrap: list[str] | None = None,
) -> Server:
    """Start `firstparty serve --port 0` in `root`; output goes to `root/server.log`. `wrap`:
    a command that runs it (e.g. `setpriv` with fewer capabilities)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "firstparty.toml"
    config.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTPARTY_")}
    env.update(
        {
            "FIRSTPARTY_CONFIG": str(config),
            "FIRSTPARTY_STORE": f"chdb://{root / 'data' / 'clickhouse'}",
            "FIRSTPARTY_SERVER_DATA_DIR": str(root / "data"),
            **(extra_env or {}),
        }
    )
    log = root / "server.log"
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                *(wrap or []),
                *(sys.executable, "-m", "firstparty", "serve", "--port", "0"),
                *("--workers", str(workers)),
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text(errors="replace")
        match = re.search(r"serving on (http://\S+?)/? ", text[offset:])
        if match:
            url = match.group(1).rstrip("/")
            break
        time.sleep(0.05)
    if url is None:
        proc.kill()
        proc.wait()
        raise RuntimeError("server did not start:\n" + log.read_text(errors="replace"))
    for _ in range(100):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return Server(url=url, root=root, config=config, process=proc, env=env, log=log)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real `firstparty serve` (one HTTP worker) on a free port, with its own data dir."""
    srv = start_server(tmp_path / "srv")
    yield srv
    srv.stop()
