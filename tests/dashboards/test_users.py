"""Users: argon2id hashes, roles, and the `firstparty users` / `shares` CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dashboards.users import UserError, add_user, check_password, get_user, list_users, remove_user
from store.base import Store
from tests.conftest import firstparty


def test_passwords_are_stored_as_argon2id_only(store: Store) -> None:
    add_user(store, "A@Example.com", "admin", "a long password")
    stored = store.query(
        "SELECT password_hash FROM users FINAL WHERE email = 'a@example.com'"
    ).scalar()
    assert stored.startswith("$argon2id$") and "a long password" not in stored
    assert check_password(store, "a@example.com", "a long password") is not None
    assert check_password(store, "a@example.com", "a long passwore") is None
    assert check_password(store, "nobody@example.com", "a long password") is None


def test_roles_and_validation(store: Store) -> None:
    with pytest.raises(UserError):
        add_user(store, "x@example.com", "owner", "a long password")
    with pytest.raises(UserError):
        add_user(store, "x@example.com", "viewer", "short")
    with pytest.raises(UserError):
        add_user(store, "not-an-email", "viewer", "a long password")
    add_user(store, "v@example.com", "viewer", "a long password")
    add_user(store, "v@example.com", "privacy", "another password")  # re-adding updates
    user = get_user(store, "v@example.com")
    assert user is not None and user.role == "privacy"
    assert user.can("viewer") and user.can("privacy") and not user.can("admin")
    assert [u.email for u in list_users(store)] == ["v@example.com"]
    assert check_password(store, "v@example.com", "a long password") is None
    assert remove_user(store, "v@example.com") and not remove_user(store, "v@example.com")
    assert list_users(store) == []


def _cli(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "FIRSTPARTY_CONFIG": str(root / "firstparty.toml"),
        "FIRSTPARTY_STORE": f"chdb://{root / 'data' / 'clickhouse'}",
        "FIRSTPARTY_SERVER_DATA_DIR": str(root / "data"),
    }
    return firstparty(*args, cwd=root, env=env, stdin=stdin)


def test_users_and_shares_cli(tmp_path: Path) -> None:
    (tmp_path / "firstparty.toml").write_text('[[site]]\ndomain = "example.com"\n')
    first = _cli(tmp_path, "users", "bootstrap")
    assert first.returncode == 0, first.stderr
    assert "admin@localhost" in first.stdout and "password:" in first.stdout
    assert _cli(tmp_path, "users", "bootstrap").stdout == ""  # an admin exists: silent
    added = _cli(tmp_path, "users", "add", "m@example.com", "--role", "viewer")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip().splitlines()[-1]
    assert len(password) >= 20
    piped = _cli(
        tmp_path,
        "users",
        "add",
        "p@example.com",
        "--role",
        "privacy",
        "--password-stdin",
        stdin="my chosen password\n",
    )
    assert piped.returncode == 0 and "my chosen password" not in piped.stdout
    listed = _cli(tmp_path, "users", "list").stdout
    assert "m@example.com\tviewer" in listed and "p@example.com\tprivacy" in listed
    assert "admin@localhost\tadmin" in listed
    bad = _cli(tmp_path, "users", "add", "q@example.com", "--role", "owner")
    assert bad.returncode == 2
    assert _cli(tmp_path, "users", "remove", "m@example.com").returncode == 0

    share = _cli(tmp_path, "shares", "create", "--site", "example.com", "--expires", "7d")
    assert share.returncode == 0, share.stderr
    url = share.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:8000/share/")
    link_id = share.stdout.split("Share link ", 1)[1].split()[0]
    assert link_id in _cli(tmp_path, "shares", "list").stdout
    revoked = _cli(tmp_path, "shares", "revoke", link_id)
    assert revoked.returncode == 0 and link_id in revoked.stdout
    assert _cli(tmp_path, "shares", "create", "--site", "nope.org").returncode == 2
