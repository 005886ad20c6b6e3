"""The request bodies of Bedrock's image models on InvokeModel, as data: one field table per
family (where each OpenAI parameter and named extra goes), and the small functions that
add what a table cannot say (task types, input images, masks).

Families: Stability SDXL (`text_prompts`), Stability SD3 / SD3.5 / Stable Image Ultra and
Core (`prompt`, `aspect_ratio`), and Amazon Titan Image Generator / Nova Canvas
(`taskType` with one params object per task, and `imageGenerationConfig`).
"""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Mapping
from typing import Any

from prismgate.catalog import ImageCapabilities
from prismgate.errors import BadRequestError
from prismgate.media.inputs import image_header
from prismgate.providers.base import (
    Field,
    FieldTable,
    ImageEditCall,
    ImageGenerationCall,
    ImageVariationCall,
    build_body,
)
from prismgate.providers.image_rules import match_aspect_ratio, parse_size
from prismgate.types import InputImage

__all__ = [
    "NOVA_FIELDS",
    "SD3_FIELDS",
    "SD3_IMAGE_TO_IMAGE_FIELDS",
    "SDXL_FIELDS",
    "TITAN_FIELDS",
    "amazon_body",
    "amazon_edit_body",
    "amazon_variation_body",
    "bedrock_mask",
    "sd3_edit_body",
    "sdxl_body",
    "stability_body",
]

# Stability's aspect ratios, for models the catalog does not list (ARNs without base_model).
STABILITY_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
# What image-to-image changes when the caller does not say: Stability requires a strength.
DEFAULT_STRENGTH = 0.7
# Input images Bedrock decodes; others are converted to PNG on the way (lossless).
_STABILITY_INPUTS = frozenset({"image/png", "image/jpeg", "image/webp"})
_AMAZON_INPUTS = frozenset({"image/png", "image/jpeg"})
_MAX_VARIATION_IMAGES = 5
# Nova Canvas sizes: each side 320-4096 and a multiple of 16, ratio 1:4 to 4:1, and
# fewer than 4,194,304 pixels (so 2048x2048 is refused).
_NOVA_SIDES = (320, 4096)
_NOVA_MAX_PIXELS = 4_194_304


# ---------------------------------------------------------------------------- converts


def _size(value: str, _: ImageCapabilities | None) -> dict[str, int]:
    width, height = parse_size(value)
    return {"width": width, "height": height}


def _config_size(value: str, _: ImageCapabilities | None) -> dict[str, int]:
    width, height = parse_size(value)
    return {"imageGenerationConfig.width": width, "imageGenerationConfig.height": height}


def _nova_size(value: str, capabilities: ImageCapabilities | None) -> dict[str, int]:
    width, height = parse_size(value)
    broken = []
    low, high = _NOVA_SIDES
    if not (low <= width <= high and low <= height <= high):
        broken.append(f"each side must be {low}-{high} pixels")
    if width % 16 or height % 16:
        broken.append("each side must be a multiple of 16")
    if not 0.25 <= width / height <= 4:
        broken.append("the aspect ratio must be between 1:4 and 4:1")
    if width * height >= _NOVA_MAX_PIXELS:
        broken.append(f"width x height must be under {_NOVA_MAX_PIXELS:,} pixels")
    if broken:
        raise BadRequestError(
            f"size {value!r} is not one Nova Canvas can make: {'; '.join(broken)} "
            "(for example 1024x1024, 1280x720 or 2048x1024)",
            param="size",
            code="invalid_value",
        )
    return _config_size(value, capabilities)


def _aspect_ratio(value: str, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities.aspect_ratios if capabilities else None) or STABILITY_ASPECT_RATIOS
    return match_aspect_ratio(value, ratios)[0]


def _positive_prompt(value: str, _: ImageCapabilities | None) -> list[dict[str, Any]]:
    return [{"text": value, "weight": 1.0}]


def _negative_prompt(value: str, _: ImageCapabilities | None) -> list[dict[str, Any]]:
    return [{"text": value, "weight": -1.0}]


# ---------------------------------------------------------------------------- tables

_SDXL_EXTRAS = ("cfg_scale", "seed", "steps", "style_preset", "sampler", "clip_guidance_preset")

SDXL_FIELDS: FieldTable = {
    "prompt": Field("text_prompts", _positive_prompt, note="the first text prompt, weight 1"),
    "negative_prompt": Field(
        "text_prompts", _negative_prompt, note="appended as a second text prompt, weight -1"
    ),
    "size": Field(None, _size, note="width and height"),
    **{name: Field(name) for name in _SDXL_EXTRAS},
}

SD3_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "negative_prompt": Field("negative_prompt"),
    "size": Field(
        "aspect_ratio",
        _aspect_ratio,
        note="the aspect ratio of the size; within 2 % is reported as adjusted",
    ),
    "output_format": Field("output_format"),
    "seed": Field("seed"),
}

# Edits on SD3 / SD3.5: image-to-image, which keeps the input's aspect ratio.
SD3_IMAGE_TO_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "negative_prompt": Field("negative_prompt"),
    "output_format": Field("output_format"),
    "seed": Field("seed"),
    "strength": Field(
        "strength", note=f"0-1, how far the image may change; {DEFAULT_STRENGTH} when not given"
    ),
}

_CONFIG: FieldTable = {
    "n": Field("imageGenerationConfig.numberOfImages"),
    "quality": Field("imageGenerationConfig.quality"),
    "cfg_scale": Field("imageGenerationConfig.cfgScale"),
    "seed": Field("imageGenerationConfig.seed"),
}
_TITAN_SIZE = Field(None, _config_size, note="imageGenerationConfig width and height")
_NOVA_SIZE = Field(
    None,
    _nova_size,
    note="imageGenerationConfig width and height; each side 320-4096 and a multiple of 16, "
    "ratio 1:4 to 4:1, under 4,194,304 pixels, others refused",
)


def _amazon_table(params: str, size: Field | None) -> FieldTable:
    """The table of one Titan / Nova task: the prompt into its params object, the rest
    into `imageGenerationConfig`."""
    table = {
        "prompt": Field(f"{params}.text"),
        "negative_prompt": Field(f"{params}.negativeText"),
        **_CONFIG,
    }
    if size is not None:
        table["size"] = size
    if params == "imageVariationParams":
        table["similarity_strength"] = Field(f"{params}.similarityStrength")
    return table


TITAN_FIELDS = _amazon_table("textToImageParams", _TITAN_SIZE)
NOVA_FIELDS = _amazon_table("textToImageParams", _NOVA_SIZE)
# Inpainting keeps the input image's size, so it takes no size.
_INPAINTING_FIELDS = _amazon_table("inPaintingParams", None)
_VARIATION_FIELDS = {
    "titan": _amazon_table("imageVariationParams", _TITAN_SIZE),
    "nova": _amazon_table("imageVariationParams", _NOVA_SIZE),
}


# ---------------------------------------------------------------------------- bodies


def _extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    # build_body fills nested objects in place: never the caller's own.
    return copy.deepcopy(dict(extra))


def sdxl_body(call: ImageGenerationCall) -> dict[str, Any]:
    """SDXL's body; the negative prompt joins `text_prompts` after the prompt."""
    request = call.request
    values = {"prompt": request.prompt, "size": request.size}
    body = build_body(SDXL_FIELDS, values, call.capabilities, _extra(call.extra))
    if request.negative_prompt is not None:
        negative = {"negative_prompt": request.negative_prompt}
        body["text_prompts"] += build_body(SDXL_FIELDS, negative, None)["text_prompts"]
    return body


def stability_body(call: ImageGenerationCall) -> dict[str, Any]:
    """SD3 / SD3.5 / Ultra / Core text-to-image."""
    return build_body(SD3_FIELDS, _values(call.request), call.capabilities, _extra(call.extra))


def sd3_edit_body(call: ImageEditCall) -> dict[str, Any]:
    """SD3 / SD3.5 image-to-image: the whole image may change (no mask), at its own size."""
    request = call.request
    model = call.deployment.model
    if request.mask is not None:
        raise BadRequestError(
            f"{model} edits the whole image (image-to-image) and takes no mask; remove the "
            "mask, or use amazon.nova-canvas-v1:0 or amazon.titan-image-generator-v2:0 for "
            "masked edits",
            param="mask",
        )
    image = _only_image(request.image, model)
    if request.size is not None:
        raise BadRequestError(
            f"{model} makes image-to-image edits in the input image's aspect ratio; remove "
            "size (or crop the image first)",
            param="size",
        )
    values = {**_values(request), "strength": DEFAULT_STRENGTH}
    fields = build_body(SD3_IMAGE_TO_IMAGE_FIELDS, values, call.capabilities, _extra(call.extra))
    return {"mode": "image-to-image", "image": _b64(image, _STABILITY_INPUTS), **fields}


def amazon_body(call: ImageGenerationCall, *, nova: bool) -> dict[str, Any]:
    """Titan / Nova text-to-image."""
    table = NOVA_FIELDS if nova else TITAN_FIELDS
    body = build_body(table, _values(call.request), call.capabilities, _extra(call.extra))
    return {"taskType": "TEXT_IMAGE", **body}


def amazon_edit_body(call: ImageEditCall, *, nova: bool) -> dict[str, Any]:
    """Titan / Nova edits: INPAINTING with a mask. Without one, OpenAI lets the whole image
    change; Bedrock's nearest is IMAGE_VARIATION guided by the prompt."""
    request = call.request
    if request.mask is None:
        return _variation(call, request.image, _values(request), nova=nova)
    image = _only_image(request.image, call.deployment.model)
    width, height = _dimensions(image, "image")
    if request.size is not None and parse_size(request.size) != (width, height):
        raise BadRequestError(
            f"Bedrock's inpainting keeps the input image's size ({width}x{height}); remove "
            f"size, or resize the image to {request.size} first",
            param="size",
        )
    values = {**_values(request), "size": None}
    body = build_body(_INPAINTING_FIELDS, values, call.capabilities, _extra(call.extra))
    params = body.setdefault("inPaintingParams", {})
    params["image"] = _b64(image, _AMAZON_INPUTS)
    params["maskImage"] = bedrock_mask(request.mask, (width, height))
    return {"taskType": "INPAINTING", **body}


def amazon_variation_body(call: ImageVariationCall, *, nova: bool) -> dict[str, Any]:
    """Titan / Nova IMAGE_VARIATION of one image, without a prompt."""
    return _variation(call, [call.request.image], _values(call.request), nova=nova)


def _variation(
    call: ImageEditCall | ImageVariationCall,
    images: list[InputImage],
    values: dict[str, Any],
    *,
    nova: bool,
) -> dict[str, Any]:
    if len(images) > _MAX_VARIATION_IMAGES:
        raise BadRequestError(
            f"Bedrock makes variations of at most {_MAX_VARIATION_IMAGES} images; "
            f"got {len(images)}",
            param="image",
        )
    table = _VARIATION_FIELDS["nova" if nova else "titan"]
    body = build_body(table, values, call.capabilities, _extra(call.extra))
    params = body.setdefault("imageVariationParams", {})
    params["images"] = [_b64(image, _AMAZON_INPUTS) for image in images]
    return {"taskType": "IMAGE_VARIATION", **body}


# ---------------------------------------------------------------------------- images


def _values(request: Any) -> dict[str, Any]:
    names = ("prompt", "negative_prompt", "n", "size", "quality", "output_format")
    return {name: getattr(request, name, None) for name in names}


def _only_image(images: list[InputImage], model: str) -> InputImage:
    if len(images) != 1:
        raise BadRequestError(
            f"{model} edits one image at a time on Bedrock; got {len(images)}", param="image"
        )
    return images[0]


def _dimensions(image: InputImage, param: str) -> tuple[int, int]:
    header = image_header(image, param=param, which=param)
    return header.width, header.height


def _b64(image: InputImage, accepted: frozenset[str]) -> str:
    """The image as base64, converted to PNG when Bedrock cannot read its type."""
    data = image.data
    if image.media_type not in accepted:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as picture:
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            data = buffer.getvalue()
    return base64.b64encode(data).decode()


def bedrock_mask(mask: InputImage, size: tuple[int, int]) -> str:
    """OpenAI's mask (fully transparent pixels may change) as Bedrock's `maskImage`: a PNG
    of pure black (0,0,0) where the image may change and pure white (255,255,255)
    elsewhere, the size of the image."""
    from PIL import Image

    with Image.open(io.BytesIO(mask.data)) as picture:
        if picture.size != size:
            raise BadRequestError(
                f"the mask is {picture.size[0]}x{picture.size[1]} but the image is "
                f"{size[0]}x{size[1]}; give a mask of the same size",
                param="mask",
            )
        alpha = picture.convert("RGBA").getchannel("A")
    lowest, _ = alpha.getextrema()  # one band: (min, max)
    if lowest != 0:
        raise BadRequestError(
            "the mask has no fully transparent pixels, so nothing would change; make the "
            "area to edit fully transparent",
            param="mask",
        )
    # Alpha 0 → black (edit), anything else → white (keep).
    keep = alpha.point([0] + [255] * 255).convert("RGB")
    buffer = io.BytesIO()
    keep.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
