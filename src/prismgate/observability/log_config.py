"""How `prismgate serve` logs: levels, text or JSON lines, and the access log's handler.

    --log-level LEVEL   prismgate's loggers, the access log included (INFO: one line per
                        request); uvicorn's own lines from WARNING unless LEVEL is debug
                        or trace (its INFO lines repeat what `serve` says when it starts)
    --debug             LiteLLM's flag: --log-level debug (prismgate's and uvicorn's lines)
    --detailed_debug    LiteLLM's flag: DEBUG for prismgate, uvicorn and the libraries
                        (aiohttp, asyncio, ...; not SQLAlchemy, whose statements carry
                        key hashes)
    --log-format json   every line one JSON object (LiteLLM: litellm_settings.json_logs)

The result is a `logging.config.dictConfig` mapping that uvicorn applies in each worker.
The access log goes to stdout, everything else to stderr. Each worker also puts the
gateway's redactor on the handlers (`redact_handlers`), so that a library's debug line
cannot carry a configured key out.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any

import msgspec

from prismgate.observability.logging import RedactingFilter
from prismgate.observability.redaction import Redactor

__all__ = [
    "ACCESS_LOGGER",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "LogLevel",
    "TextFormatter",
    "redact_handlers",
    "serve_logging",
]

# The access log's logger (observability/access_log.py); named here, where `serve`'s
# logging is set up, so that the command line need not import the access log.
ACCESS_LOGGER = "prismgate.access"


class LogLevel(enum.StrEnum):
    """`--log-level`: uvicorn's names (`trace` is below debug)."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


class LogFormat(enum.StrEnum):
    """`--log-format`."""

    TEXT = "text"
    JSON = "json"


LOG_LEVELS = tuple(level.value for level in LogLevel)
# uvicorn's level below DEBUG (its `trace`); Python's logging knows it once uvicorn ran.
_TRACE = 5
_QUIET_LIBRARIES = ("sqlalchemy",)


class TextFormatter(logging.Formatter):
    """`2025-01-31T12:00:00.123Z WARNING prismgate.proxy: message` (UTC)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
        self.converter = time.gmtime


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message (and the traceback, as the
    record's filters left it)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return msgspec.json.encode(line).decode()


def serve_logging(
    level: str, *, json: bool = False, debug: bool = False, detailed_debug: bool = False
) -> tuple[dict[str, Any], str]:
    """(uvicorn's `log_config`, uvicorn's `log_level`) for `prismgate serve`."""
    level = level.lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(LOG_LEVELS)}")
    if debug or detailed_debug:
        level = "trace" if level == "trace" else "debug"
    # uvicorn's INFO lines (started, waiting for startup) say what `serve` says itself.
    uvicorn_level = level
    if not detailed_debug and level not in ("debug", "trace", "critical", "error"):
        uvicorn_level = "warning"
    formatter = {"()": JsonFormatter} if json else {"()": TextFormatter}
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets `use_colors` on these two names when asked; both are ours.
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "()": "prismgate.observability.access_log.AccessLogHandler",
                "stream": "ext://sys.stdout",
                "json": json,
            },
        },
        "loggers": {
            "uvicorn": {
                "handlers": ["default"],
                "level": _number(uvicorn_level),
                "propagate": False,
            },
            "prismgate": {"handlers": ["default"], "level": _number(level), "propagate": False},
            ACCESS_LOGGER: {"handlers": ["access"], "level": _number(level), "propagate": False},
        },
    }
    if detailed_debug:
        config["root"] = {"handlers": ["default"], "level": "DEBUG"}
        for name in _QUIET_LIBRARIES:
            config["loggers"][name] = {"level": "WARNING"}
    else:
        config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config, uvicorn_level


def _number(level: str) -> int:
    return _TRACE if level == "trace" else logging.getLevelNamesMapping()[level.upper()]


def redact_handlers(redact: Redactor) -> None:
    """Put `redact` on every handler of the root and `prismgate` loggers (a serving
    process only: it changes the process's logging)."""
    for name in ("", "prismgate", "uvicorn"):
        for handler in logging.getLogger(name).handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(old)
            handler.addFilter(RedactingFilter(redact))
