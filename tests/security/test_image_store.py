"""The image store's rules (README, "Security model"):

- every part of a signed image link a caller may alter (name, `expires`, `signature`) is
  refused with an OpenAI-shaped 403 or 404, never a 500: `/v1/images/files/` needs no key;
- the store keeps at most `max_bytes`: a full store answers `url` requests with a 507
  that says what to change, and `b64_json` requests are still served;
- stored images are removed once their links have expired (plus a margin), by a sweep
  that runs on its own, and the room they took is given back.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving import MASTER_KEY, RunningProxy, model

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
FILES = "/v1/images/files/"


def config(
    store: Path, litellm: dict[str, Any] | None = None, **store_settings: Any
) -> dict[str, Any]:
    return {
        "model_list": [model("gpt-image-1", "mock/painter")],
        "router_settings": {"num_retries": 2},
        "litellm_settings": litellm or {},
        "general_settings": {
            "master_key": MASTER_KEY,
            "image_store": {"path": str(store), **store_settings},
        },
    }


def generate(proxy: RunningProxy, prompt: str, response_format: str) -> httpx.Response:
    return httpx.post(
        f"{proxy.base_url}/v1/images/generations",
        json={
            "model": "gpt-image-1",
            "prompt": prompt,
            "size": "64x64",
            "response_format": response_format,
        },
        headers=AUTH,
        timeout=30,
    )


def assert_openai_error(status: int, body: bytes, allowed: tuple[int, ...]) -> dict[str, Any]:
    assert status in allowed, (status, body[:300])
    assert b"Traceback" not in body
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


# --- 1. Signed links: whatever a caller alters is a 403 or a 404 -----------------------


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningProxy, str]]:
    """One proxy (module-wide: hypothesis runs many examples against it) and a good link."""
    proxy = RunningProxy(config(tmp_path_factory.mktemp("store"))).start()
    answer = generate(proxy, "an otter", "url")
    assert answer.status_code == 200, answer.text
    yield proxy, answer.json()["data"][0]["url"]
    proxy.stop()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no client normalises `..` or re-encodes it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def link_parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = dict(item.split("=", 1) for item in parts.query.split("&"))
    return parts.path.removeprefix(FILES), query["expires"], query["signature"]


HOSTILE_PARTS = [
    "",
    "..",
    "../..",
    "%2e%2e",
    "..%2f..%2fetc%2fpasswd",
    "%2f",
    "a%2fb",
    "%00",
    "x%00.png",
    "%5c..%5c",
    "%ff%fe",
    "%ed%a0%80",  # a UTF-8 encoded surrogate
    quote("١٢٣"),
    quote("²³"),
    "9" * 5000,
    "1" * 20,
    "-1",
    "+1",
    "%201",
    "1e9",
    "0x10",
    "A" * 43,
    "A" * 20_000,  # longer request lines are the HTTP server's to refuse, before the app
]

hostile = st.one_of(
    st.sampled_from(HOSTILE_PARTS),
    st.text(max_size=60).map(lambda text: quote(text, safe="")),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=30).map(quote),
    st.integers(min_value=13, max_value=6000).map(lambda n: "7" * n),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.none() | hostile, expires=st.none() | hostile, signature=st.none() | hostile)
def test_altered_link_parts_are_refused_never_a_server_error(
    linked: tuple[RunningProxy, str], name: str | None, expires: str | None, signature: str | None
) -> None:
    proxy, url = linked
    good_name, good_expires, good_signature = link_parts(url)
    target = (
        f"{FILES}{good_name if name is None else name}"
        f"?expires={good_expires if expires is None else expires}"
        f"&signature={good_signature if signature is None else signature}"
    )
    status, body = raw_get(proxy.port, target)
    if (name, expires, signature) == (None, None, None):
        assert status == 200
        return
    assert_openai_error(status, body, (403, 404, 414))


def test_non_ascii_and_huge_expires_are_refused(linked: tuple[RunningProxy, str]) -> None:
    # The reported probes: str.isdigit() takes these; int() does not (or not past 4,300).
    proxy, url = linked
    name, _, signature = link_parts(url)
    for expires in (quote("١٢٣"), quote("²"), "9" * 5000, "1" * 4301):
        status, body = raw_get(proxy.port, f"{FILES}{name}?expires={expires}&signature={signature}")
        error = assert_openai_error(status, body, (403,))
        assert error["code"] == "invalid_signature"


def test_a_link_with_its_query_repeated_or_missing_is_refused(
    linked: tuple[RunningProxy, str],
) -> None:
    proxy, url = linked
    name, expires, signature = link_parts(url)
    for query in (
        "",
        "?expires=",
        f"?signature={signature}",
        f"?expires={expires}",
        f"?expires={expires}&signature={signature}&expires=1",
    ):
        status, body = raw_get(proxy.port, f"{FILES}{name}{query}")
        assert_openai_error(status, body, (403,))


# --- 2. The store's size cap and expiry -------------------------------------------------


def image_bytes(proxy: RunningProxy, prompt: str) -> int:
    answer = generate(proxy, prompt, "b64_json")
    assert answer.status_code == 200, answer.text
    return len(base64.b64decode(answer.json()["data"][0]["b64_json"]))


def stored(store: Path) -> list[Path]:
    """The images stored for links (not the console's kept/ folder, nor the key file)."""
    return [path for path in store.iterdir() if path.is_file() and not path.name.startswith(".")]


def test_a_full_store_answers_507_and_b64_json_still_works(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    probe = serve(config(tmp_path / "probe"))
    first, second = image_bytes(probe, "an otter"), image_bytes(probe, "a heron")
    store = tmp_path / "store"
    proxy = serve(config(store, max_bytes=first + second - 1))

    assert generate(proxy, "an otter", "url").status_code == 200  # fills the store
    assert generate(proxy, "an otter", "url").status_code == 200  # the same image: free
    full = generate(proxy, "a heron", "url")
    error = assert_openai_error(full.status_code, full.content, (507,))
    assert error["type"] == "api_error" and error["code"] == "image_store_full"
    assert "general_settings.image_store.max_bytes" in error["message"]
    assert "b64_json" in error["message"]
    assert f"of {(first + second - 1) / 1024:.1f} KB)" in error["message"]
    # The gateway's own disk is not the provider's fault: one attempt, not three.
    assert "," not in full.headers["x-prismgate-attempts"]
    assert len(stored(store)) == 1
    assert sum(path.stat().st_size for path in stored(store)) <= first + second - 1

    assert generate(proxy, "a heron", "b64_json").status_code == 200


def test_expired_images_are_swept_and_their_room_given_back(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    probe = serve(config(tmp_path / "probe"))
    first, second = image_bytes(probe, "an otter"), image_bytes(probe, "a heron")
    store = tmp_path / "store"
    proxy = serve(
        config(
            store,
            max_bytes=first + second - 1,
            url_ttl_seconds=1,
            expiry_margin_seconds=0,
            sweep_interval_seconds=0.1,
        )
    )
    assert generate(proxy, "an otter", "url").status_code == 200
    assert generate(proxy, "a heron", "url").status_code == 507
    deadline = time.monotonic() + 5
    while stored(store) and time.monotonic() < deadline:  # no request needed: the sweeper
        time.sleep(0.1)
    assert stored(store) == []
    fresh = generate(proxy, "a heron", "url")
    assert fresh.status_code == 200, fresh.text
    assert len(stored(store)) == 1  # (its 1 s link may expire before a busy machine asks)


def test_a_full_store_does_not_fail_cached_b64_json_answers(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    # The response cache keeps images in the same store: when it is full, the answer is
    # delivered, only not cached.
    probe = serve(config(tmp_path / "probe"))
    first = image_bytes(probe, "an otter")
    proxy = serve(config(tmp_path / "store", {"cache": True}, max_bytes=first))
    assert generate(proxy, "an otter", "b64_json").status_code == 200  # cached: fills it
    answer = generate(proxy, "a heron", "b64_json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-portkey-cache-status"] == "MISS"
    assert generate(proxy, "a heron", "url").status_code == 507
