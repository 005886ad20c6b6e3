"""Portkey's virtual-key API on the wire: the request bodies of `POST /v1/virtual-keys` and
`PUT /v1/virtual-keys/{slug}`, and the answers.

The settable fields are derived, not listed: the deployment fields of `litellm_params`
(`api_key`, `api_base`, `api_version`, timeouts, ...) and every setting a provider declares
(a region, a project, credentials), under LiteLLM's names. Portkey's spellings are
accepted too: `key` for `api_key`, each setting's Portkey option name, and camelCase
(`apiVersion`). Anything else is a 400 naming it: a setting this gateway does not
implement never looks applied.

Answers never hold a secret: `masked_api_key` shows the last four characters of a long
key, `secret_fields` which secrets are set, and `model_config` what /model/info would show
of a deployment: the deployment fields (`api_base`, `api_version`, timeouts) and the
settings the provider marks shown (a region, a project), never who the key is (an
access key id, an organization, a profile).
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from prismgate.config import LiteLLMParams
from prismgate.errors import BadRequestError
from prismgate.identity.wire import iso
from prismgate.observability.redaction import Redactor
from prismgate.providers import portkey_fields_instead, provider_settings
from prismgate.routing.virtual_keys import deployment_fields
from prismgate.types.validation import convert_request

__all__ = [
    "NAME_PATTERN",
    "KeyView",
    "create_body",
    "create_struct",
    "settable_fields",
    "update_body",
    "update_struct",
    "view",
]

# A name is also a path segment and a header value: letters, digits, `.`, `_`, `-`.
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]
# Below this length even four characters are too much of a key to show.
_MIN_MASKED_CHARS = 20


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


# Portkey fields this gateway does not take, with what to do instead (and those the
# providers declare: `Provider.portkey_fields_instead`).
_INSTEAD = {
    "workspace_id": "this gateway has no workspaces",
    "usage_limits": "set max_budget on gateway keys and teams (/key/generate, /team/new)",
    "rate_limits": "set rpm_limit or ipm_limit on gateway keys and teams",
    "expires_at": "delete the virtual key when it should stop working",
}
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


@functools.cache
def _instead() -> dict[str, str]:
    return {**_INSTEAD, **portkey_fields_instead()}


@functools.cache
def _instead_spellings() -> dict[str, str]:
    return {spelling: name for name in _instead() for spelling in (name, _camel(name))}


@functools.cache
def settable_fields() -> dict[str, Any]:
    """Every field a virtual key may set, by our name, with the type its value takes
    (which of them a provider takes is the provider's declaration)."""
    hints = typing.get_type_hints(LiteLLMParams)
    fields: dict[str, Any] = {name: hints[name] for name in deployment_fields()}
    for setting in provider_settings().values():
        if setting.name not in fields:
            fields[setting.name] = str | dict[str, Any] if setting.structured else str
    return fields


@functools.cache
def _spellings() -> dict[str, str]:
    """Each accepted spelling of a field → our name."""
    table = {"name": "name", "provider": "provider", "note": "note", "key": "api_key"}
    for name in settable_fields():
        table[name] = table[_camel(name)] = name
    for setting in provider_settings().values():
        if setting.portkey:
            table[setting.portkey] = table[_camel(setting.portkey)] = setting.name
    return table


@functools.cache
def create_struct() -> type[msgspec.Struct]:
    """The body of `POST /v1/virtual-keys`."""
    fields: list[tuple[str, Any, Any]] = [
        (name, kind | None, None) for name, kind in settable_fields().items()
    ]
    return msgspec.defstruct(
        "CreateVirtualKey",
        [("name", Name), ("provider", str), ("note", Note | None, None), *fields],
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


@functools.cache
def update_struct() -> type[msgspec.Struct]:
    """The body of `PUT /v1/virtual-keys/{slug}`: the fields to change (null removes one)."""
    fields: list[tuple[str, Any, Any]] = [
        (name, kind | None | UnsetType, UNSET) for name, kind in settable_fields().items()
    ]
    return msgspec.defstruct(
        "UpdateVirtualKey",
        [
            ("name", Name | UnsetType, UNSET),
            ("provider", str | UnsetType, UNSET),
            ("note", Note | None | UnsetType, UNSET),
            *fields,
        ],
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


def _our_names(data: Mapping[str, Any]) -> dict[str, Any]:
    """The body with Portkey's and camelCase spellings as our names; a 400 for a field
    given twice, or one of Portkey's that this gateway does not take."""
    spellings = _spellings()
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = spellings.get(key, key)
        if (instead := _instead_spellings().get(key)) is not None:
            raise BadRequestError(
                f"{key} is not supported by this gateway's virtual keys: {_instead()[instead]}",
                param=key[:64],
                code="unsupported_field",
            )
        if name in out:
            raise BadRequestError(f"{key} gives {name} a second time; send it once", param=key[:64])
        out[name] = value
    return out


def _converted(data: Mapping[str, Any], kind: type[msgspec.Struct]) -> msgspec.Struct:
    try:
        return convert_request(_our_names(data), kind)
    except BadRequestError as error:
        unknown = _UNKNOWN_FIELD.search(error.message)
        if error.param is None and unknown is not None:
            # msgspec names an unknown field in its message only: the param says it too.
            error.param = unknown.group(1)[:64]
            error.message += "; the fields a virtual key takes are in /openapi.json"
        raise


def create_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A create body, checked: name, provider, note, and the settings given (not null)."""
    typed = _converted(data, create_struct())
    return {k: v for k, v in msgspec.structs.asdict(typed).items() if v is not None}


def update_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """An update body, checked: only the fields sent (a null one is to be removed)."""
    typed = _converted(data, update_struct())
    return {k: v for k, v in msgspec.structs.asdict(typed).items() if v is not UNSET}


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """What an answer may say of a virtual key, secrets already removed."""

    name: str
    provider: str
    source: str  # "api" (stored) or "config"
    fields: Mapping[str, Any]  # every setting, secrets included: shown masked or not at all
    secrets: frozenset[str]  # which of `fields` are secrets
    shown: frozenset[str]  # which of `fields` model_config may show (never a secret)
    note: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    sealed_with: str | None = None  # "current" or "previous" encryption key
    unreadable: str | None = None  # why a stored key does not open


def view(key: KeyView) -> dict[str, Any]:
    """A virtual key as Portkey's API shows it (its fields, and prismgate's `source`,
    `secret_fields` and `sealed_with`); never a secret, nor a field outside `shown`."""
    secret_values = [v for k, v in key.fields.items() if k in key.secrets and isinstance(v, str)]
    # The values shown are each also cleared of anything shaped like a credential (a
    # token in an api_base query) or equal to one of the key's secrets.
    redact = Redactor(secret_values)
    shown: dict[str, Any] = {}
    for name, value in sorted(key.fields.items()):
        if name in key.shown and name not in key.secrets and value is not None:
            shown[name] = redact(value) if isinstance(value, str) else value
    api_key = key.fields.get("api_key")
    masked = None
    if isinstance(api_key, str) and api_key:
        masked = "..." + api_key[-4:] if len(api_key) >= _MIN_MASKED_CHARS else "****"
    return {
        "object": "virtual-key",
        "id": key.name,
        "slug": key.name,
        "name": key.name,
        "provider": key.provider,
        "ai_provider_name": key.provider,
        "source": key.source,
        "note": key.note,
        "status": "active" if key.unreadable is None else "unreadable",
        "status_detail": key.unreadable,
        "masked_api_key": masked,
        "model_config": shown,
        "secret_fields": sorted(k for k in key.secrets if key.fields.get(k) is not None),
        "sealed_with": key.sealed_with,
        "created_at": iso(key.created_at),
        "updated_at": iso(key.updated_at),
    }
