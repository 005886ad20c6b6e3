"""LiteLLM's callbacks, as prismgate has them: "otel" and the webhook ("generic_api").

`litellm_settings.callbacks` (every call), `success_callback` and `failure_callback` name
them, by LiteLLM's names:

- `otel`: OpenTelemetry traces (observability/tracing.py);
- `generic_api` (LiteLLM's older name: `generic`): a webhook at `GENERIC_LOGGER_ENDPOINT`,
  sent the headers of `GENERIC_LOGGER_HEADERS` (`Name=value,Name2=value2`);
- `prometheus`: accepted and needs nothing: `GET /metrics` is always served
  (observability/metrics.py), which is what the name turns on in LiteLLM;
- the name of a `callback_settings` entry with `callback_type: generic_api`: a webhook
  with its own endpoint, headers, events and batching. An entry is on whether or not a
  list names it (LiteLLM's rule); a list that names it limits it to its events.

Any other name is a ConfigError that lists these: a callback that silently did nothing
would be a log the operator believes they have.

`WebhookCallback` is an observer (observers.py): `observe` queues the call's record (the
facts of its spend-log row, `identity.wire.spend_view`; the prompt only when
`general_settings.send_prompts_to_callbacks` is set; never an image or a secret) and
returns; a task of its own POSTs the queue as JSON, in batches, to the operator's URL.
A batch the endpoint fails (no answer, a timeout, 408, 429, 5xx) is sent again after a
backoff that doubles up to a minute (an entry's `max_backoff`); records queue meanwhile up
to `max_queued`, and past it are dropped, counted and logged. A batch it refuses (another
3xx or 4xx) is dropped and logged: sending it again cannot help. Logs name the callback,
never its URL or headers (either may hold a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

from prismgate.config import CallbackSettings, Config
from prismgate.errors import ConfigError
from prismgate.observers import CallReport

if TYPE_CHECKING:
    import aiohttp

    from prismgate.storage.records import SpendRow

__all__ = [
    "OTEL",
    "WEBHOOK",
    "WebhookCallback",
    "check_callbacks",
    "wants_tracing",
    "webhooks_from_config",
]

log = logging.getLogger("prismgate.callbacks")

OTEL = "otel"
WEBHOOK = "generic_api"
# LiteLLM's switch for its /metrics; prismgate always serves them.
PROMETHEUS = "prometheus"
# LiteLLM's names for its webhook callback, today's and its older one.
_WEBHOOK_NAMES = (WEBHOOK, "generic")
ENDPOINT_VARIABLE = "GENERIC_LOGGER_ENDPOINT"
HEADERS_VARIABLE = "GENERIC_LOGGER_HEADERS"
_LISTS = ("callbacks", "success_callback", "failure_callback")
SUCCESS, FAILURE = "llm_api_success", "llm_api_failure"  # LiteLLM's event names
# A failing endpoint is tried again after the flush interval, doubled each time, up to this.
MAX_BACKOFF = 60.0
# Statuses after which the same batch may be accepted later.
_TRY_AGAIN = frozenset({408, 425, 429})


def check_callbacks(config: Config, environ: Mapping[str, str]) -> None:
    """A ConfigError for a callback name prismgate does not have, or a webhook that is
    set up wrong; `environ` is the config's environment snapshot."""
    for name, entry in config.callback_settings.items():
        _check_entry(name, entry)
    settings = config.litellm_settings
    for kind in _LISTS:
        for index, name in enumerate(getattr(settings, kind)):
            where = f"litellm_settings.{kind}[{index}]"
            if name == PROMETHEUS:
                continue
            if name == OTEL:
                from prismgate.observability.tracing import check_tracing

                check_tracing(environ)
            elif name in _WEBHOOK_NAMES:
                if not environ.get(ENDPOINT_VARIABLE):
                    raise ConfigError(
                        f"{where}: {name} sends call records to the URL in "
                        f"{ENDPOINT_VARIABLE}, which is not set; set it, or describe the "
                        "webhook in a callback_settings entry (callback_type: generic_api, "
                        "endpoint: ...)"
                    )
                _check_url(environ[ENDPOINT_VARIABLE], ENDPOINT_VARIABLE)
                _parse_headers(environ.get(HEADERS_VARIABLE, ""))
            elif name not in config.callback_settings:
                raise ConfigError(
                    f"{where}: {name!r} is not a callback prismgate has; {_known(config)}"
                )


def _known(config: Config) -> str:
    entries = "".join(f", {name} (callback_settings)" for name in config.callback_settings)
    return (
        f"it has {OTEL} (OpenTelemetry traces), {WEBHOOK} (call records POSTed as JSON to "
        f"{ENDPOINT_VARIABLE}; LiteLLM's older name: generic), {PROMETHEUS} (GET /metrics, "
        f"always served){entries}"
    )


def _check_entry(name: str, entry: CallbackSettings) -> None:
    where = f"callback_settings.{name}"
    if entry.callback_type != WEBHOOK:
        raise ConfigError(
            f"{where}.callback_type: prismgate's callback_settings entries are webhooks, "
            f"callback_type: {WEBHOOK} (got {entry.callback_type!r}); LiteLLM's settings "
            "of its other callbacks have no meaning here"
        )
    if name in (OTEL, PROMETHEUS, *_WEBHOOK_NAMES):
        raise ConfigError(f"{where}: {name!r} names a built-in callback; name the entry otherwise")
    if not entry.endpoint:
        raise ConfigError(f"{where}.endpoint: the webhook's URL is required")
    _check_url(entry.endpoint, f"{where}.endpoint")


def _check_url(url: str, where: str) -> None:
    # The message never shows the URL: a webhook's URL often carries its token.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: not an http(s) URL")
    if "@" in parts.netloc:
        raise ConfigError(
            f"{where}: the URL must not carry credentials (user:password@); send them as headers"
        )


def wants_tracing(config: Config) -> bool:
    """Whether one of the config's callback lists names "otel"."""
    settings = config.litellm_settings
    return any(OTEL in getattr(settings, kind) for kind in _LISTS)


def webhooks_from_config(config: Config) -> list[WebhookCallback]:
    """The config's webhook callbacks (their tasks start with the first call)."""
    settings = config.litellm_settings
    keep_prompts = config.general_settings.send_prompts_to_callbacks
    found: list[WebhookCallback] = []
    for name in dict.fromkeys(n for kind in _LISTS for n in getattr(settings, kind)):
        if name not in _WEBHOOK_NAMES:
            continue
        found.append(
            WebhookCallback(
                name,
                config.environ[ENDPOINT_VARIABLE],
                headers=_parse_headers(config.environ.get(HEADERS_VARIABLE, "")),
                events=_listed_events(config, name),
                keep_prompts=keep_prompts,
            )
        )
    for name, entry in config.callback_settings.items():
        assert entry.endpoint is not None  # checked at load
        events = _listed_events(config, name)
        if entry.event_types is not None:
            events &= frozenset(entry.event_types)
        found.append(
            WebhookCallback(
                name,
                entry.endpoint,
                headers=entry.headers,
                events=events,
                log_format=entry.log_format,
                batch_size=entry.batch_size,
                flush_interval=entry.flush_interval,
                max_queued=entry.max_queued,
                max_backoff=entry.max_backoff,
                keep_prompts=keep_prompts,
            )
        )
    return found


def _listed_events(config: Config, name: str) -> frozenset[str]:
    """The events the callback lists give `name`; every event when none names it."""
    settings = config.litellm_settings
    events: set[str] = set()
    if name in settings.callbacks:
        events |= {SUCCESS, FAILURE}
    if name in settings.success_callback:
        events.add(SUCCESS)
    if name in settings.failure_callback:
        events.add(FAILURE)
    return frozenset(events) if events else frozenset({SUCCESS, FAILURE})


def _parse_headers(raw: str) -> dict[str, str]:
    """LiteLLM's GENERIC_LOGGER_HEADERS: `Name=value,Name2=value2` (a ConfigError that
    never shows the text: it holds tokens)."""
    headers = {}
    for item in raw.split(","):
        name, equals, value = item.partition("=")
        if equals and name.strip():
            headers[name.strip()] = value.strip()
        elif item.strip():
            raise ConfigError(
                f"{HEADERS_VARIABLE}: each header is written Name=value, separated by commas"
            )
    return headers


class _Sent(enum.Enum):
    OK = "ok"
    LATER = "later"  # no answer, or one that says to try again
    REFUSED = "refused"  # an answer that says this batch will never be taken


class WebhookCallback:
    """An observer that POSTs call records to `endpoint` in batches, off the request
    path (see the module docstring)."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        events: frozenset[str] = frozenset({SUCCESS, FAILURE}),
        log_format: str = "json_array",
        batch_size: int = 100,
        flush_interval: float = 5.0,
        max_queued: int = 10_000,
        keep_prompts: bool = False,
        timeout: float = 10.0,
        max_backoff: float = MAX_BACKOFF,
        close_timeout: float = 5.0,
    ) -> None:
        # Imported with the first webhook: a gateway without one never loads them.
        from prismgate.identity.wire import spend_view
        from prismgate.spend import spend_row

        self.name = name
        self._endpoint = endpoint
        ndjson = log_format == "ndjson"
        self._headers = {
            "Content-Type": "application/x-ndjson" if ndjson else "application/json",
            **(headers or {}),
        }
        self._ndjson = ndjson
        self._successes = SUCCESS in events
        self._failures = FAILURE in events
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_queued = max_queued
        self._keep_prompts = keep_prompts
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._close_timeout = close_timeout
        self._row = spend_row
        self._view = spend_view
        self._queue: deque[SpendRow] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.dropped = 0
        self._dropped_in_outage = 0
        self._outage = False

    @property
    def queued(self) -> int:
        """Records waiting to be sent."""
        return len(self._queue)

    def observe(self, report: CallReport) -> None:
        """Queue the call's record (never blocks); a full queue drops it, counted."""
        if not (self._successes if report.failure is None else self._failures):
            return
        if len(self._queue) >= self._max_queued:
            self._drop(1, "the queue is full")
            return
        self._queue.append(self._row(report, keep_prompt=self._keep_prompts))
        if self._sender is None or self._sender.done():
            if self._stopping.is_set():
                return  # closing: aclose() sends what is queued
            self._sender = asyncio.get_running_loop().create_task(self._send_periodically())
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    async def aclose(self) -> None:
        """Stop the sender and send what is queued (within `close_timeout`); what cannot
        be sent is counted as dropped, and logged."""
        self._stopping.set()
        self._wake.set()
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(TimeoutError):
                # A batch under way is let finish; a backoff wait is cut short.
                await asyncio.wait_for(asyncio.shield(sender), self._close_timeout)
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        try:
            if self._queue:
                await asyncio.wait_for(self._send_queue(), self._close_timeout)
        except TimeoutError:
            pass
        finally:
            if self._queue:
                self._drop(len(self._queue), "the gateway stopped before the endpoint took them")
                self._queue.clear()
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def _send_periodically(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            await self._pause(failures)
            if self._stopping.is_set():
                return  # aclose() sends what is left
            if self._queue:
                failures = 0 if await self._send_queue() else failures + 1

    async def _pause(self, failures: int) -> None:
        """The flush interval, cut short by a full batch; while the endpoint fails, the
        backoff, cut short only by aclose()."""
        if failures:
            delay = min(self._interval * 2 ** (failures - 1), self._max_backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._interval)
        self._wake.clear()

    async def _send_queue(self) -> bool:
        """Send the queue in batches, oldest first; False when the endpoint failed (the
        batch stays queued)."""
        while self._queue:
            batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
            sent = await self._post(batch)
            if sent is _Sent.LATER:
                return False
            for _ in batch:
                self._queue.popleft()
            if sent is _Sent.OK:
                self.sent += len(batch)
        if self._outage:
            self._outage = False
            log.warning(
                "callback %s: the endpoint takes records again; %d were dropped meanwhile",
                self.name,
                self._dropped_in_outage,
            )
            self._dropped_in_outage = 0
        return True

    async def _post(self, batch: Sequence[SpendRow]) -> _Sent:
        import aiohttp

        views = [self._view(row) for row in batch]
        if self._ndjson:
            body = b"".join(msgspec.json.encode(view) + b"\n" for view in views)
        else:
            body = msgspec.json.encode(views)
        if self._session is None or self._session.closed:
            # Its own pool: a slow endpoint never holds connections the providers need.
            self._session = aiohttp.ClientSession(
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        try:
            async with self._session.post(
                self._endpoint, data=body, headers=self._headers, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._note_outage(type(exc).__name__)
            return _Sent.LATER
        if status < 300:
            return _Sent.OK
        if status >= 500 or status in _TRY_AGAIN:
            self._note_outage(f"status {status}")
            return _Sent.LATER
        self._drop(len(batch), f"the endpoint refused them with status {status}")
        return _Sent.REFUSED

    def _note_outage(self, why: str) -> None:
        if not self._outage:
            self._outage = True
            log.warning(
                "callback %s: the endpoint did not take a batch (%s); records wait (up to "
                "%d) and are sent again, every %g s at first, then less often",
                self.name,
                why,
                self._max_queued,
                self._interval,
            )
        else:
            log.debug("callback %s: the endpoint failed again (%s)", self.name, why)

    def _drop(self, count: int, why: str) -> None:
        before = self.dropped
        self.dropped += count
        self._dropped_in_outage += count
        # Logged on the first drop and on each power of ten after it: never silent,
        # never a line per call.
        if before == 0 or len(str(self.dropped)) > len(str(before)) or count > 1:
            log.error(
                "callback %s: %d records dropped (%s); %d dropped in all",
                self.name,
                count,
                why,
                self.dropped,
            )
