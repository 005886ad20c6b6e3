"""Removing secrets from text before it reaches a log line, an error or a caller."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"

# Shapes of credentials that must never be echoed, whoever's they are.
_SECRET_SHAPES = re.compile(
    r"""
      (?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}          # OpenAI-style keys
    | (?<![A-Za-z0-9])xai-[A-Za-z0-9_\-]{8,}         # xAI keys
    | (?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}         # AWS access key ids
    | (?<![A-Za-z0-9])AIza[A-Za-z0-9_\-]{30,}        # Google API keys
    | (?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}          # bearer tokens
    | (?i:[?&](?:key|api[_-]?key|token|sig|signature)=)[^&\s"']+   # secrets in query strings
    """,
    re.VERBOSE,
)


class Redactor:
    """Replaces known secrets, and anything shaped like a credential, with `[REDACTED]`."""

    __slots__ = ("_known",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is removed whole.
        known = {s for s in secrets if s and len(s) >= 6}
        self._known = tuple(sorted(known, key=len, reverse=True))

    def learn(self, secrets: Iterable[str | None]) -> None:
        """Remove `secrets` too from now on (a reloaded config's keys); it forgets none, as
        calls and log lines of the config before may still carry them."""
        known = set(self._known) | {s for s in secrets if s and len(s) >= 6}
        self._known = tuple(sorted(known, key=len, reverse=True))

    def including(self, *secrets: str | None) -> Redactor:
        """A redactor that also removes `secrets` (a caller's own key, say)."""
        extra = [s for s in secrets if s]
        return Redactor((*self._known, *extra)) if extra else self

    def __call__(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRET_SHAPES.sub(_keep_prefix, text)


def _keep_prefix(match: re.Match[str]) -> str:
    # Keep "Bearer " or "?key=" so the message still says what was removed.
    found = match.group(0)
    if found[0] in "?&":
        return found[: found.index("=") + 1] + REDACTED
    if found[:6].lower() == "bearer":
        return found[:7] + REDACTED
    return REDACTED
