"""`response_format=url` for base64-only models: stored images behind signed, expiring links."""

from __future__ import annotations

import io
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
from PIL import Image

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model


def config(store: Path, **store_settings: object) -> dict[str, object]:
    return {
        "model_list": [model("gpt-image-1", "mock/painter")],
        "general_settings": {
            "master_key": MASTER_KEY,
            "image_store": {"path": str(store), **store_settings},
        },
    }


def image_url(proxy: RunningProxy) -> str:
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    answer = client.images.generate(
        prompt="an otter", model="gpt-image-1", size="96x64", response_format="url"
    )
    assert answer.data is not None and answer.data[0].url is not None
    assert answer.data[0].b64_json is None
    return answer.data[0].url


def test_links_serve_the_image_without_the_master_key(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(config(tmp_path))
    url = image_url(proxy)
    assert url.startswith(proxy.base_url + "/v1/images/files/")
    fetched = httpx.get(url)  # a browser or client holds only the link
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(fetched.content)) as image:
        assert image.size == (96, 64)


def test_altered_links_are_refused(serve: Callable[..., RunningProxy], tmp_path: Path) -> None:
    proxy = serve(config(tmp_path))
    url = image_url(proxy)
    forged_signature = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    later = url.replace("expires=", "expires=9")  # a longer life it was not given
    other_name = url.replace("/files/", "/files/0")
    for bad in (forged_signature, later, other_name, url.split("?")[0]):
        refused = httpx.get(bad)
        assert refused.status_code == 403, bad
        assert refused.json()["error"]["code"] == "invalid_signature"


def test_links_expire(serve: Callable[..., RunningProxy], tmp_path: Path) -> None:
    # A link's expiry is a whole second: a 1 s lifetime could end at once on a busy machine.
    proxy = serve(config(tmp_path, url_ttl_seconds=2))
    url = image_url(proxy)
    assert httpx.get(url).status_code == 200
    time.sleep(3.1)
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]


def test_without_a_master_key_the_signing_key_is_a_private_file(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    raw = config(tmp_path)
    raw["general_settings"] = {"image_store": {"path": str(tmp_path)}}
    proxy = serve(raw)
    assert httpx.get(image_url_open(proxy)).status_code == 200
    key_file = tmp_path / ".signing-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32


def image_url_open(proxy: RunningProxy) -> str:
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={"model": "gpt-image-1", "prompt": "x", "size": "32x32", "response_format": "url"},
    )
    return str(answer.json()["data"][0]["url"])
