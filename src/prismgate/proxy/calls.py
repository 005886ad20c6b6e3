"""From an HTTP request to CallOptions: Portkey headers, direct-provider mode, and the
rule that a proxy client can never reconfigure a deployment."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.types import Scope

from prismgate.custom_hosts import check_custom_host
from prismgate.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from prismgate.gateway import CallOptions
from prismgate.providers import canonical_provider, provider_names
from prismgate.proxy.auth import headers_of, principal_of
from prismgate.proxy.body import decode_json_object, read_body
from prismgate.proxy.forms import read_image_form
from prismgate.proxy.portkey import read_portkey_headers
from prismgate.routing.deployments import CallerOverrides
from prismgate.routing.plans import Plan, leaves, virtual_key_leaf
from prismgate.routing.portkey_config import PROVIDER_OPTIONS, parse_portkey_config
from prismgate.types import ImageEditRequest, ImageVariationRequest
from prismgate.types.validation import convert_request

if TYPE_CHECKING:
    from prismgate.proxy.state import ProxyState

__all__ = ["call_options", "decoded_call", "image_form_call"]

T = TypeVar("T", bound=msgspec.Struct)
F = TypeVar("F", ImageEditRequest, ImageVariationRequest)


def call_options(request: Request, extra: dict[str, Any], state: ProxyState) -> CallOptions:
    """The options for one proxied call. Unknown body fields are provider parameters,
    never a provider setting (the caller-authority rule)."""
    state.gateway.authority.check(extra, where="the request body")
    headers = headers_of(request.scope)
    portkey = read_portkey_headers(headers)
    options = CallOptions(
        extra=extra,
        relay=True,
        principal=principal_of(request.scope),
        request_id=request.scope["state"].get("request_id"),
        image_base_url=_base_url(request.scope),
        trace_id=portkey.trace_id,
        metadata=portkey.metadata,
        timeout=portkey.request_timeout,
        cache_refresh=portkey.cache_refresh,
        idempotency_key=headers.get("idempotency-key") or None,
        remote=True,
        traceparent=headers.get("traceparent"),
    )
    provider_options = _provider_option_headers(headers)
    if portkey.provider is None or portkey.config is not None:
        for header in [*provider_options, "x-portkey-custom-host"]:
            if header in headers:
                raise BadRequestError(
                    f"{header} works only with x-portkey-provider (direct provider mode, with "
                    "your own provider key); model groups, virtual keys and configs are set "
                    "by the gateway's operator or in the config",
                    param=header,
                )
    if portkey.config is not None:
        return dataclasses.replace(options, plan=_config_plan(portkey.config, state))
    if portkey.virtual_key is not None:
        # An unknown name is a 400 when the plan runs (stored keys are read there, async).
        return dataclasses.replace(options, plan=Plan(virtual_key_leaf(portkey.virtual_key)))
    if portkey.provider is None:
        return options
    if not state.allow_client_provider_keys:
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
    host = None
    if portkey.custom_host is not None:
        host = check_custom_host(
            portkey.custom_host, state.allowed_hosts, param="x-portkey-custom-host"
        ).url
    settings = {PROVIDER_OPTIONS[option]: value for option, value in provider_options.values()}
    overrides = CallerOverrides(
        api_key=portkey.provider_key,
        api_base=host,
        api_version=settings.pop("api_version", None),
        custom_llm_provider=provider,
        settings=settings,
    )
    # Every address a direct-mode call dials passes the address rules: the caller's host,
    # and a provider's default too (some are loopback: a local inference server).
    return dataclasses.replace(options, overrides=overrides, direct=True, guarded=True)


# Portkey's provider option headers, as the portkey-ai client writes each option
# (`x-portkey-` and its name with dashes): header → option.
_OPTION_HEADERS = {"x-portkey-" + option.replace("_", "-"): option for option in PROVIDER_OPTIONS}


def _provider_option_headers(headers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The provider option headers the request carries: header → (option, value)."""
    return {
        header: (option, value)
        for header, option in _OPTION_HEADERS.items()
        if (value := headers.get(header))
    }


def _config_plan(raw: str, state: ProxyState) -> Plan:
    """x-portkey-config: a saved config's id (the operator's), or the caller's own JSON,
    whose provider keys and custom hosts are allowed only where the gateway says so."""
    if raw.lstrip()[:1] not in ("{", "["):
        return Plan(parse_portkey_config(raw, saved=state.saved_configs), trusted=True)
    node = state.inline_configs.parse(raw)
    for leaf in leaves(node):
        if leaf.custom_host is None:
            continue
        if not state.allow_client_provider_keys:
            raise PermissionDeniedError(
                f"x-portkey-config: {leaf.path}.custom_host is not allowed on this gateway; "
                "use a virtual key or a model group, or set "
                "general_settings.allow_client_provider_keys: true",
                param="x-portkey-config",
            )
        check_custom_host(leaf.custom_host, state.allowed_hosts, param="x-portkey-config")
    return Plan(node, allow_provider_keys=state.allow_client_provider_keys)


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
    scope = principal_of(request.scope).scope

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
    return typed, call_options(request, extra, state)


def _base_url(scope: Scope) -> str:
    """Where this connection reached the gateway: the address it is listening on, never
    the request's Host header, which the caller writes (an operator behind a proxy or a
    DNS name sets general_settings.image_store.public_base_url, which wins)."""
    server = scope.get("server")
    if not server:
        return "http://localhost"
    host, port = server[0], server[1]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scope.get('scheme', 'http')}://{host}:{port}{scope.get('root_path', '')}".rstrip("/")
