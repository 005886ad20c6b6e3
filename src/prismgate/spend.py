"""The spend log's observer: one row per call, written in batches off the request path.

`SpendRecorder.observe` only builds the row and queues it; a background task writes the
queue in batches (every `interval` seconds, or at once when `batch` rows wait). A write
that fails keeps its rows queued and is tried again; the queue is bounded, and rows past
the bound are dropped with a logged count. `aclose()` writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from prismgate.observers import CallReport
from prismgate.storage import SpendLog
from prismgate.storage.records import SpendRow, nanos
from prismgate.types import ImageResponse
from prismgate.types.chat import ChatCompletion

__all__ = ["SpendRecorder", "spend_row"]

log = logging.getLogger(__name__)

PROMPT_CHARS = 200  # what a row keeps of a prompt


class SpendRecorder:
    """An observer that writes a `SpendRow` for every call to `spend_log`."""

    def __init__(
        self,
        spend_log: SpendLog,
        *,
        batch: int = 200,
        interval: float = 0.5,
        max_queued: int = 100_000,
        keep_prompts: bool = True,
    ) -> None:
        self._log = spend_log
        self._batch = batch
        self._interval = interval
        self._queue: deque[SpendRow] = deque()
        self._max_queued = max_queued
        self._keep_prompts = keep_prompts
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._dropped = 0

    def observe(self, report: CallReport) -> None:
        """Queue the call's row (never blocks)."""
        if len(self._queue) >= self._max_queued:
            self._dropped += 1
            if self._dropped in (1, 100, 10_000):
                log.error("spend log: the queue is full; %d rows dropped", self._dropped)
            return
        self._queue.append(spend_row(report, keep_prompt=self._keep_prompts))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_periodically())
        if len(self._queue) >= self._batch:
            self._wake.set()

    async def flush(self) -> None:
        """Write every queued row now."""
        while self._queue:
            rows = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
            await self._log.write(rows)
            for _ in rows:
                self._queue.popleft()

    async def aclose(self) -> None:
        """Stop the writer and write what is left."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        try:
            await self.flush()
        except Exception as exc:
            log.error("spend log: %d rows could not be written at shutdown (%s)",
                      len(self._queue), type(exc).__name__)  # fmt: skip

    async def _write_periodically(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval * (1 + failures))
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except Exception as exc:
                failures = min(failures + 1, 20)
                log.warning("spend log: a write failed (%s); %d rows wait",
                            type(exc).__name__, len(self._queue))  # fmt: skip


def spend_row(report: CallReport, *, keep_prompt: bool = True) -> SpendRow:
    """The spend log's row for one call."""
    request: Any = report.request
    meta = report.meta
    key = report.principal.key
    team = report.principal.team
    images = 0
    prompt_tokens = completion_tokens = total_tokens = 0
    value = report.value
    if isinstance(value, ImageResponse):
        images = len(value.data)
        if value.usage is not None:
            prompt_tokens, completion_tokens = value.usage.input_tokens, value.usage.output_tokens
            total_tokens = value.usage.total_tokens
    elif isinstance(value, ChatCompletion) and value.usage is not None:
        prompt_tokens = value.usage.prompt_tokens
        completion_tokens = value.usage.completion_tokens
        total_tokens = value.usage.total_tokens
    prompt = getattr(request, "prompt", None)
    failure = report.failure
    return SpendRow(
        request_id=report.request_id,
        started_at=report.started_at,
        ended_at=report.started_at + report.latency,
        call_type=report.operation,
        status_code=report.status,
        token=key.token if key else None,
        key_alias=key.key_alias if key else None,
        team_id=team.team_id if team else None,
        user_id=key.user_id if key else None,
        end_user=getattr(request, "user", None),
        model=report.model,
        model_group=meta.model_group if meta else None,
        deployment=f"{meta.provider}/{meta.model}" if meta else None,
        provider=meta.provider if meta else None,
        api_base=meta.api_base if meta else None,
        images=images,
        image_size=getattr(request, "size", None),
        image_quality=getattr(request, "quality", None),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        spend=nanos(meta.response_cost or 0.0) if meta else 0,
        cache_status=meta.cache_status if meta else None,
        latency_ms=report.latency * 1000,
        attempts=report.attempts,
        adjustments=meta.adjusted if meta else (),
        trace_id=report.trace_id,
        metadata=dict(report.metadata or {}),
        prompt=prompt[:PROMPT_CHARS] if keep_prompt and isinstance(prompt, str) else None,
        error=None if failure is None else getattr(failure, "code", None) or type(failure).__name__,
    )
