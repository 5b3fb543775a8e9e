"""Hits in, durable anonymised events out: runs the pipeline and appends to the spool."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from ingest.hit import Hit
from ingest.pipeline import Dropped, Pipeline
from ingest.spool import SpoolWriter, encode


class Ingestor:
    def __init__(self, pipeline: Pipeline, spool: SpoolWriter) -> None:
        self.pipeline = pipeline
        self.spool = spool

    def submit_sync(self, hits: Sequence[Hit]) -> list[str | None]:
        """Process hits; returns a drop reason (or None when stored) for each hit."""
        records: list[bytes] = []
        reasons: list[str | None] = []
        for hit in hits:
            result = self.pipeline.process(hit)
            if isinstance(result, Dropped):
                reasons.append(result.reason)
            else:
                records.append(encode(result.event, result.prev_visitor_id))
                reasons.append(None)
        if records:
            self.spool.append(records)
        return reasons

    async def submit(self, hits: Sequence[Hit]) -> list[str | None]:
        return await run_in_threadpool(self.submit_sync, hits)
