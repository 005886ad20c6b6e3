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


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def _shape(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, each always present."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_STRINGS = {"type": "array", "items": {"type": "string"}}
_MOMENT_OR_NULL = _nullable("string", format="date-time")
_COUNT_OR_NULL = _nullable("integer")
# What a key, a team and a user may spend and how fast (identity/wire.py `_allowance_view`).
_ALLOWANCE = {
    "spend": {"type": "number"},
    "max_budget": _nullable("number"),
    "budget_duration": _nullable("string"),
    "budget_reset_at": _MOMENT_OR_NULL,
    "rpm_limit": _COUNT_OR_NULL,
    "tpm_limit": _COUNT_OR_NULL,
    "ipm_limit": _COUNT_OR_NULL,
    "max_parallel_requests": _COUNT_OR_NULL,
}
_STAMPS = {"created_at": _MOMENT_OR_NULL, "updated_at": _MOMENT_OR_NULL}
# `key_view`: a key as the API shows it (its token, never the key).
_KEY_FIELDS = {
    "token": {"type": "string"},
    "key_name": {"type": "string"},
    "key_alias": _nullable("string"),
    "expires": _MOMENT_OR_NULL,
    "models": _STRINGS,
    "user_id": _nullable("string"),
    "team_id": _nullable("string"),
    **_ALLOWANCE,
    "metadata": _OBJECT,
    "tags": _STRINGS,
    "blocked": {"type": "boolean"},
    **_STAMPS,
    "created_by": _nullable("string"),
}
_KEY = _shape(_KEY_FIELDS)
# A new key's answer: the key itself, shown this once, and its settings.
_NEW_KEY = _shape(
    {
        "key": {"type": "string"},
        **_KEY_FIELDS,
        "token_id": {"type": "string"},
        "duration": _nullable("string"),
    }
)
_TEAM = _shape(
    {
        "team_id": {"type": "string"},
        "team_alias": _nullable("string"),
        "models": _STRINGS,
        **_ALLOWANCE,
        "metadata": _OBJECT,
        "tags": _STRINGS,
        "blocked": {"type": "boolean"},
        **_STAMPS,
    }
)
_USER_FIELDS = {
    "user_id": {"type": "string"},
    "user_email": _nullable("string"),
    "user_role": _nullable("string"),
    "teams": _STRINGS,
    "models": _STRINGS,
    **_ALLOWANCE,
    "metadata": _OBJECT,
    **_STAMPS,
}
_USER = _shape(_USER_FIELDS)
# A new user, and their key's fields when one was made (`key` is "" when not).
_NEW_USER = _shape(
    {
        **_USER_FIELDS,
        "key": {"type": "string"},
        "key_name": {"type": "string"},
        "token": {"type": "string"},
        "expires": _MOMENT_OR_NULL,
    }
)
_NEW_USER["required"] = [*_USER_FIELDS, "key"]
_KEY_PAGE = _shape(
    {
        # Tokens, or each key's settings with return_full_object=true.
        "keys": {"type": "array", "items": {"anyOf": [{"type": "string"}, _KEY]}},
        "total_count": {"type": "integer"},
        "current_page": {"type": "integer"},
        "total_pages": {"type": "integer"},
    }
)
# A kept image (handlers/spend_logs.py `_Links.view`): its link is null once expired.
_KEPT_IMAGE_FIELDS = {
    "url": _nullable("string"),
    "name": {"type": "string"},
    "role": {"type": "string", "enum": ["output", "input", "mask"]},
    "index": {"type": "integer"},
    "media_type": {"type": "string"},
    "width": _COUNT_OR_NULL,
    "height": _COUNT_OR_NULL,
    "size_bytes": {"type": "integer"},
}
_KEPT_IMAGE = _shape(_KEPT_IMAGE_FIELDS)
_GALLERY = _shape(
    {
        "object": {"type": "string", "enum": ["list"]},
        "data": {
            "type": "array",
            "items": _shape(
                {
                    **_KEPT_IMAGE_FIELDS,
                    "request_id": {"type": "string"},
                    "created": {"type": "string", "format": "date-time"},
                    "prompt": _nullable("string"),
                    "model": _nullable("string"),
                    "model_group": _nullable("string"),
                    "size": _nullable("string"),
                    "quality": _nullable("string"),
                    "key_alias": _nullable("string"),
                    "team_id": _nullable("string"),
                }
            ),
        },
        "has_more": {"type": "boolean"},
        "next_before": _nullable("string"),
        "keep_images": {"type": "boolean"},
        "keep_request_details": {"type": "boolean"},
    }
)
# `spend_view` and the console's additions (handlers/spend_logs.py); `details` only when
# asked for.
_SPEND_ROW = _shape(
    {
        "request_id": {"type": "string"},
        "call_type": {"type": "string"},
        "api_key": _nullable("string"),
        "key_alias": _nullable("string"),
        "team_id": _nullable("string"),
        "user": _nullable("string"),
        "end_user": _nullable("string"),
        "spend": {"type": "number"},
        "startTime": {"type": "string", "format": "date-time"},
        "endTime": {"type": "string", "format": "date-time"},
        "request_duration_ms": {"type": "number"},
        "upstream_duration_ms": {"type": "number"},
        "model": _nullable("string"),
        "model_group": _nullable("string"),
        "model_id": _nullable("string"),
        "custom_llm_provider": _nullable("string"),
        "api_base": _nullable("string"),
        "status": {"type": "string", "enum": ["success", "failure"]},
        "status_code": {"type": "integer"},
        "error": _nullable("string"),
        "images": {"type": "integer"},
        "image_size": _nullable("string"),
        "image_quality": _nullable("string"),
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cache_hit": {"type": "string", "enum": ["True", "False"]},
        "attempts": _STRINGS,
        "adjustments": _STRINGS,
        "trace_id": _nullable("string"),
        "metadata": _OBJECT,
        "prompt": _nullable("string"),
        "kept_images": {"type": "array", "items": _KEPT_IMAGE},
        "details": _nullable("object"),
    },
)
_SPEND_ROW["required"] = [name for name in _SPEND_ROW["properties"] if name != "details"]


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
            _shape({"key": {"type": "string"}, "info": _KEY}),
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
        _NEW_KEY,
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
                _NEW_KEY,
                body=wire.GenerateKey,
            )
        },
        "/key/update": {
            "post": _admin(
                "Change a key's settings",
                "Keys",
                _shape({"key": {"type": "string"}, **_KEY_FIELDS}),
                body=wire.UpdateKey,
            )
        },
        "/key/delete": {
            "post": _admin("Delete keys", "Keys", _names("deleted_keys"), body=wire.DeleteKeys)
        },
        "/key/info": {"get": key_info},
        "/key/list": {
            "get": _admin("Keys, a page at a time", "Keys", _KEY_PAGE, parameters=listing)
        },
        "/key/block": {
            "post": _admin("Block a key (401 until unblocked)", "Keys", _KEY, body=wire.BlockKey)
        },
        "/key/unblock": {"post": _admin("Unblock a key", "Keys", _KEY, body=wire.BlockKey)},
        "/key/regenerate": {"post": regenerate},
        "/key/{key}/regenerate": {"post": in_path},
    }


def _teams_and_users() -> dict[str, dict[str, Any]]:
    team_id = query_parameter("team_id", "The team.", required=True)
    user_id = query_parameter("user_id", "The user.", required=True)
    updated = _shape({"team_id": {"type": "string"}, "data": _TEAM})
    keys = {"type": "array", "items": _KEY}
    team_info = _shape({"team_id": {"type": "string"}, "team_info": _TEAM, "keys": keys})
    user_info = _shape(
        {
            "user_id": {"type": "string"},
            "user_info": _USER,
            "keys": keys,
            "teams": {"type": "array", "items": _TEAM},
        }
    )
    return {
        "/team/new": {"post": _admin("A new team", "Teams", _TEAM, body=wire.NewTeam)},
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
            "get": _admin("A team and its keys", "Teams", team_info, parameters=[team_id])
        },
        "/team/list": {"get": _admin("Every team", "Teams", {"type": "array", "items": _TEAM})},
        "/user/new": {
            "post": _admin(
                "A new user, and their key (in `key`) unless auto_create_key is false",
                "Users",
                _NEW_USER,
                body=wire.NewUser,
            )
        },
        "/user/info": {
            "get": _admin("A user, their keys and teams", "Users", user_info, parameters=[user_id])
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
                {"type": "array", "items": _SPEND_ROW},
                parameters=[*filters, *pages],
            )
        },
        "/spend/images": {
            "get": _admin(
                "The newest kept images (the console's gallery), with their calls' prompts",
                "Spend",
                _GALLERY,
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
