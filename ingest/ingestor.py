"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool.

`submit` returns only after the fsync that covers the accepted events (group commit: the
concurrent requests of a worker share it), so a 202 is a promise. When the spool is at its
quota it raises `SpoolFull`, and when a step failed (not a judgement on the event, e.g. the store
did not answer) `IngestUnavailable`: nothing of the request is kept and the app answers 503.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from ingest.hit import Hit
from ingest.pipeline import Dropped, Pipeline
from ingest.spool import GroupCommitter, SpoolWriter, encode

# A step raised (e.g. the store holding the salts did not answer): the event was not judged, so
# it is neither acknowledged nor counted as stored. The client is asked to retry instead.
UNJUDGED = "internal_error"


class IngestUnavailable(Exception):
    """The request could not be processed now; answer 503 with Retry-After, keep nothing."""

    retry_after = 1


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
        if UNJUDGED in reasons:
            raise IngestUnavailable
        if records:
            self.spool.append(records)
        return reasons

    async def submit(self, hits: Sequence[Hit]) -> list[str | None]:
        # Steps may block (the salt keeper reads the store once a day): off the event loop.
        records, reasons = await run_in_threadpool(self._process, hits)
        if UNJUDGED in reasons:
            # Nothing of the request is kept, so the client's retry cannot double anything.
            raise IngestUnavailable
        if records:
            await self.committer.append(records)
        return reasons

    async def tick(self) -> None:
        await self.committer.tick()

    async def close(self) -> None:
        await self.committer.close()
