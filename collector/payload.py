"""Turn a beacon body into validated fields. Errors say which key is wrong and why.

Keys follow Plausible's Events API (short and long forms), so its tracker works unchanged;
unknown keys (Plausible's `w`, `m`, `$`) are ignored rather than rejected for that reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from ingest.hit import NO_PROPS, Hit


class PayloadError(ValueError):
    """The body is malformed; the message is shown to the caller as is (no raw IP in it)."""


MAX_URL_BYTES = 2000
MAX_NAME = 120
MAX_PROPS = 30
MAX_PROP_KEY = 300
MAX_PROP_VALUE = 2000
MAX_DOMAINS = 10
MAX_DOMAIN = 253
MAX_DEVICE_ID = 256
MAX_ENGAGEMENT_MS = 2**31
MAX_SCROLL_INPUT = 1000
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


class Payload(NamedTuple):  # not a frozen dataclass: built per beacon, 5x faster (ingest/hit.py)
    name: str
    url: str
    domains: tuple[str, ...]
    referrer: str = ""
    props: Mapping[str, str] = NO_PROPS
    hash_mode: bool = False
    interactive: bool = True
    engagement_ms: int | None = None
    scroll_depth: int | None = None
    tracker_version: str = ""
    device_id: str | None = None


def _pick(body: dict[str, Any], short: str, long: str) -> Any:
    if short in body and long in body:
        raise PayloadError(f"`{short}` and `{long}` are the same key; send one of them")
    return body.get(short, body.get(long))


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"`{key}` must be a string")
    if "\x00" in value:
        raise PayloadError(f"`{key}` must not contain NUL characters")
    try:
        # A JSON escape can smuggle a lone surrogate, which no later UTF-8 encoder accepts.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"`{key}` must be valid Unicode (no lone surrogates)") from None
    return value


def _bool(value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise PayloadError(f"`{key}` must be true or false")


def _number(value: Any, key: str, high: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"`{key}` must be a number")
    if not math.isfinite(value) or not 0 <= value <= high:
        raise PayloadError(f"`{key}` must be between 0 and {high}")
    return value


def _scalar(item: Any, key: str) -> str | None:
    if item is None:
        return None
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise PayloadError(f"`props.{key}` must be a finite number")
        return repr(item)
    if isinstance(item, str):
        return _string(item, f"props.{key}")
    raise PayloadError(f"`props.{key}` must be a string, number or boolean")


def _props(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise PayloadError("`p` (props) must be an object or a JSON string of one") from None
        if value is None:
            return {}
    if not isinstance(value, dict):
        raise PayloadError("`p` (props) must be an object")
    if len(value) > MAX_PROPS:
        raise PayloadError(f"`p` (props) has {len(value)} pairs; at most {MAX_PROPS} are allowed")
    out: dict[str, str] = {}
    for key, item in value.items():
        shown = _string(key, "props key")[:40]
        if not 1 <= len(key) <= MAX_PROP_KEY:
            raise PayloadError(f"`p` (props) keys must be 1 to {MAX_PROP_KEY} characters")
        text = _scalar(item, shown)
        if text is None:
            continue
        if len(text) > MAX_PROP_VALUE:
            raise PayloadError(f"`props.{shown}` is longer than {MAX_PROP_VALUE} characters")
        out[key] = text
    return out


def _url(body: dict[str, Any]) -> str:
    url = _pick(body, "u", "url")
    if url is None:
        raise PayloadError("`u` (url) is required")
    url = _string(url, "u")
    if len(url.encode()) > MAX_URL_BYTES:
        raise PayloadError(f"`u` (url) is longer than {MAX_URL_BYTES} bytes")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an invalid IPv6 literal or port
        raise PayloadError("`u` (url) must be an absolute http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise PayloadError("`u` (url) must be an absolute http(s) URL")
    return url


def _domains(body: dict[str, Any]) -> tuple[str, ...]:
    domain = _pick(body, "d", "domain")
    if domain is None:
        raise PayloadError("`d` (domain) is required")
    names: list[str] = []
    for part in _string(domain, "d").split(","):
        name = part.strip().lower()
        if name and name not in names:
            names.append(name)
    if not names:
        raise PayloadError("`d` (domain) must name at least one site")
    if len(names) > MAX_DOMAINS or any(len(n) > MAX_DOMAIN for n in names):
        raise PayloadError(f"`d` (domain) names at most {MAX_DOMAINS} sites of {MAX_DOMAIN} chars")
    return tuple(names)


def _version(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError("`v` (tracker version) must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError("`v` (tracker version) must be a finite number")
    return _string(str(value), "v")[:20]


def _json(raw: bytes) -> Any:
    # orjson is ~3x faster than the standard library. It accepts only strict JSON (no NaN, no
    # lone surrogates), on which both agree, except that it reads an integer beyond 64 bits
    # as a float: a body with 19 digits in a row takes the slow path, as does anything orjson
    # rejects (the slow path's errors name what is wrong).
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("the body must be UTF-8 encoded JSON") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise PayloadError("the JSON body is nested too deeply") from None
    except ValueError as exc:
        reason = str(exc.args[0] if exc.args else exc).split(":")[0][:80]
        raise PayloadError(f"the body is not valid JSON: {reason}") from None
    return body


def parse_payload(raw: bytes) -> Payload:
    body = _json(raw)
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")

    url = _url(body)
    domains = _domains(body)

    name = _pick(body, "n", "name")
    name = "pageview" if name is None else _string(name, "n").strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise PayloadError(f"`n` (name) must be 1 to {MAX_NAME} characters")

    referrer = _pick(body, "r", "referrer")
    referrer = "" if referrer is None else _string(referrer, "r")[:MAX_URL_BYTES]

    device_id = _pick(body, "did", "device_id")
    if device_id is not None:
        device_id = _string(device_id, "did")
        if not 1 <= len(device_id) <= MAX_DEVICE_ID:
            raise PayloadError(f"`did` (device_id) must be 1 to {MAX_DEVICE_ID} characters")

    engaged = _number(body.get("e"), "e", MAX_ENGAGEMENT_MS)
    # Plausible's tracker can round a little past 100 when the page grew; that is still 100 %.
    scroll = _number(body.get("sd"), "sd", MAX_SCROLL_INPUT)

    return Payload(
        name=name,
        url=url,
        domains=domains,
        referrer=referrer,
        props=_props(_pick(body, "p", "props")),
        hash_mode=_bool(body.get("h"), "h", False),
        # Plausible's tracker sends engagement without `i`; it never makes a visit non-bounced.
        interactive=_bool(body.get("i"), "i", name != "engagement"),
        engagement_ms=None if engaged is None else int(engaged),
        scroll_depth=None if scroll is None else min(100, round(scroll)),
        tracker_version=_version(body.get("v")),
        device_id=device_id,
    )


def hits(
    payload: Payload,
    received_at: dt.datetime,
    ip: str,
    user_agent: str,
    dnt: bool = False,
    gpc: bool = False,
) -> list[Hit]:
    """The beacon as ingestion takes it: one `Hit` per site it names."""
    return [
        Hit(
            domain=domain,
            name=payload.name,
            url=payload.url,
            referrer=payload.referrer,
            received_at=received_at,
            ip=ip,
            user_agent=user_agent,
            device_id=payload.device_id,
            props=payload.props,
            hash_mode=payload.hash_mode,
            interactive=payload.interactive,
            engagement_ms=payload.engagement_ms,
            scroll_depth=payload.scroll_depth,
            tracker_version=payload.tracker_version,
            dnt=dnt,
            gpc=gpc,
        )
        for domain in payload.domains
    ]
