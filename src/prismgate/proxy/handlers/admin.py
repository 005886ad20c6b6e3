"""LiteLLM's management API: `/key/*`, `/team/*`, `/user/*`. Master key only, except
`GET /key/info`, which a key may call about itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from prismgate.errors import BadRequestError, PermissionDeniedError, ServiceUnavailableError
from prismgate.identity.accounts import Accounts
from prismgate.identity.keys import KEY_PREFIX, token_of
from prismgate.identity.wire import (
    BlockKey,
    DeleteKeys,
    DeleteTeams,
    GenerateKey,
    NewTeam,
    NewUser,
    RegenerateKey,
    UpdateKey,
    UpdateTeam,
    key_view,
    spend_view,
    team_view,
)
from prismgate.proxy.auth import principal_of, require_admin
from prismgate.proxy.body import management_body
from prismgate.proxy.query import int_query, text_query
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.storage import SpendGrouping, SpendLog, SpendQuery
from prismgate.storage.records import dollars
from prismgate.types.validation import convert_request

__all__ = ["ROUTES"]

T = TypeVar("T", bound=msgspec.Struct)


def _accounts(request: Request, *, own_key: bool = False) -> Accounts:
    """The accounts service, for an admin (or, with `own_key`, any key about itself)."""
    state: ProxyState = request.app.state.proxy
    if not (own_key and principal_of(request.scope).key is not None):
        require_admin(request)
    if state.accounts is None:
        raise ServiceUnavailableError(
            "this gateway has no key store: the management API needs a database "
            "(general_settings.database_url, or the default SQLite file when serving)"
        )
    return state.accounts


async def _body(request: Request, kind: type[T]) -> T:
    return convert_request(await management_body(request), kind)


async def generate_key(request: Request) -> Response:
    """`POST /key/generate`: the new key is in the answer's `key`, shown this once."""
    accounts = _accounts(request)
    body = await _body(request, GenerateKey)
    return json_response(await accounts.generate_key(body, created_by="master_key"))


async def update_key(request: Request) -> Response:
    """`POST /key/update`: change the fields sent; answers the whole key."""
    accounts = _accounts(request)
    body = await _body(request, UpdateKey)
    updated = await accounts.update_key(body)
    return json_response({"key": body.key, **key_view(updated)})


async def delete_key(request: Request) -> Response:
    """`POST /key/delete`: by `keys` or `key_aliases`."""
    accounts = _accounts(request)
    body = await _body(request, DeleteKeys)
    return json_response({"deleted_keys": await accounts.delete_keys(body)})


async def key_info(request: Request) -> Response:
    """`GET /key/info?key=...`: a key's settings and spend; without `key`, the caller's."""
    accounts = _accounts(request, own_key=True)
    principal = principal_of(request.scope)
    asked = text_query(request, "key")
    if principal.key is not None and not principal.is_admin:
        own = principal.key.token
        if asked is not None and (await accounts.key(asked)).token != own:
            raise PermissionDeniedError("a key may read only its own info", param="key")
        found = await accounts.key(own)
    elif asked is None:
        raise BadRequestError("add ?key=... (the key or its token) to the URL", param="key")
    else:
        found = await accounts.key(asked)
    return json_response({"key": asked or found.token, "info": key_view(found)})


async def list_keys(request: Request) -> Response:
    """`GET /key/list`: `page`, `size`, `team_id`, `user_id`, `key_alias`,
    `return_full_object`."""
    accounts = _accounts(request)
    full = (text_query(request, "return_full_object") or "").lower() == "true"
    return json_response(
        await accounts.list_keys(
            page=int_query(request, "page", 1),
            size=int_query(request, "size", 10),
            team_id=text_query(request, "team_id"),
            user_id=text_query(request, "user_id"),
            key_alias=text_query(request, "key_alias"),
            full=full,
        )
    )


async def block_key(request: Request) -> Response:
    """`POST /key/block`: the key is refused (401) until unblocked."""
    accounts = _accounts(request)
    body = await _body(request, BlockKey)
    return json_response(key_view(await accounts.block_key(body.key, blocked=True)))


async def unblock_key(request: Request) -> Response:
    """`POST /key/unblock`."""
    accounts = _accounts(request)
    body = await _body(request, BlockKey)
    return json_response(key_view(await accounts.block_key(body.key, blocked=False)))


async def regenerate_key(request: Request) -> Response:
    """`POST /key/regenerate` (or `/key/{key}/regenerate`): a new key, same settings."""
    accounts = _accounts(request)
    data = await management_body(request, optional=True)
    if (path_key := request.path_params.get("key")) is not None:
        data.setdefault("key", path_key)
    return json_response(await accounts.regenerate_key(convert_request(data, RegenerateKey)))


async def new_team(request: Request) -> Response:
    """`POST /team/new`."""
    accounts = _accounts(request)
    return json_response(team_view(await accounts.new_team(await _body(request, NewTeam))))


async def update_team(request: Request) -> Response:
    """`POST /team/update`: answers `{team_id, data}` as LiteLLM does."""
    accounts = _accounts(request)
    team = await accounts.update_team(await _body(request, UpdateTeam))
    return json_response({"team_id": team.team_id, "data": team_view(team)})


async def delete_team(request: Request) -> Response:
    """`POST /team/delete`: the teams and their keys."""
    accounts = _accounts(request)
    body = await _body(request, DeleteTeams)
    return json_response({"deleted_teams": await accounts.delete_teams(body.team_ids)})


async def team_info(request: Request) -> Response:
    """`GET /team/info?team_id=...`."""
    accounts = _accounts(request)
    team_id = text_query(request, "team_id", required=True)
    assert team_id is not None
    return json_response(await accounts.team_info(team_id))


async def list_teams(request: Request) -> Response:
    """`GET /team/list`."""
    return json_response(await _accounts(request).list_teams())


async def new_user(request: Request) -> Response:
    """`POST /user/new`: the user, and their new key in `key` (unless auto_create_key is
    false)."""
    accounts = _accounts(request)
    return json_response(await accounts.new_user(await _body(request, NewUser)))


async def user_info(request: Request) -> Response:
    """`GET /user/info?user_id=...`."""
    accounts = _accounts(request)
    user_id = text_query(request, "user_id", required=True)
    assert user_id is not None
    return json_response(await accounts.user_info(user_id))


def _day(request: Request, name: str) -> float | None:
    """A `YYYY-MM-DD` query parameter as the Unix time its day starts (UTC)."""
    value = text_query(request, name)
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise BadRequestError(f"{name} must be a date, YYYY-MM-DD", param=name) from None


def _spend_log(request: Request) -> SpendLog:
    """The spend log, for an admin (the same rule as the rest of the management API)."""
    require_admin(request)
    state: ProxyState = request.app.state.proxy
    if state.spend_log is None:
        raise ServiceUnavailableError("this gateway keeps no spend log (no database)")
    return state.spend_log


def _spend_query(request: Request) -> SpendQuery:
    """The filters both spend routes take: `api_key` (the key or its token), `user_id`
    (or LiteLLM's `internal_user_id`), `team_id`, `request_id`, `start_date` and
    `end_date` (inclusive days, UTC), `limit`."""
    api_key = text_query(request, "api_key")
    start = _day(request, "start_date")
    end = _day(request, "end_date")
    if start is not None and end is not None and end < start:
        raise BadRequestError("end_date is before start_date", param="end_date")
    return SpendQuery(
        token=token_of(api_key) if api_key and api_key.startswith(KEY_PREFIX) else api_key,
        user_id=text_query(request, "user_id") or text_query(request, "internal_user_id"),
        team_id=text_query(request, "team_id"),
        request_id=text_query(request, "request_id"),
        start=start,
        end=None if end is None else end + 86_400,
        limit=min(int_query(request, "limit", 1000), 10_000),
    )


async def spend_logs(request: Request) -> Response:
    """`GET /spend/logs`: rows newest first; LiteLLM's `api_key`, `user_id`,
    `request_id`, `start_date`, `end_date` (inclusive days, UTC)."""
    spend_log = _spend_log(request)
    rows = await spend_log.rows(_spend_query(request))
    return json_response([spend_view(row) for row in rows])


# `group_by` values, ours and LiteLLM's (`api_key`), and the field each group is named by
# in the answer (LiteLLM's spend log column).
_GROUP_BY: dict[str, tuple[SpendGrouping, str]] = {
    "key": ("key", "api_key"),
    "api_key": ("key", "api_key"),
    "team": ("team", "team_id"),
    "model": ("model", "model_group"),
    "day": ("day", "day"),
}


async def spend_summary(request: Request) -> Response:
    """`GET /spend/summary` (and LiteLLM's `GET /global/spend/report`): spend per key
    (its token), team, model group or UTC day, largest first. `group_by` (default
    `team`, as LiteLLM's; `api_key` is LiteLLM's name for `key`) and the filters of
    `/spend/logs`; `spend` in dollars."""
    spend_log = _spend_log(request)
    group_by = text_query(request, "group_by") or "team"
    if group_by not in _GROUP_BY:
        raise BadRequestError(
            f"group_by must be one of {', '.join(_GROUP_BY)}; {group_by!r} is not supported",
            param="group_by",
        )
    if text_query(request, "customer_id") is not None:
        # Not applied is worse than refused: a total would look filtered and not be.
        raise BadRequestError("customer_id is not supported here", param="customer_id")
    by, named = _GROUP_BY[group_by]
    totals = await spend_log.totals(_spend_query(request), by)
    return json_response(
        [
            {
                "group": total.group,
                named: total.group,
                "spend": dollars(total.spend),
                "requests": total.requests,
                "images": total.images,
                "total_tokens": total.total_tokens,
            }
            for total in totals
        ]
    )


ROUTES: list[tuple[str, Any, str]] = [
    ("/spend/logs", spend_logs, "GET"),
    ("/spend/summary", spend_summary, "GET"),
    ("/global/spend/report", spend_summary, "GET"),  # LiteLLM's path for the same
    ("/key/generate", generate_key, "POST"),
    ("/key/update", update_key, "POST"),
    ("/key/delete", delete_key, "POST"),
    ("/key/info", key_info, "GET"),
    ("/key/list", list_keys, "GET"),
    ("/key/block", block_key, "POST"),
    ("/key/unblock", unblock_key, "POST"),
    ("/key/regenerate", regenerate_key, "POST"),
    ("/key/{key}/regenerate", regenerate_key, "POST"),
    ("/team/new", new_team, "POST"),
    ("/team/update", update_team, "POST"),
    ("/team/delete", delete_team, "POST"),
    ("/team/info", team_info, "GET"),
    ("/team/list", list_teams, "GET"),
    ("/user/new", new_user, "POST"),
    ("/user/info", user_info, "GET"),
]
