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

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

from prismgate.config import CallbackSettings, Config
from prismgate.errors import ConfigError
from prismgate.observability.batches import MAX_BACKOFF, BatchPoster
from prismgate.observers import CallReport

if TYPE_CHECKING:
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


class WebhookCallback:
    """An observer that POSTs call records to `endpoint` in batches, off the request
    path (see the module docstring; the batches are batches.py's)."""

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
        ndjson = log_format == "ndjson"
        self._ndjson = ndjson
        self._successes = SUCCESS in events
        self._failures = FAILURE in events
        self._keep_prompts = keep_prompts
        self._row = spend_row
        self._view = spend_view
        self._batches: BatchPoster[SpendRow] = BatchPoster(
            f"callback {name}",
            endpoint,
            self._encode,
            headers={
                "Content-Type": "application/x-ndjson" if ndjson else "application/json",
                **(headers or {}),
            },
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queued=max_queued,
            timeout=timeout,
            max_backoff=max_backoff,
            close_timeout=close_timeout,
            logger=log,
        )

    @property
    def queued(self) -> int:
        """Records waiting to be sent."""
        return self._batches.queued

    @property
    def sent(self) -> int:
        """Records the endpoint took."""
        return self._batches.sent

    @property
    def dropped(self) -> int:
        """Records dropped: past the queue, refused, or left at close."""
        return self._batches.dropped

    def observe(self, report: CallReport) -> None:
        """Queue the call's record (never blocks); a full queue drops it, counted."""
        if not (self._successes if report.failure is None else self._failures):
            return
        self._batches.add(self._row(report, keep_prompt=self._keep_prompts))

    async def aclose(self) -> None:
        """Send what is queued (within `close_timeout`), then stop."""
        await self._batches.aclose()

    def _encode(self, batch: Sequence[SpendRow]) -> bytes:
        views = [self._view(row) for row in batch]
        if self._ndjson:
            return b"".join(msgspec.json.encode(view) + b"\n" for view in views)
        return msgspec.json.encode(views)
