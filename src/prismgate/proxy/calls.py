"""From an HTTP request to CallOptions: Portkey headers, direct-provider mode, and the
rule that a proxy client can never reconfigure a deployment."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request

from prismgate.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from prismgate.gateway import CallOptions
from prismgate.media import HostAllowlist
from prismgate.providers import canonical_provider, provider_names
from prismgate.proxy.auth import presented_key
from prismgate.proxy.body import decode_json_object, read_body
from prismgate.proxy.forms import read_image_form
from prismgate.proxy.portkey import read_portkey_headers
from prismgate.routing.deployments import PROVIDER_SETTINGS, CallerOverrides
from prismgate.types import ImageEditRequest, ImageVariationRequest
from prismgate.types.validation import convert_request

if TYPE_CHECKING:
    from prismgate.proxy.state import ProxyState

__all__ = ["call_options", "decoded_call", "image_form_call"]

T = TypeVar("T", bound=msgspec.Struct)
F = TypeVar("F", ImageEditRequest, ImageVariationRequest)

# Portkey features that arrive with the routing work; refused clearly until then.
_NOT_YET = ("x-portkey-config", "x-portkey-virtual-key")


def call_options(
    request: Request,
    extra: dict[str, Any],
    *,
    allow_provider_keys: bool,
    allowed_hosts: HostAllowlist,
) -> CallOptions:
    """The options for one proxied call. Unknown body fields are provider parameters."""
    for header in _NOT_YET:
        if request.headers.get(header):
            raise BadRequestError(
                f"{header} is not supported by this gateway yet; name a model from /v1/models",
                param=header,
            )
    for name in extra:
        if name in PROVIDER_SETTINGS:
            raise BadRequestError(
                f"{name!r} configures a deployment and cannot be set per request; "
                "set it in the gateway's config",
                param=name,
            )
    portkey = read_portkey_headers(request.headers)
    scope = _caller_scope(dict(request.headers))
    image_base_url = str(request.base_url).rstrip("/")
    options = CallOptions(
        extra=extra,
        relay=True,
        scope=scope,
        image_base_url=image_base_url,
        trace_id=portkey.trace_id,
        metadata=portkey.metadata,
    )
    if portkey.provider is None:
        if portkey.custom_host is not None:
            raise BadRequestError(
                "x-portkey-custom-host works only with x-portkey-provider (direct provider mode)",
                param="x-portkey-custom-host",
            )
        return options
    if not allow_provider_keys:
        raise PermissionDeniedError(
            "direct provider mode (x-portkey-provider) is turned off on this gateway; use a "
            "model from /v1/models, or set general_settings.allow_client_provider_keys: true",
            param="x-portkey-provider",
        )
    provider = canonical_provider(portkey.provider)
    if provider is None:
        raise BadRequestError(
            f"unknown provider {portkey.provider!r}; known: {', '.join(provider_names())}",
            param="x-portkey-provider",
        )
    if portkey.provider_key is None:
        raise AuthenticationError(
            "direct provider mode needs your provider key as 'Authorization: Bearer <key>'"
        )
    overrides = CallerOverrides(
        api_key=portkey.provider_key,
        api_base=_checked_custom_host(portkey.custom_host, allowed_hosts),
        custom_llm_provider=provider,
    )
    return CallOptions(
        overrides=overrides,
        extra=extra,
        relay=True,
        direct=True,
        scope=scope,
        image_base_url=image_base_url,
        trace_id=portkey.trace_id,
        metadata=portkey.metadata,
    )


async def decoded_call(request: Request, kind: type[T], state: ProxyState) -> tuple[T, CallOptions]:
    """The body decoded once into `kind` (the Azure-style path naming the model), with
    unknown fields kept as provider parameters, and the call's options."""
    data = decode_json_object(await read_body(request, state.max_body_bytes))
    return _typed_call(request, data, kind, state)


async def image_form_call(
    request: Request, kind: type[F], state: ProxyState
) -> tuple[F, CallOptions]:
    """An edit or variation request (multipart or JSON) and the call's options. Linked
    images are fetched by the safe fetcher, in the caller's own cache scope."""
    scope = _caller_scope(dict(request.headers))

    async def fetch(url: str) -> bytes:
        return (await state.gateway.fetcher.fetch(url, scope=scope)).data

    form = await read_image_form(request, state.max_body_bytes, fetch)
    data = dict(form.fields)
    if kind is ImageEditRequest:
        data["image"] = form.images
        if form.mask is not None:
            data["mask"] = form.mask
    else:
        if len(form.images) > 1 or form.mask is not None:
            raise BadRequestError("a variation takes exactly one image and no mask", param="image")
        if form.images:
            data["image"] = form.images[0]
    return _typed_call(request, data, kind, state, strict=not form.textual)


def _typed_call(
    request: Request, data: dict[str, Any], kind: type[T], state: ProxyState, *, strict: bool = True
) -> tuple[T, CallOptions]:
    if (deployment := request.path_params.get("deployment")) is not None:
        data["model"] = deployment
    known = kind.__struct_fields__
    extra = {name: data.pop(name) for name in list(data) if name not in known}
    typed = convert_request(data, kind, strict=strict)
    options = call_options(
        request,
        extra,
        allow_provider_keys=state.allow_client_provider_keys,
        allowed_hosts=state.allowed_hosts,
    )
    return typed, options


def _caller_scope(headers: dict[str, str]) -> str:
    """Who is calling, for per-caller caches: a digest of their key (never the key)."""
    key = presented_key(headers) or ""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _checked_custom_host(url: str | None, allowed_hosts: HostAllowlist) -> str | None:
    """A caller-chosen provider address, only if the operator allowed its host.

    Until the safe fetcher's address rules cover custom hosts, the allowlist is the rule:
    nothing the operator did not name can be reached through the gateway.
    """
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise BadRequestError(
            "x-portkey-custom-host must be an http(s) URL such as https://host/v1",
            param="x-portkey-custom-host",
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not allowed_hosts.permits(parts.hostname, port):
        raise PermissionDeniedError(
            "x-portkey-custom-host is not allowed: its host is not in "
            "general_settings.media.allowed_hosts",
            param="x-portkey-custom-host",
        )
    return url
