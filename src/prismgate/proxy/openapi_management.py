"""The management API's part of `/openapi.json`: LiteLLM's `/key/*`, `/team/*`, `/user/*`
and spend routes (proxy/handlers/admin.py) and Portkey's virtual keys
(proxy/handlers/virtual_keys.py). Request bodies are the Structs the handlers decode;
answers are LiteLLM's and Portkey's JSON shapes (the README lists their fields)."""

from __future__ import annotations

from typing import Any

import msgspec

from prismgate.identity import wire
from prismgate.identity.virtual_key_wire import create_struct, update_struct
from prismgate.proxy.openapi_parts import (
    json_answer,
    json_body,
    operation,
    path_parameter,
    query_parameter,
    ref,
)

__all__ = ["management_paths", "management_structs"]

# A body is read, checked and may name what does not exist or exists already.
_BODY_ERRORS = ("400", "401", "403", "404", "409", "413", "503")
_QUERY_ERRORS = ("400", "401", "403", "404", "503")
# `int_query`'s range: a page, a page size or a row limit.
_WHOLE = {"type": "integer", "minimum": 0, "maximum": 999_999}
_DAY = {"type": "string", "format": "date"}
# A day, or a moment to the second (spend log filters).
_MOMENT = {"type": "string", "description": "YYYY-MM-DD, or ISO 8601 date-time"}
_OBJECT = {"type": "object"}
_LIST = {"type": "array", "items": {"type": "object"}}


def management_structs() -> tuple[type[msgspec.Struct], ...]:
    """The request bodies of the management API, for the document's components."""
    return (
        wire.GenerateKey,
        wire.UpdateKey,
        wire.DeleteKeys,
        wire.BlockKey,
        wire.RegenerateKey,
        wire.NewTeam,
        wire.UpdateTeam,
        wire.DeleteTeams,
        wire.NewUser,
        create_struct(),
        update_struct(),
    )


def _admin(
    summary: str,
    tag: str,
    answer: dict[str, Any],
    *,
    body: type | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return operation(
        summary,
        tag,
        "master_key",
        answer=json_answer(answer, "Done"),
        errors=_BODY_ERRORS if body is not None else _QUERY_ERRORS,
        body=None if body is None else json_body(ref(body)),
        parameters=parameters,
    )


def _names(field: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field: {"type": "array", "items": {"type": "string"}}},
        "required": [field],
    }


def _keys() -> dict[str, dict[str, Any]]:
    key_info = operation(
        "A key's settings and spend",
        "Keys",
        "key",
        answer=json_answer(
            {
                "type": "object",
                "properties": {"key": {"type": "string"}, "info": _OBJECT},
                "required": ["key", "info"],
            },
            "The key (as asked) and its settings",
        ),
        errors=_QUERY_ERRORS,
        parameters=[
            query_parameter("key", "The key or its token; without it, the caller's own key.")
        ],
        description="Any key may read its own; the master key reads any.",
    )
    regenerate = _admin(
        "A new key for the same settings (the old one stops working)",
        "Keys",
        _OBJECT,
        body=wire.RegenerateKey,
    )
    in_path = {
        **regenerate,
        "requestBody": json_body(ref(wire.RegenerateKey), required=False),
        "parameters": [path_parameter("key", "The key or its token.")],
    }
    listing = [
        query_parameter("page", "The page, from 1.", _WHOLE),
        query_parameter("size", "Keys per page (default 10).", _WHOLE),
        query_parameter("team_id", "Only this team's keys."),
        query_parameter("user_id", "Only this user's keys."),
        query_parameter("key_alias", "Only the key with this alias."),
        query_parameter(
            "return_full_object", "Each key's settings, not only its token.", {"type": "boolean"}
        ),
    ]
    return {
        "/key/generate": {
            "post": _admin(
                "A new key (in the answer's `key`, shown this once)",
                "Keys",
                _OBJECT,
                body=wire.GenerateKey,
            )
        },
        "/key/update": {
            "post": _admin("Change a key's settings", "Keys", _OBJECT, body=wire.UpdateKey)
        },
        "/key/delete": {
            "post": _admin("Delete keys", "Keys", _names("deleted_keys"), body=wire.DeleteKeys)
        },
        "/key/info": {"get": key_info},
        "/key/list": {"get": _admin("Keys, a page at a time", "Keys", _OBJECT, parameters=listing)},
        "/key/block": {
            "post": _admin("Block a key (401 until unblocked)", "Keys", _OBJECT, body=wire.BlockKey)
        },
        "/key/unblock": {"post": _admin("Unblock a key", "Keys", _OBJECT, body=wire.BlockKey)},
        "/key/regenerate": {"post": regenerate},
        "/key/{key}/regenerate": {"post": in_path},
    }


def _teams_and_users() -> dict[str, dict[str, Any]]:
    team_id = query_parameter("team_id", "The team.", required=True)
    user_id = query_parameter("user_id", "The user.", required=True)
    updated = {
        "type": "object",
        "properties": {"team_id": {"type": "string"}, "data": _OBJECT},
        "required": ["team_id", "data"],
    }
    return {
        "/team/new": {"post": _admin("A new team", "Teams", _OBJECT, body=wire.NewTeam)},
        "/team/update": {
            "post": _admin("Change a team's settings", "Teams", updated, body=wire.UpdateTeam)
        },
        "/team/delete": {
            "post": _admin(
                "Delete teams and their keys",
                "Teams",
                _names("deleted_teams"),
                body=wire.DeleteTeams,
            )
        },
        "/team/info": {
            "get": _admin("A team and its keys", "Teams", _OBJECT, parameters=[team_id])
        },
        "/team/list": {"get": _admin("Every team", "Teams", _LIST)},
        "/user/new": {
            "post": _admin(
                "A new user, and their key (in `key`) unless auto_create_key is false",
                "Users",
                _OBJECT,
                body=wire.NewUser,
            )
        },
        "/user/info": {
            "get": _admin("A user, their keys and teams", "Users", _OBJECT, parameters=[user_id])
        },
    }


def _spend() -> dict[str, dict[str, Any]]:
    filters = [
        query_parameter("api_key", "Only this key's calls (the key or its token)."),
        query_parameter("user_id", "Only this user's calls."),
        query_parameter("internal_user_id", "LiteLLM's name for user_id."),
        query_parameter("team_id", "Only this team's calls."),
        query_parameter("request_id", "Only this call."),
        query_parameter(
            "start_date", "From this day (UTC), inclusive, or this moment (ISO 8601).", _MOMENT
        ),
        query_parameter(
            "end_date", "To this day (UTC), inclusive, or up to this moment (ISO 8601).", _MOMENT
        ),
        query_parameter("limit", "At most this many rows (up to 10000; default 1000).", _WHOLE),
        *_console_filters(),
    ]
    total = {
        "type": "object",
        "properties": {
            "group": {"type": ["string", "null"]},
            # Only in the answers grouped by key or by team: the alias the key store has.
            "key_alias": {"type": ["string", "null"]},
            "team_alias": {"type": ["string", "null"]},
            "spend": {"type": "number"},
            "requests": {"type": "integer"},
            "images": {"type": "integer"},
            "total_tokens": {"type": "integer"},
        },
        "required": ["group", "spend", "requests", "images", "total_tokens"],
    }
    group_by = query_parameter(
        "group_by",
        "What to total by (default team; api_key is LiteLLM's name for key).",
        {"type": "string", "enum": ["team", "key", "api_key", "model", "day"]},
    )
    summary = _admin(
        "Spend per team, key, model group or UTC day, largest first (dollars)",
        "Spend",
        {"type": "array", "items": total},
        parameters=[group_by, *filters],
    )
    pages = [
        query_parameter("before", "Rows older than the row of this request id (the next page)."),
        query_parameter("details", "With each row's details (true or false).", {"type": "boolean"}),
    ]
    return {
        "/spend/logs": {
            "get": _admin(
                "Spend log rows, newest first, with their kept images as signed links",
                "Spend",
                _LIST,
                parameters=[*filters, *pages],
            )
        },
        "/spend/images": {
            "get": _admin(
                "The newest kept images (the console's gallery), with their calls' prompts",
                "Spend",
                _OBJECT,
                parameters=[*filters, pages[0]],
            )
        },
        "/spend/summary": {"get": summary},
        "/global/spend/report": {"get": {**summary, "tags": ["Other paths"]}},
    }


def _console_filters() -> list[dict[str, Any]]:
    """The filters the console's Requests page adds (handlers/spend_logs.py)."""
    return [
        query_parameter("key_alias", "Only this key's calls, by its alias."),
        query_parameter("model_group", "Only calls to this model group."),
        query_parameter(
            "status",
            "Only successes or only failures (LiteLLM's UI: status_filter).",
            {"type": "string", "enum": ["success", "failure"]},
        ),
        query_parameter(
            "status_code", "Only calls answered with this status.", {"type": "integer"}
        ),
        query_parameter("since", "Only calls that ended after this moment (ISO 8601 or Unix s)."),
    ]


def _virtual_keys() -> dict[str, dict[str, Any]]:
    slug = [path_parameter("slug", "The virtual key's name.")]
    paging = [
        query_parameter("current_page", "The page, from 0.", _WHOLE),
        query_parameter("page_size", "Keys per page (default 50, at most 1000).", _WHOLE),
    ]
    create, change = create_struct(), update_struct()
    paths: dict[str, dict[str, Any]] = {}
    for prefix in ("/v1", ""):
        collection = {
            "post": _admin(
                "Store a virtual key (never shown again)", "Virtual keys", _OBJECT, body=create
            ),
            "get": _admin(
                "Virtual keys, a page at a time", "Virtual keys", _OBJECT, parameters=paging
            ),
        }
        one = {
            "get": _admin(
                "A virtual key (never its secrets)", "Virtual keys", _OBJECT, parameters=slug
            ),
            "put": _admin(
                "Rotate or change a virtual key (null removes a field)",
                "Virtual keys",
                _OBJECT,
                body=change,
                parameters=slug,
            ),
            "delete": _admin("Delete a virtual key", "Virtual keys", _OBJECT, parameters=slug),
        }
        if not prefix:
            collection = {
                method: {**done, "tags": ["Other paths"]} for method, done in collection.items()
            }
            one = {method: {**done, "tags": ["Other paths"]} for method, done in one.items()}
        paths[f"{prefix}/virtual-keys"] = collection
        paths[f"{prefix}/virtual-keys/{{slug}}"] = one
    return paths


def management_paths() -> dict[str, dict[str, Any]]:
    """Every management operation, by path."""
    return {**_keys(), **_teams_and_users(), **_spend(), **_virtual_keys()}
