"""Turn a beacon body into validated fields. Errors say which key is wrong and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class PayloadError(ValueError):
    """The body is malformed; the message is shown to the caller as is (no raw IP in it)."""


MAX_URL_BYTES = 2000
MAX_NAME = 120
MAX_PROPS = 30
MAX_PROP_KEY = 300
MAX_PROP_VALUE = 2000


@dataclass(frozen=True, slots=True)
class Payload:
    name: str
    url: str
    domains: tuple[str, ...]
    referrer: str = ""
    props: dict[str, str] = field(default_factory=dict)
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
    return value


def _bool(value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise PayloadError(f"`{key}` must be true or false")


def _int(value: Any, key: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"`{key}` must be a number")
    if value != value or not low <= value <= high:  # NaN never passes
        raise PayloadError(f"`{key}` must be between {low} and {high}")
    return int(value)


def _props(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise PayloadError("`props` must be an object or a JSON string of an object") from None
    if not isinstance(value, dict):
        raise PayloadError("`props` must be an object")
    if len(value) > MAX_PROPS:
        raise PayloadError(f"`props` has {len(value)} pairs; at most {MAX_PROPS} are allowed")
    out: dict[str, str] = {}
    for key, item in value.items():
        if len(key) > MAX_PROP_KEY or not key:
            raise PayloadError(f"`props` keys must be 1 to {MAX_PROP_KEY} characters")
        if item is None:
            continue
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        elif not isinstance(item, str):
            raise PayloadError(f"`props.{key[:40]}` must be a string, number or boolean")
        if len(item) > MAX_PROP_VALUE:
            raise PayloadError(f"`props.{key[:40]}` is longer than {MAX_PROP_VALUE} characters")
        out[_string(key, "props key")] = _string(item, f"props.{key[:40]}")
    return out


def parse_payload(raw: bytes) -> Payload:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("the body must be UTF-8 encoded JSON") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise PayloadError("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"the body is not valid JSON: {exc.args[0].split(':')[0]}") from None
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")

    url = _pick(body, "u", "url")
    if url is None:
        raise PayloadError("`u` (url) is required")
    url = _string(url, "u")
    if len(url.encode()) > MAX_URL_BYTES:
        raise PayloadError(f"`u` (url) is longer than {MAX_URL_BYTES} bytes")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PayloadError("`u` (url) must be an absolute http(s) URL")

    domain = _pick(body, "d", "domain")
    if domain is None:
        raise PayloadError("`d` (domain) is required")
    domains = tuple(d.strip().lower() for d in _string(domain, "d").split(",") if d.strip())
    if not domains:
        raise PayloadError("`d` (domain) must name at least one site")

    name = _pick(body, "n", "name")
    name = "pageview" if name is None else _string(name, "n").strip()
    if not name or len(name) > MAX_NAME:
        raise PayloadError(f"`n` (name) must be 1 to {MAX_NAME} characters")

    referrer = _pick(body, "r", "referrer")
    referrer = "" if referrer is None else _string(referrer, "r")[:MAX_URL_BYTES]

    device_id = _pick(body, "did", "device_id")
    if device_id is not None:
        device_id = _string(device_id, "did")
        if not 1 <= len(device_id) <= 256:
            raise PayloadError("`did` (device_id) must be 1 to 256 characters")

    version = body.get("v")
    version = "" if version is None else str(version)[:20]

    return Payload(
        name=name,
        url=url,
        domains=domains,
        referrer=referrer,
        props=_props(_pick(body, "p", "props")),
        hash_mode=_bool(body.get("h"), "h", False),
        interactive=_bool(body.get("i"), "i", True),
        engagement_ms=_int(body.get("e"), "e", 0, 2**31),
        scroll_depth=_int(body.get("sd"), "sd", 0, 100),
        tracker_version=version,
        device_id=device_id,
    )
