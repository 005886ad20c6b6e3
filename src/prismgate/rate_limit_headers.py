"""OpenAI's rate-limit headers, `x-ratelimit-{limit,remaining,reset}-<unit>`, and the
wait format their reset values and prismgate's limit messages share."""

from __future__ import annotations

from collections.abc import Sequence

from prismgate.types.meta import RateLimitStatus

__all__ = ["rate_limit_headers", "raw_rate_limit_headers", "wait_text"]


def rate_limit_headers(statuses: Sequence[RateLimitStatus]) -> dict[str, str]:
    """OpenAI's rate-limit headers, `x-ratelimit-{limit,remaining,reset}-<unit>` for each
    limited unit (requests, tokens, and prismgate's images)."""
    return {name.decode(): value.decode() for name, value in raw_rate_limit_headers(statuses)}


def raw_rate_limit_headers(statuses: Sequence[RateLimitStatus]) -> list[tuple[bytes, bytes]]:
    """`rate_limit_headers`, encoded as an ASGI answer carries them (every limited call's
    answer does: the names are encoded once)."""
    headers: list[tuple[bytes, bytes]] = []
    for status in statuses:
        # Most resets are under a second away: written here without `wait_text`.
        ms = -(-round(status.reset * 1_000_000) // 1000)
        reset = b"%dms" % ms if 0 < ms < 1000 else wait_text(status.reset).encode()
        limit, remaining, reset_at = _NAMES.get(status.unit) or _names(status.unit)
        headers += (
            (limit, b"%d" % status.limit),
            (remaining, b"%d" % status.remaining),
            (reset_at, reset),
        )
    return headers


def _names(unit: str) -> tuple[bytes, bytes, bytes]:
    return (
        f"x-ratelimit-limit-{unit}".encode(),
        f"x-ratelimit-remaining-{unit}".encode(),
        f"x-ratelimit-reset-{unit}".encode(),
    )


# Every limited call answers with these: their names are made once.
_NAMES = {unit: _names(unit) for unit in ("requests", "tokens", "images")}


def wait_text(seconds: float) -> str:
    """A wait as OpenAI's reset headers and messages write it (Go's duration format, to
    the millisecond, rounded up): `0s`, `120ms`, `1.5s`, `6m0s`, `1h2m3.25s`."""
    ms = -(-round(seconds * 1_000_000) // 1000)  # µs first: 0.3 s is 300 ms
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
