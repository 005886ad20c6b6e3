"""Wire rules of Bedrock's image models on InvokeModel: body validation and answers.

Three body families, validated as Bedrock's JSON schema layer does ("Malformed input
request: #: required key [text_prompts] not found, please reformat your input and try
again."; several problems are joined, each with its ``#/path``):

- Stability SDXL (``stability.stable-diffusion-xl-v0``/``-v1``): ``text_prompts``; v1
  sizes from the fixed list of nine, v0 any multiple of 64 from 128 to 1536 [U]. Answer
  ``{"result", "artifacts": [{"seed", "base64", "finishReason"}]}``.
- Stability SD3 / SD3.5 / Stable Image Ultra / Core: ``prompt``, ``aspect_ratio`` (not with
  ``mode: image-to-image``, which only SD3/SD3.5 take and which needs ``image`` and
  ``strength``). Answer ``{"seeds", "finish_reasons", "images"}`` in the ratio's native size
  (image-to-image: the input's size).
- Amazon Titan Image Generator v1/v2 and Nova Canvas: ``taskType`` TEXT_IMAGE, INPAINTING
  or IMAGE_VARIATION with its params object and ``imageGenerationConfig``; Titan sizes from
  its list, Nova sizes by its rules (sides 320-4096 and multiples of 16, ratio 1:4 to 4:1,
  under 4,194,304 pixels). ``maskImage`` must be pure black and white, the image's size.
  Answer ``{"images": [...]}``.

Safety outcomes on demand, from the prompt (or Titan/Nova ``text``): ``FILTER_ME`` filters
everything (SDXL: CONTENT_FILTERED artifacts; SD3: only ``finish_reasons: ["Filter reason:
prompt"]``; Titan/Nova: 400 "...blocked by our content filters..."); ``FILTER_SOME``
withholds one image (Titan/Nova: the first of several, with ``error``; the one-image models:
every other such call, the first included, as ``CONTENT_FILTERED`` / "Filter reason: output
image"). Nothing in this module does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from typing import Any

from PIL import Image

from .aws import AwsError, validation
from .images import make_image
from .vision import decode_base64, sniff

JsonObject = dict[str, Any]
Check = Callable[[str, Any], list[str]]

IMAGE_MODELS: tuple[str, ...] = (
    "stability.stable-diffusion-xl-v0",
    "stability.stable-diffusion-xl-v1",
    "stability.sd3-large-v1:0",
    "stability.sd3-5-large-v1:0",
    "stability.stable-image-ultra-v1:0",
    "stability.stable-image-ultra-v1:1",
    "stability.stable-image-core-v1:0",
    "stability.stable-image-core-v1:1",
    "amazon.titan-image-generator-v1",
    "amazon.titan-image-generator-v2:0",
    "amazon.nova-canvas-v1:0",
)
FILTER_ALL = "FILTER_ME"
FILTER_SOME = "FILTER_SOME"
SDXL_SIZES = ((1024, 1024), (1152, 896), (1216, 832), (1344, 768), (1536, 640), (640, 1536),
              (768, 1344), (832, 1216), (896, 1152))  # fmt: skip
TITAN_SIZES = ((1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768),
               (576, 384), (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152),
               (448, 576), (1152, 896), (576, 448), (768, 1408), (384, 704), (1408, 768),
               (704, 384), (640, 1408), (320, 704), (1408, 640), (704, 320), (1152, 640),
               (1173, 640))  # fmt: skip
# Stability's native output size per aspect ratio (about one megapixel).
RATIO_SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640),
               "2:3": (832, 1216), "3:2": (1216, 832), "4:5": (896, 1088),
               "5:4": (1088, 896), "9:16": (768, 1344), "9:21": (640, 1536)}  # fmt: skip
BLOCKED = (
    "This request has been blocked by our content filters. Please adjust your text prompt "
    "to submit a new request."
)
_SAMPLERS = ("DDIM", "DDPM", "K_DPMPP_2M", "K_DPMPP_2S_ANCESTRAL", "K_DPM_2",
             "K_DPM_2_ANCESTRAL", "K_EULER", "K_EULER_ANCESTRAL", "K_HEUN", "K_LMS")  # fmt: skip
_STYLES = ("3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art",
           "enhance", "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound",
           "neon-punk", "origami", "photographic", "pixel-art", "tile-texture")  # fmt: skip
_CLIP = ("FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST")


# ---------------------------------------------------------------------------- schema checks


def malformed(problems: list[str]) -> AwsError:
    """Bedrock's JSON-schema refusal, listing every problem."""
    return validation(
        f"Malformed input request: {''.join(problems)}, please reformat your input and try again."
    )


def _string(low: int, high: int) -> Check:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, str):
            return [f"{path}: expected type: String, found: {type(value).__name__}"]
        if len(value) < low:
            return [f"{path}: expected minLength: {low}, actual: {len(value)}"]
        if len(value) > high:
            return [f"{path}: expected maxLength: {high}, actual: {len(value)}"]
        return []

    return check


def _number(low: float, high: float, *, integer: bool = False) -> Check:
    def check(path: str, value: Any) -> list[str]:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return [f"{path}: expected type: {'Integer' if integer else 'Number'}, "
                    f"found: {type(value).__name__}"]  # fmt: skip
        if value < low:
            return [f"{path}: {value} is not greater or equal to {low}"]
        if value > high:
            return [f"{path}: {value} is not less or equal to {high}"]
        return []

    return check


def _enum(*values: str) -> Check:
    def check(path: str, value: Any) -> list[str]:
        return [] if value in values else [f"{path}: {value} is not a valid enum value"]

    return check


def _anything(_path: str, _value: Any) -> list[str]:
    return []


def _free_object(path: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return []
    return [f"{path}: expected type: JSONObject, found: {type(value).__name__}"]


def _object(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected type: JSONObject, found: {type(value).__name__}"]
        where = path or "#"
        problems = [f"{where}: required key [{key}] not found" for key in required
                    if key not in value]  # fmt: skip
        for key, item in value.items():
            if key not in fields:
                problems.append(f"{where}: extraneous key [{key}] is not permitted")
            else:
                problems += fields[key](f"{path or '#'}/{key}", item)
        return problems

    return check


def _array(item: Check, low: int, high: int) -> Check:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            return [f"{path}: expected type: JSONArray, found: {type(value).__name__}"]
        if not low <= len(value) <= high:
            return [f"{path}: expected between {low} and {high} items, found: {len(value)}"]
        return [problem for i, entry in enumerate(value) for problem in item(f"{path}/{i}", entry)]

    return check


def _validate(schema: Check, body: JsonObject) -> None:
    if problems := schema("", body):
        raise malformed(problems)


def _image(text: Any, path: str, accepted: tuple[str, ...]) -> bytes:
    data = decode_base64(text) if isinstance(text, str) else None
    if data is None or sniff(data) not in accepted:
        raise validation(f"{path}: the image must be base64 of a {' or '.join(accepted)} file.")
    return data


def _size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.size


def _seed(body: JsonObject, *texts: Any) -> int:
    seed = body.get("seed") or (body.get("imageGenerationConfig") or {}).get("seed")
    if seed:
        return int(seed)
    digest = hashlib.sha256("\0".join(str(t) for t in texts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _png(width: int, height: int, seed: int, fmt: str = "png") -> str:
    return base64.b64encode(make_image(width, height, fmt, seed % 100_000)).decode()


# ---------------------------------------------------------------------------- SDXL

_SDXL = _object(
    {
        "text_prompts": _array(
            _object({"text": _string(1, 2000), "weight": _number(-10, 10)}, ("text",)), 1, 10
        ),
        "height": _number(128, 1536, integer=True),
        "width": _number(128, 1536, integer=True),
        "cfg_scale": _number(0, 35),
        "clip_guidance_preset": _enum(*_CLIP),
        "sampler": _enum(*_SAMPLERS),
        "samples": _number(1, 1, integer=True),
        "seed": _number(0, 4294967295, integer=True),
        "steps": _number(10, 150, integer=True),
        "style_preset": _enum(*_STYLES),
        "extras": _free_object,
        "init_image": _string(1, 50_000_000),
        "init_image_mode": _enum("IMAGE_STRENGTH", "STEP_SCHEDULE"),
        "image_strength": _number(0, 1),
        "step_schedule_start": _number(0, 1),
        "step_schedule_end": _number(0, 1),
    },
    ("text_prompts",),
)


def sdxl(model: str, body: JsonObject, filter_turn: int) -> JsonObject:
    """An SDXL answer; ``filter_turn`` counts this model family's FILTER_SOME calls."""
    _validate(_SDXL, body)
    width, height = body.get("width", 1024), body.get("height", 1024)
    if model.endswith("-v1") and (width, height) not in SDXL_SIZES:
        allowed = ", ".join(f"{w}x{h}" for w, h in SDXL_SIZES)
        raise validation(
            f"The provided dimensions ({width}x{height}) are not valid for SDXL 1.0. "
            f"Allowed dimensions: {allowed}."
        )
    if width % 64 or height % 64:
        raise validation("height and width must be multiples of 64.")
    text = " ".join(p["text"] for p in body["text_prompts"])
    seed = _seed(body, text)
    filtered = FILTER_ALL in text or (FILTER_SOME in text and filter_turn % 2 == 0)
    reason = "CONTENT_FILTERED" if filtered else "SUCCESS"
    artifact = {"seed": seed, "base64": _png(width, height, seed), "finishReason": reason}
    return {"result": "success", "artifacts": [artifact]}


# ---------------------------------------------------------------------------- SD3 / Ultra / Core


def _stability_schema(image_to_image: bool, mode: Any) -> Check:
    fields: dict[str, Check] = {
        "prompt": _string(0, 10_000),
        "negative_prompt": _string(0, 10_000),
        "seed": _number(0, 4294967294, integer=True),
        "output_format": _enum("jpeg", "png"),
    }
    required: tuple[str, ...] = ("prompt",)
    if image_to_image:  # SD3 / SD3.5
        fields["mode"] = _enum("text-to-image", "image-to-image")
    if mode == "image-to-image":
        fields |= {"image": _string(1, 50_000_000), "strength": _number(0, 1)}
        required += ("image", "strength")
    else:
        fields["aspect_ratio"] = _enum(*RATIO_SIZES)
    return _object(fields, required)


def stability(model: str, body: JsonObject, filter_turn: int) -> JsonObject:
    """An SD3 / SD3.5 / Ultra / Core answer (one image)."""
    mode = body.get("mode", "text-to-image")
    _validate(_stability_schema(model.startswith("stability.sd3"), mode), body)
    if mode == "image-to-image":
        width, height = _size_of(_image(body["image"], "#/image", ("image/png", "image/jpeg",
                                                                   "image/webp")))  # fmt: skip
    else:
        width, height = RATIO_SIZES[body.get("aspect_ratio", "1:1")]
    prompt = body["prompt"]
    seed = _seed(body, prompt)
    if FILTER_ALL in prompt:
        return {"finish_reasons": ["Filter reason: prompt"]}
    if FILTER_SOME in prompt and filter_turn % 2 == 0:
        return {"seeds": [seed], "finish_reasons": ["Filter reason: output image"]}
    fmt = body.get("output_format", "png")
    return {"seeds": [seed], "finish_reasons": [None], "images": [_png(width, height, seed, fmt)]}


# ---------------------------------------------------------------------------- Titan / Nova


def _amazon_schema(task: str, nova: bool, v2: bool) -> Check:
    text = _string(1, 1024 if nova else 512)
    seeds = 858_993_459 if nova else 2_147_483_646
    config = _object(
        {
            "numberOfImages": _number(1, 5, integer=True),
            "width": _number(1, 10_000, integer=True),
            "height": _number(1, 10_000, integer=True),
            "cfgScale": _number(1.1, 10),
            "seed": _number(0, seeds, integer=True),
            "quality": _enum("standard", "premium"),
        }
    )
    image = _string(1, 50_000_000)
    conditioned = {"conditionImage": image, "controlMode": _enum("CANNY_EDGE", "SEGMENTATION"),
                   "controlStrength": _number(0, 1)} if nova or v2 else {}  # fmt: skip
    params: dict[str, tuple[str, Check]] = {
        "TEXT_IMAGE": ("textToImageParams", _object(
            {"text": text, "negativeText": text, **conditioned}, ("text",))),
        "INPAINTING": ("inPaintingParams", _object(
            {"image": image, "text": text, "negativeText": text, "maskPrompt": text,
             "maskImage": image, **({"returnMask": _anything} if nova else {})}, ("image",))),
        "IMAGE_VARIATION": ("imageVariationParams", _object(
            {"images": _array(image, 1, 5), "text": text, "negativeText": text,
             "similarityStrength": _number(0.2, 1.0)}, ("images",))),
    }  # fmt: skip
    name, check = params[task]
    return _object(
        {"taskType": _anything, name: check, "imageGenerationConfig": config}, ("taskType", name)
    )


def _amazon_size(config: JsonObject, nova: bool) -> tuple[int, int]:
    width, height = config.get("width", 1024), config.get("height", 1024)
    if nova:
        if not (320 <= width <= 4096 and 320 <= height <= 4096) or width % 16 or height % 16:
            raise validation(
                "The width and height must each be between 320 and 4096 pixels and divisible by 16."
            )
        if not 0.25 <= width / height <= 4:
            raise validation("The aspect ratio must be between 1:4 and 4:1.")
        if width * height >= 4_194_304:
            raise validation("The total pixel count must be less than 4,194,304.")
    elif (width, height) not in TITAN_SIZES:
        raise validation(f"{width}x{height} is not a supported image size for this model.")
    return width, height


def _check_mask(params: JsonObject, size: tuple[int, int]) -> None:
    has_prompt, has_image = "maskPrompt" in params, "maskImage" in params
    if has_prompt == has_image:
        raise validation("Exactly one of maskPrompt or maskImage must be provided.")
    if not has_image:
        return
    data = _image(params["maskImage"], "#/inPaintingParams/maskImage", ("image/png",
                                                                        "image/jpeg"))  # fmt: skip
    with Image.open(io.BytesIO(data)) as picture:
        if picture.size != size:
            raise validation("The mask image must have the same dimensions as the input image.")
        colours = picture.convert("RGB").getcolors(maxcolors=3) or []
    if any(colour not in ((0, 0, 0), (255, 255, 255)) for _, colour in colours):
        raise validation("The mask image must contain only pure black and pure white pixels.")


def amazon(model: str, body: JsonObject) -> JsonObject:
    """A Titan / Nova answer: ``numberOfImages`` images, or a content-filter refusal."""
    nova, v2 = model.startswith("amazon.nova"), model.endswith("v2:0")
    task = body.get("taskType")
    if task not in ("TEXT_IMAGE", "INPAINTING", "IMAGE_VARIATION"):
        raise malformed([f"#/taskType: {task} is not a valid enum value"])
    _validate(_amazon_schema(task, nova, v2), body)
    config = body.get("imageGenerationConfig") or {}
    params = body[{"TEXT_IMAGE": "textToImageParams", "INPAINTING": "inPaintingParams",
                   "IMAGE_VARIATION": "imageVariationParams"}[task]]  # fmt: skip
    accepted = ("image/png", "image/jpeg")
    if task == "INPAINTING":
        size = _size_of(_image(params["image"], "#/inPaintingParams/image", accepted))
        _check_mask(params, size)
    else:
        if task == "IMAGE_VARIATION":
            for i, image in enumerate(params["images"]):
                _image(image, f"#/imageVariationParams/images/{i}", accepted)
        size = _amazon_size(config, nova)
    text = f"{params.get('text', '')} {params.get('negativeText', '')}"
    if FILTER_ALL in text:
        raise validation(BLOCKED)
    count = config.get("numberOfImages", 1)
    seed = _seed(body, text, task)
    images = [_png(*size, seed + i) for i in range(count)]
    if FILTER_SOME in text:
        return {"images": images[1:], "error": "1 of the generated images was blocked by our "
                "content filters."}  # fmt: skip
    return {"images": images}


def answer(model: str, body: JsonObject, filter_turn: int) -> JsonObject:
    """The answer of image model ``model`` (a base id) to ``body``, or an AwsError."""
    if model.startswith("stability.stable-diffusion-xl"):
        return sdxl(model, body, filter_turn)
    if model.startswith("stability."):
        return stability(model, body, filter_turn)
    return amazon(model, body)
