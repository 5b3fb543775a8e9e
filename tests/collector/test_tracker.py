"""The committed tracker files: built from the committed source, within budget, and free of
anything that stores, tracks across sites, or calls a third party."""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import pytest

from collector.tracker import build

BUDGET = 1000  # bytes gzipped, for the default script


def manifest() -> dict[str, object]:
    return dict(json.loads(build.MANIFEST.read_text()))


def test_built_files_come_from_the_committed_source() -> None:
    data = manifest()
    assert data["source_sha256"] == hashlib.sha256(build.SOURCE.read_bytes()).hexdigest(), (
        "collector/tracker/src/script.src.js changed: run `make tracker` and commit the output"
    )
    variants = data["variants"]
    assert isinstance(variants, dict)
    assert sorted(variants) == sorted(build.variant_name(v) for v in build.variants())
    for name, sizes in variants.items():
        code = (build.HERE / name).read_bytes()
        assert sizes == {"bytes": len(code), "gzip": build.gzip_size(code)}, name


@pytest.mark.parametrize("level", [6, 9])
def test_default_script_is_within_the_size_budget(level: int) -> None:
    code = (build.HERE / "script.js").read_bytes()
    assert len(gzip.compress(code, compresslevel=level)) <= BUDGET


@pytest.mark.parametrize("name", [build.variant_name(v) for v in build.variants()])
def test_no_storage_no_cookies_no_third_parties(name: str) -> None:
    code = (build.HERE / name).read_text()
    for forbidden in ("document.cookie", "sessionStorage", "indexedDB", "setItem", "eval("):
        assert forbidden not in code
    # The only storage access is reading the site's opt-out flag.
    assert re.findall(r"localStorage\.?\w*", code) == ["localStorage.firstparty_ignore"]
    # No absolute address: requests go to the script's own origin or to data-api.
    assert not re.search(r"https?://", code)
    assert "sendBeacon" in code and "keepalive" in code


def test_extension_variants_contain_only_their_features() -> None:
    plain = (build.HERE / "script.js").read_text()
    assert "Outbound Link: Click" not in plain and "File Download" not in plain
    full = (build.HERE / build.variant_name(tuple(build.EXTENSIONS))).read_text()
    assert "Outbound Link: Click" in full and "File Download" in full
    assert "firstparty-event-" in full
