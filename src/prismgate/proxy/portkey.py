"""Portkey's request headers: trace id, metadata, direct-provider mode, configs, virtual
keys, request timeouts and cache refreshes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from prismgate.errors import BadRequestError
from prismgate.types.validation import check_json_depth

__all__ = ["PortkeyHeaders", "read_portkey_headers"]

# What the portkey-ai client sends when the caller gave no provider key.
PLACEHOLDER_KEYS = frozenset({"OPENAI_API_KEY", ""})
MAX_TRACE_ID = 256
# Milliseconds: nine digits is over eleven days, more than any deadline needs.
MAX_TIMEOUT_DIGITS = 9


@dataclass(frozen=True, slots=True)
class PortkeyHeaders:
    """The x-portkey-* headers prismgate honours."""

    trace_id: str | None = None
    metadata: dict[str, str] | None = None
    provider: str | None = None
    provider_key: str | None = None
    custom_host: str | None = None
    config: str | None = None
    virtual_key: str | None = None
    # Seconds (the header says milliseconds).
    request_timeout: float | None = None
    cache_refresh: bool = False


def read_portkey_headers(headers: Mapping[str, str]) -> PortkeyHeaders:
    """Parse the x-portkey-* headers (names lower-case, as ASGI gives them); a 400
    naming the header when one is malformed."""
    trace_id = headers.get("x-portkey-trace-id") or None
    if trace_id is not None and (len(trace_id) > MAX_TRACE_ID or not trace_id.isprintable()):
        raise BadRequestError(
            f"x-portkey-trace-id must be printable and at most {MAX_TRACE_ID} characters",
            param="x-portkey-trace-id",
        )
    provider = headers.get("x-portkey-provider") or None
    provider_key = None
    if provider is not None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        provider_key = None if token in PLACEHOLDER_KEYS else token
    return PortkeyHeaders(
        trace_id=trace_id,
        metadata=_metadata(headers.get("x-portkey-metadata")),
        provider=provider,
        provider_key=provider_key,
        custom_host=headers.get("x-portkey-custom-host") or None,
        config=headers.get("x-portkey-config") or None,
        virtual_key=headers.get("x-portkey-virtual-key") or None,
        request_timeout=_timeout(headers.get("x-portkey-request-timeout")),
        cache_refresh=headers.get("x-portkey-cache-force-refresh", "").lower() == "true"
        or "no-cache" in headers.get("cache-control", "").lower(),
    )


def _timeout(raw: str | None) -> float | None:
    """x-portkey-request-timeout: whole milliseconds, as seconds."""
    if not raw:
        return None
    # ASCII digits only (str.isdigit also takes "²"), and a bounded length: the
    # operator's cap decides the rest.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_TIMEOUT_DIGITS) or int(raw) == 0:
        raise BadRequestError(
            "x-portkey-request-timeout must be a whole number of milliseconds above 0, "
            f"at most {MAX_TIMEOUT_DIGITS} digits, for example 30000",
            param="x-portkey-request-timeout",
        )
    return int(raw) / 1000


def _metadata(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    check_json_depth(raw, what="x-portkey-metadata", param="x-portkey-metadata")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequestError(
            'x-portkey-metadata must be a JSON object, for example {"_user": "alice"}',
            param="x-portkey-metadata",
        ) from None
    if not isinstance(data, dict):
        raise BadRequestError(
            "x-portkey-metadata must be a JSON object", param="x-portkey-metadata"
        )
    return {
        str(k): v if isinstance(v, str) else msgspec.json.encode(v).decode()
        for k, v in data.items()
    }
