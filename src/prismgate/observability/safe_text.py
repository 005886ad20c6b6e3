"""Text a caller chose, made fit for a log line or a metric label.

A caller may put anything in a model name, a path or a trace id header, a pasted API key
included. `SafeText` passes the names the operator configured as they are, and removes
secrets from anything else (the gateway's `Redactor`) and cuts it short. Redacting costs
microseconds per short string, so results are remembered, up to a bound: unique values
(trace ids, file names in paths) are redacted each time and not remembered.

`LabelGuard` keeps a metric label to a bounded set of values: Prometheus keeps one series
per value, so a caller inventing model names must not be able to grow the scrape without
end. Past its bound a label reads `other`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prismgate.observability.redaction import Redactor

__all__ = ["OTHER", "LabelGuard", "SafeText"]

# The label of values past a LabelGuard's bound.
OTHER = "other"
# Characters kept of a caller's text; it is redacted with some more around it, so that a
# secret the first cut would split is still seen whole.
MAX_CHARS = 200
_REDACTED_SPAN = 4 * MAX_CHARS


class SafeText:
    """Caller-given text without secrets, at most `MAX_CHARS` long. Configured names
    (`known`) pass unchanged; up to `remember` other results are kept for next time."""

    __slots__ = ("_known", "_redact", "_remember", "_remembered")

    def __init__(self, redact: Redactor, known: Iterable[str] = (), *, remember: int = 1024):
        self._redact = redact
        self._known = frozenset(known)
        self._remember = remember
        self._remembered: dict[str, str] = {}

    def learn(self, names: Iterable[str]) -> None:
        """Let `names` pass unchanged too (a reloaded config's model groups)."""
        self._known = self._known | frozenset(names)

    def is_known(self, text: str) -> bool:
        """Whether `text` is one of the configured names."""
        return text in self._known

    def __call__(self, text: str, *, remember: bool = True) -> str:
        if text in self._known:
            return text
        safe = self._remembered.get(text)
        if safe is None:
            safe = self._redact(text[:_REDACTED_SPAN])[:MAX_CHARS]
            if remember and len(self._remembered) < self._remember:
                self._remembered[text] = safe
        return safe


class LabelGuard:
    """Values of one metric label: `known` ones as they are, up to `limit` others made
    safe by `safe`, then `other`."""

    __slots__ = ("_limit", "_safe", "labels")

    def __init__(self, safe: SafeText, known: Iterable[str] = (), *, limit: int = 100) -> None:
        self._safe = safe
        # The label of each value seen (read it directly on a hot path; call the guard
        # for a value it does not hold).
        self.labels = {name: name for name in known}
        self._limit = len(self.labels) + limit

    def learn(self, known: Iterable[str]) -> None:
        """Take `known` values as they are too, beyond the limit of others."""
        for name in known:
            if self.labels.get(name) != name:
                self.labels[name] = name
                self._limit += 1

    def __call__(self, value: str) -> str:
        label = self.labels.get(value)
        if label is None:
            if len(self.labels) >= self._limit:
                return OTHER
            label = self.labels[value] = self._safe(value, remember=False)
        return label
