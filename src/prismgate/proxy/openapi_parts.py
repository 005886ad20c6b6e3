"""The pieces `/openapi.json` is made of: operations, parameters, bodies, the error
answers each status means, the ways a key is sent, and the tags that group operations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from prismgate.types import ErrorBody

__all__ = [
    "ERROR_ANSWERS",
    "REF",
    "SECURITY_SCHEMES",
    "TAGS",
    "Access",
    "header_parameter",
    "json_answer",
    "json_body",
    "operation",
    "path_parameter",
    "query_parameter",
    "ref",
]

REF = "#/components/schemas/{name}"

# Who may call an operation: anyone, any gateway key, the master key only, or (`/metrics`)
# anyone on this machine and the master key from elsewhere.
Access = Literal["public", "key", "master_key", "loopback"]

_KEY = "The gateway key: the master key, or a key from /key/generate."
# Every way proxy/auth.py reads the gateway key (`presented_key`).
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": _KEY},
    "x-portkey-api-key": {
        "type": "apiKey",
        "in": "header",
        "name": "x-portkey-api-key",
        "description": _KEY + " Portkey's clients send it here; it wins over Authorization, "
        "which then may carry a provider key (direct provider mode).",
    },
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": _KEY},
    "api-key": {"type": "apiKey", "in": "header", "name": "api-key", "description": _KEY},
}

# Each error status, its component name and what it means to the caller.
_ERRORS = {
    "400": ("BadRequest", "The request is not valid; the message says what to change."),
    "401": ("Unauthorized", "No gateway key, or one this gateway does not accept."),
    "403": (
        "Forbidden",
        "The key may not do this (a model it may not use; the master key "
        "needed; a stored image's link signed wrongly).",
    ),
    "404": ("NotFound", "No such model, key, team, user, virtual key or stored image."),
    "408": ("RequestTimeout", "The call took longer than its timeout."),
    "409": ("Conflict", "It exists already."),
    "413": ("TooLarge", "The body is larger than this gateway accepts."),
    "429": (
        "TooManyRequests",
        "A rate limit or budget was reached; `retry-after` says when to try again, where known.",
    ),
    "503": ("Unavailable", "The database or key store is missing or does not answer."),
    "5XX": (
        "UpstreamError",
        "The provider failed or did not answer (its status is kept), "
        "or the gateway could not store an image.",
    ),
}
ERROR_ANSWERS: dict[str, Any] = {
    name: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name=ErrorBody.__name__)}}},
    }
    for name, description in _ERRORS.values()
}

TAGS = [
    {"name": "Images", "description": "Generate, edit and vary images; stored images."},
    {"name": "Chat", "description": "Chat completions, with images in the messages."},
    {"name": "Models", "description": "The model groups this gateway serves."},
    {"name": "Health", "description": "Liveness, readiness, and every deployment checked."},
    {"name": "Keys", "description": "Gateway keys (master key; LiteLLM's API)."},
    {"name": "Teams", "description": "Teams and their keys (master key)."},
    {"name": "Users", "description": "Users and their keys (master key)."},
    {"name": "Spend", "description": "Spend logs and totals (master key)."},
    {"name": "Virtual keys", "description": "Provider credentials (master key; Portkey's API)."},
    {"name": "Reference", "description": "This document."},
    {
        "name": "Other paths",
        "description": "The same operations at OpenAI's, Azure's and LiteLLM's other paths.",
    },
]


def ref(kind: type) -> dict[str, str]:
    """A reference to the schema of `kind` in the document's components."""
    return {"$ref": REF.format(name=kind.__name__)}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON answer."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    """A JSON request body."""
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def path_parameter(name: str, description: str) -> dict[str, Any]:
    """A parameter in the path (always required)."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def header_parameter(
    name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An optional request header (text unless `schema` says otherwise)."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def query_parameter(
    name: str, description: str, schema: dict[str, Any] | None = None, *, required: bool = False
) -> dict[str, Any]:
    """A parameter in the query string (text unless `schema` says otherwise)."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _security(access: Access) -> list[dict[str, list[str]]]:
    """The security requirement: any one of the ways to send a key, or none."""
    if access == "public":
        return []
    roles = [] if access == "key" else ["master_key"]
    keyed = [{scheme: roles} for scheme in SECURITY_SCHEMES]
    # `{}`: no key at all is one of the ways in.
    return [{}, *keyed] if access == "loopback" else keyed


def operation(
    summary: str,
    tag: str,
    access: Access,
    *,
    answer: dict[str, Any],
    errors: Iterable[str] = (),
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: its 200 answer and each error status it may answer with."""
    responses = {"200": answer}
    for status in errors:
        responses[status] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    done: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "security": _security(access),
        "responses": responses,
    }
    if access == "master_key":
        done["description"] = "Needs the master key." + (f" {description}" if description else "")
    elif description:
        done["description"] = description
    if body is not None:
        done["requestBody"] = body
    if parameters:
        done["parameters"] = parameters
    return done
