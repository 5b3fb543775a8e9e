"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool.

Group commit on the event loop: the requests that arrive in one turn of the loop form a group.
Its pipeline runs right there, and a small group (moderate load) is appended and fsynced there
too, then answered: one fsync per group, and no thread hand-off, each of which costs a wait for
the GIL. A larger group (the worker is saturated) is committed by the spool thread instead, so
the loop goes on parsing the next group while the fsync runs; groups that arrive meanwhile are
committed together next. A request is answered only after the fsync that covers its events: a
202 is a promise.

The pipeline needs the store only for the visitor salts, and only around a day boundary or a
recheck (`Pipeline.in_memory`). Such a group runs in the spool thread instead, so that a slow
store never stalls the loop, which also serves `/healthz` and the dashboards.

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

# Groups of at most this many requests are committed on the loop itself. Larger groups only
# form under saturation, where overlapping the fsync with the next group's work pays more than
# the hand-off to the spool thread costs (bench/ingest.py, 2026-12-04).
INLINE_COMMIT_MAX_REQUESTS = 4

Reasons = list[str | None]
Waiter = asyncio.Future[Reasons]
Prepared = list[tuple[list[bytes], Reasons] | Exception]


class IngestUnavailable(Exception):
    """The request could not be processed now; answer 503 with Retry-After, keep nothing."""

    retry_after = 1


class Ingestor:
    def __init__(self, pipeline: Pipeline, spool: SpoolWriter) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self.unavailable = 0  # requests answered 503 because a step failed
        self._pending: list[tuple[Sequence[Hit], Waiter]] = []
        self._scheduled = False  # a `_take` is due in this turn of the loop
        self._unwritten: list[tuple[list[bytes], Reasons, Waiter]] = []
        self._io_task: asyncio.Task[None] | None = None  # commits in the spool thread
        self._slow_task: asyncio.Task[None] | None = None  # a pipeline that may call the store
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

    def _prepare(self, batch: list[Sequence[Hit]]) -> Prepared:
        out: Prepared = []
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
        waiter: Waiter = loop.create_future()
        self._pending.append((hits, waiter))
        self._schedule(loop)
        # Not shielded (a shield costs ~2 % of a saturated worker): cancelling this request
        # cancels only its waiter. The group's commit, this request's events included, goes on.
        return await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            # After the requests already read in this turn of the loop: they join the group.
            self._scheduled = True
            loop.call_soon(self._take)

    def _take(self) -> None:
        """Process the pending requests as one group."""
        self._scheduled = False
        if not self._pending or _busy(self._slow_task):
            return  # the slow group's task takes the pending ones when it is done
        batch, self._pending = self._pending, []
        hits = [h for h, _ in batch]
        if not self.pipeline.in_memory(h for group in hits for h in group):
            self._slow_task = asyncio.get_running_loop().create_task(self._slow(batch))
            return
        try:
            prepared = self._prepare(hits)
        except Exception as exc:  # noqa: BLE001 - every waiter learns; none is acknowledged
            _fail([w for _, w in batch], exc)
            return
        self._commit_group(batch, prepared)

    async def _slow(self, batch: list[tuple[Sequence[Hit], Waiter]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self._io, self._prepare, [h for h, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter learns; none is acknowledged
            _fail([w for _, w in batch], exc)
        else:
            self._commit_group(batch, prepared)
        if self._pending:
            self._schedule(loop)

    def _commit_group(self, batch: list[tuple[Sequence[Hit], Waiter]], prepared: Prepared) -> None:
        """Answer the dropped and the failed requests; commit the others' records."""
        kept: list[tuple[list[bytes], Reasons, Waiter]] = []
        for (_, waiter), result in zip(batch, prepared, strict=True):
            if isinstance(result, Exception):
                _fail([waiter], result)
            elif not result[0]:
                _done(waiter, result[1])  # all dropped: nothing to make durable
            else:
                kept.append((result[0], result[1], waiter))
        if not kept:
            return
        if _busy(self._io_task) or len(kept) > INLINE_COMMIT_MAX_REQUESTS:
            self._unwritten.extend(kept)
            if not _busy(self._io_task):
                self._io_task = asyncio.get_running_loop().create_task(self._write())
            return
        _answer(kept, self._commit([r for records, _, _ in kept for r in records]))

    def _commit(self, records: list[bytes]) -> Exception | None:
        """Append and fsync; the failure that denies the 202, if any."""
        try:
            self.spool.append(records)
        except Exception as exc:  # noqa: BLE001 - SpoolFull or a disk error: no 202
            return exc
        return None

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._unwritten:
            group, self._unwritten = self._unwritten, []
            records = [record for recs, _, _ in group for record in recs]
            _answer(group, await loop.run_in_executor(self._io, self._commit, records))

    async def tick(self) -> None:
        """Seal the open segment by age and rescan the spool's size (every ~0.1 s)."""
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.tick)

    async def close(self) -> None:
        """Commit what is pending, then seal the open segment."""
        while self._pending or self._scheduled or _busy(self._slow_task) or _busy(self._io_task):
            tasks = [t for t in (self._slow_task, self._io_task) if t is not None and _busy(t)]
            if tasks:
                await asyncio.wait(tasks)
            else:
                self._schedule(asyncio.get_running_loop())
                await asyncio.sleep(0)  # lets the `_take` run
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.close)
        self._io.shutdown(wait=True)


def _busy(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done()


def _answer(group: list[tuple[list[bytes], Reasons, Waiter]], failed: Exception | None) -> None:
    for _, reasons, waiter in group:
        if failed is not None:
            _fail([waiter], failed)
        else:
            _done(waiter, reasons)


def _fail(waiters: list[Waiter], exc: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)


def _done(waiter: Waiter, reasons: Reasons) -> None:
    if not waiter.done():
        waiter.set_result(reasons)
