"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool.

`submit` returns only after the fsync that covers the accepted events (group commit: the
concurrent requests of a worker share it), so a 202 is a promise. When the spool is at its
quota it raises `SpoolFull` and nothing of the request is kept; the app answers 503.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from ingest.hit import Hit
from ingest.pipeline import Dropped, Pipeline
from ingest.spool import GroupCommitter, SpoolWriter, encode


class Ingestor:
    def __init__(self, pipeline: Pipeline, spool: SpoolWriter) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self.committer = GroupCommitter(spool)

    def _process(self, hits: Sequence[Hit]) -> tuple[list[bytes], list[str | None]]:
        records: list[bytes] = []
        reasons: list[str | None] = []
        for hit in hits:
            result = self.pipeline.process(hit)
            if isinstance(result, Dropped):
                reasons.append(result.reason)
            else:
                records.append(encode(result.event, result.prev_visitor_id))
                reasons.append(None)
        return records, reasons

    def submit_sync(self, hits: Sequence[Hit]) -> list[str | None]:
        """Process hits; returns a drop reason (or None when stored) for each hit."""
        records, reasons = self._process(hits)
        if records:
            self.spool.append(records)
        return reasons

    async def submit(self, hits: Sequence[Hit]) -> list[str | None]:
        # Steps may block (the salt keeper reads the store once a day): off the event loop.
        records, reasons = await run_in_threadpool(self._process, hits)
        if records:
            await self.committer.append(records)
        return reasons

    async def tick(self) -> None:
        await self.committer.tick()

    async def close(self) -> None:
        await self.committer.close()
