"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool.

Group commit in two stages, each with its own thread: the requests that arrive while the
pipeline thread is busy are processed together next; their events wait for the spool thread,
which appends everything waiting with one write and one fsync, then answers those requests. So
at low load a request costs one fsync, at high load one fsync covers many requests, and one
group's fsync overlaps the next group's pipeline; a small group that finds the spool thread idle
is processed and committed there in one hop. The event loop only parses HTTP, and a request is
answered only after the fsync that covers its events: a 202 is a promise.

When the spool is at its quota a request gets `SpoolFull`, and when a step failed (not a
judgement on the event, e.g. the store did not answer) `IngestUnavailable`: nothing of that
request is kept, and the app answers 503 so the client retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence

from ingest.hit import Hit
from ingest.pipeline import Dropped, Pipeline
from ingest.spool import SpoolWriter, encode

# A step raised (e.g. the store holding the salts did not answer): the event was not judged, so
# it is neither acknowledged nor counted as stored. The client is asked to retry instead.
UNJUDGED = "internal_error"

Reasons = list[str | None]

# Groups of at most this many requests skip the second thread hop when the spool thread is idle:
# at 4,000 beacons/s (groups of 1-3) that costs a worker ~15 % less CPU per beacon, with no
# change under saturation (bench/ingest.py, 2026-11-25).
ONE_HOP_MAX_REQUESTS = 4


class IngestUnavailable(Exception):
    """The request could not be processed now; answer 503 with Retry-After, keep nothing."""

    retry_after = 1


class Ingestor:
    def __init__(self, pipeline: Pipeline, spool: SpoolWriter) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self.unavailable = 0  # requests answered 503 because a step failed
        # Two stages with a thread each, so one group's fsync overlaps the next group's
        # pipeline: requests -> pipeline (CPU) -> one write + fsync for all waiting events.
        self._pending: list[tuple[Sequence[Hit], asyncio.Future[Reasons]]] = []
        self._unwritten: list[tuple[list[bytes], Reasons, asyncio.Future[Reasons]]] = []
        self._cpu_task: asyncio.Task[None] | None = None
        self._io_task: asyncio.Task[None] | None = None
        self._cpu = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spool")

    def _process(self, hits: Sequence[Hit]) -> tuple[list[bytes], Reasons]:
        records: list[bytes] = []
        reasons: Reasons = []
        for hit in hits:
            result = self.pipeline.process(hit)
            if isinstance(result, Dropped):
                reasons.append(result.reason)
            else:
                records.append(encode(result.event, result.prev_visitor_id))
                reasons.append(None)
        return records, reasons

    def _prepare(self, batch: list[Sequence[Hit]]) -> list[tuple[list[bytes], Reasons] | Exception]:
        out: list[tuple[list[bytes], Reasons] | Exception] = []
        for hits in batch:
            records, reasons = self._process(hits)
            if UNJUDGED in reasons:
                # Nothing of the request is kept, so the client's retry cannot double anything.
                self.unavailable += 1
                out.append(IngestUnavailable())
            else:
                out.append((records, reasons))
        return out

    def submit_sync(self, hits: Sequence[Hit]) -> Reasons:
        """Process hits; returns a drop reason (or None when stored) for each hit."""
        (prepared,) = self._prepare([hits])
        if isinstance(prepared, Exception):
            raise prepared
        records, reasons = prepared
        if records:
            self.spool.append(records)
        return reasons

    async def submit(self, hits: Sequence[Hit]) -> Reasons:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reasons] = loop.create_future()
        self._pending.append((hits, waiter))
        if self._cpu_task is None or self._cpu_task.done():
            self._cpu_task = loop.create_task(self._run_pipeline())
        # Shielded: a client that disconnects does not cancel the commit of others' events.
        return await asyncio.shield(waiter)

    def _commit(self, records: list[bytes]) -> Exception | None:
        """Append and fsync (in the spool thread); the failure that denies the 202, if any."""
        try:
            self.spool.append(records)
        except Exception as exc:  # noqa: BLE001 - SpoolFull or a disk error: no 202
            return exc
        return None

    def _prepare_and_write(
        self, batch: list[Sequence[Hit]]
    ) -> tuple[list[tuple[list[bytes], Reasons] | Exception], Exception | None]:
        prepared = self._prepare(batch)
        records = [r for p in prepared if not isinstance(p, Exception) for r in p[0]]
        return prepared, self._commit(records) if records else None

    async def _run_pipeline(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            hits = [h for h, _ in batch]
            # A small group while the spool thread is idle (moderate load) takes one thread hop,
            # not two: the spool thread runs its pipeline and its commit. Under load, groups are
            # large and the two stages overlap as described above.
            one_hop = (
                len(batch) <= ONE_HOP_MAX_REQUESTS
                and not self._unwritten
                and (self._io_task is None or self._io_task.done())
            )
            failed: Exception | None = None
            try:
                if one_hop:
                    prepared, failed = await loop.run_in_executor(
                        self._io, self._prepare_and_write, hits
                    )
                else:
                    prepared = await loop.run_in_executor(self._cpu, self._prepare, hits)
            except Exception as exc:  # noqa: BLE001 - every waiter learns; none is acknowledged
                _fail([w for _, w in batch], exc)
                continue
            for (_, waiter), result in zip(batch, prepared, strict=True):
                if isinstance(result, Exception):
                    _fail([waiter], result)
                elif not result[0]:
                    _done(waiter, result[1])  # all dropped: nothing to make durable
                elif one_hop:
                    if failed is not None:
                        _fail([waiter], failed)
                    else:
                        _done(waiter, result[1])
                else:
                    self._unwritten.append((result[0], result[1], waiter))
            if self._unwritten and (self._io_task is None or self._io_task.done()):
                self._io_task = loop.create_task(self._write())

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._unwritten:
            group, self._unwritten = self._unwritten, []
            records = [record for recs, _, _ in group for record in recs]
            failed = await loop.run_in_executor(self._io, self._commit, records)
            if failed is not None:
                _fail([w for _, _, w in group], failed)
                continue
            for _, reasons, waiter in group:
                _done(waiter, reasons)

    async def tick(self) -> None:
        """Seal the open segment by age and rescan the spool's size (every ~0.1 s)."""
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.tick)

    async def close(self) -> None:
        """Commit what is pending, then seal the open segment."""
        while (self._cpu_task and not self._cpu_task.done()) or (
            self._io_task and not self._io_task.done()
        ):
            for task in (self._cpu_task, self._io_task):
                if task is not None and not task.done():
                    await task
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.close)
        self._cpu.shutdown(wait=True)
        self._io.shutdown(wait=True)


def _fail(waiters: list[asyncio.Future[Reasons]], exc: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


def _done(waiter: asyncio.Future[Reasons], reasons: Reasons) -> None:
    if not waiter.done():
        waiter.set_result(reasons)
