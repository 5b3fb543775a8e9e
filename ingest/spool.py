"""The durable spool between HTTP workers and the single writer.

Each worker appends to its own segment file (`<time_ns>-<worker>-<seq>.open`), which it holds
under an exclusive `flock` while it writes; every record is `length (4) | crc32 (4) | JSON`, and
a request is acknowledged only after the fsync that covers its record (`ingest.ingestor` lets
the concurrent requests of a worker share one fsync). Segments are sealed (renamed to `.seg`)
on size or age. A segment left `.open` by a dead worker (its lock is free) is sealed by the writer.

Corruption (a torn tail after a crash, a flipped bit) is found by the checksums: the good
records are kept, the bad byte ranges are moved to `quarantine/` and logged by size only.
Records hold anonymised events only: the raw IP and user agent never reach this file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ingest.event import DEFAULTS, Event

log = logging.getLogger("firstparty.spool")

HEADER = struct.Struct(">II")
_OPTIONAL = tuple(DEFAULTS.items())
SEALED = ".seg"
OPEN = ".open"
FRESH = ".new"  # a segment being opened: always empty, named `.open` once locked
FRESH_STALE_SECONDS = 600
QUARANTINE = "quarantine"
# A record is one event; anything longer than this is corruption, not data.
MAX_RECORD = 1 << 20


class SpoolFull(Exception):
    """The spool reached its disk quota: the caller answers 503 and the client retries."""

    def __init__(self, quota_bytes: int, retry_after: int = 5) -> None:
        super().__init__(f"the spool reached its quota of {quota_bytes} bytes")
        self.retry_after = retry_after


def encode(event: Event, prev_visitor_id: int = 0) -> bytes:
    # Not `asdict`: it deep-copies every field, and this runs once per beacon. A column at its
    # default is left out (the readers fill it in): records are about a third shorter, so the
    # spool's quota holds more events and each fsync writes less.
    row: dict[str, Any] = {
        "site_id": event.site_id,
        "timestamp": int(event.timestamp.timestamp() * 1000),
        "name": event.name,
        "visitor_id": event.visitor_id,
    }
    for name, default in _OPTIONAL:
        value = getattr(event, name)
        if value != default:
            row[name] = value
    if event.props:
        # Two lists, a shape a columnar JSON reader can turn into a map (see the writer).
        row["props_kv"] = {"k": list(event.props), "v": list(event.props.values())}
    if prev_visitor_id:
        row["_prev"] = prev_visitor_id
    payload = orjson.dumps(row)  # ~15x faster than json.dumps; this runs once per beacon
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> tuple[Event, int]:
    row: dict[str, Any] = json.loads(payload)
    prev = int(row.pop("_prev", 0) or 0)
    row["timestamp"] = dt.datetime.fromtimestamp(row["timestamp"] / 1000, dt.UTC)
    kv = row.pop("props_kv", None)
    if kv is not None:
        row["props"] = dict(zip(kv["k"], kv["v"], strict=True))
    return Event(**row), prev


@dataclass(frozen=True)
class ReadResult:
    records: list[bytes]
    bad_bytes: int  # bytes in no good record (torn write or corruption)
    bad_ranges: list[tuple[int, int]]  # (start, end) offsets of those bytes


def _record_at(data: bytes, offset: int) -> int:
    """The end offset of a valid record starting at `offset`, or -1."""
    if offset + HEADER.size > len(data):
        return -1
    length: int
    crc: int
    length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    if length == 0 or length > MAX_RECORD or start + length > len(data):
        return -1
    # Every payload is a JSON object: a cheap test before the checksum while resynchronising.
    if data[start] != 0x7B or zlib.crc32(data[start : start + length]) != crc:
        return -1
    return start + length


def parse_segment(data: bytes) -> ReadResult:
    """Every record whose checksum holds; after a bad one, resynchronise on the next good one."""
    records: list[bytes] = []
    bad: list[tuple[int, int]] = []
    offset = 0
    bad_start = -1
    while offset < len(data):
        end = _record_at(data, offset)
        if end < 0:
            if bad_start < 0:
                bad_start = offset
            offset += 1
            continue
        if bad_start >= 0:
            bad.append((bad_start, offset))
            bad_start = -1
        records.append(data[offset + HEADER.size : end])
        offset = end
    if bad_start >= 0:
        bad.append((bad_start, len(data)))
    return ReadResult(records, sum(e - s for s, e in bad), bad)


def read_segment(path: Path) -> ReadResult:
    return parse_segment(path.read_bytes())


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename: the file holds either its old or its whole new content."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def quarantined(directory: Path, name: str) -> Path:
    """Where `name` goes in the spool `directory`'s quarantine (made if missing): spool bytes
    set aside for a person to inspect, never read again by the writer."""
    quarantine = directory / QUARANTINE
    quarantine.mkdir(exist_ok=True)
    return quarantine / name


def repair_segment(path: Path) -> ReadResult:
    """Read a sealed segment; quarantine its bad bytes and rewrite it with the good records.

    Afterwards the segment holds only good records, so a batch built from it (and its dedup
    token) is the same when a crash makes the writer build it again.
    """
    data = path.read_bytes()
    result = parse_segment(data)
    if not result.bad_bytes:
        return result
    bad = b"".join(data[s:e] for s, e in result.bad_ranges)
    write_atomic(quarantined(path.parent, path.name + ".bad"), bad)
    good = b"".join(HEADER.pack(len(r), zlib.crc32(r)) + r for r in result.records)
    if good:
        write_atomic(path, good)
    else:
        path.unlink()
        fsync_dir(path.parent)
    # Sizes and counts only: the bytes may hold event data, which never goes to a log.
    log.warning(
        "spool segment %s: %d corrupt bytes in %d range(s) moved to %s/; %d good records kept",
        path.name,
        result.bad_bytes,
        len(result.bad_ranges),
        QUARANTINE,
        len(result.records),
    )
    return result


def segment_created(path: Path) -> float:
    """When the segment was opened (seconds since the epoch), from its name."""
    try:
        return int(path.name.split("-", 1)[0]) / 1e9
    except ValueError:
        return path.stat().st_mtime


@dataclass
class Usage:
    bytes: int = 0
    segments: int = 0
    oldest: float | None = None  # creation time of the oldest segment


def usage(directory: Path) -> Usage:
    """Bytes and segments in the spool (open and sealed), and the oldest segment's age."""
    out = Usage()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not entry.is_file():
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:
            continue
        out.bytes += size
        if entry.name.endswith((SEALED, OPEN)):
            out.segments += 1
            created = segment_created(Path(entry.path))
            if out.oldest is None or created < out.oldest:
                out.oldest = created
    return out


class SpoolWriter:
    """One per worker process. `append` returns once the records are on disk."""

    def __init__(
        self,
        directory: Path,
        worker: str,
        max_bytes: int = 4 << 20,
        max_age: float = 0.4,
        quota_bytes: int = 0,
    ) -> None:
        self.directory = directory
        self.worker = worker.replace("-", "_")
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.quota_bytes = quota_bytes  # 0: no quota
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._size = 0
        # The whole spool's size as last scanned, plus what this worker wrote since.
        self._usage = usage(directory).bytes
        self.appends = 0
        self.fsyncs = 0
        self.rejected = 0

    def _open_next(self) -> None:
        self._seq += 1
        name = f"{time.time_ns():020d}-{self.worker}-{self._seq:06d}"
        # Created under another name and locked before it is named `.open`: the writer seals
        # `.open` files whose lock is free (a dead owner), and must never find one unlocked
        # because its worker has not taken the lock yet. The lock is held until sealed.
        fresh = self.directory / f"{name}{FRESH}"
        handle = open(fresh, "ab", buffering=0)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._path = fresh.rename(self.directory / f"{name}{OPEN}")
        except OSError:
            handle.close()
            raise
        self._file = handle
        self._opened = time.monotonic()
        self._size = 0
        fsync_dir(self.directory)

    def check_quota(self, incoming: int) -> None:
        if self.quota_bytes and self._usage + incoming > self.quota_bytes:
            self.rejected += 1
            raise SpoolFull(self.quota_bytes)

    def append(self, records: list[bytes]) -> None:
        data = b"".join(records)
        with self._lock:
            self.check_quota(len(data))
            if self._file is None:
                self._open_next()
            assert self._file is not None
            self._file.write(data)
            os.fsync(self._file.fileno())
            self.fsyncs += 1
            self.appends += len(records)
            self._size += len(data)
            self._usage += len(data)
            if self._size >= self.max_bytes:
                self._seal()

    def tick(self) -> None:
        """Seal the open segment once it is old enough, so the writer sees it soon."""
        scanned = usage(self.directory).bytes
        with self._lock:
            self._usage = scanned
            if self._file is not None and time.monotonic() - self._opened >= self.max_age:
                self._seal()

    def _seal(self) -> None:
        assert self._path is not None and self._file is not None
        # Rename while still holding the lock, so the orphan sealer never races us.
        if self._size:
            self._path.rename(self._path.with_suffix(SEALED))
        else:
            self._path.unlink()
        self._file.close()
        self._file = None
        self._path = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._seal()


def seal_orphans(directory: Path) -> int:
    """Seal the `.open` segments whose worker is gone (nobody holds their lock)."""
    for path in directory.glob(f"*{FRESH}"):
        # Left by a worker that died while opening it (empty by construction). A live worker
        # renames its own within microseconds, so only old ones are taken.
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > FRESH_STALE_SECONDS:
                path.unlink()
    count = 0
    for path in sorted(directory.glob(f"*{OPEN}")):
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live worker is writing it
            try:
                if path.stat().st_size == 0:
                    path.unlink()
                else:
                    path.rename(path.with_suffix(SEALED))
                    count += 1
            except FileNotFoundError:
                continue  # its worker sealed it between our open and our lock
    if count:
        fsync_dir(directory)
    return count


def sealed_segments(directory: Path) -> Iterator[Path]:
    return iter(sorted(directory.glob(f"*{SEALED}")))
