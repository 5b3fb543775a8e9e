"""The store contract, run against every available backend (chDB always; a server with
CLICKHOUSE_URL), and through the admin socket of a running server."""

from __future__ import annotations

import datetime as dt
import decimal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from store import StoreBusy, StoreError, batch, connect
from store.base import Store
from store.clickhouse import ClickHouseStore
from store.remote import RemoteStore
from store.url import parse_store_url
from tests.conftest import Server

SCHEMA = pa.schema([("k", pa.string()), ("n", pa.uint64()), ("at", pa.timestamp("ms", tz="UTC"))])


def make_table(store: Store) -> None:
    store.command("DROP TABLE IF EXISTS contract")
    store.command(
        "CREATE TABLE contract (k String, n UInt64, at DateTime64(3, 'UTC')) "
        "ENGINE = MergeTree ORDER BY k SETTINGS non_replicated_deduplication_window = 100"
    )


def rows(n: int, prefix: str = "k") -> pa.Table:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    return batch(
        {"k": [f"{prefix}{i}" for i in range(n)], "n": list(range(n)), "at": [at] * n}, SCHEMA
    )


def exercise(store: Store) -> None:
    make_table(store)
    store.insert("contract", rows(1000))
    assert store.query("SELECT count() AS c, sum(n) AS s FROM contract").dicts() == [
        {"c": 1000, "s": sum(range(1000))}
    ]
    # Parameters are bound server-side: a hostile value is a literal, never SQL.
    hostile = "k1' OR 1=1 --"
    assert (
        store.query("SELECT count() FROM contract WHERE k = {k:String}", {"k": hostile}).scalar()
        == 0
    )
    assert (
        store.query("SELECT count() FROM contract WHERE k = {k:String}", {"k": "k1"}).scalar() == 1
    )
    # Dates and datetimes round-trip as parameters and as results.
    got = store.query(
        "SELECT at FROM contract WHERE at >= {since:DateTime64(3, 'UTC')} LIMIT 1",
        {"since": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
    ).scalar()
    assert got == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    # Every kind of value the dashboards and the privacy tools read comes back as the same
    # Python value on every backend (the admin socket carries them as tagged JSON).
    typed = store.query(
        "SELECT toDate('2026-01-02') AS d, toUInt64(18446744073709551615) AS big, [1, 2] AS arr, "
        "map('a', 'b') AS m, toDecimal64(1.5, 2) AS dec, CAST(NULL AS Nullable(String)) AS nul, "
        "-3.5 AS f, toDateTime64('2026-01-02 03:04:05.678', 3, 'UTC') AS t, "
        "[toDate('2026-01-01')] AS ds, toUUID('499fe588-bd8e-4bd2-81da-ff5fa7b2b3fd') AS u, "
        "toIntervalSecond(5) AS i, tuple(1, 'a') AS tu"
    ).dicts()
    assert typed == [
        {
            "d": dt.date(2026, 1, 2),
            "big": 2**64 - 1,
            "arr": [1, 2],
            "m": [("a", "b")],
            "dec": decimal.Decimal("1.50"),
            "nul": None,
            "f": -3.5,
            "t": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
            "ds": [dt.date(2026, 1, 1)],
            "u": uuid.UUID("499fe588-bd8e-4bd2-81da-ff5fa7b2b3fd"),
            "i": dt.timedelta(seconds=5),
            "tu": {"1": 1, "2": "a"},
        }
    ]
    # The same dedup token twice stores the batch once; a new token stores it again.
    store.insert("contract", rows(10, "d"), dedup_token="batch-1")
    store.insert("contract", rows(10, "d"), dedup_token="batch-1")
    assert store.query("SELECT count() FROM contract WHERE k LIKE 'd%'").scalar() == 10
    store.insert("contract", rows(10, "d"), dedup_token="batch-2")
    assert store.query("SELECT count() FROM contract WHERE k LIKE 'd%'").scalar() == 20
    # Errors are ours, with the engine's message and no stack trace.
    with pytest.raises(StoreError, match=r"UNKNOWN_TABLE|Unknown table"):
        store.query("SELECT * FROM no_such_table")
    result = store.query("SELECT k, n FROM contract WHERE k LIKE 'k%' ORDER BY n LIMIT 2")
    assert result.columns == ["k", "n"]
    assert result.tuples() == [("k0", 0), ("k1", 1)]
    assert result.column("n") == [0, 1]
    assert result.dicts() == [{"k": "k0", "n": 0}, {"k": "k1", "n": 1}]
    store.command("DROP TABLE contract")


def test_contract_on_every_backend(store: Store) -> None:
    exercise(store)


def test_query_settings_are_applied(store: Store) -> None:
    make_table(store)
    store.insert("contract", rows(10))
    sql = "SELECT k FROM contract ORDER BY k"
    assert len(store.query(sql, None, {"max_result_rows": 20}).dicts()) == 10
    with pytest.raises(StoreError):
        store.query(sql, None, {"max_result_rows": 2, "result_overflow_mode": "throw"})
    # A setting's string value is a quoted literal, never more SQL.
    with pytest.raises(StoreError):
        store.query(sql, None, {"result_overflow_mode": "break' , max_threads = '1"})


def test_a_query_stopped_at_its_time_cap_leaves_the_next_one_readable(store: Store) -> None:
    # On chDB the handle of a query stopped mid-stream handed the next query on it a broken
    # result ("Invalid flatbuffers message"): the bench's filtered payload failed right after
    # a raw one hit its cap. One call at a time, so the same pooled handle is reused.
    make_table(store)
    store.insert("contract", rows(10))
    slow = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) = 0"
    for _ in range(2):
        with pytest.raises(StoreError):
            store.query(slow, None, {"max_execution_time": 0.2, "timeout_overflow_mode": "throw"})
        assert store.query("SELECT count() AS c FROM contract").scalar() == 10
        assert len(store.query("SELECT k FROM contract ORDER BY k").dicts()) == 10


def test_calls_from_many_threads_run_side_by_side(store: Store) -> None:
    make_table(store)
    store.insert("contract", rows(5000))
    assert isinstance(store, ClickHouseStore)
    # One call holds a client (as a long dashboard query would): others still get answers.
    with store._client():
        with ThreadPoolExecutor(max_workers=8) as pool:
            sums = list(
                pool.map(
                    lambda i: store.query(
                        "SELECT sum(n) FROM contract WHERE n % 8 = {i:UInt8}", {"i": i}
                    ).scalar(),
                    range(8),
                    timeout=60,
                )
            )
    assert sums == [sum(n for n in range(5000) if n % 8 == i) for i in range(8)]


def test_contract_through_the_admin_socket_of_a_running_server(server: Server) -> None:
    remote = connect(server.env["FIRSTPARTY_STORE"])
    try:
        assert isinstance(remote, RemoteStore)
        exercise(remote)
    finally:
        remote.close()


def test_a_second_process_gets_a_clear_error_when_the_engine_is_held(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'clickhouse'}"
    code = (
        "import sys, time\n"
        "from store import open_owner\n"
        f"s = open_owner({url!r})\n"
        "print('open', flush=True)\n"
        "time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreBusy, match=r"in use by another process \(pid \d+\)"):
            connect(url)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


@pytest.mark.parametrize(
    ("url", "kind", "database", "host", "port"),
    [
        ("chdb://./data/clickhouse", "chdb", "firstparty", "", 8123),
        ("chdb:///var/lib/fp?database=analytics", "chdb", "analytics", "", 8123),
        (
            "clickhouse://u:p%40ss@ch.internal:9000/stats",
            "clickhouse",
            "stats",
            "ch.internal",
            9000,
        ),
        ("clickhouse://ch", "clickhouse", "firstparty", "ch", 8123),
        ("clickhouses://ch/db", "clickhouse", "db", "ch", 8443),
    ],
)
def test_store_urls(url: str, kind: str, database: str, host: str, port: int) -> None:
    target = parse_store_url(url)
    assert (target.kind, target.database, target.host, target.port) == (kind, database, host, port)
    assert "p@ss" not in target.redacted()


@pytest.mark.parametrize(
    "url", ["mysql://x", "chdb://", "clickhouse:///db", "chdb://x?database=a;b"]
)
def test_bad_store_urls_say_what_is_supported(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        parse_store_url(url)
