"""The access log: one line per answered request, as text or as JSON.

A line says what a request was and how it went: time, method, path, status, total and
upstream latency, model group, deployment, images, cost, cache status, retries and
fallbacks, error code, request id, trace id, key alias (and, in JSON, the worker's
process id). Never a key (or its hash), a prompt, or image bytes; text the caller chose
(an unknown model name, a path, a trace id) is passed through `SafeText` first, and
quoted in text lines when it has spaces or quotes, so that one request is always exactly
one line.

Lines are logged at INFO on the `prismgate.access` logger, so its level turns them off
(`prismgate serve --log-level warning`). Logging a record costs about 10 µs, a large
share of a small request's cost, so when that logger has an `AccessLogHandler` (what
`prismgate serve` installs) the lines skip the logging machinery: they are kept in a
buffer and written to the handler's stream in batches, at most `FLUSH_DELAY` seconds
after they were made, at once when `FLUSH_LINES` wait, and at shutdown (`aclose`).
Otherwise (an app embedded elsewhere) each line is an ordinary log record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TextIO

import msgspec

from prismgate.observability.log_config import ACCESS_LOGGER
from prismgate.observability.request_record import RequestRecord
from prismgate.observability.safe_text import SafeText

__all__ = ["AccessLine", "AccessLog", "AccessLogHandler"]

FLUSH_DELAY = 0.1  # seconds a line may wait in the buffer
FLUSH_LINES = 512
_NAMED_KEPT = 1024

log = logging.getLogger("prismgate.proxy")


class AccessLogHandler(logging.StreamHandler[TextIO]):
    """The access log's handler (for `logging.config.dictConfig`): each line written to
    `stream` as it is. The access log writes to its stream in batches itself; `json`
    says which form its lines take."""

    def __init__(self, stream: TextIO | None = None, json: bool = False) -> None:
        super().__init__(stream)
        self.json = json


class AccessLine(msgspec.Struct):
    """An access-log line in JSON form (every field present, null when it does not apply).
    Made positionally, in this order (keywords cost more, once per request)."""

    ts: str
    method: str
    path: str
    route: str | None
    status: int
    latency_ms: float
    upstream_ms: float | None
    model_group: str | None
    provider: str | None
    deployment: str | None
    images: int
    cost: float | None
    cache: str | None
    retries: int
    fallbacks: int
    error: str | None
    request_id: str
    trace_id: str
    key_alias: str | None
    worker: int  # the process id: which of `serve --workers N` answered


# ".000Z" to ".999Z": a line's milliseconds, looked up rather than formatted.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class AccessLog:
    """Writes the access line of each request `add`ed (see the module docstring)."""

    def __init__(self, safe: SafeText, logger: logging.Logger | None = None) -> None:
        self._safe = safe
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)
        handler = next((h for h in self._logger.handlers if isinstance(h, AccessLogHandler)), None)
        self._stream: TextIO | None = handler.stream if handler is not None else None
        self._json = handler.json if handler is not None else False
        self._encode = msgspec.json.Encoder().encode
        # The time of lines up to the second, made once a second (ISO 8601, UTC).
        self._second = -1
        self._prefix = ""
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False
        self._worker = os.getpid()
        # Words of text lines made once: a call's model group and deployment, key aliases.
        self._named: dict[tuple[str, str | None] | str, str] = {}
        self._safe_pairs: dict[tuple[str, str | None], tuple[str, str | None]] = {}

    def add(self, record: RequestRecord) -> None:
        """Log `record`'s line (never blocks on the stream: the write comes later)."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        now = record.ended_at
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = self._prefix + _MILLIS[int((now - second) * 1000)]
        line = self._json_line(record, stamp) if self._json else self._text_line(record, stamp)
        if self._stream is None:
            self._logger.info(line)
            return
        lines = self._lines
        lines.append(line)
        if len(lines) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Write the waiting lines now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines or self._stream is None:
            return
        lines, self._lines = self._lines, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError) as error:  # a closed or broken stream
            if not self._failed:
                self._failed = True
                log.error("access log: cannot write to its stream (%s); lines are lost", error)

    async def aclose(self) -> None:
        """Write what waits (at shutdown)."""
        self.flush()

    def _json_line(self, record: RequestRecord, stamp: str) -> str:
        path = record.path
        if path != record.route:  # a route without parameters is its own path
            path = self._safe(path, remember=False)
        group = record.model_group
        deployment = record.deployment
        if group is not None:
            # A call's model group and deployment, made safe once per pair.
            named = self._safe_pairs.get((group, deployment))
            if named is None:
                safe = None if deployment is None else self._safe(deployment)
                named = (self._safe(group), safe)
                if len(self._safe_pairs) < _NAMED_KEPT:
                    self._safe_pairs[group, deployment] = named
            group, deployment = named
        upstream = record.upstream
        trace_id = record.trace_id
        # Milliseconds to the microsecond (cut, not rounded: `round` costs more).
        line = AccessLine(
            stamp,
            record.method,
            path,
            record.route,
            record.status,
            int(record.seconds * 1_000_000) / 1000,
            None if upstream is None else int(upstream * 1_000_000) / 1000,
            group,
            record.provider,
            deployment,
            record.images,
            record.cost,
            record.cache,
            record.retries,
            record.fallbacks,
            record.error,
            record.request_id,
            record.request_id if trace_id is None else self._safe(trace_id, remember=False),
            record.key_alias,
            self._worker,
        )
        return self._encode(line).decode()

    def _text_line(self, record: RequestRecord, stamp: str) -> str:
        path = record.path
        if path != record.route:  # a route without parameters is its own path
            path = _quoted(self._safe(path, remember=False))
        line = f"{stamp} {record.method} {path} {record.status} {record.seconds * 1000:.2f}ms"
        if record.upstream is not None:
            line += f" upstream={record.upstream * 1000:.2f}ms"
        group = record.model_group
        if group is not None:
            # The words naming the group and deployment are made once per pair.
            named = (group, record.deployment)
            words = self._named.get(named)
            if words is None:
                words = f" model_group={_quoted(self._safe(group))}"
                if record.deployment is not None:
                    words += f" deployment={_quoted(self._safe(record.deployment))}"
                if len(self._named) < _NAMED_KEPT:
                    self._named[named] = words
            line += words
            if record.images:
                line += f" images={record.images}"
            if record.cost is not None:
                line += f" cost={record.cost:.6g}"
            if record.cache is not None:
                line += f" cache={record.cache}"
            if record.retries:
                line += f" retries={record.retries}"
            if record.fallbacks:
                line += f" fallbacks={record.fallbacks}"
            if record.error is not None:
                line += f" error={_quoted(record.error)}"
        line += f" request_id={record.request_id}"
        if record.trace_id is not None:
            line += f" trace_id={_quoted(self._safe(record.trace_id, remember=False))}"
        alias = record.key_alias
        if alias is not None:
            words = self._named.get(alias)
            if words is None:
                words = f" key_alias={_quoted(alias)}"
                if len(self._named) < _NAMED_KEPT:
                    self._named[alias] = words
            line += words
        return line


def _quoted(value: str) -> str:
    """`value` as it is when it is one plain word, else as a JSON string (quoted and
    escaped: a line break in it cannot start another line)."""
    plain = value.isascii() and value.isprintable() and " " not in value
    if plain and value and '"' not in value and "\\" not in value:
        return value
    return msgspec.json.encode(value).decode()
