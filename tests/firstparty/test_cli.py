"""The `firstparty` command as an operator uses it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Server, firstparty


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("FIRSTPARTY_")}
    return firstparty(*args, cwd=cwd, env={**base, **(env or {})})


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    for name in ("init", "serve", "sites", "keys", "schema"):
        assert name in out.stdout


def test_init_creates_a_config_once_and_keeps_it(tmp_path: Path) -> None:
    first = run("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Created" in first.stdout
    (tmp_path / "firstparty.toml").write_text("[[site]]\ndomain = 'mine.example'\n")
    second = run("init", cwd=tmp_path)
    assert "existing" in second.stdout
    assert run("sites", cwd=tmp_path).stdout.startswith("mine.example")


def test_invalid_config_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "firstparty.toml").write_text("[privacy]\nipv4_prefix = 40\n")
    out = run("sites", cwd=tmp_path)
    assert out.returncode == 2
    assert "firstparty.toml: `privacy.ipv4_prefix` must be between 8 and 24" in out.stderr
    assert "Traceback" not in out.stderr


def test_store_commands_work_without_a_running_server(tmp_path: Path) -> None:
    (tmp_path / "firstparty.toml").write_text("[[site]]\ndomain = 'example.com'\n")
    out = run("keys", "create", "--site", "example.com", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("fp_")
    unknown = run("keys", "create", "--site", "nope.example", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "not a configured site" in unknown.stderr


def test_store_commands_work_while_the_server_holds_the_engine(server: Server) -> None:
    out = server.cli("keys", "create", "--site", "example.com")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("fp_")


def test_schema_prints_the_ddl(tmp_path: Path) -> None:
    out = run("schema", cwd=tmp_path)
    assert out.returncode == 0
    assert "CREATE TABLE IF NOT EXISTS events" in out.stdout
    assert "INTERVAL 30 DAY" in out.stdout
