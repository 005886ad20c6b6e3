"""LiteLLM's management API: `/key/*`, `/team/*`, `/user/*`, `/spend/*` (the spend log's
rows and images: handlers/spend_logs.py). Master key only, except `GET /key/info`, which
a key may call about itself."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from prismgate.errors import BadRequestError, PermissionDeniedError, ServiceUnavailableError
from prismgate.identity.accounts import Accounts
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
    team_view,
)
from prismgate.proxy.auth import principal_of, require_admin
from prismgate.proxy.body import management_body
from prismgate.proxy.handlers.spend_logs import spend_images, spend_log_of, spend_logs, spend_query
from prismgate.proxy.query import int_query, text_query
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.storage import SpendGrouping
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
    `/spend/logs`; `spend` in dollars. Keys carry their `key_alias` and teams their
    `team_alias` as the key store has them now."""
    spend_log = spend_log_of(request)
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
    totals = await spend_log.totals(spend_query(request), by)
    state: ProxyState = request.app.state.proxy
    aliases = await _aliases(state.accounts, by, [t.group for t in totals if t.group])
    alias_field = {"key": "key_alias", "team": "team_alias"}.get(by)
    return json_response(
        [
            {
                "group": total.group,
                named: total.group,
                **({alias_field: aliases.get(total.group or "")} if alias_field else {}),
                "spend": dollars(total.spend),
                "requests": total.requests,
                "images": total.images,
                "total_tokens": total.total_tokens,
            }
            for total in totals
        ]
    )


async def _aliases(
    accounts: Accounts | None, by: SpendGrouping, groups: list[str]
) -> dict[str, str | None]:
    """The aliases of the keys (by token, deleted keys too) or teams a summary names, each
    kind in one read; none for the others."""
    if accounts is None or by not in ("key", "team") or not groups:
        return {}
    store = accounts.store
    if by == "team":
        return {team.team_id: team.team_alias for team in await store.list_teams()}
    return {key.token: key.key_alias for key in await store.keys_by_tokens(groups)}


ROUTES: list[tuple[str, Any, str]] = [
    ("/spend/logs", spend_logs, "GET"),
    ("/spend/images", spend_images, "GET"),
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
