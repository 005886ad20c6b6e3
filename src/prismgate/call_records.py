"""The console's record of each call: the images it kept and the call's details, on the
call's spend-log row (`general_settings.console`).

The gateway asks its `Keeper` for a `CallRecord` when a call starts (none when the
console keeps nothing, or the caller's key or team says `keep_images: false`: the call
then costs nothing more). A gateway has a keeper only when a spend recorder writes its
rows (call_reporting.py): records live on rows. While the call runs, the record's
transport wrapper notes each request sent upstream (a reference to what was sent anyway,
and its status). When the call has been reported, the spend recorder asks the record to
finish the call's row (`finished`): in one of the keeper's own threads (two, so a burst of
records never takes the threads the event loop's other work needs) the answer's images
are decoded from base64 and every body described (request_details.py); the images go to
the image store's kept images (written in those threads too); and the row gains their
names and the details. The caller has had its answer by then: nothing here runs before it
is sent.

Kept images are named on the row, never linked: links are signed when a row is read, so
they never outlive the store's keep period by more than a link's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import msgspec

from prismgate.errors import PrismgateError
from prismgate.identity.principal import Principal
from prismgate.media.links import media_type_of
from prismgate.observability.redaction import Redactor
from prismgate.request_details import (
    MAX_SENT,
    ImageToKeep,
    Sent,
    decoded_answer,
    describe_answer,
    describe_error,
    describe_request,
    describe_sent,
    images_in,
)
from prismgate.storage import ImageStore, KeptFile
from prismgate.storage.records import KeptImage, SpendRow
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, UpstreamStream
from prismgate.types import ImageResponse, InputImage
from prismgate.types.chat import ChatCompletionRequest

if TYPE_CHECKING:
    from prismgate.config import Config
    from prismgate.observers import CallReport

__all__ = ["OPT_OUT", "CallRecord", "Keeper"]

log = logging.getLogger(__name__)

# The metadata field of a key or team that keeps its calls out of the console's records,
# and the values that say so (metadata is free JSON: "false" and 0 are meant as false).
OPT_OUT = "keep_images"
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# Threads that finish records (decode, describe, write kept images): few, and the
# keeper's own, so records never queue behind or in front of the default pool's work.
_THREADS = 2
# The most a row's details may take as JSON: past it, the largest parts are left out.
MAX_DETAILS_BYTES = 256 * 1024


class Keeper:
    """Makes each call's record and finishes it (see the module docstring). Built once,
    from the config, when a spend recorder first observes the gateway's calls
    (call_reporting.py); None from `from_config` when nothing is kept."""

    def __init__(
        self,
        store: ImageStore,
        redactor: Redactor,
        *,
        keep_images: bool,
        keep_details: bool,
        keep_prompts: bool,
    ) -> None:
        self._store = store
        self._redactor = redactor
        self.keep_images = keep_images
        self.keep_details = keep_details
        self._keep_prompts = keep_prompts
        # Threads start with the first record, and end with `close()`.
        self._threads = ThreadPoolExecutor(_THREADS, thread_name_prefix="prismgate-records")

    @classmethod
    def from_config(cls, config: Config, store: ImageStore, redactor: Redactor) -> Keeper | None:
        """The keeper `general_settings.console` asks for; None when it keeps nothing."""
        general = config.general_settings
        console = general.console
        if not (console.keep_images or console.keep_request_details):
            return None
        return cls(
            store,
            redactor,
            keep_images=console.keep_images,
            keep_details=console.keep_request_details,
            keep_prompts=general.store_prompts_in_spend_logs,
        )

    def record_for(self, principal: Principal) -> CallRecord | None:
        """A record for a call by `principal`; None when its key or team opted out
        (metadata `keep_images` false, "false", "no", "off" or 0)."""
        for holder in (principal.key, principal.team):
            if holder is not None and opted_out(holder.metadata):
                return None
        return CallRecord(self)

    def close(self) -> None:
        """Stop the keeper's threads; records not yet begun are cancelled (their rows are
        written without them)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def finish(self, record: CallRecord, row: SpendRow, report: CallReport) -> SpendRow:
        """`row` with the call's kept images and details (work done in the keeper's
        threads)."""
        loop = asyncio.get_running_loop()
        images, details = await loop.run_in_executor(self._threads, self._prepare, record, report)
        kept = []
        for image in images:
            try:
                found = await self._keep(image)
            except PrismgateError as error:  # the image store is full: the row still counts
                log.warning("request %s: an image was not kept: %s", row.request_id, error)
                continue
            if found is not None:
                kept.append(_kept(image, found))
        return msgspec.structs.replace(row, kept_images=tuple(kept), details=details)

    def _prepare(
        self, record: CallRecord, report: CallReport
    ) -> tuple[list[ImageToKeep], dict[str, Any] | None]:
        """The images to keep and the details: the CPU work, in a worker thread."""
        value = report.value
        if isinstance(value, ImageResponse):
            value = decoded_answer(value)  # a relayed answer's body, read once
        images = images_in(report.request, value) if self.keep_images else []
        if not self.keep_details:
            return images, None
        meta = report.meta
        failure = report.failure
        details: dict[str, Any] = {
            "request": describe_request(
                report.request, self._redactor, keep_prompts=self._keep_prompts
            ),
            "sent": describe_sent(record.sent, report.request, keep_prompts=self._keep_prompts),
            "answer": describe_answer(value, keep_prompts=self._keep_prompts),
        }
        if meta is not None:
            details["served"] = {
                "dropped_params": list(meta.dropped_params),
                "retries": meta.retries,
                "upstream_calls": meta.upstream_calls,
                "filtered": meta.filtered,
                "path": meta.path,
            }
        if isinstance(failure, PrismgateError):
            # What the caller was told (never a traceback), cleaned as the bodies are.
            message = describe_error(
                failure.message, report.request, self._redactor, keep_prompts=self._keep_prompts
            )
            details["error"] = {"message": message}
        elif failure is not None:
            details["error"] = {"message": type(failure).__name__}
        return images, _bounded(details)

    async def _keep(self, image: ImageToKeep) -> KeptFile | None:
        if image.data is not None:
            return await self._store.keep(image.data, image.media_type, executor=self._threads)
        if image.stored_name is not None:
            return await self._store.keep_stored(image.stored_name, executor=self._threads)
        return None


def opted_out(metadata: Mapping[str, object]) -> bool:
    """Whether a key's or team's metadata keeps its calls out of the console's records."""
    value = metadata.get(OPT_OUT, True)
    if isinstance(value, str):
        return value.strip().lower() in _FALSE_WORDS
    return value is False or (type(value) is int and value == 0)


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    """`details` within MAX_DETAILS_BYTES: the bodies sent upstream, then the request,
    then the answer are replaced by their size until it fits (a long chat, say)."""
    size = len(msgspec.json.encode(details))
    if size <= MAX_DETAILS_BYTES:
        return details
    parts: list[tuple[dict[str, Any], str]] = [(sent, "body") for sent in details["sent"]]
    parts += [(details, "request"), (details, "answer")]
    sized = [(len(msgspec.json.encode(holder[name])), holder, name) for holder, name in parts]
    for part_size, holder, name in sorted(sized, key=lambda part: -part[0]):
        holder[name] = f"<{part_size // 1024} KB: too large to keep>"
        size -= part_size
        if size <= MAX_DETAILS_BYTES:
            break
    return details


def _kept(image: ImageToKeep, found: KeptFile) -> KeptImage:
    return KeptImage(
        name=found.name,
        role=image.role,
        index=image.index,
        media_type=media_type_of(found.name),
        width=found.width,
        height=found.height,
        size_bytes=found.size_bytes,
    )


class CallRecord:
    """One call's record while it runs: what was sent upstream (see the module
    docstring)."""

    __slots__ = ("keeper", "sent")

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self.sent: list[Sent] = []

    def recording(self, transport: Transport, redact: Redactor, attempt: str | None) -> Transport:
        """`transport`, noting each request it sends for the target `attempt`; as it is
        when the call's details are not kept."""
        if not self.keeper.keep_details:
            return transport
        return _Recording(transport, self, redact, attempt)

    async def finished(self, row: SpendRow, report: CallReport) -> SpendRow:
        """The call's spend-log row with its kept images and details."""
        return await self.keeper.finish(self, row, report)

    def held_bytes(self, report: CallReport) -> int:
        """About how many bytes this record keeps alive until it is finished: the bodies
        sent upstream, the answer's images and the request's (a few additions per image,
        on the event loop)."""
        held = sum(len(sent.request.body or b"") for sent in self.sent)
        return held + _answer_bytes(report.value) + _request_bytes(report.request)

    def _note(self, request: UpstreamRequest, redact: Redactor, attempt: str | None) -> Sent:
        # Only a reference: the request is read off the request path, when the row is made.
        sent = Sent(attempt, request, redact)
        if len(self.sent) < MAX_SENT:
            self.sent.append(sent)
        return sent


def _answer_bytes(value: object) -> int:
    if not isinstance(value, ImageResponse):
        return 0
    if (body := value.relayed_body) is not None:
        return len(body)
    return sum(len(image.b64_json or image.url or "") for image in value.data)


def _request_bytes(request: object) -> int:
    inputs = getattr(request, "image", None)
    found = [*(inputs if isinstance(inputs, list) else [inputs]), getattr(request, "mask", None)]
    held = sum(len(image.data) for image in found if isinstance(image, InputImage))
    if isinstance(request, ChatCompletionRequest):
        for message in request.messages:
            if isinstance(message.content, list):
                for part in message.content:
                    image_url = getattr(part, "image_url", None)
                    url = getattr(image_url, "url", image_url)
                    held += len(url) if isinstance(url, str) else 0
    return held


class _Recording:
    """A transport that notes what it sends in a call's record."""

    __slots__ = ("attempt", "record", "redact", "transport")

    def __init__(
        self, transport: Transport, record: CallRecord, redact: Redactor, attempt: str | None
    ) -> None:
        self.transport = transport
        self.record = record
        self.redact = redact
        self.attempt = attempt

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        sent = self.record._note(request, self.redact, self.attempt)
        began = time.perf_counter()
        try:
            response = await self.transport.send(request)
        except BaseException as error:
            sent.error = type(error).__name__
            raise
        finally:
            sent.seconds = time.perf_counter() - began
        sent.status = response.status
        return response

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        return self._streamed(request)

    @contextlib.asynccontextmanager
    async def _streamed(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        sent = self.record._note(request, self.redact, self.attempt)
        began = time.perf_counter()
        try:
            async with self.transport.stream(request) as stream:
                sent.status = stream.status
                sent.seconds = time.perf_counter() - began  # to the answer's headers
                yield stream
        except BaseException as error:
            sent.error = sent.error or type(error).__name__
            raise
