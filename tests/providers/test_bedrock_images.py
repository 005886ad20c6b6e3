"""Bedrock's image models (InvokeModel) through the SDK, the gateway and the proxy, against
the Bedrock emulator, which validates each family's body as Bedrock does and verifies
every SigV4 signature."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

import prismgate
from prismgate import Gateway, load_config
from prismgate.errors import BadRequestError, ContentPolicyViolationError, RateLimitError
from prismgate.gateway import CallOptions
from prismgate.providers.bedrock.images import WIRES
from prismgate.types import ImageEditRequest, ImageVariationRequest, InputImage
from tests.emulators.bedrock import BedrockEmulator
from tests.emulators.bedrock_image_rules import BLOCKED
from tests.meta import with_meta
from tests.serving import RunningProxy, model

REGION = "eu-west-1"
API_KEY = "ABSKemulatorBedrockApiKey0002"
SDXL_V0 = "stability.stable-diffusion-xl-v0"
SD35 = "stability.sd3-5-large-v1:0"
TITAN = "amazon.titan-image-generator-v2:0"
NOVA = "amazon.nova-canvas-v1:0"
AWS_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_REGION_NAME", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_BEDROCK_RUNTIME_ENDPOINT",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(region=REGION, api_key=API_KEY) as emulator:
        yield emulator


@pytest.fixture
def bedrock(_server: BedrockEmulator) -> BedrockEmulator:
    _server.reset()
    return _server


def keys(emulator: BedrockEmulator) -> dict[str, str]:
    return {
        "api_base": emulator.base_url,
        "aws_access_key_id": emulator.credentials.access_key_id,
        "aws_secret_access_key": emulator.credentials.secret_access_key,
        "aws_region_name": REGION,
    }


def generate(emulator: BedrockEmulator, model_id: str, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        prompt=kwargs.pop("prompt", "an otter"), model=f"bedrock/{model_id}",
        **{**keys(emulator), **kwargs},
    )  # fmt: skip


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.size


def decoded(image: Any) -> bytes:
    if image.b64_json:
        return base64.b64decode(image.b64_json)
    header, _, payload = image.url.partition(",")
    assert header.startswith("data:image/")
    return base64.b64decode(payload)


def png(width: int, height: int, *, hole: bool = False) -> InputImage:
    """An RGBA PNG; with `hole`, its top-left quarter is fully transparent (a mask)."""
    picture = Image.new("RGBA", (width, height), (200, 10, 10, 255))
    if hole:
        picture.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return InputImage(data=buffer.getvalue(), media_type="image/png")


def b64(image: InputImage) -> str:
    return base64.b64encode(image.data).decode()


# ---------------------------------------------------------------------------- the seed example


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
def test_seed_sdxl_v0_example(bedrock: BedrockEmulator, response_format: str) -> None:
    answer = generate(bedrock, SDXL_V0, size="1024x1024", response_format=response_format)
    assert len(answer.data) == 1
    assert size_of(decoded(answer.data[0])) == (1024, 1024)
    assert answer._hidden_params["response_cost"] == pytest.approx(0.036)
    sent = bedrock.requests[-1]
    assert sent.raw_path == f"/model/{SDXL_V0}/invoke"
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.headers["accept"] == "application/json"
    assert sent.json == {
        "text_prompts": [{"text": "an otter", "weight": 1.0}], "width": 1024, "height": 1024
    }  # fmt: skip


def test_seed_sdxl_v0_through_the_proxy(
    serve: Callable[..., RunningProxy], bedrock: BedrockEmulator, tmp_path: Path
) -> None:
    config = {
        "model_list": [model("sdxl", f"bedrock/{SDXL_V0}", **keys(bedrock))],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    }
    proxy = serve(config)
    client = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1")
    image = client.images.generate(
        model="sdxl", prompt="A cute baby sea otter", size="1024x1024", response_format="b64_json"
    )
    assert image.data is not None and image.data[0].b64_json
    assert size_of(base64.b64decode(image.data[0].b64_json)) == (1024, 1024)
    linked = client.images.generate(
        model="sdxl", prompt="A cute baby sea otter", n=2, response_format="url"
    )
    assert linked.data is not None and len(linked.data) == 2  # fanned out: one per call
    for item in linked.data:
        assert item.url and item.url.startswith(proxy.base_url + "/v1/images/files/")
        fetched = httpx.get(item.url)
        assert fetched.status_code == 200
        assert size_of(fetched.content) == (1024, 1024)
    assert len(bedrock.requests) == 3


# ---------------------------------------------------------------------------- field tables

# (family, row, model, request keywords, the body Bedrock must receive)
ROWS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("Stability SDXL", "prompt", SDXL_V0, {},
     {"text_prompts": [{"text": "an otter", "weight": 1.0}]}),
    ("Stability SDXL", "negative_prompt", SDXL_V0, {"negative_prompt": "blur"},
     {"text_prompts": [{"text": "an otter", "weight": 1.0}, {"text": "blur", "weight": -1.0}]}),
    ("Stability SDXL", "size", "stability.stable-diffusion-xl-v1", {"size": "1344x768"},
     {"width": 1344, "height": 768}),
    ("Stability SDXL", "cfg_scale", SDXL_V0, {"cfg_scale": 9}, {"cfg_scale": 9}),
    ("Stability SDXL", "seed", SDXL_V0, {"seed": 42}, {"seed": 42}),
    ("Stability SDXL", "steps", SDXL_V0, {"steps": 40}, {"steps": 40}),
    ("Stability SDXL", "style_preset", SDXL_V0, {"style_preset": "anime"},
     {"style_preset": "anime"}),
    ("Stability SDXL", "sampler", SDXL_V0, {"sampler": "K_EULER"}, {"sampler": "K_EULER"}),
    ("Stability SDXL", "clip_guidance_preset", SDXL_V0, {"clip_guidance_preset": "FAST_BLUE"},
     {"clip_guidance_preset": "FAST_BLUE"}),
    ("Stability SD3 / SD3.5 Large", "prompt", SD35, {}, {"prompt": "an otter"}),
    ("Stability SD3 / SD3.5 Large", "negative_prompt", SD35, {"negative_prompt": "blur"},
     {"negative_prompt": "blur"}),
    ("Stability SD3 / SD3.5 Large", "size", SD35, {"size": "1792x1024"},
     {"aspect_ratio": "16:9"}),
    ("Stability SD3 / SD3.5 Large", "output_format", SD35, {"output_format": "jpeg"},
     {"output_format": "jpeg"}),
    ("Stability SD3 / SD3.5 Large", "seed", SD35, {"seed": 7}, {"seed": 7}),
    ("Stable Image Ultra / Core", "prompt", "stability.stable-image-ultra-v1:1", {},
     {"prompt": "an otter"}),
    ("Stable Image Ultra / Core", "negative_prompt", "stability.stable-image-core-v1:1",
     {"negative_prompt": "blur"}, {"negative_prompt": "blur"}),
    ("Stable Image Ultra / Core", "size", "stability.stable-image-core-v1:0",
     {"size": "1536x1024"}, {"aspect_ratio": "3:2"}),
    ("Stable Image Ultra / Core", "output_format", "stability.stable-image-ultra-v1:0",
     {"output_format": "png"}, {"output_format": "png"}),
    ("Stable Image Ultra / Core", "seed", "stability.stable-image-core-v1:1", {"seed": 5},
     {"seed": 5}),
    ("Amazon Titan Image Generator", "prompt", TITAN, {},
     {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "an otter"}}),
    ("Amazon Titan Image Generator", "negative_prompt", TITAN, {"negative_prompt": "blur"},
     {"textToImageParams": {"text": "an otter", "negativeText": "blur"}}),
    ("Amazon Titan Image Generator", "n", TITAN, {"n": 3},
     {"imageGenerationConfig": {"numberOfImages": 3}}),
    ("Amazon Titan Image Generator", "size", "amazon.titan-image-generator-v1",
     {"size": "1173x640"}, {"imageGenerationConfig": {"width": 1173, "height": 640}}),
    ("Amazon Titan Image Generator", "quality", TITAN, {"quality": "premium"},
     {"imageGenerationConfig": {"quality": "premium"}}),
    ("Amazon Titan Image Generator", "cfg_scale", TITAN, {"cfg_scale": 8.5},
     {"imageGenerationConfig": {"cfgScale": 8.5}}),
    ("Amazon Titan Image Generator", "seed", TITAN, {"seed": 11},
     {"imageGenerationConfig": {"seed": 11}}),
    ("Amazon Nova Canvas", "prompt", NOVA, {},
     {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "an otter"}}),
    ("Amazon Nova Canvas", "negative_prompt", NOVA, {"negative_prompt": "blur"},
     {"textToImageParams": {"text": "an otter", "negativeText": "blur"}}),
    ("Amazon Nova Canvas", "n", NOVA, {"n": 5}, {"imageGenerationConfig": {"numberOfImages": 5}}),
    ("Amazon Nova Canvas", "size", NOVA, {"size": "2048x1024"},
     {"imageGenerationConfig": {"width": 2048, "height": 1024}}),
    ("Amazon Nova Canvas", "quality", NOVA, {"quality": "standard"},
     {"imageGenerationConfig": {"quality": "standard"}}),
    ("Amazon Nova Canvas", "cfg_scale", NOVA, {"cfg_scale": 6.5},
     {"imageGenerationConfig": {"cfgScale": 6.5}}),
    ("Amazon Nova Canvas", "seed", NOVA, {"seed": 12}, {"imageGenerationConfig": {"seed": 12}}),
]  # fmt: skip


def test_every_row_of_every_family_is_tested() -> None:
    tested = {(family, row) for family, row, *_ in ROWS}
    declared = {(wire.family.name, row) for wire in WIRES for row in wire.family.fields}
    assert tested == declared


@pytest.mark.parametrize(("family", "row", "model_id", "kwargs", "expected"), ROWS,
                         ids=[f"{f}:{r}" for f, r, *_ in ROWS])  # fmt: skip
def test_field_table_row(
    bedrock: BedrockEmulator,
    family: str,
    row: str,
    model_id: str,
    kwargs: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    answer = generate(bedrock, model_id, **kwargs)
    body = bedrock.requests[-1].json
    assert body is not None
    for key, value in expected.items():
        assert body[key] == value, (family, row, body)
    assert answer.data and answer._hidden_params["response_cost"] is not None
    dimensions = body.get("imageGenerationConfig", body)
    if row == "size" and "width" in dimensions:
        wanted = (dimensions["width"], dimensions["height"])
        assert size_of(decoded(answer.data[0])) == wanted
    if row == "n":
        assert len(answer.data) == kwargs["n"]


def test_sd3_answers_in_the_ratios_native_size_and_reports_the_adjustment(
    bedrock: BedrockEmulator,
) -> None:
    answer = generate(bedrock, SD35, size="1792x1024", output_format="jpeg")
    data = decoded(answer.data[0])
    assert size_of(data) == (1344, 768) and data.startswith(b"\xff\xd8")
    assert answer._hidden_params["adjusted"] == ("size=1792x1024->aspect_ratio=16:9",)


# OpenAI's quality words onto Titan's and Nova's own (standard / premium); the model's own
# words are sent as they are, and only a mapping is reported as adjusted.
QUALITIES = {
    "hd": "premium", "high": "premium", "premium": "premium",
    "standard": "standard", "low": "standard", "medium": "standard",
}  # fmt: skip
AMAZON = ("amazon.titan-image-generator-v1", TITAN, NOVA)


@pytest.mark.parametrize("model_id", AMAZON)
@pytest.mark.parametrize(("quality", "sent"), QUALITIES.items())
def test_openai_qualities_map_onto_titan_and_nova_qualities(
    bedrock: BedrockEmulator, model_id: str, quality: str, sent: str
) -> None:
    answer = generate(bedrock, model_id, quality=quality)
    body = bedrock.requests[-1].json
    assert body is not None and body["imageGenerationConfig"]["quality"] == sent
    adjusted = answer._hidden_params["adjusted"]
    assert adjusted == (() if quality == sent else (f"quality={quality}->{sent}",))
    # Priced as the quality Bedrock made, not the word the caller used.
    assert (
        answer._hidden_params["response_cost"]
        == generate(bedrock, model_id, quality=sent)._hidden_params["response_cost"]
    )


def test_other_qualities_are_still_refused_with_what_works(bedrock: BedrockEmulator) -> None:
    with pytest.raises(BadRequestError) as refused:
        generate(bedrock, NOVA, quality="ultra")
    assert refused.value.param == "quality"
    assert "standard, premium" in refused.value.message
    assert bedrock.requests == []


def test_the_quality_mapping_is_reported_by_the_proxy(
    serve: Callable[..., RunningProxy], bedrock: BedrockEmulator, tmp_path: Path
) -> None:
    config = {
        "model_list": [model("canvas", f"bedrock/{NOVA}", **keys(bedrock))],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    }
    proxy = serve(config)
    client = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1")
    answer = client.images.with_raw_response.generate(
        model="canvas", prompt="an otter", quality="hd", response_format="b64_json"
    )
    assert answer.headers["x-prismgate-adjusted"] == "quality=hd->premium"
    body = bedrock.requests[-1].json
    assert body is not None and body["imageGenerationConfig"]["quality"] == "premium"


def test_unnamed_extras_go_to_the_top_level_and_named_ones_where_the_table_says(
    bedrock: BedrockEmulator,
) -> None:
    generate(bedrock, NOVA, seed=3, imageGenerationConfig={"cfgScale": 4.0})
    body = bedrock.requests[-1].json
    assert body == {
        "taskType": "TEXT_IMAGE", "textToImageParams": {"text": "an otter"},
        "imageGenerationConfig": {"cfgScale": 4.0, "seed": 3},
    }  # fmt: skip


# ---------------------------------------------------------------------------- checks before a call


@pytest.mark.parametrize(
    ("size", "complaint"),
    [("2048x2048", "under 4,194,304"), ("1000x1000", "multiple of 16"),
     ("4096x320", "between 1:4 and 4:1"), ("304x304", "320-4096")],
)  # fmt: skip
def test_nova_sizes_are_checked_before_any_call(
    bedrock: BedrockEmulator, size: str, complaint: str
) -> None:
    with pytest.raises(BadRequestError, match=complaint) as caught:
        generate(bedrock, NOVA, size=size)
    assert caught.value.param == "size"
    assert bedrock.requests == []


def test_an_unknown_bedrock_model_is_refused_with_what_works(bedrock: BedrockEmulator) -> None:
    with pytest.raises(BadRequestError, match="Nova Canvas") as caught:
        generate(bedrock, "stability.not-a-model-v9:0")
    assert caught.value.param == "model"


# ---------------------------------------------------------------------------- addressing and auth


@pytest.mark.parametrize(
    ("model_id", "raw"),
    [(f"us.{NOVA}", "us.amazon.nova-canvas-v1%3A0"),
     (f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{NOVA}",
      "arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2Feu.amazon."
      "nova-canvas-v1%3A0")],
)  # fmt: skip
def test_inference_profiles_and_arns(bedrock: BedrockEmulator, model_id: str, raw: str) -> None:
    answer = generate(bedrock, model_id, size="1280x720")
    assert size_of(decoded(answer.data[0])) == (1280, 720)
    assert bedrock.requests[-1].raw_path == f"/model/{raw}/invoke"
    if not model_id.startswith("arn:"):  # an ARN is priced once model_info names its model
        assert answer._hidden_params["response_cost"] == pytest.approx(0.04)


async def test_a_provisioned_arn_names_its_model_with_base_model(bedrock: BedrockEmulator) -> None:
    arn = (
        "arn:aws:bedrock:eu-west-1:123456789012:provisioned-model/amazon.titan-image-generator-v2:0"
    )
    entry = model("titan", f"bedrock/{arn}", **keys(bedrock),
                  model_info={"base_model": f"bedrock/{TITAN}"})  # fmt: skip
    async with Gateway(load_config({"model_list": [entry]}, environ={})) as served:
        answer = await prismgate.aimage_generation(
            prompt="an otter", model="titan", size="512x512", n=2, gateway=served
        )
    assert [size_of(decoded(image)) for image in answer.data] == [(512, 512)] * 2
    assert answer._hidden_params["response_cost"] == pytest.approx(0.016)


def test_a_bedrock_api_key_is_a_bearer_token(bedrock: BedrockEmulator) -> None:
    answer = prismgate.image_generation(
        prompt="an otter", model=f"bedrock/{TITAN}", api_base=bedrock.base_url, api_key=API_KEY
    )
    assert answer.data
    assert bedrock.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


def test_throttling_keeps_its_retry_after(bedrock: BedrockEmulator) -> None:
    bedrock.fail_next("status", status=429, retry_after=3)
    with pytest.raises(RateLimitError) as caught:
        generate(bedrock, SD35)
    assert caught.value.retry_after == 3
    assert caught.value.code == "ThrottlingException"


def test_an_aws_secret_in_an_upstream_message_is_redacted(bedrock: BedrockEmulator) -> None:
    secret = bedrock.credentials.secret_access_key
    bedrock.fail_next("status", status=400, message=f"bad request for {secret}")
    with pytest.raises(BadRequestError) as caught:
        generate(bedrock, TITAN)
    assert secret not in str(caught.value)


# ---------------------------------------------------------------------------- safety


def test_sdxl_content_filtered_everything(bedrock: BedrockEmulator) -> None:
    with pytest.raises(ContentPolicyViolationError, match="CONTENT_FILTERED"):
        generate(bedrock, SDXL_V0, prompt="FILTER_ME please")


def test_sdxl_one_of_two_withheld(bedrock: BedrockEmulator) -> None:
    answer = generate(bedrock, SDXL_V0, prompt="FILTER_SOME please", n=2)
    assert len(answer.data) == 1
    assert answer._hidden_params["filtered"] == 1
    assert answer._hidden_params["upstream_calls"] == 2


def test_sd3_filtered_prompt(bedrock: BedrockEmulator) -> None:
    with pytest.raises(ContentPolicyViolationError, match="Filter reason: prompt"):
        generate(bedrock, SD35, prompt="FILTER_ME please")


def test_sd3_one_of_three_withheld(bedrock: BedrockEmulator) -> None:
    answer = generate(bedrock, "stability.stable-image-core-v1:1", prompt="FILTER_SOME x", n=3)
    # The emulator filters every other FILTER_SOME call, the first included.
    assert len(answer.data) == 1
    assert answer._hidden_params["filtered"] == 2


def test_titan_refusal_is_a_content_policy_violation(bedrock: BedrockEmulator) -> None:
    with pytest.raises(ContentPolicyViolationError) as caught:
        generate(bedrock, TITAN, prompt="FILTER_ME please", n=2)
    assert caught.value.upstream_message == BLOCKED
    assert caught.value.status == 400


def test_nova_withheld_one_of_three(bedrock: BedrockEmulator) -> None:
    answer = generate(bedrock, NOVA, prompt="FILTER_SOME please", n=3)
    assert len(answer.data) == 2
    assert answer._hidden_params["filtered"] == 1


# ---------------------------------------------------------------------------- edits and variations


def gateway_for(emulator: BedrockEmulator, model_id: str) -> Gateway:
    entry = model("m", f"bedrock/{model_id}", **keys(emulator))
    return Gateway(load_config({"model_list": [entry]}, environ={}))


async def edit(emulator: BedrockEmulator, model_id: str, **fields: Any) -> Any:
    extra = fields.pop("extra", {})
    request = ImageEditRequest(model="m", **{"prompt": "a hat", **fields})
    async with gateway_for(emulator, model_id) as served:
        return with_meta(await served.image_edit(request, CallOptions(extra=extra)))


async def test_sd3_edit_is_image_to_image(bedrock: BedrockEmulator) -> None:
    image = png(640, 480)
    answer = await edit(bedrock, SD35, image=[image], negative_prompt="blur", extra={"seed": 4},
                        output_format="png", response_format="b64_json")  # fmt: skip
    assert size_of(decoded(answer.data[0])) == (640, 480)
    assert bedrock.requests[-1].json == {
        "mode": "image-to-image", "image": b64(image), "prompt": "a hat",
        "negative_prompt": "blur", "output_format": "png", "strength": 0.7, "seed": 4,
    }  # fmt: skip
    await edit(bedrock, SD35, image=[image], extra={"strength": 0.3})
    assert bedrock.requests[-1].json["strength"] == 0.3


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"mask": png(64, 64, hole=True)}, "mask"), ({"size": "1024x1024"}, "size")],
)
async def test_sd3_edit_refuses_what_image_to_image_cannot_do(
    bedrock: BedrockEmulator, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        await edit(bedrock, SD35, image=[png(64, 64)], **fields)
    assert caught.value.param == param
    assert bedrock.requests == []


async def test_ultra_cannot_edit(bedrock: BedrockEmulator) -> None:
    with pytest.raises(BadRequestError, match="cannot edit"):
        await edit(bedrock, "stability.stable-image-ultra-v1:1", image=[png(64, 64)])


@pytest.mark.parametrize("model_id", [TITAN, NOVA])
async def test_inpainting_converts_openais_mask(bedrock: BedrockEmulator, model_id: str) -> None:
    image, mask = png(512, 512), png(512, 512, hole=True)
    answer = await edit(bedrock, model_id, image=[image], mask=mask, n=2, quality="premium",
                        negative_prompt="blur", extra={"seed": 9, "cfg_scale": 7.5})  # fmt: skip
    assert [size_of(decoded(item)) for item in answer.data] == [(512, 512)] * 2
    body = bedrock.requests[-1].json
    sent_mask = body["inPaintingParams"].pop("maskImage")
    assert body == {
        "taskType": "INPAINTING",
        "inPaintingParams": {"text": "a hat", "negativeText": "blur", "image": b64(image)},
        "imageGenerationConfig": {"numberOfImages": 2, "quality": "premium", "seed": 9,
                                  "cfgScale": 7.5},
    }  # fmt: skip
    with Image.open(io.BytesIO(base64.b64decode(sent_mask))) as converted:
        rgb = converted.convert("RGB")
        assert rgb.getpixel((10, 10)) == (0, 0, 0)  # transparent in OpenAI's mask: edit
        assert rgb.getpixel((400, 400)) == (255, 255, 255)  # opaque: keep


async def test_an_edit_without_a_mask_is_an_image_variation_guided_by_the_prompt(
    bedrock: BedrockEmulator,
) -> None:
    images = [png(512, 512), png(256, 256)]
    answer = await edit(bedrock, NOVA, image=images, size="1024x1024",
                        extra={"similarity_strength": 0.5})  # fmt: skip
    assert size_of(decoded(answer.data[0])) == (1024, 1024)
    assert bedrock.requests[-1].json == {
        "taskType": "IMAGE_VARIATION",
        "imageVariationParams": {"text": "a hat", "similarityStrength": 0.5,
                                 "images": [b64(images[0]), b64(images[1])]},
        "imageGenerationConfig": {"width": 1024, "height": 1024},
    }  # fmt: skip


async def test_an_inpainting_mask_of_another_size_is_refused(bedrock: BedrockEmulator) -> None:
    with pytest.raises(BadRequestError, match="same size") as caught:
        await edit(bedrock, TITAN, image=[png(512, 512)], mask=png(256, 256, hole=True))
    assert caught.value.param == "mask"


@pytest.mark.parametrize("model_id", [TITAN, NOVA])
async def test_variations(bedrock: BedrockEmulator, model_id: str) -> None:
    image = png(512, 512)
    request = ImageVariationRequest(model="m", image=image, n=2, size="768x768",
                                    response_format="url")  # fmt: skip
    async with gateway_for(bedrock, model_id) as served:
        answer = with_meta(await served.image_variation(request))
    assert [size_of(decoded(item)) for item in answer.data] == [(768, 768)] * 2
    assert answer._hidden_params["response_cost"] is not None
    assert bedrock.requests[-1].json == {
        "taskType": "IMAGE_VARIATION",
        "imageVariationParams": {"images": [b64(image)]},
        "imageGenerationConfig": {"numberOfImages": 2, "width": 768, "height": 768},
    }  # fmt: skip
