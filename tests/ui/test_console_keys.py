"""The Keys and teams page's calls, as the page makes them, against the real proxy with
httpx as the browser: signed in by the session cookie, changes carrying the session's
CSRF token, bodies exactly as the page sends them (an emptied field is `null`, which
clears a cap). And the console's own modules: served as JavaScript, never building
markup from strings, never keeping anything in the browser's storage."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from prismgate import ui
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

STATIC = Path(ui.__file__).parent / "static"
# Every module the console ships, pages included.
MODULES = sorted(path.relative_to(STATIC).as_posix() for path in STATIC.rglob("*.js"))
# Comments may name what the code must not do ("without innerHTML"); code may not. A
# comment starts a line or follows a space (so "https://..." and "image/*" are code).
COMMENTS = re.compile(r"(?:^|(?<=\s))(?:/\*.*?\*/|//[^\n]*)", re.DOTALL)
# What a page module must never do: build markup from strings (XSS), keep a key where
# another script or a later visitor reads it, or set inline styles (the CSP refuses them).
FORBIDDEN = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|localStorage|sessionStorage"
    r"|indexedDB|document\.cookie|\beval\(|new Function|setAttribute\(\"style\"|style:"
)
# Every field the page's key form sends, empty: nothing chosen.
EMPTY_ALLOWANCE: dict[str, Any] = {
    "models": [],
    "max_budget": None,
    "budget_duration": None,
    "rpm_limit": None,
    "tpm_limit": None,
    "ipm_limit": None,
    "max_parallel_requests": None,
}


@pytest.fixture
def proxy(serve: Callable[..., RunningProxy]) -> RunningProxy:
    return serve(
        {
            "model_list": [model("otters", "mock/otters")],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )


@contextmanager
def signed_in(proxy: RunningProxy) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A cookie jar signed in with the master key, and the headers of a change."""
    with httpx.Client(base_url=proxy.base_url) as browser:
        answer = browser.post("/ui/login", data={"key": MASTER_KEY})
        assert answer.status_code == 303, answer.text
        token = browser.get("/ui/session").json()["csrf_token"]
        yield browser, {"x-csrf-token": token}


def test_the_page_makes_changes_and_clears_caps_with_its_session(proxy: RunningProxy) -> None:
    with signed_in(proxy) as (browser, change):

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = browser.post(path, json=body, headers=change)
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found

        team = post("/team/new", {"team_alias": "artists", **EMPTY_ALLOWANCE, "max_budget": 20})
        made = post(
            "/key/generate",
            {
                "key_alias": "painter",
                "team_id": team["team_id"],
                "user_id": None,
                "metadata": {"owner": "ci"},
                **EMPTY_ALLOWANCE,
                "rpm_limit": 60,
                "ipm_limit": 10,
                "max_budget": 1.5,
                "budget_duration": "30d",
                "duration": None,
            },
        )
        key, token = made["key"], made["token"]
        listed = browser.get("/key/list", params={"return_full_object": "true", "size": 100})
        (shown,) = listed.json()["keys"]
        assert shown["token"] == token and shown["ipm_limit"] == 10
        assert key not in listed.text  # shown once, in the answer that made it
        # An edit sends every field: emptied ones clear their cap, the rest replace.
        post(
            "/key/update",
            {
                "key": token,
                "key_alias": "painter",
                "team_id": None,
                "user_id": None,
                "metadata": {},
                **EMPTY_ALLOWANCE,
                "ipm_limit": 30,
            },
        )
        info = browser.get("/key/info", params={"key": token}).json()["info"]
        assert (info["ipm_limit"], info["rpm_limit"], info["max_budget"]) == (30, None, None)
        assert (info["team_id"], info["metadata"], info["budget_duration"]) == (None, {}, None)
        assert post("/key/block", {"key": token})["blocked"] is True
        assert (
            httpx.get(
                proxy.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 401
        )
        assert post("/key/unblock", {"key": token})["blocked"] is False
        blocked = post("/team/update", {"team_id": team["team_id"], "blocked": True})
        assert blocked["data"]["blocked"] is True
        assert post("/key/delete", {"keys": [token]})["deleted_keys"] == [token]
        assert browser.get("/key/list").json()["keys"] == []


def test_a_change_needs_this_sessions_csrf_token(proxy: RunningProxy) -> None:
    with signed_in(proxy) as (browser, _), signed_in(proxy) as (_, other):
        body = {"key_alias": "x", **EMPTY_ALLOWANCE}
        for headers in ({}, other, {"x-csrf-token": ""}, {"x-csrf-token": "a" * 43}):
            refused = browser.post("/key/generate", json=body, headers=headers)
            assert refused.status_code == 403
            error = refused.json()["error"]
            assert error["code"] == "csrf_token_invalid" and "x-csrf-token" in error["message"]
        assert browser.get("/key/list").json()["total_count"] == 0
        # Reads need no token: the pages' lists and the model status.
        assert browser.get("/team/list").status_code == 200
        assert browser.get("/model/status").status_code == 200


def test_the_page_refuses_what_the_api_refuses_with_its_message(proxy: RunningProxy) -> None:
    """The page shows the API's message as it is: it must say what to change."""
    with signed_in(proxy) as (browser, change):
        for body, param in (
            ({"key_alias": "x", "rpm_limit": 0}, "rpm_limit"),
            ({"key_alias": "x", "max_budget": -1}, "max_budget"),
            ({"key_alias": "x", "budget_duration": "fortnightly"}, None),
            ({"key_alias": "x", "team_id": "no-such-team"}, None),
            ({"key_alias": "x", "surprise": True}, "surprise"),
        ):
            refused = browser.post("/key/generate", json=body, headers=change)
            assert 400 <= refused.status_code < 500, refused.text
            error = refused.json()["error"]
            assert error["message"] and "Traceback" not in refused.text
            if param is not None:
                assert param in error["message"]


def code_of(source: str) -> str:
    """A module's source without its comments."""
    return COMMENTS.sub("", source)


def test_comments_are_stripped_and_code_is_kept() -> None:
    code = code_of(
        '// innerHTML in a comment\nconst a = "image/*"; /* eval( */\n'
        'x.innerHTML = y; // note\nfetch("https://a/b");\n/**\n * doc\n */ eval(z);'
    )
    assert FORBIDDEN.findall(code) == ["innerHTML", "eval("]
    assert '"image/*"' in code and '"https://a/b"' in code and "note" not in code


def test_the_modules_are_javascript_without_markup_or_storage(proxy: RunningProxy) -> None:
    assert {"console.js", "api.js", "dom.js", "pages/requests.js", "pages/gallery.js"} <= set(
        MODULES
    )
    with signed_in(proxy) as (browser, _):
        for module in MODULES:
            source = (STATIC / module).read_text()
            found = FORBIDDEN.findall(code_of(source))
            assert not found, f"{module} uses {found}"
            served = browser.get(f"/ui/static/{module}")
            assert served.status_code == 200
            assert "javascript" in served.headers["content-type"]
            assert served.text == source
