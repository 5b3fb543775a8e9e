"""The beacon parser: Plausible's keys in both forms, limits, every malformed input rejected."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.payload import PayloadError, _json, parse_payload

BASE = {"u": "https://example.com/a", "d": "example.com"}


def parse(body: Any) -> Any:
    return parse_payload(json.dumps(body).encode())


def bad(raw: bytes | Any, *words: str) -> str:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(PayloadError) as caught:
        parse_payload(data)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def test_short_keys() -> None:
    p = parse(
        {
            "n": "Signup",
            "u": "https://example.com/x?utm_source=a",
            "d": "example.com",
            "r": "https://ref.example/",
            "p": {"plan": "pro", "seats": 3, "trial": True, "gone": None},
            "h": 1,
            "i": False,
            "e": 1234,
            "sd": 55,
            "v": 26,
            "did": "device-1",
        }
    )
    assert p.name == "Signup"
    assert p.url == "https://example.com/x?utm_source=a"
    assert p.domains == ("example.com",)
    assert p.referrer == "https://ref.example/"
    assert p.props == {"plan": "pro", "seats": "3", "trial": "true"}
    assert (p.hash_mode, p.interactive, p.engagement_ms, p.scroll_depth) == (True, False, 1234, 55)
    assert p.tracker_version == "26"
    assert p.device_id == "device-1"


def test_long_keys_and_defaults() -> None:
    p = parse(
        {
            "name": "pageview",
            "url": "http://example.com/",
            "domain": "Example.com, shop.example.org,example.com",
            "referrer": None,
            "props": '{"a": "b"}',
            "device_id": "x",
        }
    )
    assert p.domains == ("example.com", "shop.example.org")  # fan-out, lower-cased, deduplicated
    assert p.props == {"a": "b"}
    assert p.referrer == ""
    assert p.device_id == "x"
    minimal = parse(BASE)
    assert (minimal.name, minimal.interactive, minimal.hash_mode) == ("pageview", True, False)
    assert minimal.engagement_ms is None and minimal.scroll_depth is None


def test_engagement_is_non_interactive_unless_told() -> None:
    assert parse({**BASE, "n": "engagement", "e": 10, "sd": 3}).interactive is False
    assert parse({**BASE, "n": "engagement", "i": True}).interactive is True


def test_scroll_depth_a_little_over_100_is_capped() -> None:
    assert parse({**BASE, "sd": 101.4}).scroll_depth == 100
    bad({**BASE, "sd": 5000}, "sd")
    bad({**BASE, "sd": -1}, "sd")


def test_unknown_plausible_keys_are_ignored() -> None:
    p = parse({**BASE, "w": 1280, "m": '{"a":1}', "$": {"amount": 1, "currency": "EUR"}})
    assert p.url == BASE["u"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"d": "example.com"}, ("`u`", "required")),
        ({"u": "https://example.com/"}, ("`d`", "required")),
        ({**BASE, "u": 5}, ("`u`", "string")),
        ({**BASE, "u": "/relative"}, ("`u`", "absolute")),
        ({**BASE, "u": "javascript:alert(1)"}, ("`u`",)),
        ({**BASE, "u": "https://[::1/x"}, ("`u`",)),
        ({**BASE, "u": "https://example.com/" + "a" * 2000}, ("`u`", "2000")),
        ({**BASE, "d": " , "}, ("`d`",)),
        ({**BASE, "d": ["example.com"]}, ("`d`", "string")),
        ({**BASE, "d": ",".join(f"s{i}.example" for i in range(11))}, ("`d`",)),
        ({**BASE, "n": ""}, ("`n`",)),
        ({**BASE, "n": "x" * 121}, ("`n`", "120")),
        ({**BASE, "n": 7}, ("`n`", "string")),
        ({**BASE, "r": {"a": 1}}, ("`r`", "string")),
        ({**BASE, "u": BASE["u"], "url": BASE["u"]}, ("`u`", "`url`")),
        ({**BASE, "p": [1, 2]}, ("`p`", "object")),
        ({**BASE, "p": "{not json"}, ("`p`",)),
        ({**BASE, "p": {f"k{i}": "v" for i in range(31)}}, ("`p`", "30")),
        ({**BASE, "p": {"k" * 301: "v"}}, ("`p`", "300")),
        ({**BASE, "p": {"": "v"}}, ("`p`",)),
        ({**BASE, "p": {"k": "v" * 2001}}, ("props.k", "2000")),
        ({**BASE, "p": {"k": {"nested": 1}}}, ("props.k", "string, number or boolean")),
        ({**BASE, "p": {"k": [1]}}, ("props.k",)),
        ({**BASE, "h": "yes"}, ("`h`",)),
        ({**BASE, "i": 2}, ("`i`",)),
        ({**BASE, "e": "12"}, ("`e`", "number")),
        ({**BASE, "e": -5}, ("`e`",)),
        ({**BASE, "e": True}, ("`e`",)),
        ({**BASE, "e": 10**30}, ("`e`",)),
        ({**BASE, "sd": [50]}, ("`sd`",)),
        ({**BASE, "v": {"x": 1}}, ("`v`",)),
        ({**BASE, "did": ""}, ("`did`",)),
        ({**BASE, "did": "x" * 257}, ("`did`", "256")),
        ({**BASE, "did": 12}, ("`did`", "string")),
        ({**BASE, "n": "a\x00b"}, ("`n`", "NUL")),
        ({**BASE, "p": {"k": "a\x00"}}, ("NUL",)),
        ({**BASE, "p": {"k\x00": "a"}}, ("NUL",)),
        ([BASE], ("object",)),
        ("just a string", ("object",)),
        (None, ("object",)),
    ],
)
def test_wrong_values_name_the_key(body: Any, words: tuple[str, ...]) -> None:
    bad(body, *words)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (b"", "JSON"),
        (b"{", "JSON"),
        (b'{"u": "https://example.com/", "d": "example.com",}', "JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"u": "https://example.com/\xc3\x28", "d": "example.com"}', "UTF-8"),
        (b"[" * 10_000 + b"]" * 10_000, "nested"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested"),
        (b'{"u": "https://example.com/", "d": "example.com", "e": 1' + b"0" * 5000 + b"}", "JSON"),
        (b'{"u": "https://example.com/", "d": "example.com", "e": 1e999}', "`e`"),
        (b'{"u": "https://example.com/", "d": "example.com", "e": NaN}', "`e`"),
        (b'{"u": "https://example.com/", "d": "example.com", "sd": -Infinity}', "`sd`"),
        (b'{"u": "https://example.com/", "d": "example.com", "p": {"x": Infinity}}', "finite"),
        (b'{"u": "https://example.com/\\ud800", "d": "example.com"}', "surrogate"),
        (b'{"u": "https://example.com/", "d": "example.com", "n": "\\udfff"}', "surrogate"),
        (b'{"u": "https://example.com/", "d": "example.com", "p": {"\\ud800": "x"}}', "surrogate"),
        (b'{"u": "https://example.com/\\u0000", "d": "example.com"}', "NUL"),
        (b'{"u": "https://example.com/", "d": "example.com", "p": "' + b"[" * 5000 + b'"}', "`p`"),
    ],
)
def test_malformed_bodies(raw: bytes, word: str) -> None:
    bad(raw, word)


def test_props_as_json_string_follow_the_same_limits() -> None:
    assert parse({**BASE, "p": "null"}).props == {}
    bad({**BASE, "p": json.dumps({f"k{i}": 1 for i in range(31)})}, "30")
    bad({**BASE, "p": '"just text"'}, "`p`")


def test_floats_in_props_keep_their_value() -> None:
    assert parse({**BASE, "p": {"price": 9.5, "big": 10**20}}).props == {
        "price": "9.5",
        "big": str(10**20),
    }


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        *("n", "name", "u", "url", "d", "domain", "r", "referrer", "p", "props", "h", "i"),
        *("e", "sd", "v", "did", "device_id", "w", "x"),
    ]
)
near_valid = st.fixed_dictionaries(
    {"u": st.sampled_from(["https://example.com/a", "http://x", "ftp://x/", ""]) | st.text()},
    optional={
        "d": st.sampled_from(["example.com", "a,b", ""]) | st.text(),
        "n": st.text(max_size=130),
        "p": json_values | st.dictionaries(st.text(max_size=5), json_values, max_size=35),
        "e": json_values,
        "sd": json_values,
        "h": json_values,
        "i": json_values,
        "v": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_raw_bytes_never_escape(raw: bytes) -> None:
    try:
        parse_payload(raw)
    except PayloadError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8) | near_valid)
def test_fuzz_json_objects_parse_or_name_the_problem(body: dict[str, Any]) -> None:
    try:
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    try:
        p = parse_payload(raw)
    except PayloadError as exc:
        assert str(exc)
        return
    # Whatever is accepted is safe for the rest of the pipeline: encodable, bounded, typed.
    for text in (p.name, p.url, p.referrer, *p.domains, *p.props, *p.props.values()):
        text.encode("utf-8")
        assert "\x00" not in text
    assert len(p.props) <= 30
    assert p.scroll_depth is None or 0 <= p.scroll_depth <= 100


@settings(max_examples=500, deadline=None)
@given(
    st.builds(
        lambda v, a: json.dumps(v, ensure_ascii=a).encode("utf-8", "surrogatepass"),
        json_values,
        st.booleans(),
    )
    | st.binary(max_size=100)
)
def test_the_fast_json_path_reads_every_body_as_the_standard_library_does(raw: bytes) -> None:
    """orjson parses the body when it can; the standard library is the reference."""
    raw = raw.replace(b"7", b"18446744073709551617")  # beyond 64 bits, where they differ
    try:
        expected: Any = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        expected = "an error"
    try:
        got: Any = _json(raw)
    except PayloadError:
        got = "an error"
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
