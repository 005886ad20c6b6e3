"""What the console keeps of each call (general_settings.console: everything, by
default), over HTTP against the real proxy: kept images behind signed links, the request
details (never an image's bytes, never a credential, no prompt when prompts are not
kept), keys and teams that opt out, the filters of `/spend/logs` (hostile values
included) and the gallery's `/spend/images`."""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from prismgate.config import ImageStoreSettings
from prismgate.media.links import SignedLinks
from prismgate.request_details import PROMPT_NOT_KEPT
from prismgate.storage.local_images import LocalImageStore
from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
KEEP_NOTHING = {"keep_images": False, "keep_request_details": False}
# Base64 (or any blob) in a JSON answer: a run this long never appears in a description.
BLOB = re.compile(r"[A-Za-z0-9+/=_-]{200,}")


def png(width: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, width), color).save(out, "PNG")
    return out.getvalue()


def emulated(name: str, model_id: str, emulator: OpenAIEmulator) -> dict[str, Any]:
    return model(name, model_id, api_base=emulator.base_url + "/v1", api_key=emulator.api_key)


def config(emulator: OpenAIEmulator, images: Path, **general: Any) -> dict[str, Any]:
    return {
        "model_list": [
            emulated("painter", "openai/gpt-image-1", emulator),
            emulated("looker", "openai/gpt-4o", emulator),
            model("otters", "mock/otters"),
        ],
        "general_settings": {
            "master_key": MASTER_KEY,
            "image_store": {"path": str(images)},
            "console": {"keep_images": True, "keep_request_details": True},
            **general,
        },
    }


@pytest.fixture(scope="module")
def images_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="prismgate-kept-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIEmulator]:
    """The OpenAI emulator, started from a thread of its own: a browser test before this
    module (Playwright's sync API) may keep an event loop running in the test thread."""
    emulator = OpenAIEmulator()
    starting = threading.Thread(target=emulator.start)
    starting.start()
    starting.join()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def keeping(upstream: OpenAIEmulator, images_folder: Path) -> Iterator[RunningProxy]:
    """One proxy that keeps everything, shared by the module
    (each test uses its own keys)."""
    proxy = RunningProxy(config(upstream, images_folder)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def web() -> Iterator[httpx.Client]:
    """One HTTP client for the module (a client's TLS setup costs 0.1 s each time)."""
    with httpx.Client(timeout=30) as shared:
        yield shared


def make(web: httpx.Client, proxy: RunningProxy, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = web.post(proxy.base_url + path, json=body, headers=ADMIN)
    assert made.status_code == 200, made.text
    answer: dict[str, Any] = made.json()
    return answer


def client(web: httpx.Client, proxy: RunningProxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key, base_url=proxy.base_url + "/v1", max_retries=0, http_client=web
    )


def rows(web: httpx.Client, proxy: RunningProxy, count: int, **query: str) -> list[dict[str, Any]]:
    """The rows matching `query`, once `count` are written (finished off the path)."""
    deadline = time.monotonic() + 10
    while True:
        answer = web.get(proxy.base_url + "/spend/logs", params=query, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} rows, not {count}"
        time.sleep(0.05)


def of_type(found: list[dict[str, Any]], call_type: str) -> dict[str, Any]:
    return next(row for row in found if row["call_type"] == call_type)


def test_images_and_details_are_kept_without_bytes_or_credentials(
    web: httpx.Client, keeping: RunningProxy, upstream: OpenAIEmulator
) -> None:
    key = make(web, keeping, "/key/generate", {"key_alias": "artist"})["key"]
    calls = client(web, keeping, key)
    made = calls.images.generate(model="painter", prompt="a heron at dawn", size="1024x1024")
    assert made.data is not None and made.data[0].b64_json is not None
    answered = base64.b64decode(made.data[0].b64_json)
    calls.images.generate(model="otters", prompt="an otter", size="64x64", response_format="url")
    source = png(64, (10, 120, 200))
    calls.images.edit(model="painter", prompt="add a hat", image=("in.png", source, "image/png"))
    seen = "data:image/png;base64," + base64.b64encode(png(32, (250, 80, 0))).decode()
    calls.chat.completions.create(
        model="looker",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": seen}},
                ],
            }
        ],
    )
    found = rows(web, keeping, 4, key_alias="artist", details="true")

    generated = of_type([r for r in found if r["model_group"] == "painter"], "image_generation")
    [output] = generated["kept_images"]
    assert (output["role"], output["width"], output["height"]) == ("output", 1024, 1024)
    image = web.get(keeping.base_url + output["url"])
    assert image.status_code == 200 and image.content == answered
    [sent] = generated["details"]["sent"]
    assert sent["url"] == upstream.base_url + "/v1/images/generations"
    assert (sent["status"], sent["attempt"]) == (200, "painter@model_list[0]")
    assert sent["body"]["prompt"] == "a heron at dawn" and sent["body"]["model"] == "gpt-image-1"
    assert generated["details"]["request"]["prompt"] == "a heron at dawn"
    assert generated["details"]["answer"]["images"][0]["image"].startswith("<png 1024x1024, ")

    # A url answer's image was stored for its link already: kept under the same name.
    linked = of_type([r for r in found if r["model_group"] == "otters"], "image_generation")
    assert [(i["role"], i["width"]) for i in linked["kept_images"]] == [("output", 64)]

    edited = of_type(found, "image_edit")
    assert sorted(i["role"] for i in edited["kept_images"]) == ["input", "output"]
    kept_input = next(i for i in edited["kept_images"] if i["role"] == "input")
    assert web.get(keeping.base_url + kept_input["url"]).content == source
    form = {part["name"]: part["value"] for part in edited["details"]["sent"][0]["body"]["form"]}
    assert form["prompt"] == "add a hat"
    assert re.fullmatch(r"<png 64x64, \d+ bytes>", form["image"])
    assert re.fullmatch(r"<png 64x64, \d+ bytes>", edited["details"]["request"]["image"][0])

    chat = of_type(found, "chat_completion")
    assert [(i["role"], i["width"]) for i in chat["kept_images"]] == [("input", 32)]
    asked = chat["details"]["request"]["messages"][0]["content"][1]["image_url"]["url"]
    assert re.fullmatch(r"<png 32x32, \d+ bytes>", asked)
    relayed = chat["details"]["sent"][0]["body"]["messages"][0]["content"]
    assert any(re.fullmatch(r"<png 32x32, [^>]+>", str(part)) for part in _strings(relayed))

    # Nothing an admin reads holds a credential or an image's bytes.
    for path in ("/spend/logs?details=true&key_alias=artist", "/spend/images?key_alias=artist"):
        text = web.get(keeping.base_url + path, headers=ADMIN).text
        assert upstream.api_key not in text
        assert "bearer" not in text.lower() and "authorization" not in text.lower()
        assert not BLOB.search(text)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_a_credential_in_a_prompt_is_redacted_in_the_details(
    web: httpx.Client, keeping: RunningProxy, upstream: OpenAIEmulator
) -> None:
    key = make(web, keeping, "/key/generate", {"key_alias": "leaky"})["key"]
    prompt = f"an otter holding a card that reads {upstream.api_key}"
    client(web, keeping, key).images.generate(model="painter", prompt=prompt, size="1024x1024")
    [row] = rows(web, keeping, 1, key_alias="leaky", details="true")
    details = json.dumps(row["details"])
    assert upstream.api_key not in details
    assert "[REDACTED]" in row["details"]["sent"][0]["body"]["prompt"]


def test_a_key_or_a_team_that_opts_out_keeps_nothing(
    web: httpx.Client, keeping: RunningProxy, images_folder: Path
) -> None:
    def kept_files() -> set[str]:
        folder = images_folder / "kept"
        return {path.name for path in folder.iterdir()} if folder.exists() else set()

    before = kept_files()
    # Metadata is free JSON: false as a word or a number opts out as false does.
    saying = {"private": False, "private-word": "false", "private-no": " No", "private-0": 0}
    keys = [
        make(web, keeping, "/key/generate", {"key_alias": alias, "metadata": {"keep_images": no}})
        for alias, no in saying.items()
    ]
    team = make(
        web, keeping, "/team/new", {"team_alias": "quiet", "metadata": {"keep_images": "off"}}
    )
    keys.append(
        make(web, keeping, "/key/generate", {"key_alias": "member", "team_id": team["team_id"]})
    )
    for key in keys:
        client(web, keeping, key["key"]).images.generate(
            model="otters", prompt=f"a private otter of {key['key_alias']}", size="48x48"
        )
    for key in keys:
        [row] = rows(web, keeping, 1, key_alias=key["key_alias"], details="true")
        assert row["kept_images"] == [] and row["details"] is None, key["key_alias"]
    assert kept_files() == before
    gallery = web.get(keeping.base_url + "/spend/images", headers=ADMIN).json()
    assert all(item["key_alias"] not in [*saying, "member"] for item in gallery["data"])


def test_nothing_is_kept_or_captured_when_the_console_keeps_nothing(
    web: httpx.Client,
    serve: Callable[..., RunningProxy],
    upstream: OpenAIEmulator,
    tmp_path: Path,
) -> None:
    proxy = serve(config(upstream, tmp_path, console=KEEP_NOTHING))
    calls = client(web, proxy, MASTER_KEY)
    calls.images.generate(model="painter", prompt="a heron", size="1024x1024")
    calls.images.generate(model="otters", prompt="an otter", size="64x64", response_format="url")
    found = rows(web, proxy, 2, details="true")
    assert all(row["kept_images"] == [] and row["details"] is None for row in found)
    assert not (tmp_path / "kept").exists()
    gallery = web.get(proxy.base_url + "/spend/images", headers=ADMIN).json()
    assert gallery["data"] == [] and gallery["keep_images"] is False


def test_prompts_not_kept_stay_out_of_the_details(
    web: httpx.Client,
    serve: Callable[..., RunningProxy],
    upstream: OpenAIEmulator,
    tmp_path: Path,
) -> None:
    proxy = serve(config(upstream, tmp_path, store_prompts_in_spend_logs=False))
    prompt = "the secret garden of the otters"
    client(web, proxy, MASTER_KEY).images.generate(model="painter", prompt=prompt, size="1024x1024")
    [row] = rows(web, proxy, 1, details="true")
    assert row["prompt"] is None
    text = json.dumps(row["details"])
    assert "secret garden" not in text
    assert row["details"]["request"]["prompt"] == PROMPT_NOT_KEPT
    assert row["details"]["sent"][0]["body"]["prompt"] == PROMPT_NOT_KEPT
    assert len(row["kept_images"]) == 1  # the image is still kept: it is not the prompt


def test_the_requests_filters_find_what_the_console_asks_for(
    web: httpx.Client, keeping: RunningProxy
) -> None:
    team = make(web, keeping, "/team/new", {"team_alias": "filters"})["team_id"]
    red = make(web, keeping, "/key/generate", {"key_alias": "f-red", "team_id": team})
    blue = make(web, keeping, "/key/generate", {"key_alias": "f-blue"})
    begun = time.time()
    client(web, keeping, red["key"]).images.generate(model="otters", prompt="red", size="32x32")
    with pytest.raises(openai.BadRequestError):
        client(web, keeping, red["key"]).images.generate(model="painter", prompt="red", size="7x7")
    client(web, keeping, blue["key"]).images.generate(model="otters", prompt="blue", size="32x32")
    rows(web, keeping, 2, key_alias="f-red")
    first_blue = rows(web, keeping, 1, key_alias="f-blue")[0]

    def ids(**query: str) -> list[str]:
        return [row["request_id"] for row in rows(web, keeping, 0, **query)]

    reds = ids(key_alias="f-red")
    assert len(reds) == 2
    assert ids(team_id=team) == reds
    assert ids(api_key=red["key"]) == reds
    assert len(ids(key_alias="f-red", model_group="otters")) == 1
    [failed] = rows(web, keeping, 1, key_alias="f-red", status="failure", details="true")
    assert "7x7" in failed["details"]["error"]["message"]  # what the caller was told
    assert failed["details"]["sent"] == []  # refused before any upstream call
    assert failed["status_code"] == 400 and failed["model"] == "painter"
    assert failed["request_id"] in ids(key_alias="f-red", model_group="painter")
    assert ids(key_alias="f-red", status_code="400") == [failed["request_id"]]
    served = [r for r in reds if r != failed["request_id"]]
    assert ids(key_alias="f-red", status_filter="success") == served
    # Moments to the second, and the live table's `since` (ended after).
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(begun - 1))
    assert len(ids(team_id=team, start_date=start)) == 2
    assert ids(team_id=team, end_date=start) == []
    assert ids(key_alias="f-blue", since=f"{time.time() + 1:.3f}") == []
    assert ids(key_alias="f-blue", since=str(int(begun - 1))) == [first_blue["request_id"]]
    assert ids(key_alias="f-blue", since=start + "Z") == [first_blue["request_id"]]
    # The next page: rows older than a row.
    newest, older = reds
    assert ids(key_alias="f-red", before=newest) == [older]
    assert ids(key_alias="f-red", limit="1") == [newest]


@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ({"limit": "-1"}, "limit", "whole number"),
        ({"limit": "99999999999999"}, "limit", "whole number"),
        ({"limit": "ten"}, "limit", "whole number"),
        ({"status": "maybe"}, "status", "success or failure"),
        ({"status_code": "9999"}, "status_code", "100 to 599"),
        ({"status_code": "2OO"}, "status_code", "100 to 599"),
        ({"since": "1e309"}, "since", "ISO 8601"),
        ({"since": "nan"}, "since", "ISO 8601"),
        ({"since": "9" * 400}, "since", "ISO 8601"),
        ({"since": "yesterday"}, "since", "ISO 8601"),
        ({"start_date": "2026-13-45"}, "start_date", "YYYY-MM-DD"),
        ({"start_date": "2026-01-01'; DROP TABLE spend_logs;--"}, "start_date", "ISO 8601"),
        ({"end_date": "2026-01-01T25:00:00"}, "end_date", "ISO 8601"),
        ({"start_date": "2026-01-02", "end_date": "2026-01-01"}, "end_date", "after"),
        ({"before": "no-such-request"}, "before", "request_id"),
        ({"status_filter": "pending"}, "status", "success or failure"),
        ({"details": "yes please"}, "details", "true or false"),
    ],
)
def test_hostile_filters_are_a_clear_400(
    web: httpx.Client, keeping: RunningProxy, query: dict[str, str], param: str, words: str
) -> None:
    for path in ("/spend/logs", "/spend/images", "/spend/summary"):
        if path != "/spend/logs" and param == "details":
            continue
        answer = web.get(keeping.base_url + path, params=query, headers=ADMIN)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        expected = "no pages" if (path, param) == ("/spend/summary", "before") else words
        assert error["param"] == param and expected in error["message"]
        assert error["type"] == "invalid_request_error"
        assert "Traceback" not in answer.text


def test_sql_in_a_filter_is_only_a_value(web: httpx.Client, keeping: RunningProxy) -> None:
    for value in ("' OR 1=1 --", '"; DROP TABLE spend_logs; --', "x' UNION SELECT * FROM keys--"):
        for name in ("key_alias", "team_id", "model_group", "request_id"):
            answer = web.get(keeping.base_url + "/spend/logs", params={name: value}, headers=ADMIN)
            assert answer.status_code == 200 and answer.json() == []
    assert web.get(keeping.base_url + "/spend/logs", headers=ADMIN).json()  # still there


def test_only_an_admin_reads_rows_and_images(web: httpx.Client, keeping: RunningProxy) -> None:
    key = make(web, keeping, "/key/generate", {"key_alias": "nosy"})["key"]
    for path in ("/spend/logs", "/spend/images"):
        answer = web.get(keeping.base_url + path, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 403
        assert "master key" in answer.json()["error"]["message"]
        assert web.get(keeping.base_url + path).status_code == 401


def test_the_gallery_pages_newest_first_and_its_links_are_signed(
    web: httpx.Client, keeping: RunningProxy
) -> None:
    key = make(web, keeping, "/key/generate", {"key_alias": "pager"})["key"]
    for color in ("first", "second", "third"):
        client(web, keeping, key).images.generate(model="otters", prompt=color, size="40x40")
    rows(web, keeping, 3, key_alias="pager")

    def page(**query: str) -> dict[str, Any]:
        answer = web.get(
            keeping.base_url + "/spend/images",
            params={"key_alias": "pager", **query},
            headers=ADMIN,
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    one = page(limit="2")
    assert [item["prompt"] for item in one["data"]] == ["third", "second"]
    assert one["has_more"] is True and one["keep_images"] is True
    two = page(limit="2", before=one["next_before"])
    assert [item["prompt"] for item in two["data"]] == ["first"]
    assert two["has_more"] is False and two["next_before"] is None
    item = two["data"][0]
    assert (item["model_group"], item["size"], item["key_alias"]) == ("otters", "40x40", "pager")
    good = web.get(keeping.base_url + item["url"])
    assert good.status_code == 200 and good.headers["content-type"] == "image/png"
    # An altered signature, or a link to another name, is refused.
    tampered = item["url"][:-3] + ("AAA" if not item["url"].endswith("AAA") else "BBB")
    refused = web.get(keeping.base_url + tampered)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "invalid_signature"
    other = item["url"].replace(item["name"], one["data"][0]["name"])
    assert web.get(keeping.base_url + other).status_code == 403


def test_a_kept_images_link_expires_and_each_read_signs_a_fresh_one(
    web: httpx.Client, keeping: RunningProxy, images_folder: Path
) -> None:
    key = make(web, keeping, "/key/generate", {"key_alias": "brief"})["key"]
    client(web, keeping, key).images.generate(model="otters", prompt="brief", size="32x32")
    [row] = rows(web, keeping, 1, key_alias="brief")
    [kept] = row["kept_images"]
    assert web.get(keeping.base_url + kept["url"]).status_code == 200
    # Signed as of the start of a 5-minute window, for the links' hour.
    expires = int(re.search(r"expires=(\d+)", kept["url"])[1])  # type: ignore[index]
    assert time.time() + 3600 - 300 - 5 < expires <= time.time() + 3600
    # The clock moved past that hour: the same link, signed as the proxy signs it (its
    # key comes from the master key), is refused as expired.
    signing_key = LocalImageStore(ImageStoreSettings(path=str(images_folder))).signing_key(
        MASTER_KEY
    )
    an_hour_ago = time.time() - 3600 - 1
    stale = SignedLinks(signing_key, 3600).link("", kept["name"], now=an_hour_ago)
    expired = web.get(keeping.base_url + stale)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    # Each read of the row signs a fresh link: the image is still kept.
    fresh = rows(web, keeping, 1, key_alias="brief")[0]["kept_images"][0]["url"]
    assert web.get(keeping.base_url + fresh).status_code == 200
