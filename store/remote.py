"""The embedded engine through the process that owns it, over a Unix socket.

chDB lets one process open a data path. While `firstparty serve` runs, it owns the engine and
answers store calls on `<path>.sock` (mode 0600, never a TCP port); HTTP workers and CLI
commands use this backend then, so they work whether or not the server is running.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store.base import Params, Rows, Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    import pyarrow as pa

TIMEOUT = httpx.Timeout(120.0, connect=5.0)


def socket_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".sock")


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        # Whole seconds without a fraction, so `DateTime` parameters parse too.
        fmt = "%Y-%m-%d %H:%M:%S" if not value.microsecond else "%Y-%m-%d %H:%M:%S.%f"
        return value.strftime(fmt)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]  # Array(Date), Array(DateTime) parameters
    return value


def encode_params(params: Params | None) -> dict[str, Any]:
    """JSON-safe parameters; datetimes in the text form ClickHouse parses for DateTime64."""
    return {key: _encode(value) for key, value in (params or {}).items()}


# Query results travel as JSON with the few non-JSON types tagged, so that the workers, which
# read small results (salts, dashboards), need no pyarrow. Inserts travel as Arrow IPC.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_TAG = "$t"


def _pack(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": value.hex()}
    if isinstance(value, tuple):  # a Map's entries, as Arrow gives them
        return {_TAG: "tuple", "v": [_pack(v) for v in value]}
    if isinstance(value, list):
        return [_pack(v) for v in value]
    if isinstance(value, dict):  # keys of any type, so as pairs
        return {_TAG: "dict", "v": [[_pack(k), _pack(v)] for k, v in value.items()]}
    raise TypeError(f"a query result holds a {type(value).__name__}, which the socket cannot carry")


_UNPACK: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "timedelta": lambda parts: dt.timedelta(*parts),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": bytes.fromhex,
    "tuple": tuple,
    "dict": lambda pairs: {k: v for k, v in pairs},
}


def _unpack(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    return obj if tag is None else _UNPACK[tag](obj["v"])


def rows_to_wire(rows: Rows) -> bytes:
    columns = [
        column if set(map(type, column)) <= _PLAIN else [_pack(v) for v in column]
        for column in rows.data
    ]
    return json.dumps({"names": rows.names, "data": columns}, separators=(",", ":")).encode()


def rows_from_wire(data: bytes) -> Rows:
    decoded = json.loads(data, object_hook=_unpack)
    return Rows(list(decoded["names"]), list(decoded["data"]))


def table_to_ipc(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def ipc_to_table(data: bytes) -> pa.Table:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class RemoteStore:
    exclusive = False  # the process that owns the engine writes to it too

    def __init__(self, sock: Path, url: str) -> None:
        self.url = url
        self.sock = sock
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)),
            base_url="http://firstparty-admin",
            timeout=TIMEOUT,
        )

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.post(path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(
                f"the server owning {self.url} did not answer on {self.sock}: {exc}"
            ) from None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            if response.status_code == 503:
                raise StoreUnavailable(message)
            raise StoreError(message)
        return response

    def query(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> Rows:
        body = {"sql": sql, "params": encode_params(params), "settings": dict(settings or {})}
        return rows_from_wire(self._post("/store/query", json=body).content)

    def command(
        self, sql: str, params: Params | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        body = {"sql": sql, "params": encode_params(params), "settings": dict(settings or {})}
        self._post("/store/command", json=body)

    def insert(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        headers = {
            "content-type": "application/vnd.apache.arrow.stream",
            "x-table": table,
            "x-dedup-token": dedup_token or "",
        }
        self._post("/store/insert", content=table_to_ipc(data), headers=headers)

    def close(self) -> None:
        self._http.close()


def alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2.0) as client:
            return client.get("http://firstparty-admin/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def _json_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def admin_routes(
    store: Store, on_insert: Callable[[str, pa.Table], None] | None = None
) -> list[Route]:
    """The server side: routes the engine-owning process serves on the admin socket.

    `on_insert(table, data)` is told of an insert before it is made (the owner's writer learns
    that events it did not write are arriving: from a joined collector, demo data).
    """

    async def _body(request: Request) -> dict[str, Any]:
        data = json.loads(await request.body())
        if not isinstance(data, dict) or not isinstance(data.get("sql"), str):
            raise StoreError("admin call needs a JSON object with `sql`")
        return data

    async def query(request: Request) -> Response:
        try:
            data = await _body(request)
            rows = await run_in_threadpool(
                store.query, data["sql"], data.get("params"), data.get("settings")
            )
            body = rows_to_wire(rows)
        except StoreUnavailable as exc:
            return _json_error(str(exc), 503)
        except (StoreError, ValueError, TypeError) as exc:
            return _json_error(str(exc), 400)
        return Response(body, media_type="application/json")

    async def command(request: Request) -> Response:
        try:
            data = await _body(request)
            await run_in_threadpool(
                store.command, data["sql"], data.get("params"), data.get("settings")
            )
        except StoreUnavailable as exc:
            return _json_error(str(exc), 503)
        except (StoreError, ValueError) as exc:
            return _json_error(str(exc), 400)
        return JSONResponse({"ok": True})

    async def insert(request: Request) -> Response:
        try:
            table = ipc_to_table(await request.body())
            token = request.headers.get("x-dedup-token") or None
            name = request.headers["x-table"]
            if on_insert is not None:
                on_insert(name, table)
            await run_in_threadpool(store.insert, name, table, token)
        except StoreUnavailable as exc:
            return _json_error(str(exc), 503)
        except (StoreError, ValueError, KeyError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            return _json_error(str(exc), 400)
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return [
        Route("/store/query", query, methods=["POST"]),
        Route("/store/command", command, methods=["POST"]),
        Route("/store/insert", insert, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
