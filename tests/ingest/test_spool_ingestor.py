"""Group commit in the ingestor: shared fsyncs, acknowledgement after the fsync, 503 cases."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from ingest.event import Event
from ingest.hit import Hit
from ingest.ingestor import Ingestor, IngestUnavailable
from ingest.pipeline import Pipeline
from ingest.spool import SpoolFull, SpoolWriter, decode, encode, parse_segment, sealed_segments

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def known_site(hit: Hit, event: Event) -> str | None:
    return None if hit.domain == "example.com" else "unknown_site"


def path_only(hit: Hit, event: Event) -> str | None:
    if hit.url.endswith("/boom"):
        raise RuntimeError("a step failed")  # e.g. the store did not answer
    event.pathname = hit.url.split("example.com", 1)[1]
    event.visitor_id = 1
    return None


def hit(n: int, domain: str = "example.com", page: str = "") -> Hit:
    return Hit(
        domain=domain,
        name="pageview",
        url=f"https://example.com{page or f'/p{n}'}",
        referrer="",
        received_at=NOW,
        ip="192.0.2.1",
        user_agent="test",
    )


def make(tmp_path: Path, quota: int = 0) -> Ingestor:
    pipeline = Pipeline([("site", known_site), ("path", path_only)])
    return Ingestor(pipeline, SpoolWriter(tmp_path, "w0", quota_bytes=quota))


def spooled(tmp_path: Path) -> list[str]:
    return [
        decode(r)[0].pathname
        for p in sealed_segments(tmp_path)
        for r in parse_segment(p.read_bytes()).records
    ]


def test_concurrent_requests_share_fsyncs_and_every_202_is_on_disk(tmp_path: Path) -> None:
    ingestor = make(tmp_path)

    async def main() -> list[list[str | None]]:
        reasons = await asyncio.gather(*(ingestor.submit([hit(n)]) for n in range(300)))
        await ingestor.close()
        return list(reasons)

    assert asyncio.run(main()) == [[None]] * 300
    assert ingestor.spool.appends == 300
    assert ingestor.spool.fsyncs < 300 / 5, "requests arriving together should share fsyncs"
    assert sorted(spooled(tmp_path)) == sorted(f"/p{n}" for n in range(300))


def test_drops_are_answered_and_nothing_is_spooled_for_them(tmp_path: Path) -> None:
    ingestor = make(tmp_path)
    assert ingestor.submit_sync([hit(1), hit(2, domain="other.org")]) == [None, "unknown_site"]
    ingestor.spool.close()
    assert spooled(tmp_path) == ["/p1"]


def test_a_failed_step_keeps_nothing_of_its_request_only(tmp_path: Path) -> None:
    ingestor = make(tmp_path)

    async def main() -> list[object]:
        results = await asyncio.gather(
            ingestor.submit([hit(1)]),
            ingestor.submit([hit(2), hit(3, page="/boom")]),  # one request, two domains
            ingestor.submit([hit(4)]),
            return_exceptions=True,
        )
        await ingestor.close()
        return list(results)

    first, failed, last = asyncio.run(main())
    assert isinstance(failed, IngestUnavailable)
    assert ingestor.unavailable == 1
    assert first == [None] and last == [None]
    assert sorted(spooled(tmp_path)) == ["/p1", "/p4"]


def test_a_full_spool_refuses_requests_with_events_and_keeps_none_of_them(
    tmp_path: Path,
) -> None:
    one = len(
        encode(
            Event(
                site_id="example.com", timestamp=NOW, name="pageview", visitor_id=1, pathname="/p0"
            )
        )
    )
    ingestor = make(tmp_path, quota=one * 3)
    for n in range(3):
        ingestor.submit_sync([hit(n)])
    with pytest.raises(SpoolFull):
        ingestor.submit_sync([hit(9, page="/p99999")])
    # A dropped event needs no room: it is still answered.
    assert ingestor.submit_sync([hit(5, domain="other.org")]) == ["unknown_site"]
    assert ingestor.spool.rejected == 1
    ingestor.spool.close()
    assert len(spooled(tmp_path)) == 3


def test_a_group_whose_pipeline_may_wait_on_the_store_runs_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """Around midnight the salts come from the store, which may be slow: the loop (which also
    serves /healthz and the dashboards) must go on meanwhile. Other groups run on the loop."""
    released = threading.Event()
    threads: dict[str, int] = {}

    def salted(hit: Hit, event: Event) -> str | None:
        threads[hit.url] = threading.get_ident()
        if hit.url.endswith("/midnight"):
            # Stands for a store call; only the loop below can end it before the timeout.
            assert released.wait(timeout=10), "the event loop was blocked by the store call"
        return path_only(hit, event)

    def in_memory(hits: Iterable[Hit]) -> bool:
        return not any(h.url.endswith("/midnight") for h in hits)

    pipeline = Pipeline([("site", known_site), ("salt", salted)], in_memory=in_memory)
    ingestor = Ingestor(pipeline, SpoolWriter(tmp_path, "w0"))

    async def main() -> list[list[str | None]]:
        slow = asyncio.ensure_future(ingestor.submit([hit(1, page="/midnight")]))
        await asyncio.sleep(0.05)
        released.set()  # the loop is free while the slow group runs
        later = await ingestor.submit([hit(2)])
        first = await slow
        await ingestor.close()
        return [first, later]

    assert asyncio.run(main()) == [[None], [None]]
    loop_thread = threading.get_ident()
    assert threads["https://example.com/midnight"] != loop_thread
    assert threads["https://example.com/p2"] == loop_thread
    assert sorted(spooled(tmp_path)) == ["/midnight", "/p2"]


def test_a_cancelled_request_does_not_stop_its_group(tmp_path: Path) -> None:
    ingestor = make(tmp_path)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(ingestor.submit([hit(n)])) for n in range(3)]
        await asyncio.sleep(0)  # all three are waiting for their group's commit
        tasks[1].cancel()  # e.g. the server stops while the client waits
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await ingestor.close()
        return list(results)

    first, cancelled, last = asyncio.run(main())
    assert first == [None] and last == [None]
    assert isinstance(cancelled, asyncio.CancelledError)
    # Handed on before it was cancelled, its event is committed with the others (at least once).
    assert sorted(spooled(tmp_path)) == ["/p0", "/p1", "/p2"]
