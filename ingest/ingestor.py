"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool.

Group commit: the requests that arrive while a flush is in flight wait together; the next flush
runs the pipeline for all of their hits, appends the events with one write and one fsync, and
then answers every one of them. So at low load a request costs one fsync, and at high load one
fsync covers many requests; the event loop only parses HTTP, and a request is answered only after
the fsync that covers its events: a 202 is a promise.

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
from ingest.spool import SpoolFull, SpoolWriter, encode

# A step raised (e.g. the store holding the salts did not answer): the event was not judged, so
# it is neither acknowledged nor counted as stored. The client is asked to retry instead.
UNJUDGED = "internal_error"

Reasons = list[str | None]


class IngestUnavailable(Exception):
    """The request could not be processed now; answer 503 with Retry-After, keep nothing."""

    retry_after = 1


class Ingestor:
    def __init__(self, pipeline: Pipeline, spool: SpoolWriter) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self._pending: list[tuple[Sequence[Hit], asyncio.Future[Reasons]]] = []
        self._task: asyncio.Task[None] | None = None
        # One thread: the pipeline and the spool file are used by one thread at a time.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ingest")

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

    def submit_sync(self, hits: Sequence[Hit]) -> Reasons:
        """Process hits; returns a drop reason (or None when stored) for each hit."""
        (result,) = self._commit([hits])
        if isinstance(result, Exception):
            raise result
        return result

    def _commit(self, batch: list[Sequence[Hit]]) -> list[Reasons | Exception]:
        """Run the pipeline for several requests, then one write + fsync for all their events."""
        results: list[Reasons | Exception] = []
        records: list[bytes] = []
        owners: list[int] = []  # the requests whose events are in `records`
        for index, hits in enumerate(batch):
            got, reasons = self._process(hits)
            if UNJUDGED in reasons:
                # Nothing of the request is kept, so the client's retry cannot double anything.
                results.append(IngestUnavailable())
                continue
            results.append(reasons)
            if got:
                records.extend(got)
                owners.append(index)
        if records:
            try:
                self.spool.append(records)
            except SpoolFull as exc:
                for index in owners:
                    results[index] = exc
        return results

    async def submit(self, hits: Sequence[Hit]) -> Reasons:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reasons] = loop.create_future()
        self._pending.append((hits, waiter))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush())
        # Shielded: a client that disconnects does not cancel the commit of others' events.
        return await asyncio.shield(waiter)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await loop.run_in_executor(
                    self._executor, self._commit, [hits for hits, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiter learns; none is acknowledged
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for (_, waiter), result in zip(batch, results, strict=True):
                if waiter.done():
                    continue
                if isinstance(result, Exception):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)

    async def tick(self) -> None:
        """Seal the open segment by age and rescan the spool's size (every ~0.1 s)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.spool.tick)

    async def close(self) -> None:
        """Commit what is pending, then seal the open segment."""
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self.spool.close)
        self._executor.shutdown(wait=True)
