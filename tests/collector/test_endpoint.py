"""`POST /api/event` and the static routes through the real worker app (in-process, real chDB)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.collector.conftest import VISITOR_IP, AppClient

PAGEVIEW = '{"n":"pageview","u":"https://example.com/pricing","d":"example.com"}'


def assert_json_error(response: object, status: int, *words: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    message = response.json()["error"]  # type: ignore[attr-defined]
    for word in words:
        assert word in message, message
    assert "Traceback" not in message


def test_accepts_text_plain_and_json(app: AppClient) -> None:
    for media in ("text/plain", "text/plain;charset=UTF-8", "application/json"):
        response = app.event(PAGEVIEW, headers={"content-type": media})
        assert response.status_code == 202
        assert "x-dropped" not in response.headers
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


def test_dropped_events_say_why(app: AppClient) -> None:
    unknown = app.event('{"u":"https://nope.example/","d":"nope.example"}')
    assert (unknown.status_code, unknown.headers["x-dropped"]) == (202, "unknown_site")
    local = app.event('{"u":"http://localhost:3000/","d":"example.com"}')
    assert (local.status_code, local.headers["x-dropped"]) == (202, "localhost")
    gpc = app.event(PAGEVIEW, headers={"sec-gpc": "1"})
    assert (gpc.status_code, gpc.headers["x-dropped"]) == (202, "gpc")
    dnt = app.event(PAGEVIEW, headers={"dnt": "1"})
    assert (dnt.status_code, dnt.headers["x-dropped"]) == (202, "dnt")


def test_domain_fan_out_is_dropped_only_when_every_site_drops(app: AppClient) -> None:
    both = app.event('{"u":"https://example.com/","d":"example.com,nope.example"}')
    assert both.status_code == 202
    assert "x-dropped" not in both.headers


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (b"{", "JSON"),
        (b"", "JSON"),
        (b'{"d":"example.com"}', "`u`"),
        (b'{"u":"https://example.com/"}', "`d`"),
        (b'{"u":"https://example.com/","d":"example.com","p":[1]}', "`p`"),
        (b"[" * 10_000 + b"]" * 10_000, "nested"),
        (b"\xc3\x28", "UTF-8"),
        (b'{"u":"https://example.com/\\u0000","d":"example.com"}', "NUL"),
        (b'{"u":"https://example.com/","d":"example.com","e":1e400}', "`e`"),
        (b'{"u":"https://example.com/","d":"example.com","e":' + b"9" * 5000 + b"}", "JSON"),
        (b'{"u":"https://example.com/\\udc00","d":"example.com"}', "surrogate"),
    ],
)
def test_malformed_bodies_get_400(app: AppClient, body: bytes, word: str) -> None:
    assert_json_error(app.event(body), 400, word)


def test_other_content_types_get_415(app: AppClient) -> None:
    for media in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        response = app.event(PAGEVIEW, headers={"content-type": media})
        assert_json_error(response, 415, "Content-Type")


def test_other_methods_get_405_in_json(app: AppClient) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH", "HEAD", "PROPFIND"):
        response = app.request(method, "/api/event")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST, OPTIONS"
        if method != "HEAD":
            assert response.json() == {"error": "use POST to send events"}


def test_preflight_is_answered(app: AppClient) -> None:
    response = app.request(
        "OPTIONS",
        "/api/event",
        headers={
            "origin": "https://example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in response.headers


def test_declared_oversize_body_gets_413(app: AppClient) -> None:
    body = json.dumps({"u": "https://example.com/", "d": "example.com", "p": {"k": "v" * 70000}})
    assert_json_error(app.event(body), 413, "65536")


def test_untrusted_peer_cannot_forge_its_address(app: AppClient) -> None:
    # No trusted proxies are configured: the header is ignored and the peer is used.
    response = app.event(PAGEVIEW, headers={"x-forwarded-for": "not-an-ip"})
    assert response.status_code == 202


def test_unexpected_failure_is_a_json_503_and_logs_no_address(
    app: AppClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ingestor = app.app.state.ingestor

    async def broken(hits: object) -> list[str | None]:
        raise RuntimeError(f"disk on fire while handling {VISITOR_IP}")

    monkeypatch.setattr(ingestor, "submit", broken)
    with caplog.at_level(logging.ERROR, logger="firstparty.collector"):
        response = app.event(PAGEVIEW)
    assert_json_error(response, 503, "try again")
    assert response.headers["retry-after"] == "5"
    assert VISITOR_IP not in response.text
    assert "RuntimeError" in caplog.text
    assert VISITOR_IP not in caplog.text  # the message (which quotes it) is never logged


def test_script_is_served_with_caching_headers(app: AppClient) -> None:
    plain = app.request("GET", "/js/script.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/javascript"
    assert "max-age" in plain.headers["cache-control"]
    assert plain.headers["etag"]
    assert b"/api/event" in plain.content
    zipped = app.request("GET", "/js/script.js", headers={"accept-encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes it
    assert int(zipped.headers["content-length"]) <= 1000
    cached = app.request("GET", "/js/script.js", headers={"if-none-match": plain.headers["etag"]})
    assert cached.status_code == 304


def test_variants_in_any_order_and_full(app: AppClient) -> None:
    a = app.request("GET", "/js/script.tagged-events.outbound-links.js")
    b = app.request("GET", "/js/script.outbound-links.tagged-events.js")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert b"Outbound Link: Click" in a.content and b"File Download" not in a.content
    full = app.request("GET", "/js/script.full.js")
    assert b"File Download" in full.content and b"firstparty-event-" in full.content
    missing = app.request("GET", "/js/script.nonsense.js")
    assert_json_error(missing, 404, "outbound-links")


def test_optout_page(app: AppClient) -> None:
    page = app.request("GET", "/optout")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "firstparty_ignore" in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]


garbage = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.dictionaries(
        st.sampled_from(["n", "u", "d", "p", "e", "sd", "h", "i", "v", "did", "r"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        max_size=8,
    ).map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass")),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=garbage,
    media=st.sampled_from(["text/plain", "application/json", "text/html", "x/y"]),
)
def test_fuzz_the_endpoint_never_answers_500(app: AppClient, body: bytes, media: str) -> None:
    response = app.event(body, headers={"content-type": media})
    assert response.status_code in (202, 400, 413, 415), response.text
    if response.status_code != 202:
        assert "error" in response.json()
