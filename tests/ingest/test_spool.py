"""The spool on a real disk: checksums, repair, quarantine, orphans, group commit, quota."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.event import Event
from ingest.spool import (
    FRESH,
    FRESH_STALE_SECONDS,
    HEADER,
    OPEN,
    QUARANTINE,
    SEALED,
    SpoolFull,
    SpoolWriter,
    decode,
    encode,
    parse_segment,
    repair_segment,
    seal_orphans,
    sealed_segments,
    usage,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def event(i: int) -> Event:
    return Event(
        site_id="example.com",
        timestamp=T0 + dt.timedelta(seconds=i),
        name="pageview",
        visitor_id=1000 + i,
        pathname=f"/secret-page-{i}",
        props={"plan": "pro"},
    )


def segment(path: Path, count: int, start: int = 0) -> bytes:
    data = b"".join(encode(event(start + i)) for i in range(count))
    path.write_bytes(data)
    return data


def paths(records: list[bytes]) -> list[str]:
    return [decode(r)[0].pathname for r in records]


def test_records_round_trip_with_the_previous_visitor_id() -> None:
    record = encode(event(1), prev_visitor_id=77)
    parsed = parse_segment(record)
    assert parsed.bad_bytes == 0
    decoded, prev = decode(parsed.records[0])
    assert decoded == event(1)
    assert prev == 77


def test_a_truncated_final_record_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    data = segment(tmp_path / "a.seg", 5)
    cut = len(data) - 7
    result = parse_segment(data[:cut])
    assert paths(result.records) == [f"/secret-page-{i}" for i in range(4)]
    assert result.bad_bytes == cut - sum(len(encode(event(i))) for i in range(4))


def test_a_flipped_bit_loses_only_its_record(tmp_path: Path) -> None:
    data = bytearray(segment(tmp_path / "a.seg", 6))
    second = len(encode(event(0)))
    data[second + HEADER.size + 20] ^= 0x04  # inside record 1's payload
    result = parse_segment(bytes(data))
    assert paths(result.records) == ["/secret-page-0"] + [f"/secret-page-{i}" for i in range(2, 6)]
    assert result.bad_bytes == len(encode(event(1)))


def test_a_flipped_length_field_resynchronises_on_the_next_record(tmp_path: Path) -> None:
    data = bytearray(segment(tmp_path / "a.seg", 4))
    data[0] ^= 0x10  # record 0 now claims a huge length
    result = parse_segment(bytes(data))
    assert paths(result.records) == [f"/secret-page-{i}" for i in range(1, 4)]


def test_repair_quarantines_bad_bytes_and_logs_no_event_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"0001-w0-000001{SEALED}"
    data = bytearray(segment(path, 3))
    data[HEADER.size + 5] ^= 0xFF
    path.write_bytes(bytes(data) + b"\x00\x00\x01torn")
    with caplog.at_level(logging.WARNING):
        result = repair_segment(path)
    assert paths(result.records) == ["/secret-page-1", "/secret-page-2"]
    # The segment now holds only good records, so a rebuilt batch is identical.
    assert parse_segment(path.read_bytes()).bad_bytes == 0
    assert paths(parse_segment(path.read_bytes()).records) == paths(result.records)
    quarantined = (tmp_path / QUARANTINE / (path.name + ".bad")).read_bytes()
    assert len(quarantined) == result.bad_bytes
    assert "quarantine" in caplog.text and path.name in caplog.text
    assert "secret-page" not in caplog.text and "example.com" not in caplog.text


def test_a_segment_with_no_good_record_is_removed(tmp_path: Path) -> None:
    path = tmp_path / f"0001-w0-000001{SEALED}"
    path.write_bytes(b"\xff" * 100)
    assert repair_segment(path).records == []
    assert not path.exists()
    assert (tmp_path / QUARANTINE / (path.name + ".bad")).stat().st_size == 100


def test_orphans_of_dead_workers_are_sealed_but_live_ones_are_not(tmp_path: Path) -> None:
    live = SpoolWriter(tmp_path, "w0")
    live.append([encode(event(0))])
    dead = tmp_path / f"00000000000000000001-w9_1-000001{OPEN}"
    dead.write_bytes(encode(event(1)))
    assert seal_orphans(tmp_path) == 1
    assert [p.name for p in sealed_segments(tmp_path)] == [dead.with_suffix(SEALED).name]
    assert len(list(tmp_path.glob(f"*{OPEN}"))) == 1  # the live worker keeps writing
    live.close()
    assert len(list(sealed_segments(tmp_path))) == 2


def test_the_open_segment_is_locked_while_its_worker_lives(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path, "w0")
    spool.append([encode(event(0))])
    (path,) = tmp_path.glob(f"*{OPEN}")
    with open(path, "rb") as handle, pytest.raises(OSError):
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    spool.close()


def _seal_until(directory: Path, stop: Any) -> None:
    while not stop.is_set():
        seal_orphans(directory)


def test_the_orphan_sealer_never_takes_a_segment_its_worker_is_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's orphan sealer runs while workers open new segments: a segment must never be
    # visible as `.open` before its worker holds the lock, or it is taken from under the worker
    # and the records acknowledged into it are lost. The worker is made slow to take its lock
    # (as a descheduled or paused process is), so that the sealer gets every chance.
    flock = fcntl.flock

    def slow_flock(fd: Any, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the worker's blocking lock, not the sealer's try
            time.sleep(0.002)
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", slow_flock)
    spool = SpoolWriter(tmp_path, "w0", max_bytes=1)  # every append seals: many new segments
    stop = multiprocessing.get_context("fork").Event()
    sealer = multiprocessing.get_context("fork").Process(target=_seal_until, args=(tmp_path, stop))
    sealer.start()
    try:
        for i in range(300):
            spool.append([encode(event(i))])
    finally:
        stop.set()
        sealer.join()
    spool.close()
    records = [r for p in sealed_segments(tmp_path) for r in parse_segment(p.read_bytes()).records]
    assert sorted(paths(records)) == sorted(f"/secret-page-{i}" for i in range(300))


def test_a_segment_left_half_opened_by_a_crash_is_cleared_later(tmp_path: Path) -> None:
    stale = tmp_path / f"00000000000000000001-w9_1-000001{FRESH}"
    opening = tmp_path / f"00000000000000000002-w8_1-000001{FRESH}"
    stale.touch()
    opening.touch()
    old = time.time() - FRESH_STALE_SECONDS - 1
    os.utime(stale, (old, old))
    seal_orphans(tmp_path)
    assert not stale.exists() and opening.exists()


def test_segments_seal_on_size_and_on_age(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path, "w0", max_bytes=3 * len(encode(event(0))), max_age=0.0)
    for i in range(10):
        spool.append([encode(event(i))])
    by_size = len(list(sealed_segments(tmp_path)))
    assert by_size >= 2
    spool.tick()  # max_age 0: the open segment is old enough
    assert not list(tmp_path.glob(f"*{OPEN}"))
    records = [r for p in sealed_segments(tmp_path) for r in parse_segment(p.read_bytes()).records]
    assert paths(records) == [f"/secret-page-{i}" for i in range(10)]


def test_quota_refuses_appends_and_counts_them(tmp_path: Path) -> None:
    record = encode(event(0))
    spool = SpoolWriter(tmp_path, "w0", quota_bytes=len(record) * 3)
    for _ in range(3):
        spool.append([record])
    with pytest.raises(SpoolFull):
        spool.append([record])
    assert spool.rejected == 1
    assert usage(tmp_path).bytes == len(record) * 3
    # Room again once the writer has drained the spool.
    spool.close()
    for path in sealed_segments(tmp_path):
        path.unlink()
    spool.tick()
    spool.append([record])
    spool.close()
