"""Build the served tracker variants from `src/script.src.js` (run by `make tracker`).

Each variant is the source minified by terser with the feature flags set for that variant, so
dead branches disappear. Terser runs through `npx` at a pinned version, and the outputs plus a
manifest (source hash, terser version, sizes) are committed: users never need Node, and a test
checks that the committed files were built from the committed source.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

TERSER = "terser@5.44.0"
VERSION = 1
HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "script.src.js"
MANIFEST = HERE / "manifest.json"
# Extension names as in Plausible's script.<ext>.<ext>.js variants, mapped to build flags.
EXTENSIONS = {
    "file-downloads": "DOWNLOADS",
    "outbound-links": "OUTBOUND",
    "tagged-events": "TAGGED",
}
FILE_TYPES = (
    "pdf,xlsx,xls,docx,doc,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,"
    "avi,mov,mp4,mpeg,mpg,wmv,midi,mid,mp3,wav,wma,dmg,iso,msi,epub"
)
TERSER_OPTIONS = [
    "--compress",
    "passes=3,ecma=2020,unsafe_arrows=true,unsafe=true",
    "--mangle",
    "--ecma",
    "2020",
]


def variant_name(extensions: tuple[str, ...]) -> str:
    """The canonical file name: extensions sorted, as the server normalises requests."""
    return ".".join(("script", *sorted(extensions), "js"))


def variants() -> list[tuple[str, ...]]:
    names = sorted(EXTENSIONS)
    return [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def source_digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def minify(extensions: tuple[str, ...]) -> bytes:
    npx = shutil.which("npx")
    if npx is None:
        raise SystemExit("npx (Node.js) is needed to build the tracker: apt-get install npm")
    defines: list[str] = []
    for name, flag in EXTENSIONS.items():
        defines += ["--define", f"{flag}={'true' if name in extensions else 'false'}"]
    defines += ["--define", f"VERSION={VERSION}", "--define", f"FILE_TYPES={FILE_TYPES!r}"]
    result = subprocess.run(
        [npx, "--yes", TERSER, str(SOURCE), *TERSER_OPTIONS, *defines],
        capture_output=True,
        check=True,
    )
    return result.stdout.strip() + b"\n"


def main() -> int:
    sizes: dict[str, dict[str, int]] = {}
    for extensions in variants():
        name = variant_name(extensions)
        code = minify(extensions)
        (HERE / name).write_bytes(code)
        sizes[name] = {"bytes": len(code), "gzip": gzip_size(code)}
        print(f"{name}: {len(code)} bytes, {sizes[name]['gzip']} gzipped")
    manifest = {
        "source": SOURCE.relative_to(HERE).as_posix(),
        "source_sha256": source_digest(),
        "terser": TERSER,
        "terser_options": TERSER_OPTIONS,
        "version": VERSION,
        "variants": sizes,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
