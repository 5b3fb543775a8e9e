"""CLI commands for dashboard access: `firstparty users ...` and `firstparty shares ...`."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys

from dashboards.shares import create_share, list_shares, revoke_share
from dashboards.users import (
    ROLES,
    UserError,
    add_user,
    count_admins,
    generate_password,
    get_user,
    list_users,
    remove_user,
)
from firstparty.cli import command, open_store
from firstparty.config import Config

BOOTSTRAP_EMAIL = "admin@localhost"


def _users_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user, or reset an existing user's role and password")
    add.add_argument("email")
    add.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    add.add_argument(
        "--site",
        action="append",
        default=[],
        help="limit the user to this site (repeat for several; default: every site)",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of generating one",
    )
    sub.add_parser("list", help="list the users and their roles")
    remove = sub.add_parser("remove", help="remove a user; their sessions end at once")
    remove.add_argument("email")
    sub.add_parser(
        "bootstrap",
        help=f"create {BOOTSTRAP_EMAIL} as admin with a random password if there is no admin",
    )


def _base_url(config: Config) -> str:
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    host = config.server.host
    return f"http://{'[' + host + ']' if ':' in host else host}:{config.server.port}"


@command("users", "manage dashboard users (roles: viewer, privacy, admin)", _users_args)
def cmd_users(args: argparse.Namespace, config: Config) -> int:
    unknown = [s for s in getattr(args, "site", []) if config.site(s) is None]
    if unknown:
        print(f"error: {', '.join(unknown)} is not a configured site", file=sys.stderr)
        return 2
    store = open_store(config)
    try:
        if args.action == "list":
            users = list_users(store)
            if not users:
                print("No users yet; add one with `firstparty users add EMAIL --role admin`.")
            for user in users:
                print(f"{user.email}\t{user.role}\t{', '.join(user.sites) or 'all sites'}")
            return 0
        if args.action == "remove":
            if not remove_user(store, args.email):
                print(f"error: there is no user {args.email!r}", file=sys.stderr)
                return 1
            print(f"Removed {args.email}; their dashboard sessions have ended.")
            return 0
        if args.action == "bootstrap":
            if count_admins(store):
                return 0
            password = generate_password()
            add_user(store, BOOTSTRAP_EMAIL, "admin", password)
            print("Created the first dashboard admin (the password is shown only this once):")
            print(f"  email:    {BOOTSTRAP_EMAIL}")
            print(f"  password: {password}")
            print(f"  log in at {_base_url(config)}/login")
            return 0
        # add
        generated = not args.password_stdin
        if generated:
            password = generate_password()
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        existed = get_user(store, args.email) is not None
        user = add_user(store, args.email, args.role, password, args.site)
        print(f"{'Updated' if existed else 'Added'} {user.email} as {user.role}.")
        if generated:
            print("Password (shown once; store it now):")
            print(password)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


_DURATION = re.compile(r"^(\d+)([hdw])$")


def parse_expiry(value: str, now: dt.datetime) -> dt.datetime | None:
    """`never`, a duration like `12h`, `7d`, `2w`, or a date/time (UTC)."""
    value = value.strip().lower()
    if value in ("", "never"):
        return None
    match = _DURATION.match(value)
    if match:
        unit = {"h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now + dt.timedelta(**{unit: int(match.group(1))})
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expiry must be never, a duration like 12h/7d/2w, or a date, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _when(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else "never"


def _shares_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a link (printed once, as the last line)")
    create.add_argument("--site", required=True, help="the one site the link shows")
    create.add_argument("--label", default="", help="a note to tell links apart")
    create.add_argument("--expires", default="never", help="never (default), 12h, 7d, 2w, a date")
    listing = sub.add_parser("list", help="list the live links (IDs, sites, expiry)")
    listing.add_argument("--site", default=None)
    revoke = sub.add_parser("revoke", help="revoke a link by its ID (see `shares list`)")
    revoke.add_argument("link_id")


@command("shares", "manage read-only share links to one site's dashboard", _shares_args)
def cmd_shares(args: argparse.Namespace, config: Config) -> int:
    site = getattr(args, "site", None)
    if site is not None and config.site(site) is None:
        print(f"error: {site} is not a configured site (see `firstparty sites`)", file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.UTC)
    if args.action == "create":
        try:
            expires = parse_expiry(args.expires, now)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    store = open_store(config)
    try:
        if args.action == "create":
            token, link = create_share(store, args.site, "cli", args.label, expires)
            until = _when(link.expires_at)
            print(f"Share link {link.link_id} for {link.site_id} (expires: {until}); shown once:")
            print(f"{_base_url(config)}/share/{token}")
            return 0
        if args.action == "list":
            links = list_shares(store, site)
            if not links:
                print("No share links.")
            for link in links:
                until = _when(link.expires_at)
                state = " (expired)" if link.expired(now) else ""
                print(
                    f"{link.link_id}\t{link.site_id}\texpires {until}{state}\t"
                    f"by {link.created_by}\t{link.label}"
                )
            return 0
        if not revoke_share(store, args.link_id):
            print(f"error: no live share link with ID {args.link_id!r}", file=sys.stderr)
            return 1
        print(f"Revoked share link {args.link_id}.")
        return 0
    finally:
        store.close()
