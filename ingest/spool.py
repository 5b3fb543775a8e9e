"""The durable spool between HTTP workers and the single writer.

Each worker appends to its own segment file (`<worker>-<seq>.open`); every record is
`length (4 bytes) | crc32 (4 bytes) | JSON payload`, and a request is acknowledged only after
the fsync that covers its record. Segments are sealed (renamed to `.seg`) on size or age; the
writer inserts a sealed segment with the segment name as the dedup token, then deletes it.
Records hold anonymised events only: the raw IP and user agent never reach this file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.event import Event

HEADER = struct.Struct(">II")
SEALED = ".seg"
OPEN = ".open"


def encode(event: Event, prev_visitor_id: int = 0) -> bytes:
    row = event.to_dict()
    row["timestamp"] = int(event.timestamp.timestamp() * 1000)
    if prev_visitor_id:
        row["_prev"] = prev_visitor_id
    payload = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> tuple[Event, int]:
    row: dict[str, Any] = json.loads(payload)
    prev = int(row.pop("_prev", 0))
    row["timestamp"] = dt.datetime.fromtimestamp(row["timestamp"] / 1000, dt.UTC)
    return Event(**row), prev


@dataclass(frozen=True)
class ReadResult:
    records: list[bytes]
    bad_bytes: int  # bytes after the last good record (torn write or corruption)


def read_segment(path: Path) -> ReadResult:
    data = path.read_bytes()
    records: list[bytes] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        payload = data[start : start + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = start + length
    return ReadResult(records, len(data) - offset)


class SpoolWriter:
    """One per worker process. `append` returns once the records are on disk."""

    def __init__(
        self, directory: Path, worker: str, max_bytes: int = 8 << 20, max_age: float = 0.5
    ) -> None:
        self.directory = directory
        self.worker = worker
        self.max_bytes = max_bytes
        self.max_age = max_age
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._file: Any = None
        self._path: Path | None = None
        self._opened = 0.0
        self._size = 0

    def _open_next(self) -> None:
        self._seq += 1
        name = f"{self.worker}-{time.time_ns():020d}-{self._seq:06d}{OPEN}"
        self._path = self.directory / name
        self._file = open(self._path, "ab", buffering=0)
        self._opened = time.monotonic()
        self._size = 0

    def append(self, records: list[bytes]) -> None:
        with self._lock:
            if self._file is None:
                self._open_next()
            self._file.write(b"".join(records))
            os.fsync(self._file.fileno())
            self._size += sum(len(r) for r in records)
            if self._size >= self.max_bytes:
                self._seal()

    def tick(self) -> None:
        """Seal the open segment once it is old enough, so the writer sees it soon."""
        with self._lock:
            if self._file is not None and time.monotonic() - self._opened >= self.max_age:
                self._seal()

    def _seal(self) -> None:
        assert self._path is not None
        self._file.close()
        self._file = None
        if self._size:
            self._path.rename(self._path.with_suffix(SEALED))
        else:
            self._path.unlink()
        self._path = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._seal()


def seal_orphans(directory: Path) -> int:
    """At start-up no worker runs yet: seal the segments that dead workers left open."""
    count = 0
    for path in sorted(directory.glob(f"*{OPEN}")):
        path.rename(path.with_suffix(SEALED))
        count += 1
    return count


def sealed_segments(directory: Path) -> Iterator[Path]:
    return iter(sorted(directory.glob(f"*{SEALED}")))
