"""The `firstparty` command. Commands that need the store work whether or not the server runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from firstparty import __version__
from firstparty.config import DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_TEXT, Config, ConfigError, load
from store.base import Store, StoreError

Command = Callable[[argparse.Namespace, Config], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None]]] = {}


def command(
    name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (help_text, fn, arguments)
        return fn

    return register


def open_store(config: Config) -> Store:
    """The store for a CLI command: through the running server when it holds the engine."""
    from firstparty.server import schema_values
    from store import connect
    from store import schema as schema_mod

    store = connect(config.store)
    schema_mod.apply(store, schema_values(config))
    return store


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="HTTP worker processes (default: one per core)")


@command("serve", "serve the collector, the dashboards and the APIs", _serve_args)
def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from firstparty.server import serve

    server = config.server
    server = replace(
        server,
        host=args.host or server.host,
        port=server.port if args.port is None else args.port,
        workers=server.workers if args.workers is None else args.workers,
    )
    return serve(replace(config, server=server))


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path", default=None, help=f"config file to create (default {DEFAULT_CONFIG_PATH})"
    )


@command("init", "create a config file with sensible defaults (kept if it exists)", _init_args)
def cmd_init(args: argparse.Namespace, config: Config) -> int:
    path = Path(args.path or os.environ.get("FIRSTPARTY_CONFIG") or DEFAULT_CONFIG_PATH)
    if path.exists():
        print(f"Using the existing config file {path}")
        return 0
    path.write_text(DEFAULT_CONFIG_TEXT, encoding="utf-8")
    print(f"Created {path} with the defaults; edit it to add your sites.")
    return 0


@command("sites", "list the configured sites")
def cmd_sites(args: argparse.Namespace, config: Config) -> int:
    if not config.sites:
        print(f"No sites configured; add a [[site]] to {config.source}.")
    for site in config.sites:
        hosts = ", ".join(site.hostnames) or f"{site.domain} and its subdomains"
        print(f"{site.domain}\t{hosts}")
    return 0


def _keys_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create"], help="create a Stats API key")
    p.add_argument(
        "--site",
        action="append",
        required=True,
        help="a site the key may read (repeat for several)",
    )


@command("keys", "manage Stats API keys (the key is printed once, as the last line)", _keys_args)
def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    from dashboards.keys import create_key

    unknown = [s for s in args.site if config.site(s) is None]
    if unknown:
        print(
            f"error: {', '.join(unknown)} is not a configured site (see `firstparty sites`)",
            file=sys.stderr,
        )
        return 2
    store = open_store(config)
    try:
        key = create_key(store, list(args.site))
    finally:
        store.close()
    print(f"API key for {', '.join(args.site)} (shown once; store it now):")
    print(key)
    return 0


def _schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", help="print the DDL for a ClickHouse cluster of this name")
    p.add_argument(
        "--apply",
        action="store_true",
        help="with --cluster: run that DDL through the store's node (ON CLUSTER reaches all)",
    )


@command("schema", "print the ClickHouse schema this version applies", _schema_args)
def cmd_schema(args: argparse.Namespace, config: Config) -> int:
    from firstparty.server import schema_values
    from store import schema as schema_mod

    statements = schema_mod.statements(schema_values(config))
    if args.cluster:
        from store.cluster import ClusterSchemaError, cluster_statements
        from store.url import DEFAULT_DATABASE, parse_store_url

        target = parse_store_url(config.store)
        database = target.database if target.kind == "clickhouse" else DEFAULT_DATABASE
        try:
            statements = cluster_statements(statements, args.cluster, database)
        except ClusterSchemaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.apply:
        return _apply_cluster_schema(args.cluster, statements, config)
    for sql in statements:
        print(sql.rstrip(";") + ";\n")
    return 0


def _apply_cluster_schema(cluster: str | None, statements: list[str], config: Config) -> int:
    from store import open_owner
    from store.url import parse_store_url

    if not cluster or parse_store_url(config.store).kind != "clickhouse":
        print(
            "error: --apply needs --cluster NAME and a clickhouse:// store (a single node "
            "applies its schema when `firstparty serve` starts)",
            file=sys.stderr,
        )
        return 2
    store = open_owner(config.store)
    try:
        for sql in statements:
            store.command(sql)
    finally:
        store.close()
    print(f"Applied {len(statements)} statements on cluster {cluster} through {store.url}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="firstparty",
        description="Privacy-preserving first-party web analytics on ClickHouse.",
    )
    top.add_argument("--version", action="version", version=f"firstparty {__version__}")
    top.add_argument(
        "--config", help="config file (default: FIRSTPARTY_CONFIG or ./firstparty.toml)"
    )
    top.add_argument(
        "--store", help="store URL (default: FIRSTPARTY_STORE or chdb://./data/clickhouse)"
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        arguments(child)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    import firstparty.commands  # noqa: F401 - registers the commands of the other packages

    args = parser().parse_args(argv)
    if not args.command:
        parser().print_help()
        return 2
    try:
        if args.command == "init":
            return cmd_init(args, Config())
        config = load(args.config)
        if args.store:
            config = replace(config, store=args.store)
        return COMMANDS[args.command][1](args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
