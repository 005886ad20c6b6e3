"""Signing in to the console: an HTTP-only session cookie for the master key or an
admin's key, a CSRF token for everything that changes something, sign-out, and sessions
that end when their key does. Against the real proxy, with httpx as the browser."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from prismgate.ui.sessions import COOKIE, SessionSigner
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def proxy(serve: Callable[..., RunningProxy]) -> RunningProxy:
    return serve(
        {
            "model_list": [model("otters", "mock/otters")],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )


def browser(proxy: RunningProxy) -> httpx.Client:
    return httpx.Client(base_url=proxy.base_url, follow_redirects=False)


def sign_in(page: httpx.Client, key: str) -> httpx.Response:
    return page.post("/ui/login", data={"key": key})


def test_the_console_sends_a_visitor_to_sign_in(proxy: RunningProxy) -> None:
    with browser(proxy) as page:
        shell = page.get("/ui")
        assert shell.status_code == 303
        assert shell.headers["location"] == "/ui/login"
        form = page.get("/ui/login")
        assert form.status_code == 200
        assert 'name="key"' in form.text and 'type="password"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert form.headers["x-frame-options"] == "DENY"
        # The API still wants a key (no session): a JSON 401, not a page.
        refused = page.get("/key/list")
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"


def test_the_master_key_signs_in_with_an_http_only_cookie(proxy: RunningProxy) -> None:
    with browser(proxy) as page:
        answer = sign_in(page, MASTER_KEY)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for flag in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert flag.lower() in cookie.lower()
        # The cookie never holds the key.
        assert MASTER_KEY not in cookie
        shell = page.get("/ui")
        assert shell.status_code == 200
        assert "/ui/static/console.js" in shell.text
        session = page.get("/ui/session").json()
        assert session["role"] == "master_key"
        assert len(session["csrf_token"]) >= 40
        assert page.get("/ui/static/console.js").status_code == 200
        # The API answers the session: reads without more, changes with the CSRF token.
        assert page.get("/key/list").status_code == 200
        refused = page.post("/key/generate", json={"key_alias": "csrf-less"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_token_invalid"
        made = page.post(
            "/key/generate",
            json={"key_alias": "from-console"},
            headers={"x-csrf-token": session["csrf_token"]},
        )
        assert made.status_code == 200, made.text
        assert made.json()["key"].startswith("sk-")


def test_a_wrong_key_or_a_plain_key_does_not_sign_in(proxy: RunningProxy) -> None:
    plain = httpx.post(
        proxy.base_url + "/key/generate", json={"key_alias": "plain"}, headers=ADMIN
    ).json()["key"]
    with browser(proxy) as page:
        wrong = sign_in(page, "sk-not-a-key")
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        assert "does not sign in" in wrong.text
        # The key is never echoed into the page.
        assert "sk-not-a-key" not in wrong.text
        refused = sign_in(page, plain)
        assert refused.status_code == 403
        assert "proxy_admin" in refused.text
        assert "set-cookie" not in refused.headers
        assert sign_in(page, "").status_code == 400


def test_an_admin_users_key_signs_in_until_it_is_blocked(proxy: RunningProxy) -> None:
    made = httpx.post(
        proxy.base_url + "/user/new",
        json={"user_id": "ada", "user_role": "proxy_admin"},
        headers=ADMIN,
    )
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    with browser(proxy) as page:
        assert sign_in(page, key).status_code == 303
        session = page.get("/ui/session").json()
        assert session["role"] == "proxy_admin"
        assert page.get("/ui").status_code == 200
        blocked = httpx.post(proxy.base_url + "/key/block", json={"key": key}, headers=ADMIN)
        assert blocked.status_code == 200, blocked.text
        # This worker forgets the key at once; its session ends with it.
        assert page.get("/ui").status_code == 303
        assert page.get("/ui/session").status_code == 401
        assert page.get("/key/list").status_code == 401


def test_sign_out_needs_the_pages_token_and_ends_the_session(proxy: RunningProxy) -> None:
    with browser(proxy) as page:
        sign_in(page, MASTER_KEY)
        token = page.get("/ui/session").json()["csrf_token"]
        forged = page.post("/ui/logout", data={"csrf_token": "not-it"})
        assert forged.status_code == 403
        assert page.get("/ui").status_code == 200
        out = page.post("/ui/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert out.headers["location"] == "/ui/login"
        assert page.get("/ui").status_code == 303


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "e30.AAAA",
        # A well-formed session signed by another gateway's master key.
        SessionSigner("sk-some-other-master").issue("admin"),
        # This gateway's signer, but the session ran out an hour ago.
        SessionSigner(MASTER_KEY).issue("admin", now=0),
        "a" * 5000,
        "\u00e9\u00e9.\u00e9",
    ],
)
def test_forged_or_expired_sessions_are_no_sessions(proxy: RunningProxy, cookie: str) -> None:
    # Sent as raw bytes: a hostile client is not held to ASCII.
    headers = {"cookie": f"{COOKIE}={cookie}".encode()}
    with browser(proxy) as page:
        assert page.get("/ui", headers=headers).status_code == 303
        assert page.get("/ui/session", headers=headers).status_code == 401
        api = page.get("/key/list", headers=headers)
        assert api.status_code == 401
        assert api.json()["error"]["message"].startswith("missing API key")


# Not ASCII, as a hostile client may send it: a token or cookie like this is no match.
NON_ASCII = "\u00e9t\u00e9"


def test_a_non_ascii_csrf_token_is_refused_not_an_error(proxy: RunningProxy) -> None:
    with browser(proxy) as page:
        sign_in(page, MASTER_KEY)
        token = page.get("/ui/session").json()["csrf_token"]
        for forged in (NON_ASCII, token[:-1] + "\u00e9"):
            refused = page.post(
                "/key/generate",
                json={"key_alias": "x"},
                headers={"x-csrf-token": forged.encode()},
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "csrf_token_invalid"
            assert page.post("/ui/logout", data={"csrf_token": forged}).status_code == 403
            by_header = page.post("/ui/logout", headers={"x-csrf-token": forged.encode()})
            assert by_header.status_code == 403
        assert page.get("/key/list").json()["total_count"] == 0
        assert page.get("/ui").status_code == 200  # still signed in


def test_a_quoted_non_ascii_session_cookie_is_no_session(proxy: RunningProxy) -> None:
    # Quoted, it passes the cookie parser: the signature check must refuse it, not fail.
    valid = SessionSigner(MASTER_KEY).issue("admin")
    for cookie in (f'"abc.{NON_ASCII}"', f'"{valid}{NON_ASCII}"', f'"{NON_ASCII}.{valid}"'):
        headers = {"cookie": f"{COOKIE}={cookie}".encode()}
        with browser(proxy) as page:
            assert page.get("/ui", headers=headers).status_code == 303
            assert page.get("/ui/session", headers=headers).status_code == 401
            api = page.get("/key/list", headers=headers)
            assert api.status_code == 401, api.text
            assert api.json()["error"]["message"].startswith("missing API key")
            # Sign-out without the session's token is refused, as for any cookie.
            assert page.post("/ui/logout", headers=headers).status_code == 403


def test_the_session_says_how_long_it_has_left_and_what_is_kept(
    serve: Callable[..., RunningProxy],
) -> None:
    console = {"keep_images": False, "keep_request_details": True, "keep_images_days": 3.0}
    proxy = serve(
        {
            "model_list": [model("otters", "mock/otters")],
            "general_settings": {"master_key": MASTER_KEY, "console": console},
        }
    )
    signer = SessionSigner(MASTER_KEY)
    # Signed in an hour ago: eleven of its twelve hours are left.
    cookie = signer.issue("admin", now=time.time() - 3600)
    with browser(proxy) as page:
        page.cookies.set(COOKIE, cookie)
        session = page.get("/ui/session").json()
        assert signer.lifetime - 3600 - 60 < session["expires_in"] <= signer.lifetime - 3600
        # What the console keeps: the pages read it here.
        assert session["console"] == console
    with browser(proxy) as fresh:
        sign_in(fresh, MASTER_KEY)
        assert fresh.get("/ui/session").json()["expires_in"] > signer.lifetime - 60


def test_a_gateway_without_a_master_key_has_no_console(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({"model_list": [model("otters", "mock/otters")]})
    with browser(proxy) as page:
        form = page.get("/ui/login")
        assert form.status_code == 503
        assert "general_settings.master_key" in form.text
        assert sign_in(page, "anything").status_code == 503
        assert page.get("/ui").status_code == 303
