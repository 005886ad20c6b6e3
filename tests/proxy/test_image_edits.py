"""`POST /v1/images/edits` and `/v1/images/variations` through the real server: multipart
forms from the openai client and from httpx, the JSON form, limits and clear errors."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from prismgate import BadRequestError, aimage_edit, aimage_variation, image_edit
from tests.emulators import make_image
from tests.proxy.conftest import RunningProxy, model

PNG = make_image(256, 256, "png", seed=1)
WIDE_JPEG = make_image(320, 200, "jpeg", seed=2)


def mock_config(tmp_path: Path, **general: object) -> dict[str, object]:
    return {
        "model_list": [
            model("gpt-image-1", "mock/gpt-image-1"),
            model("dall-e-2", "mock/dall-e-2"),
            # Never called; its own api_base, since OpenAI has shut dall-e-3 down.
            model(
                "dall-e-3", "openai/dall-e-3", api_key="sk-unused", api_base="http://127.0.0.1:9/v1"
            ),
            model(
                "grok",
                "xai/my-grok-image",
                api_key="xai-unused",
                model_info={"supports_vision": False},
            ),
        ],
        "general_settings": {"image_store": {"path": str(tmp_path)}, **general},
    }


def size_of(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.size


@pytest.fixture
def proxy(serve: Callable[..., RunningProxy], tmp_path: Path) -> RunningProxy:
    return serve(mock_config(tmp_path))


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-1234", base_url=proxy.base_url + "/v1")


def test_openai_client_edit_with_mask(proxy: RunningProxy) -> None:
    answer = client(proxy).images.edit(
        model="gpt-image-1",
        image=("otter.png", PNG, "image/png"),
        mask=("mask.png", make_image(256, 256, "png", transparent=True), "image/png"),
        prompt="add a hat",
        n=2,
    )
    assert answer.data is not None and len(answer.data) == 2
    # Without a size, an edit keeps the input image's size.
    assert {size_of(item.b64_json or "") for item in answer.data} == {(256, 256)}


def test_openai_client_edit_with_several_images(proxy: RunningProxy) -> None:
    answer = client(proxy).images.edit(
        model="gpt-image-1",
        image=[("a.png", PNG, "image/png"), ("b.jpg", WIDE_JPEG, "image/jpeg")],
        prompt="combine them",
        size="1024x1536",
    )
    assert answer.data is not None and size_of(answer.data[0].b64_json or "") == (1024, 1536)


def test_edit_as_url_is_a_signed_link(proxy: RunningProxy) -> None:
    answer = client(proxy).images.edit(
        model="dall-e-2", image=PNG, prompt="a hat", response_format="url", size="512x512"
    )
    assert answer.data is not None and answer.data[0].url
    assert answer.data[0].url.startswith(proxy.base_url + "/v1/images/files/")
    fetched = httpx.get(answer.data[0].url)
    assert fetched.status_code == 200
    with Image.open(io.BytesIO(fetched.content)) as image:
        assert image.size == (512, 512)


def test_json_edit_with_data_urls(proxy: RunningProxy) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        json={
            "model": "gpt-image-1",
            "prompt": "a hat",
            "images": [{"image_url": data_url}],
            "mask": {"image_url": data_url},
            "n": 1,
        },
    )
    assert answer.status_code == 200, answer.text
    assert size_of(answer.json()["data"][0]["b64_json"]) == (256, 256)
    assert float(answer.headers["x-prismgate-response-cost"]) == 0.0


def test_json_edit_refuses_file_ids(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        json={"model": "gpt-image-1", "prompt": "p", "images": [{"file_id": "file-123"}]},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "images"
    assert "image_url" in answer.json()["error"]["message"]


def test_json_edit_links_go_through_the_safe_fetcher(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        json={
            "model": "gpt-image-1",
            "prompt": "p",
            "images": [{"image_url": "http://169.254.169.254/latest/meta-data/"}],
        },
    )
    assert answer.status_code in (400, 403), answer.text
    assert "169.254.169.254" not in answer.json()["error"].get("upstream_message", "")


def test_multipart_numbers_are_read_as_numbers(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/images/edits",
        data={"model": "gpt-image-1", "prompt": "p", "n": "3", "size": "1024x1024"},
        files={"image": ("a.png", PNG, "image/png")},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 3


def test_a_file_that_is_not_an_image_is_a_clear_400(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "p"},
        files={"image": ("notes.png", b"hello, not a picture", "image/png")},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "image" and error["code"] == "invalid_image"


def test_missing_image_names_the_field(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits", data={"model": "gpt-image-1", "prompt": "p"},
        files={"other": ("x.txt", b"x", "text/plain")},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "other"
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        content=b"",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert answer.status_code == 400


def test_a_model_that_cannot_edit_says_so(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        data={"model": "dall-e-3", "prompt": "p"},
        files={"image": ("a.png", PNG, "image/png")},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "model_not_supported"
    assert "dall-e-3 cannot edit images" in answer.json()["error"]["message"]


def test_upload_over_the_limit_is_refused_while_reading(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(mock_config(tmp_path, max_request_size_mb=1))

    def chunks() -> object:
        boundary = b"--b\r\n"
        yield boundary + b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n" + PNG
        for _ in range(64):  # 4 MiB, sent without a Content-Length
            yield b"\0" * 65536

    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_variations_with_the_openai_client(proxy: RunningProxy) -> None:
    answer = client(proxy).images.create_variation(
        model="dall-e-2", image=("a.png", PNG, "image/png"), n=2, size="256x256"
    )
    assert answer.data is not None and len(answer.data) == 2
    assert size_of(answer.data[0].b64_json or "") == (256, 256)


def test_a_variation_takes_one_image(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/v1/images/variations",
        data={"model": "dall-e-2"},
        files=[("image", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))],
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "image"


def test_azure_style_path(proxy: RunningProxy) -> None:
    answer = httpx.post(
        proxy.base_url + "/openai/deployments/gpt-image-1/images/edits?api-version=2025-04-01",
        data={"prompt": "p"},
        files={"image": ("a.png", PNG, "image/png")},
    )
    assert answer.status_code == 200, answer.text


# ---------------------------------------------------------------------- the SDK


def test_sdk_edit_takes_paths_files_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "otter.png"
    path.write_bytes(PNG)
    with path.open("rb") as handle:
        answer = image_edit(image=[path, handle, WIDE_JPEG], prompt="p", model="mock/gpt-image-1")
    assert size_of(answer.data[0].b64_json or "") == (256, 256)
    assert answer._hidden_params is not None and answer._hidden_params["provider"] == "mock"


async def test_sdk_edit_refuses_text_files_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="cannot read"):
        await aimage_edit(image=tmp_path / "missing.png", prompt="p", model="mock/x")
    with pytest.raises(BadRequestError, match="mask is not an image"):
        await aimage_edit(image=PNG, mask=b"text", prompt="p", model="mock/x")


async def test_sdk_variation_url_is_a_data_url() -> None:
    answer = await aimage_variation(image=PNG, model="mock/dall-e-2", response_format="url")
    assert answer.data[0].url is not None and answer.data[0].url.startswith("data:image/png;")


def test_a_provider_without_edits_says_so_plainly(proxy: RunningProxy) -> None:
    # xAI generates images but has no edits API; a model_info without a mode says nothing
    # of the model's kind, so the message adds nothing either.
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        data={"model": "grok", "prompt": "p"},
        files={"image": ("a.png", PNG, "image/png")},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "grok cannot edit images"
