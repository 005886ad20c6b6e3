"""The spend log over HTTP: `GET /spend/logs` (LiteLLM's, with the filters the console's
Requests page needs) and `GET /spend/images` (the console's Gallery: the newest kept
images). Admin only: rows name every caller's keys, teams and prompts.

Filters, all optional and combined (`/spend/summary` takes them too): `api_key` (the key
or its token), `key_alias`, `user_id` (or LiteLLM's `internal_user_id`), `team_id`,
`request_id`, `model_group`, `status` (`success` or `failure`; LiteLLM's UI says
`status_filter`), `status_code`, `start_date` and `end_date` (a day, `YYYY-MM-DD`,
inclusive; or a moment to the second, ISO 8601 (`2026-01-12T10:30:00Z`; UTC when no
offset is given), `since` (calls that ended after a moment, ISO 8601 or Unix seconds: the
live table's poll), `before` (a request id: rows older than it, for the next page), and
`limit`. A value that is not what it must be is a 400 naming the parameter.

Kept images are given as signed links (valid `url_ttl_seconds`), path-only (`/v1/images/
files/...`), so they work from whatever address the gateway was reached at. A row's
details (call_records.py) come with `details=true` (then at most 100 rows a page: each
may hold tens of KB), or with `request_id`; without, they are not even read.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prismgate.errors import BadRequestError, ServiceUnavailableError
from prismgate.identity.keys import KEY_PREFIX, token_of
from prismgate.identity.wire import iso, spend_view
from prismgate.media.links import SignedLinks
from prismgate.proxy.auth import require_admin
from prismgate.proxy.query import int_query, text_query
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.storage import SpendLog, SpendQuery
from prismgate.storage.records import KeptImage, SpendRow

__all__ = ["spend_images", "spend_log_of", "spend_logs", "spend_query"]

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A moment: ISO 8601 to the second (fractions and an offset allowed); bounded before parsing.
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]{5,15}(Z|[+-][0-9]{2}:?[0-9]{2})?")
_UNIX = re.compile(r"[0-9]{1,11}(\.[0-9]{1,6})?")
_STATUS = {"success": False, "failure": True}
_MAX_ROWS = 10_000
_MAX_DETAILED = 100  # rows a page of /spend/logs?details=true holds at most
_GALLERY_DEFAULT, _GALLERY_MOST = 48, 500


def spend_log_of(request: Request) -> SpendLog:
    """The spend log, for an admin (the same rule as the rest of the management API)."""
    require_admin(request)
    state: ProxyState = request.app.state.proxy
    if state.spend_log is None:
        raise ServiceUnavailableError("this gateway keeps no spend log (no database)")
    return state.spend_log


def _moment(request: Request, name: str, *, end: bool = False) -> float | None:
    """A day (its start; with `end`, the next day's start: days are inclusive) or a
    moment to the second, as Unix seconds."""
    value = text_query(request, name)
    if value is None:
        return None
    if _DAY.fullmatch(value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _bad_time(name) from None
        return day + 86_400 if end else day
    return _instant(value, name)


def _instant(value: str, name: str) -> float:
    if not _MOMENT.fullmatch(value):
        raise _bad_time(name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_time(name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bad_time(name: str) -> BadRequestError:
    return BadRequestError(
        f"{name} must be a day (YYYY-MM-DD) or a moment in ISO 8601 "
        "(YYYY-MM-DDTHH:MM:SSZ; UTC when no offset is given)",
        param=name,
    )


def _since(request: Request) -> float | None:
    value = text_query(request, "since")
    if value is None:
        return None
    if _UNIX.fullmatch(value):
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    if _MOMENT.fullmatch(value):
        return _instant(value, "since")
    raise BadRequestError(
        "since must be a moment: ISO 8601 (YYYY-MM-DDTHH:MM:SS.mmmZ) or Unix seconds",
        param="since",
    )


def _failed(request: Request) -> bool | None:
    value = text_query(request, "status") or text_query(request, "status_filter")
    if value is None:
        return None
    if value.lower() not in _STATUS:
        raise BadRequestError("status must be success or failure", param="status")
    return _STATUS[value.lower()]


def _status_code(request: Request) -> int | None:
    value = text_query(request, "status_code")
    if value is None:
        return None
    if not (value.isascii() and value.isdecimal() and len(value) == 3 and value[0] in "12345"):
        raise BadRequestError("status_code must be an HTTP status, 100 to 599", param="status_code")
    return int(value)


def spend_query(
    request: Request, *, default_limit: int = 1000, most: int = _MAX_ROWS, paged: bool = False
) -> SpendQuery:
    """The filters of the spend routes (see the module docstring). `before` pages rows
    (`paged`; it is read by `_with_cursor`, which needs the spend log); elsewhere (totals)
    it is a 400 rather than ignored."""
    if not paged and text_query(request, "before") is not None:
        raise BadRequestError(
            "before pages the rows of /spend/logs and /spend/images; totals have no pages",
            param="before",
        )
    api_key = text_query(request, "api_key")
    start = _moment(request, "start_date")
    end = _moment(request, "end_date", end=True)
    if start is not None and end is not None and end <= start:
        raise BadRequestError("end_date must be after start_date", param="end_date")
    return SpendQuery(
        token=token_of(api_key) if api_key and api_key.startswith(KEY_PREFIX) else api_key,
        user_id=text_query(request, "user_id") or text_query(request, "internal_user_id"),
        team_id=text_query(request, "team_id"),
        request_id=text_query(request, "request_id"),
        key_alias=text_query(request, "key_alias"),
        model_group=text_query(request, "model_group"),
        failed=_failed(request),
        status_code=_status_code(request),
        start=start,
        end=end,
        ended_after=_since(request),
        limit=min(int_query(request, "limit", default_limit), most),
    )


async def _with_cursor(spend_log: SpendLog, query: SpendQuery, request: Request) -> SpendQuery:
    """`query`, for rows older than the row `before` names (a 400 when there is none)."""
    before = text_query(request, "before")
    if before is None:
        return query
    found = await spend_log.rows(SpendQuery(request_id=before, limit=1))
    if not found:
        raise BadRequestError(
            "before must be the request_id of a row in the spend log (the last row shown)",
            param="before",
        )
    return dataclasses.replace(query, before=(found[0].started_at, found[0].request_id))


def _flag(request: Request, name: str) -> bool:
    value = (text_query(request, name) or "false").lower()
    if value not in ("true", "false"):
        raise BadRequestError(f"{name} must be true or false", param=name)
    return value == "true"


class _Links:
    """Signed, path-only links to a row's kept images, while the store keeps them.

    Links are signed as of the start of a short window (a quarter of their lifetime, at
    most 5 minutes), so a page that reads the same rows again gets the same links and its
    browser's cache answers (each link still works for 3/4 of its lifetime or more)."""

    def __init__(self, request: Request) -> None:
        state: ProxyState = request.app.state.proxy
        self._links: SignedLinks = state.gateway.image_links
        self._base = str(request.scope.get("root_path", ""))
        general = state.config.general_settings
        self.keep_seconds = general.console.keep_images_days * 86_400
        self.now = time.time()
        window = max(1, min(300, general.image_store.url_ttl_seconds // 4))
        self._signed_at = self.now - self.now % window

    def view(self, row: SpendRow, image: KeptImage) -> dict[str, Any]:
        gone = row.ended_at + self.keep_seconds < self.now
        return {
            "url": None if gone else self._links.link(self._base, image.name, now=self._signed_at),
            "name": image.name,
            "role": image.role,
            "index": image.index,
            "media_type": image.media_type,
            "width": image.width,
            "height": image.height,
            "size_bytes": image.size_bytes,
        }


def _row_view(row: SpendRow, links: _Links, *, details: bool) -> dict[str, Any]:
    view = spend_view(row)
    view["kept_images"] = [links.view(row, image) for image in row.kept_images]
    if details:
        view["details"] = row.details
    return view


async def spend_logs(request: Request) -> Response:
    """`GET /spend/logs`: rows newest first, filtered (see the module docstring); each
    with its kept images as signed links, and its details when asked for."""
    spend_log = spend_log_of(request)
    query = await _with_cursor(spend_log, spend_query(request, paged=True), request)
    details = _flag(request, "details") or query.request_id is not None
    if details:
        # A row's details run to tens of KB: a page of them is kept short.
        limit = query.limit if query.request_id is not None else min(query.limit, _MAX_DETAILED)
        query = dataclasses.replace(query, with_details=True, limit=limit)
    rows = await spend_log.rows(query)
    links = _Links(request)
    return json_response([_row_view(row, links, details=details) for row in rows])


async def spend_images(request: Request) -> Response:
    """`GET /spend/images`: the newest kept images the calls made (not their inputs),
    each with its call's prompt, model, size, key alias, team and request id; `limit`
    (default 48, at most 500) calls' images at a time, then `before=<next_before>`. The
    filters of `/spend/logs` apply."""
    spend_log = spend_log_of(request)
    query = spend_query(request, default_limit=_GALLERY_DEFAULT, most=_GALLERY_MOST, paged=True)
    query = await _with_cursor(spend_log, query, request)
    links = _Links(request)
    kept_since = links.now - links.keep_seconds
    start = kept_since if query.start is None else max(query.start, kept_since)
    limit = query.limit
    rows = await spend_log.rows(
        dataclasses.replace(query, with_kept_images=True, start=start, limit=limit + 1)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    data = [
        {
            **links.view(row, image),
            "request_id": row.request_id,
            "created": iso(row.started_at),
            "prompt": row.prompt,
            "model": row.model,
            "model_group": row.model_group,
            "size": row.image_size,
            "quality": row.image_quality,
            "key_alias": row.key_alias,
            "team_id": row.team_id,
        }
        for row in rows
        for image in row.kept_images
        if image.role == "output"
    ]
    console = request.app.state.proxy.config.general_settings.console
    return json_response(
        {
            "object": "list",
            "data": data,
            "has_more": more,
            "next_before": rows[-1].request_id if more and rows else None,
            "keep_images": console.keep_images,
            "keep_request_details": console.keep_request_details,
        }
    )
