"""Log records with secrets removed, tracebacks included."""

from __future__ import annotations

import logging

from prismgate.observability.redaction import Redactor

__all__ = ["RedactingFilter", "redact_logger"]

_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its traceback text) through a Redactor."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set, so the raw traceback never shows.
            record.exc_text = self._redact(_formatter.formatException(record.exc_info))
        return True


def redact_logger(logger: logging.Logger, redact: Redactor) -> None:
    """Make `logger` redact every record it emits (replacing an earlier such filter)."""
    for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
        logger.removeFilter(old)
    logger.addFilter(RedactingFilter(redact))
