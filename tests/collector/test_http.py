"""The endpoint over real sockets against `firstparty serve`: body limits while streaming,
Plausible's own tracker payloads end up stored, and X-Forwarded-For behind a trusted proxy."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

import store
from tests.collector.conftest import CHROME, PROXY_ADDRESS
from tests.conftest import Server

LIMIT = 65536


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """Read one whole response: the head, then as many body bytes as Content-Length says."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def stored(server: Server, path: str, expect: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Rows of `events` for `path`, waiting until `expect` of them have been written."""
    db = store.connect(server.env["FIRSTPARTY_STORE"])
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = db.query(
                "SELECT name, pathname, props, interactive, engagement_ms, scroll_depth,"
                " visitor_id, referrer_source FROM events WHERE pathname = {p:String}"
                " ORDER BY timestamp, name",
                {"p": path},
            ).dicts()
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        db.close()


def post(server: Server, body: str, **headers: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/event",
        content=body.encode(),
        headers={"content-type": "text/plain", "user-agent": CHROME, **headers},
    )


def test_declared_oversize_body_is_refused_before_it_is_sent(live: Server) -> None:
    with socket.create_connection(address(live)) as sock:
        sock.sendall(
            b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        started = time.monotonic()
        response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert time.monotonic() - started < 5
        assert b'"error"' in response


def stream_until_answered(sock: socket.socket, head: bytes, chunk: bytes) -> tuple[int, bytes]:
    """Send `chunk` repeatedly until the server answers; return bytes sent and the answer."""
    sock.sendall(head)
    sent = 0
    while sent < 8 * 1024 * 1024:
        readable, _, _ = select.select([sock], [], [], 0.005)
        if readable:
            return sent, read_response(sock)
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return sent, read_response(sock)
        sent += len(chunk)
    return sent, b""


def test_chunked_body_without_length_is_cut_at_the_limit(live: Server) -> None:
    piece = b"x" * 8192
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection(address(live)) as sock:
        sent, response = stream_until_answered(
            sock,
            b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            chunk,
        )
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    # The server stops reading shortly after the limit; what we pushed meanwhile sits in buffers.
    assert LIMIT < sent < 4 * 1024 * 1024


def test_deeply_nested_json_over_http_is_400(live: Server) -> None:
    response = post(live, "[" * 10_000 + "]" * 10_000)
    assert response.status_code == 400
    assert "nested" in response.json()["error"]
    assert "Traceback" not in live.output()


def test_plausibles_own_tracker_payloads_are_stored(live: Server) -> None:
    """Byte for byte what Plausible's script sends (text/plain JSON), old and new versions."""
    path = f"/plausible-u{uuid.uuid4().hex[:8]}"  # letter first: 8 digits = an ID
    url = f"https://example.com{path}?utm_source=newsletter"
    legacy_pageview = {  # plausible.js before v2: XHR, props as a JSON string, screen width
        "n": "pageview",
        "u": url,
        "d": "example.com",
        "r": "https://news.ycombinator.com/",
        "w": 1280,
    }
    legacy_event = {
        "n": "Signup",
        "u": url,
        "d": "example.com",
        "r": None,
        "w": 1280,
        "p": json.dumps({"plan": "pro"}),
        "h": 1,
    }
    modern_pageview = {"n": "pageview", "v": 26, "u": url, "d": "example.com", "r": None}
    modern_event = {
        "n": "Download",
        "v": 26,
        "u": url,
        "d": "example.com",
        "r": None,
        "p": {"file": "a.pdf", "size": 12},
        "i": False,
    }
    engagement = {
        "n": "engagement",
        "sd": 64,
        "d": "example.com",
        "u": url,
        "p": {"file": "a.pdf"},
        "e": 4321,
        "v": 26,
    }
    for payload in (legacy_pageview, legacy_event, modern_pageview, modern_event, engagement):
        response = post(live, json.dumps(payload))
        assert response.status_code == 202, response.text
        assert "x-dropped" not in response.headers, response.headers

    rows = stored(live, path, 5)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    assert sorted(by_name) == ["Download", "Signup", "engagement", "pageview"]
    assert len(by_name["pageview"]) == 2
    assert dict(by_name["Signup"][0]["props"]) == {"plan": "pro"}
    assert dict(by_name["Download"][0]["props"]) == {"file": "a.pdf", "size": "12"}
    assert by_name["Download"][0]["interactive"] == 0
    eng = by_name["engagement"][0]
    assert (eng["engagement_ms"], eng["scroll_depth"], eng["interactive"]) == (4321, 64, 0)
    # A source was kept for both (the referrer, or utm_source from the URL).
    assert all(r["referrer_source"] for r in by_name["pageview"])


def visitors_for(server: Server, forwarded: list[str | list[str]], source: str) -> list[int]:
    """Visitor ids of beacons sent from `source`; a list is several X-Forwarded-For lines."""
    base = f"/xff-u{uuid.uuid4().hex[:8]}"  # letter first: 8 digits = an ID
    # One path per beacon: beacons sent within one millisecond have no order in the table.
    paths = [f"{base}-{chr(ord('a') + n)}" for n in range(len(forwarded))]
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as client:
        for hop, path in zip(forwarded, paths, strict=True):
            response = client.post(
                server.url + "/api/event",
                content=json.dumps({"u": f"https://example.com{path}", "d": "example.com"}),
                headers=[
                    ("content-type", "text/plain"),
                    ("user-agent", CHROME),
                    *(
                        ("x-forwarded-for", line)
                        for line in ([hop] if isinstance(hop, str) else hop)
                    ),
                ],
            )
            assert response.status_code == 202
    ids = []
    for path in paths:
        rows = stored(server, path, 1)
        assert len(rows) == 1
        ids.append(int(rows[0]["visitor_id"]))
    return ids


def test_forwarded_for_is_used_only_behind_a_trusted_proxy(live: Server) -> None:
    # From the trusted proxy: the visitor is the address the proxy saw; two addresses, two visitors.
    a, b, a_again = visitors_for(
        live,
        ["198.51.100.23", "6.6.6.6, 198.51.100.99", f"198.51.100.23, {PROXY_ADDRESS}"],
        source=PROXY_ADDRESS,
    )
    assert a != b
    assert a == a_again
    # From an ordinary client: the header is ignored (it could be forged), one visitor.
    x, y = visitors_for(live, ["198.51.100.23", "198.51.100.99"], source="127.0.0.1")
    assert x == y
    assert x != a
    assert "198.51.100.23" not in live.output()


def test_a_forged_forwarded_for_line_before_the_proxys_own_is_not_believed(live: Server) -> None:
    # The client sends its own X-Forwarded-For line and the proxy adds another one: the lines
    # are read as one list, so the address the trusted proxy saw decides, not the forged one.
    real, forged_then_real, forged_alone = visitors_for(
        live,
        ["198.51.100.40", ["6.6.6.6", "198.51.100.40"], "6.6.6.6"],
        source=PROXY_ADDRESS,
    )
    assert forged_then_real == real
    assert forged_alone != real


def test_dropped_events_are_counted_by_reason_in_metrics(live: Server) -> None:
    body = json.dumps({"u": "https://unknown.example/", "d": "unknown.example"})
    response = post(live, body)
    assert (response.status_code, response.headers["x-dropped"]) == (202, "unknown_site")
    metrics = httpx.get(live.url + "/metrics").text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("firstparty_events_dropped_total{") and 'reason="unknown_site"' in line
    ]
    assert len(counted) == 1, metrics
    assert float(counted[0].rsplit(" ", 1)[1]) >= 1


def test_redactions_are_counted_by_kind_in_metrics(live: Server) -> None:
    body = json.dumps(
        {"u": "https://example.com/users/jane.doe@mail.example/edit", "d": "example.com"}
    )
    response = post(live, body)
    assert response.status_code == 202
    assert "x-dropped" not in response.headers
    deadline = time.monotonic() + 10
    while True:
        metrics = httpx.get(live.url + "/metrics").text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith('firstparty_redactions_total{kind="email"}')
        ]
        if counted and float(counted[0].rsplit(" ", 1)[1]) >= 1:
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    assert "jane.doe" not in metrics
