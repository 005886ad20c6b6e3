"""OpenAI-shaped image edits and variations (OpenAI, Azure, self-hosted servers) through
`Gateway.image_edit` / `Gateway.image_variation`, against the OpenAI emulator; one test
goes through the real proxy with the openai client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

import prismgate
from prismgate import Gateway
from prismgate.gateway import CallOptions
from prismgate.routing.deployments import CallerOverrides
from prismgate.types import (
    ImageEditRequest,
    ImageResponse,
    ImageVariationRequest,
    InputImage,
    image_params,
)
from tests.emulators import OpenAIEmulator
from tests.emulators.images import make_image
from tests.emulators.openai_rules import FormPart
from tests.images import image_bytes, opened
from tests.meta import with_meta
from tests.serving import RunningProxy, model

PROMPT = "add a red hat"


def png(width: int = 256, height: int = 256, *, alpha: bool = True, seed: int = 1) -> InputImage:
    data = make_image(width, height, "png", seed, transparent=alpha)
    return InputImage(data=data, media_type="image/png", filename="in.png")


def picture(fmt: str, size: int = 256) -> InputImage:
    media = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[fmt]
    return InputImage(data=make_image(size, size, fmt, 3), media_type=media)


def options(emulator: OpenAIEmulator, base: str = "/v1", **kwargs: Any) -> CallOptions:
    overrides = CallerOverrides(api_key=emulator.api_key, api_base=emulator.base_url + base)
    return CallOptions(overrides=overrides, **kwargs)


async def edit(emulator: OpenAIEmulator, request: ImageEditRequest, **kwargs: Any) -> ImageResponse:
    async with Gateway() as gateway:
        return with_meta(await gateway.image_edit(request, options(emulator, **kwargs)))


async def vary(
    emulator: OpenAIEmulator, request: ImageVariationRequest, **kwargs: Any
) -> ImageResponse:
    async with Gateway() as gateway:
        return with_meta(await gateway.image_variation(request, options(emulator, **kwargs)))


def sent(emulator: OpenAIEmulator) -> list[FormPart]:
    return OpenAIEmulator.form(emulator.requests[-1])


def fields(parts: list[FormPart]) -> dict[str, str]:
    return {part.name: part.text for part in parts if not part.is_file}


def files(parts: list[FormPart]) -> list[tuple[str, str | None]]:
    return [(part.name, part.content_type) for part in parts if part.is_file]


def cost(response: ImageResponse) -> float | None:
    assert response._hidden_params is not None
    return response._hidden_params.response_cost


# ---------------------------------------------------------------------- field table rows

# (model, request parameter, value, form value OpenAI receives): one row per parameter
# the table maps for an edit, with values the model takes.
EDIT_ROWS = [
    ("gpt-image-1", "n", 2, "2"),
    ("gpt-image-1", "size", "1536x1024", "1536x1024"),
    ("gpt-image-1", "quality", "high", "high"),
    ("gpt-image-1", "background", "transparent", "transparent"),
    ("gpt-image-1", "output_format", "webp", "webp"),
    ("gpt-image-1", "input_fidelity", "high", "high"),
    ("gpt-image-1", "user", "user-7", "user-7"),
    ("dall-e-2", "response_format", "b64_json", "b64_json"),
    ("dall-e-2", "size", "512x512", "512x512"),
    ("dall-e-2", "quality", "standard", "standard"),
]


@pytest.mark.parametrize(("model_id", "param", "value", "wire"), EDIT_ROWS)
async def test_edit_field_rows(
    openai_emulator: OpenAIEmulator, model_id: str, param: str, value: object, wire: str
) -> None:
    request = ImageEditRequest(prompt=PROMPT, image=[png()], model=model_id, **{param: value})
    await edit(openai_emulator, request)
    assert fields(sent(openai_emulator)) == {"model": model_id, "prompt": PROMPT, param: wire}


async def test_output_compression_row(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(
        prompt=PROMPT, image=[png()], model="gpt-image-1", output_format="jpeg",
        output_compression=40,
    )  # fmt: skip
    response = await edit(openai_emulator, request)
    assert fields(sent(openai_emulator)) == {
        "model": "gpt-image-1", "prompt": PROMPT, "output_format": "jpeg",
        "output_compression": "40",
    }  # fmt: skip
    assert opened(image_bytes(response.data[0])).format == "JPEG"


VARIATION_ROWS = [
    ("n", 3, "3"),
    ("size", "256x256", "256x256"),
    ("response_format", "b64_json", "b64_json"),
    ("user", "user-7", "user-7"),
]


@pytest.mark.parametrize(("param", "value", "wire"), VARIATION_ROWS)
async def test_variation_field_rows(
    openai_emulator: OpenAIEmulator, param: str, value: object, wire: str
) -> None:
    request = ImageVariationRequest(image=png(alpha=False), model="dall-e-2", **{param: value})
    await vary(openai_emulator, request)
    assert fields(sent(openai_emulator)) == {"model": "dall-e-2", param: wire}
    assert files(sent(openai_emulator)) == [("image", "image/png")]


EDIT_VALUES: dict[str, object] = {
    "n": 2, "quality": "low", "response_format": "b64_json", "size": "320x240",
    "user": "u-1", "background": "opaque", "output_format": "png", "output_compression": 90,
    "input_fidelity": "low", "negative_prompt": "blur",
}  # fmt: skip


@pytest.mark.parametrize("param", image_params(ImageEditRequest))
async def test_every_edit_parameter_reaches_a_self_hosted_server(
    compatible_emulator: OpenAIEmulator, param: str
) -> None:
    # An uncatalogued model: nothing is refused, every row of the table is sent as named.
    request = ImageEditRequest(
        prompt=PROMPT, image=[png()], model="openai/local-edit", **{param: EDIT_VALUES[param]}
    )
    await edit(compatible_emulator, request)
    wire = EDIT_VALUES[param]
    assert fields(sent(compatible_emulator)) == {
        "model": "local-edit", "prompt": PROMPT, param: str(wire),
    }  # fmt: skip


async def test_extras_are_sent_as_form_fields(compatible_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(prompt=PROMPT, image=[png()], model="hosted_vllm/flux-kontext")
    extra = {"seed": 7, "enhance": True, "guidance": {"scale": 2.5}, "loras": ["a", "b"]}
    await edit(compatible_emulator, request, extra=extra)
    parts = sent(compatible_emulator)
    assert sorted((p.name, p.text) for p in parts if not p.is_file) == sorted([
        ("model", "flux-kontext"), ("prompt", PROMPT), ("seed", "7"), ("enhance", "true"),
        ("guidance[scale]", "2.5"), ("loras[]", "a"), ("loras[]", "b"),
    ])  # fmt: skip


# ---------------------------------------------------------------------- OpenAI


async def test_dall_e_2_edit_with_mask(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(
        prompt=PROMPT, image=[png(512, 512, alpha=False)], mask=png(512, 512, seed=9),
        model="dall-e-2", n=2, size="256x256", response_format="b64_json",
    )  # fmt: skip
    response = await edit(openai_emulator, request)
    received = openai_emulator.requests[-1]
    assert received.path == "/v1/images/edits"
    assert received.headers["authorization"] == f"Bearer {openai_emulator.api_key}"
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert files(sent(openai_emulator)) == [("image", "image/png"), ("mask", "image/png")]
    assert [opened(image_bytes(item)).size for item in response.data] == [(256, 256)] * 2
    assert cost(response) == pytest.approx(2 * 0.016)


async def test_dall_e_2_edit_answers_urls_by_default(openai_emulator: OpenAIEmulator) -> None:
    response = await edit(
        openai_emulator, ImageEditRequest(prompt=PROMPT, image=[png()], model="dall-e-2")
    )
    assert "response_format" not in fields(sent(openai_emulator))
    url = response.data[0].url
    assert url is not None and url.startswith(openai_emulator.base_url)
    assert cost(response) == pytest.approx(0.02)


async def test_gpt_image_edit_with_several_images(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(
        prompt=PROMPT, image=[picture("png"), picture("jpeg"), picture("webp")],
        model="gpt-image-1", quality="low", size="1024x1536",
    )  # fmt: skip
    response = await edit(openai_emulator, request)
    assert files(sent(openai_emulator)) == [
        ("image[]", "image/png"), ("image[]", "image/jpeg"), ("image[]", "image/webp"),
    ]  # fmt: skip
    assert opened(image_bytes(response.data[0])).size == (1024, 1536)
    assert response.usage is not None
    details = response.usage.input_tokens_details
    assert details is not None and details.image_tokens and details.image_tokens > 0
    assert cost(response) is not None and cost(response) > 0  # type: ignore[operator]


async def test_gpt_image_edit_as_url(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(
        prompt=PROMPT, image=[png()], model="gpt-image-1", response_format="url",
        size="1024x1024",
    )  # fmt: skip
    response = await edit(openai_emulator, request)
    assert "response_format" not in fields(sent(openai_emulator))  # gpt-image refuses it
    item = response.data[0]
    assert item.url is not None and item.url.startswith("data:image/png;base64,")
    assert opened(image_bytes(item)).size == (1024, 1024)


async def test_variation(openai_emulator: OpenAIEmulator) -> None:
    request = ImageVariationRequest(
        image=png(alpha=False), model="dall-e-2", n=2, size="512x512", response_format="b64_json"
    )
    response = await vary(openai_emulator, request)
    assert openai_emulator.requests[-1].path == "/v1/images/variations"
    assert [opened(image_bytes(item)).size for item in response.data] == [(512, 512)] * 2
    assert cost(response) == pytest.approx(2 * 0.018)


async def test_variation_as_url_and_relayed(openai_emulator: OpenAIEmulator) -> None:
    request = ImageVariationRequest(image=png(), model="dall-e-2", response_format="url")
    response = await vary(openai_emulator, request, relay=True)
    assert response.relayed_body is not None  # the proxy can send OpenAI's answer on
    assert fields(sent(openai_emulator))["response_format"] == "url"


@pytest.mark.parametrize(
    ("request_", "param", "message"),
    [
        (ImageEditRequest(prompt=PROMPT, image=[png(256, 128)], model="dall-e-2"), "image",
         "the image is 256x128; dall-e-2 takes a square image"),
        (ImageEditRequest(prompt=PROMPT, image=[picture("jpeg")], model="dall-e-2"), "image",
         "the image is a JPEG of"),
        (ImageEditRequest(prompt=PROMPT, image=[png(), png()], model="dall-e-2"), "image",
         "dall-e-2 takes at most 1 input image; got 2"),
        (ImageEditRequest(prompt=PROMPT, image=[png(alpha=False)], model="dall-e-2"), "mask",
         "the image has no transparency"),
        (ImageEditRequest(prompt=PROMPT, image=[png()], mask=png(128, 128), model="dall-e-2"),
         "mask", "the mask is 128x128 but the image is 256x256"),
        (ImageEditRequest(prompt=PROMPT, image=[png()], mask=picture("webp"),
                          model="gpt-image-1"), "mask", "the mask must be a PNG under 4 MB"),
        (ImageEditRequest(prompt=PROMPT, image=[png(64, 64)] * 17, model="gpt-image-1"),
         "image", "gpt-image-1 takes at most 16 input images; got 17"),
        (ImageEditRequest(prompt=PROMPT, image=[InputImage(data=b"GIF89a-not-really",
                          media_type="image/gif")], model="gpt-image-1"), "image",
         "the image is not an image that can be read"),
        (ImageVariationRequest(image=png(300, 200), model="dall-e-2"), "image",
         "the image is 300x200; dall-e-2 takes a square image"),
    ],
)  # fmt: skip
async def test_inputs_checked_before_any_upstream_call(
    openai_emulator: OpenAIEmulator,
    request_: ImageEditRequest | ImageVariationRequest,
    param: str,
    message: str,
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        async with Gateway() as gateway:
            if isinstance(request_, ImageEditRequest):
                await gateway.image_edit(request_, options(openai_emulator))
            else:
                await gateway.image_variation(request_, options(openai_emulator))
    assert caught.value.param == param
    assert message in caught.value.message
    assert openai_emulator.requests == []


async def test_gif_input_is_refused_for_gpt_image(openai_emulator: OpenAIEmulator) -> None:
    gif = InputImage(data=_gif(), media_type="image/gif")
    with pytest.raises(prismgate.BadRequestError) as caught:
        await edit(
            openai_emulator, ImageEditRequest(prompt=PROMPT, image=[gif], model="gpt-image-1")
        )
    assert caught.value.param == "image"
    assert "takes PNG, WebP or JPEG files" in caught.value.message
    assert openai_emulator.requests == []


def _gif() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("request_", "verb"),
    [
        (ImageVariationRequest(image=png(), model="gpt-image-1"), "make image variations"),
        (ImageEditRequest(prompt=PROMPT, image=[png()], model="dall-e-3"), "edit images"),
    ],
)
async def test_models_without_the_operation_are_refused(
    openai_emulator: OpenAIEmulator, request_: ImageEditRequest | ImageVariationRequest, verb: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        async with Gateway() as gateway:
            if isinstance(request_, ImageEditRequest):
                await gateway.image_edit(request_, options(openai_emulator))
            else:
                await gateway.image_variation(request_, options(openai_emulator))
    assert f"cannot {verb}" in caught.value.message
    assert openai_emulator.requests == []


async def test_upstream_errors_keep_status_and_retry_hint(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("status", status=429, retry_after=2)
    with pytest.raises(prismgate.RateLimitError) as caught:
        await edit(
            openai_emulator, ImageEditRequest(prompt=PROMPT, image=[png()], model="dall-e-2")
        )
    assert caught.value.retry_after == pytest.approx(2)


async def test_safety_refusal_is_a_content_policy_error(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(prompt="a forbidden hat", image=[png()], model="gpt-image-1")
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        await edit(openai_emulator, request)
    assert caught.value.code == "moderation_blocked"


async def test_missing_key_is_not_leaked(openai_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(prompt=PROMPT, image=[png()], model="dall-e-2")
    overrides = CallerOverrides(
        api_key="sk-wrong-secret-9999", api_base=openai_emulator.base_url + "/v1"
    )
    with pytest.raises(prismgate.AuthenticationError) as caught:
        async with Gateway() as gateway:
            await gateway.image_edit(request, CallOptions(overrides=overrides))
    assert "sk-wrong-secret-9999" not in str(caught.value)


# ---------------------------------------------------------------------- Azure


async def test_azure_classic_edit(azure_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(prompt=PROMPT, image=[png()], model="azure/gpt-image-1", n=2)
    response = await edit(azure_emulator, request, base="")
    received = azure_emulator.requests[-1]
    assert received.path == "/openai/deployments/gpt-image-1/images/edits"
    assert received.query == {"api-version": "2025-04-01-preview"}
    assert received.headers["api-key"] == azure_emulator.api_key
    assert fields(sent(azure_emulator)) == {"prompt": PROMPT, "n": "2"}  # no model: the path
    assert files(sent(azure_emulator)) == [("image", "image/png")]
    assert [opened(image_bytes(item)).size for item in response.data] == [(1024, 1024)] * 2
    assert cost(response) is not None


async def test_azure_v1_edit_sends_the_deployment_as_model(azure_emulator: OpenAIEmulator) -> None:
    request = ImageEditRequest(
        prompt=PROMPT, image=[png(), png(seed=2)], mask=png(seed=3), model="azure/gpt-image-1",
        quality="low", response_format="b64_json",
    )  # fmt: skip
    response = await edit(azure_emulator, request, base="/openai/v1")
    received = azure_emulator.requests[-1]
    assert received.path == "/openai/v1/images/edits"
    assert fields(sent(azure_emulator)) == {
        "model": "gpt-image-1",
        "prompt": PROMPT,
        "quality": "low",
    }
    assert files(sent(azure_emulator)) == [
        ("image[]", "image/png"), ("image[]", "image/png"), ("mask", "image/png"),
    ]  # fmt: skip
    assert response.data[0].b64_json is not None


async def test_azure_deployment_named_otherwise_uses_its_base_model(
    azure_emulator: OpenAIEmulator,
) -> None:
    azure_emulator.deployments["painter"] = "dall-e-2"
    config = prismgate.load_config(
        {
            "model_list": [
                model(
                    "painter", "azure/painter", api_base=azure_emulator.base_url,
                    api_key=azure_emulator.api_key, model_info={"base_model": "azure/dall-e-2"},
                )
            ]
        }
    )  # fmt: skip
    async with Gateway(config) as gateway:
        with pytest.raises(prismgate.BadRequestError) as caught:  # dall-e-2's rules apply
            await gateway.image_edit(
                ImageEditRequest(prompt=PROMPT, image=[png(256, 128)], model="painter")
            )
        assert caught.value.param == "image"
        response = (await gateway.image_edit(
            ImageEditRequest(prompt=PROMPT, image=[png()], model="painter", size="256x256",
                             response_format="b64_json")
        )).value  # fmt: skip
    assert azure_emulator.requests[-1].path == "/openai/deployments/painter/images/edits"
    assert opened(image_bytes(response.data[0])).size == (256, 256)


async def test_azure_has_no_variations(azure_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        await vary(
            azure_emulator, ImageVariationRequest(image=png(), model="azure/dall-e-2"), base=""
        )
    assert "cannot make image variations" in caught.value.message
    assert azure_emulator.requests == []


# ---------------------------------------------------------------------- self-hosted


@pytest.mark.parametrize("prefix", ["openai", "hosted_vllm", "xinference"])
async def test_self_hosted_edit_and_variation(
    compatible_emulator: OpenAIEmulator, prefix: str
) -> None:
    response = await edit(
        compatible_emulator,
        ImageEditRequest(
            prompt=PROMPT, image=[picture("jpeg")], model=f"{prefix}/local-model", size="320x240",
            response_format="b64_json",
        ),
    )  # fmt: skip
    assert compatible_emulator.requests[-1].path == "/v1/images/edits"
    assert files(sent(compatible_emulator)) == [("image", "image/jpeg")]
    assert opened(image_bytes(response.data[0])).size == (320, 240)
    response = await vary(
        compatible_emulator,
        ImageVariationRequest(
            image=png(), model=f"{prefix}/local-model", response_format="b64_json"
        ),
    )
    assert compatible_emulator.requests[-1].path == "/v1/images/variations"
    assert opened(image_bytes(response.data[0])).size == (512, 512)


# ---------------------------------------------------------------------- through the proxy


def test_edit_through_the_proxy_with_the_openai_client(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    settings = {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key}
    proxy = serve({"model_list": [model("gpt-image-1", "openai/gpt-image-1", **settings)]})
    client = openai.OpenAI(api_key="anything", base_url=proxy.base_url + "/v1")
    first, second = make_image(256, 256, "png", 1), make_image(256, 256, "png", 2)
    answer = client.images.edit(
        model="gpt-image-1", prompt=PROMPT, size="1536x1024", quality="low",
        image=[("a.png", first, "image/png"), ("b.png", second, "image/png")],
    )  # fmt: skip
    assert answer.data is not None and answer.data[0].b64_json
    assert opened(image_bytes(prismgate.ImageObject(b64_json=answer.data[0].b64_json))).size == (
        1536, 1024,
    )  # fmt: skip
    assert files(sent(openai_emulator)) == [("image[]", "image/png"), ("image[]", "image/png")]
    assert fields(sent(openai_emulator)) == {
        "model": "gpt-image-1", "prompt": PROMPT, "size": "1536x1024", "quality": "low",
    }  # fmt: skip
