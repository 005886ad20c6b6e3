"""The spend log's observer: one row per call, written in batches off the request path.

`SpendRecorder.observe` only builds the row and queues it (O(1), never blocks); a
background task writes the queue in batches (every `interval` seconds, or at once when
`batch` rows wait).

When a write fails (the database is down or restarting) and the recorder has a spool
folder, the queued rows go to a `SpendSpool` on local disk (bounded, fsync'd), and are
written back, oldest first and in batches, once the database answers again; new rows
wait behind them. Without a spool they stay queued, up to `max_queued`. Past either
bound, rows are dropped with a logged count.

Each queued row is also written ahead to a journal beside the spool (`SpendJournal`: a
row copied into a memory-mapped file, sealed and emptied batch by batch once the rows are
in the database or the spool), so a process killed with rows in memory leaves them for
the next start.

`start()` starts the writer, which first adopts the spool files of processes that ended
(one crashed, or shut down while the database was down) and replays them. `aclose()`
writes what is queued; if the database does not answer then, the rows go to the spool
for the next start. The spend log skips request ids it already has, so a row sent twice
(a crash between a write and forgetting it) is kept once.

A call the console keeps a record of (call_records.py) has its row finished first, in a
task of its own (images kept, details described, off the event loop), then queued. At
most `max_finishing` are finished at once, holding at most `max_finishing_bytes` of
bodies and images between them; past either, a row is queued as it is (counted and
logged). Whatever becomes of its record, a row is queued once: a record that fails, is
cancelled, or is not finished within `finish_timeout` of `aclose()` leaves its row bare.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from prismgate.observability.call_tracking import CURRENT_TRACK
from prismgate.observers import CallReport
from prismgate.spool import DEFAULT_MAX_BYTES, SpendJournal, SpendSpool
from prismgate.storage import SpendLog
from prismgate.storage.records import SpendRow, nanos
from prismgate.types import ImageResponse
from prismgate.types.chat import ChatCompletion

__all__ = ["SpendRecorder", "spend_row"]

log = logging.getLogger(__name__)

PROMPT_CHARS = 200  # what a row keeps of a prompt
_MAX_BACKOFF = 20  # a failing database is retried at most every 20 intervals (10 s)


@dataclass(frozen=True, slots=True)
class _Finishing:
    """A row whose console record is being finished: the row as it is (written if the
    record never finishes) and the bytes the record holds."""

    row: SpendRow
    held_bytes: int


class SpendRecorder:
    """An observer that writes a `SpendRow` for every call to `spend_log`, through a
    spool in `spool_folder` (see the module docstring) when given one."""

    def __init__(
        self,
        spend_log: SpendLog,
        *,
        spool_folder: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        # Four of the SQL spend log's 256-row INSERTs in one transaction: a commit (and a
        # hand-off to the writer, a journal seal) a fourth as often as one INSERT a batch
        # (the SQLite writer's CPU a row: 8.2 -> 7.1 µs, measured alone).
        batch: int = 1024,
        interval: float = 0.5,
        max_queued: int = 100_000,
        keep_prompts: bool = True,
        write_timeout: float = 15.0,
        close_timeout: float = 10.0,
        max_finishing: int = 256,
        max_finishing_bytes: int = 256 << 20,
        finish_timeout: float = 10.0,
    ) -> None:
        self._log = spend_log
        self._spool = (
            None if spool_folder is None else SpendSpool(spool_folder, max_bytes=spool_max_bytes)
        )
        # Each queued row written ahead beside the spool, so that a process killed with
        # rows in memory leaves them for the next start (spool.py, `SpendJournal`).
        self._journal = None if spool_folder is None else SpendJournal(spool_folder)
        self._sealed: list[Any] = []  # journal files whose rows are queued or being written
        self._batch = batch
        self._interval = interval
        self._queue: deque[SpendRow] = deque()
        self._max_queued = max_queued
        self._keep_prompts = keep_prompts
        self._write_timeout = write_timeout
        self._close_timeout = close_timeout
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = asyncio.Lock()  # one drain at a time: the spool is read in order
        self._writer: asyncio.Task[None] | None = None
        self._dropped = 0
        self._outage = False
        # Rows being finished with the console's record of their call (kept images).
        self._finishing: dict[asyncio.Task[None], _Finishing] = {}
        self._finishing_bytes = 0
        self._max_finishing = max_finishing
        self._max_finishing_bytes = max_finishing_bytes
        self._finish_timeout = finish_timeout
        self._unfinished = 0

    @property
    def spool(self) -> SpendSpool | None:
        """The spool, when the recorder has a folder for one."""
        return self._spool

    def start(self) -> None:
        """Start the writer (in a running event loop); `observe` starts it too. It first
        replays what processes that ended left in the spool folder."""
        if self._stopping.is_set():
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_periodically())

    def observe(self, report: CallReport) -> None:
        """Queue the call's row (never blocks); one with a console record is queued once
        the record is finished."""
        row = spend_row(report, keep_prompt=self._keep_prompts)
        if report.record is not None and not self._stopping.is_set():
            held = report.record.held_bytes(report)
            if len(self._finishing) >= self._max_finishing:
                self._note_unfinished(1, "too many being finished at once")
            elif self._finishing_bytes + held > self._max_finishing_bytes:
                self._note_unfinished(1, "the records being finished hold too many bytes")
            else:
                task = asyncio.get_running_loop().create_task(self._finish(row, report))
                self._finishing[task] = _Finishing(row, held)
                self._finishing_bytes += held
                task.add_done_callback(self._finish_ended)
                return
        self._enqueue(row)

    async def _finish(self, row: SpendRow, report: CallReport) -> None:
        assert report.record is not None
        try:
            finished = await report.record.finished(row, report)
        except Exception:
            log.exception("spend log: the console record of %s failed", row.request_id)
            finished = row
        # A cancelled record (the loop closing) raises past this: `_finish_ended` queues
        # its bare row, as it does for a task cancelled before it began.
        task = asyncio.current_task()
        if task is not None and self._settled(task):
            self._enqueue(finished)

    def _finish_ended(self, task: asyncio.Task[None]) -> None:
        """A finishing task ended: if it queued no row (cancelled), its bare row."""
        held = self._finishing.get(task)
        if held is not None and self._settled(task):
            self._enqueue(held.row)

    def _settled(self, task: asyncio.Task[None]) -> bool:
        """Forget `task`'s row; False when it was settled already (by `aclose()`)."""
        held = self._finishing.pop(task, None)
        if held is None:
            return False
        self._finishing_bytes -= held.held_bytes
        return True

    def _note_unfinished(self, count: int, why: str) -> None:
        before = self._unfinished
        self._unfinished += count
        # Logged on the first such row and at each power of ten: never silent, never a
        # line per call.
        if before == 0 or len(str(self._unfinished)) > len(str(before)) or count > 1:
            log.warning(
                "spend log: %d rows written without their console record (%s); %d in all",
                count,
                why,
                self._unfinished,
            )

    def _enqueue(self, row: SpendRow) -> None:
        if len(self._queue) >= self._max_queued:
            self._dropped += 1
            if self._dropped in (1, 100, 10_000) or self._dropped % 100_000 == 0:
                log.error("spend log: the queue is full; %d rows dropped", self._dropped)
            return
        if self._journal is not None:
            self._journal.write(row)
        self._queue.append(row)
        if self._writer is None or self._writer.done():
            self.start()
        if len(self._queue) >= self._batch:
            self._wake.set()

    async def flush(self) -> None:
        """Write every spooled row, and the rows queued when the flush began, now. When the
        database fails, the queued rows go to the spool (if there is one) and the error
        is raised."""
        async with self._draining:
            try:
                await self._replay()
                await self._prepare_journal()
                # Rows queued while it writes wait for the next batch: chasing them would
                # turn a steady flow into a write every few rows. The journal files hold
                # exactly the rows pending now (the next rows go to a new file).
                self._seal_journal()
                pending = len(self._queue)
                while pending > 0 and self._queue:
                    rows = list(itertools.islice(self._queue, min(self._batch, pending)))
                    await self._write(rows)
                    for _ in rows:
                        self._queue.popleft()
                    pending -= len(rows)
                await self._forget_journal()
            except Exception:
                await self._spool_queue()
                raise
        if self._outage:
            self._outage = False
            log.warning("spend log: the database answers again; the rows that waited are written")

    async def aclose(self) -> None:
        """Stop the writer and write what is left; what cannot be written now goes to the
        spool, for the next start. Console records still being finished get
        `finish_timeout` seconds; then their rows are written without them."""
        if self._finishing:  # their rows are queued when done
            await asyncio.wait(set(self._finishing), timeout=self._finish_timeout)
        left = [(task, self._finishing[task]) for task in list(self._finishing)]
        for task, held in left:
            self._settled(task)
            task.cancel()
            self._enqueue(held.row)
        if left:
            self._note_unfinished(
                len(left), f"not finished within {self._finish_timeout:g} s of shutdown"
            )
        self._stopping.set()
        self._wake.set()
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                # A write under way is let finish (it may be a batch read from the spool).
                await asyncio.wait_for(asyncio.shield(writer), self._close_timeout)
            except TimeoutError:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        try:
            await asyncio.wait_for(self._flush_all(), self._close_timeout)
        except Exception as exc:
            await self._keep_at_shutdown(exc)
        finally:
            if self._spool is not None:
                await asyncio.to_thread(self._spool.close)
            if self._journal is not None:
                # Rows that could go nowhere stay in the journal for the next start.
                keep = bool(self._queue)
                await asyncio.to_thread(self._journal.close, keep=keep)
                if not keep:
                    await self._forget_journal()

    async def _flush_all(self) -> None:
        # Calls that end during the last flush (streams closing) queue rows too.
        await self.flush()
        while self._queue:
            await self.flush()

    async def _keep_at_shutdown(self, exc: Exception) -> None:
        if self._queue:  # the flush was cut short (a timeout): spool what it left
            with contextlib.suppress(Exception):
                await self._spool_queue()
        if self._queue:
            log.error(
                "spend log: %d rows could not be written at shutdown (%s)",
                len(self._queue),
                type(exc).__name__,
            )
        else:
            log.warning(
                "spend log: the database did not answer at shutdown (%s); the rows "
                "wait in the spool for the next start",
                type(exc).__name__,
            )

    async def _write_periodically(self) -> None:
        if self._spool is not None:
            try:
                await asyncio.to_thread(self._spool.adopt)
            except OSError as exc:
                log.error(
                    "spend log: the spool folder %s cannot be read (%s)", self._spool.folder, exc
                )
        await self._prepare_journal()
        # Adopted rows are written at once; queued ones when a batch fills or `interval`
        # has passed.
        failures = 0 if self._spool is None or not self._spool.waiting else await self._try()
        while not self._stopping.is_set():
            await self._pause(failures)
            if self._stopping.is_set():
                return  # aclose() writes what is left
            if self._queue or (self._spool is not None and self._spool.waiting):
                failures = await self._try(failures)

    async def _try(self, failures: int = 0) -> int:
        """Write what waits; the count of failures in a row after it."""
        try:
            await self.flush()
        except Exception as exc:
            self._note_outage(exc)
            return min(failures + 1, _MAX_BACKOFF)
        return 0

    async def _pause(self, failures: int) -> None:
        """Wait `interval`, or less if a batch fills up. While the database fails, wait
        out the backoff instead, and send each batch that fills up meanwhile to the spool
        (not to the database), so memory stays small however long the outage."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval * (1 + failures)
        while not self._stopping.is_set() and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return
            self._wake.clear()
            if not failures or self._stopping.is_set():
                return
            async with self._draining:
                await self._spool_queue()

    async def _replay(self) -> None:
        spool = self._spool
        if spool is None or not spool.waiting:
            return
        while (batch := await asyncio.to_thread(spool.peek, self._batch)) is not None:
            await self._write(batch.rows)
            await asyncio.to_thread(spool.take, batch)

    async def _write(self, rows: list[SpendRow]) -> None:
        # Bounded: a database that hangs is handled as one that is down.
        await asyncio.wait_for(self._log.write(rows), self._write_timeout)

    async def _spool_queue(self) -> None:
        """Move the queue to the spool (rows observed meanwhile stay queued)."""
        if self._spool is None or not self._queue:
            return
        await self._prepare_journal()
        self._seal_journal()  # the sealed files hold the rows spooled now, and no other
        rows = list(self._queue)
        try:
            await asyncio.to_thread(self._spool.append, rows)
        except OSError as exc:  # a full or read-only disk: the rows stay queued
            log.error(
                "spend log: the spool in %s cannot be written (%s); %d rows wait in memory",
                self._spool.folder,
                exc,
                len(rows),
            )
            return
        for _ in rows:
            self._queue.popleft()
        await self._forget_journal()

    async def _prepare_journal(self) -> None:
        """Make the journal's next file (in a thread), before `_seal_journal`."""
        if self._journal is not None:
            try:
                await asyncio.to_thread(self._journal.prepare)
            except OSError as exc:
                log.error("spend log: no journal file in %s (%s)", self._journal.folder, exc)

    def _seal_journal(self) -> None:
        if self._journal is not None:
            self._sealed += self._journal.seal()

    async def _forget_journal(self) -> None:
        """Remove the sealed journal files: their rows are in the database or the spool."""
        if self._journal is not None and self._sealed:
            sealed, self._sealed = self._sealed, []
            await asyncio.to_thread(self._journal.forget, sealed)

    def _note_outage(self, exc: Exception) -> None:
        where = "the spool" if self._spool is not None else "memory"
        if not self._outage:
            self._outage = True
            log.warning(
                "spend log: a write failed (%s); rows wait in %s until the database answers",
                type(exc).__name__,
                where,
            )
        else:
            log.debug("spend log: a write failed again (%s)", type(exc).__name__)


def spend_row(report: CallReport, *, keep_prompt: bool = True) -> SpendRow:
    """The spend log's row for one call."""
    request: Any = report.request
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
    meta = report.meta
    if meta is None:  # failed before a deployment answered
        model_group = deployment = provider = api_base = cache_status = None
        spend = 0
        adjustments: tuple[str, ...] = ()
    else:
        model_group, provider, api_base = meta.model_group, meta.provider, meta.api_base
        deployment = f"{provider}/{meta.model}"
        cost = meta.response_cost
        spend = nanos(cost) if cost else 0
        cache_status, adjustments = meta.cache_status, meta.adjusted
    token, key_alias, team_id, user_id = report.principal.spend_owner
    prompt = getattr(request, "prompt", None)
    failure = report.failure
    # The time the proxy's request waited on providers (call_tracking.py); an SDK call has
    # no track, and its row says 0.
    track = CURRENT_TRACK.get()
    upstream = track.upstream if track is not None else None
    started_at, latency = report.started_at, report.latency
    # Positional, in the fields' order: CPython makes a call with more than 15 keyword
    # arguments build a dict of them first (a row of keywords cost ~2.5x as much).
    return SpendRow(
        report.request_id,  # request_id
        started_at,  # started_at
        started_at + latency,  # ended_at
        report.operation,  # call_type
        report.status,  # status_code
        token,  # token
        key_alias,  # key_alias
        team_id,  # team_id
        user_id,  # user_id
        getattr(request, "user", None),  # end_user
        report.model,  # model
        model_group,  # model_group
        deployment,  # deployment
        provider,  # provider
        api_base,  # api_base
        images,  # images
        getattr(request, "size", None),  # image_size
        getattr(request, "quality", None),  # image_quality
        prompt_tokens,  # prompt_tokens
        completion_tokens,  # completion_tokens
        total_tokens,  # total_tokens
        spend,  # spend
        cache_status,  # cache_status
        latency * 1000,  # latency_ms
        0.0 if upstream is None else upstream * 1000,  # upstream_ms
        report.trace_id,  # trace_id
        prompt[:PROMPT_CHARS] if keep_prompt and isinstance(prompt, str) else None,  # prompt
        None if failure is None else getattr(failure, "code", None) or type(failure).__name__,
        report.attempts,  # attempts
        adjustments,  # adjustments
        dict(report.metadata) if report.metadata else {},  # metadata
    )
