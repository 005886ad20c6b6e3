"""Wire rules of the OpenAI-style image APIs, as data: per-model field tables and error bodies.

The emulator server (``openai.py``) looks a model up here, runs :func:`validate`
and renders :class:`ApiError` bodies. Nothing in this module does I/O.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

JsonObject = dict[str, Any]


class ApiError(Exception):
    """An error answer: HTTP status plus an OpenAI-shaped (or explicitly given) JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = "invalid_request_error",
        extra: JsonObject | None = None,
        body: JsonObject | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_
        self.extra = extra or {}
        self._body = body

    def to_body(self) -> JsonObject:
        if self._body is not None:
            return self._body
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**error, "code": self.code, **self.extra}}


def azure_error(status: int, code: str, message: str) -> ApiError:
    """Azure's own (non-OpenAI) error shape: ``{"error": {"code", "message"}}``."""
    return ApiError(status, message, body={"error": {"code": code, "message": message}})


# ---------------------------------------------------------------------------- field rules

_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _type_error(name: str, expected: type, value: object) -> ApiError:
    got = _TYPE_NAMES.get(type(value), type(value).__name__)
    return ApiError(
        400,
        f"Invalid type for '{name}': expected {_TYPE_NAMES[expected]}, but got {got} instead.",
        param=name,
        code="invalid_type",
    )


def _require(name: str, value: object, expected: type) -> None:
    # bool is a subclass of int, but JSON true is not an integer.
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise _type_error(name, expected, value)


def _invalid(name: str, message: str) -> ApiError:
    return ApiError(400, message, param=name, code="invalid_value")


def _quoted(values: tuple[str, ...]) -> str:
    items = [f"'{value}'" for value in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f", and {items[-1]}"


class Rule(Protocol):
    def check(self, name: str, value: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Text:
    max_len: int | None = None

    def check(self, name: str, value: object) -> None:
        _require(name, value, str)
        assert isinstance(value, str)
        if self.max_len is not None and len(value) > self.max_len:
            raise ApiError(
                400,
                f"Invalid '{name}': string too long. Expected a string with maximum length "
                f"{self.max_len}, but got a string with length {len(value)} instead.",
                param=name,
                code="string_above_max_length",
            )


@dataclass(frozen=True, slots=True)
class OneOf:
    values: tuple[str, ...]

    def check(self, name: str, value: object) -> None:
        _require(name, value, str)
        if value not in self.values:
            message = f"Invalid value: '{value}'. Supported values are: {_quoted(self.values)}."
            raise _invalid(name, message)


@dataclass(frozen=True, slots=True)
class IntRange:
    low: int
    high: int
    message: str | None = None  # replaces the generic out-of-range text

    def check(self, name: str, value: object) -> None:
        _require(name, value, int)
        assert isinstance(value, int)
        if value < self.low:
            bound = f"integer below minimum value. Expected a value >= {self.low}"
        elif value > self.high:
            bound = f"integer above maximum value. Expected a value <= {self.high}"
        else:
            return
        raise _invalid(name, self.message or f"Invalid '{name}': {bound}, but got {value} instead.")


@dataclass(frozen=True, slots=True)
class Flag:
    def check(self, name: str, value: object) -> None:
        _require(name, value, bool)


_DIMENSIONS = re.compile(r"(\d{1,5})x(\d{1,5})")


def parse_size(size: str) -> tuple[int, int]:
    match = _DIMENSIONS.fullmatch(size)
    if match is None:
        raise ValueError(size)
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class Dimensions:
    """A free ``WxH`` size (plus fixed keywords such as ``auto``) with optional limits."""

    keywords: tuple[str, ...] = ()
    max_long: int = 4096
    max_short: int = 4096
    multiple_of: int = 1
    max_ratio: float | None = None
    min_pixels: int = 1
    max_pixels: int | None = None

    def check(self, name: str, value: object) -> None:
        _require(name, value, str)
        assert isinstance(value, str)
        if value in self.keywords:
            return
        try:
            width, height = parse_size(value)
        except ValueError:
            raise _invalid(name, f"Invalid size '{value}': expected WIDTHxHEIGHT.") from None
        long, short = max(width, height), min(width, height)
        if not (
            short >= 1
            and long <= self.max_long
            and short <= self.max_short
            and width % self.multiple_of == 0
            and height % self.multiple_of == 0
            and (self.max_ratio is None or long / short <= self.max_ratio)
            and width * height >= self.min_pixels
            and (self.max_pixels is None or width * height <= self.max_pixels)
        ):
            raise _invalid(name, f"Invalid size '{value}': unsupported dimensions.")


# ---------------------------------------------------------------------------- model table

Constraint = Callable[[Mapping[str, Any]], None]


def _alpha_needs_png_or_webp(body: Mapping[str, Any]) -> None:
    fmt = body.get("output_format") or "png"
    if body.get("background") == "transparent" and fmt not in ("png", "webp"):
        raise _invalid(
            "background",
            f"Transparent background is not supported for output format '{fmt}'. "
            "Use 'png' or 'webp'.",
        )


def _compression_needs_lossy_format(body: Mapping[str, Any]) -> None:
    compression = body.get("output_compression")
    if (
        compression is not None
        and compression < 100
        and (body.get("output_format") or "png") == "png"
    ):
        raise _invalid(
            "output_compression",
            "Compression less than 100 is not supported for PNG output format.",
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    family: str  # "dall-e-2" | "dall-e-3" | "gpt-image" | "grok" | "compatible"
    fields: Mapping[str, Rule]
    default_size: str = "1024x1024"
    open_fields: bool = False  # accept (and ignore) fields that are not in `fields`
    gpt_image: bool = False  # always b64_json plus background/format/quality/size/usage
    revises_prompt: bool = False
    blocked_code: str = "content_policy_violation"
    unknown_field: str = "Unknown parameter: '{}'."
    constraints: tuple[Constraint, ...] = field(default=())


_RESPONSE_FORMAT = OneOf(("url", "b64_json"))
_DALL_E_SIZES = ("256x256", "512x512", "1024x1024")
_DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
_GPT_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")

DALL_E_2 = ModelSpec(
    family="dall-e-2",
    fields={
        "prompt": Text(1000),
        "model": Text(),
        "n": IntRange(1, 10),
        "quality": OneOf(("standard",)),
        "size": OneOf(_DALL_E_SIZES),
        "response_format": _RESPONSE_FORMAT,
        "user": Text(),
    },
)

DALL_E_3 = ModelSpec(
    family="dall-e-3",
    fields={
        **DALL_E_2.fields,
        "prompt": Text(4000),
        "n": IntRange(1, 1, message="You must provide n=1 for this model."),
        "quality": OneOf(("standard", "hd")),
        "size": OneOf(_DALL_E_3_SIZES),
        "style": OneOf(("vivid", "natural")),
    },
    revises_prompt=True,
)

GPT_IMAGE = ModelSpec(
    family="gpt-image",
    fields={
        "prompt": Text(32000),
        "model": Text(),
        "n": IntRange(1, 10),
        "quality": OneOf(("auto", "low", "medium", "high")),
        "size": OneOf(_GPT_SIZES),
        "background": OneOf(("auto", "transparent", "opaque")),
        "output_format": OneOf(("png", "jpeg", "webp")),
        "output_compression": IntRange(0, 100),
        "moderation": OneOf(("auto", "low")),
        "user": Text(),
        "stream": Flag(),
        "partial_images": IntRange(0, 3),
    },
    gpt_image=True,
    blocked_code="moderation_blocked",
    constraints=(_alpha_needs_png_or_webp, _compression_needs_lossy_format),
)

# gpt-image-2 also takes free sizes: sides multiples of 16 up to 3840, ratio up to 3:1,
# 655,360 to 8,294,400 pixels (3840x2160's count).
GPT_IMAGE_2 = replace(
    GPT_IMAGE,
    fields={
        **GPT_IMAGE.fields,
        "size": Dimensions(
            keywords=("auto",),
            max_long=3840,
            multiple_of=16,
            max_ratio=3.0,
            min_pixels=655_360,
            max_pixels=8_294_400,
        ),
    },
)
# Its successors take the same fields.
GPT_IMAGE_2_SUCCESSORS = (
    "gpt-image-2.5-sunburst",
    "gpt-image-2.5-flare",
    "gpt-image-2.6-sunburst",
    "gpt-image-2.6-flare",
)

# Output size per xAI aspect ratio at resolution "1k"; "2k" doubles both sides.
XAI_ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (768, 1024),
    "4:3": (1024, 768),
    "9:16": (720, 1280),
    "16:9": (1280, 720),
    "2:3": (768, 1152),
    "3:2": (1152, 768),
    "9:19.5": (576, 1248),
    "19.5:9": (1248, 576),
    "9:20": (576, 1280),
    "20:9": (1280, 576),
    "1:2": (512, 1024),
    "2:1": (1024, 512),
    "auto": (1024, 1024),
}

GROK = ModelSpec(
    family="grok",
    fields={
        "prompt": Text(),
        "model": Text(),
        "n": IntRange(1, 10),
        "response_format": _RESPONSE_FORMAT,
        "aspect_ratio": OneOf(tuple(XAI_ASPECT_SIZES)),
        "resolution": OneOf(("1k", "2k")),
        "quality": OneOf(("low", "medium", "high")),
        "user": Text(),
    },
    revises_prompt=True,
    unknown_field="Argument not supported: {}",
)

COMPATIBLE = ModelSpec(
    family="compatible",
    fields={"prompt": Text(), "n": IntRange(1, 10), "size": Dimensions()},
    default_size="512x512",
    open_fields=True,
)

OPENAI_MODELS: dict[str, ModelSpec] = {
    "dall-e-2": DALL_E_2,
    "dall-e-3": DALL_E_3,
    "gpt-image-1": GPT_IMAGE,
    "gpt-image-1-mini": GPT_IMAGE,
    "gpt-image-1.5": GPT_IMAGE,
    "gpt-image-2": GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": GPT_IMAGE_2,
    **dict.fromkeys(GPT_IMAGE_2_SUCCESSORS, GPT_IMAGE_2),
}

XAI_MODELS: dict[str, ModelSpec] = {
    name: GROK
    for name in (
        "grok-2-image",
        "grok-2-image-1212",
        "grok-imagine-image",
        "grok-imagine-image-quality",
    )
}


def models_for(flavor: str) -> list[str]:
    """What `GET /v1/models` lists for a flavor (a self-hosted server names its own)."""
    if flavor == "xai":
        return sorted(XAI_MODELS)
    if flavor == "compatible":
        return ["local-model"]
    return sorted(OPENAI_MODELS)


# ---------------------------------------------------------------------------- checks


def missing(name: str) -> ApiError:
    return ApiError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def parse_json_object(raw: bytes) -> JsonObject:
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            400, "Invalid body: expected a JSON object at the top level.", code="invalid_type"
        )
    if body.get("prompt") is None:
        raise missing("prompt")
    return body


def validate(spec: ModelSpec, body: Mapping[str, Any]) -> None:
    """Raise the first :class:`ApiError` the real API would give for ``body``."""
    for name, value in body.items():
        rule = spec.fields.get(name)
        if rule is None:
            if spec.open_fields:
                continue
            raise ApiError(
                400, spec.unknown_field.format(name), param=name, code="unknown_parameter"
            )
        if value is not None:  # an explicit null means "use the default"
            rule.check(name, value)
    for constraint in spec.constraints:
        constraint(body)


_BLOCKED_WORD = re.compile(r"\bforbidden\b", re.IGNORECASE)


def is_blocked(prompt: str) -> bool:
    """The emulator's safety system rejects any prompt with the word "forbidden"."""
    return _BLOCKED_WORD.search(prompt) is not None


SAFETY_MESSAGE = "Your request was rejected as a result of our safety system."


def output_size(spec: ModelSpec, body: Mapping[str, Any]) -> tuple[int, int]:
    if spec.family == "grok":
        width, height = XAI_ASPECT_SIZES[body.get("aspect_ratio") or "1:1"]
        scale = 2 if body.get("resolution") == "2k" else 1
        return width * scale, height * scale
    size = body.get("size") or "auto"
    return parse_size(spec.default_size if size == "auto" else size)


# Output image tokens per 1024x1024 image, by quality; other sizes scale with their area.
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}


# Input image tokens per image given to an edit (low input fidelity).
INPUT_IMAGE_TOKENS = 388


def usage(
    prompt: str, quality: str, width: int, height: int, n: int, *, input_images: int = 0
) -> JsonObject:
    text_tokens = len(prompt.split())
    image_tokens = round(_IMAGE_TOKENS[quality] * width * height / (1024 * 1024)) * n
    image_in = INPUT_IMAGE_TOKENS * input_images
    return {
        "input_tokens": text_tokens + image_in,
        "output_tokens": image_tokens,
        "total_tokens": text_tokens + image_in + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_in},
        "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
    }


# ---------------------------------------------------------------------------- Azure extras

_FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


def content_filter_results(*, blocked: bool = False) -> JsonObject:
    results: JsonObject = {
        name: {"filtered": False, "severity": "safe"} for name in _FILTER_CATEGORIES
    }
    if blocked:
        results["violence"] = {"filtered": True, "severity": "high"}
    return results


def prompt_filter_results() -> JsonObject:
    return {
        **content_filter_results(),
        "profanity": {"filtered": False, "detected": False},
        "jailbreak": {"filtered": False, "detected": False},
        "custom_blocklists": {"filtered": False, "details": []},
    }


# ---------------------------------------------------------------------------- injected statuses

# (type, code, message) of OpenAI's error body per status, for `fail_next("status", ...)`.
_OPENAI_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Not supported."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for images per minute."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_AZURE_STATUS_MESSAGES: dict[int, str] = {
    429: "Requests to the Images_Generations Operation have exceeded call rate limit of your "
    "current pricing tier. Please retry after the time given in the Retry-After header.",
}


def injected_error(status: int, *, azure: bool) -> ApiError:
    """The body a provider sends with ``status`` when it fails on its own accord."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if azure:
        return azure_error(status, str(status), _AZURE_STATUS_MESSAGES.get(status, phrase))
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    type_, code, message = _OPENAI_STATUS_ERRORS.get(status, (default_type, None, phrase + "."))
    return ApiError(status, message, code=code, type_=type_)


def mask_key(key: str) -> str:
    """All but the last four characters replaced by ``*``, as OpenAI's 401 message does."""
    visible = key[-4:] if len(key) > 4 else ""
    return "*" * (len(key) - len(visible)) + visible


# ---------------------------------------------------------------------------- edits, variations


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a ``multipart/form-data`` body."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def parse_form(raw: bytes, content_type: str) -> list[FormPart]:
    """The parts of a multipart body, in order; a 400 as OpenAI gives for anything else."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            400,
            f"Invalid Content-Type header ({content_type or 'none'}), expected "
            "multipart/form-data.",
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ApiError(400, "Could not parse multipart form data.")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ApiError(400, "Could not parse multipart form data.")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        declared = part.get("Content-Type") if filename is not None else None
        parts.append(FormPart(name, data, filename, declared))
    return parts


@dataclass(frozen=True, slots=True)
class Inputs:
    """The input files a model takes on edits and variations."""

    max_images: int
    max_bytes: int
    # dall-e-2 reads the bytes as PNG; gpt-image models go by each part's declared type.
    png_only: bool
    mimetypes: tuple[str, ...] = ("image/png",)
    square: bool = False
    alpha_without_mask: bool = False


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One model on ``/images/edits`` or ``/images/variations``: its text fields (as
    :class:`ModelSpec`) and its input files."""

    model: ModelSpec
    inputs: Inputs
    takes_mask: bool = True


DALL_E_2_INPUTS = Inputs(
    max_images=1,
    max_bytes=4 * 1024 * 1024,
    png_only=True,
    square=True,
    alpha_without_mask=True,
)
GPT_IMAGE_INPUTS = Inputs(
    max_images=16,
    max_bytes=50 * 1024 * 1024,
    png_only=False,
    mimetypes=("image/jpeg", "image/png", "image/webp"),
)

_GPT_EDIT_FIELDS = {
    **{k: v for k, v in GPT_IMAGE.fields.items() if k != "moderation"},
    "input_fidelity": OneOf(("high", "low")),
}
_GPT_EDIT = FileSpec(replace(GPT_IMAGE, fields=_GPT_EDIT_FIELDS), GPT_IMAGE_INPUTS)
# gpt-image-1-mini does not take input_fidelity.
_GPT_MINI_EDIT = FileSpec(
    replace(GPT_IMAGE, fields={k: v for k, v in _GPT_EDIT_FIELDS.items() if k != "input_fidelity"}),
    GPT_IMAGE_INPUTS,
)
_GPT_2_EDIT = FileSpec(
    replace(GPT_IMAGE_2, fields={**_GPT_EDIT_FIELDS, "size": GPT_IMAGE_2.fields["size"]}),
    GPT_IMAGE_INPUTS,
)

EDIT_MODELS: dict[str, FileSpec] = {
    "dall-e-2": FileSpec(DALL_E_2, DALL_E_2_INPUTS),
    "gpt-image-1": _GPT_EDIT,
    "gpt-image-1-mini": _GPT_MINI_EDIT,
    "gpt-image-1.5": _GPT_EDIT,
    "chatgpt-image-latest": _GPT_EDIT,
    "gpt-image-2": _GPT_2_EDIT,
    "gpt-image-2-2026-04-21": _GPT_2_EDIT,
    **dict.fromkeys(GPT_IMAGE_2_SUCCESSORS, _GPT_2_EDIT),
}
# Variations: dall-e-2 only, no prompt, no quality, no mask.
VARIATION_MODELS: dict[str, FileSpec] = {
    "dall-e-2": FileSpec(
        replace(
            DALL_E_2,
            fields={k: v for k, v in DALL_E_2.fields.items() if k not in ("prompt", "quality")},
        ),
        replace(DALL_E_2_INPUTS, alpha_without_mask=False),
        takes_mask=False,
    ),
}
# The model a request without one gets (the spec's defaults).
DEFAULT_EDIT_MODEL = "gpt-image-1.5"
DEFAULT_VARIATION_MODEL = "dall-e-2"

COMPATIBLE_FILES = FileSpec(
    COMPATIBLE,
    Inputs(max_images=16, max_bytes=64 * 1024 * 1024, png_only=False, mimetypes=()),
)


def not_for_operation(model: str, operation: str) -> ApiError:
    """A known model that the endpoint does not serve (dall-e-3 on edits, say)."""
    return ApiError(
        400,
        f"Invalid value: '{model}'. The model does not support image {operation}.",
        param="model",
        code="invalid_value",
    )


def form_body(parts: list[FormPart], spec: ModelSpec) -> JsonObject:
    """The text fields of a form, typed as the model's rules expect (``n`` an integer,
    ``stream`` a boolean); file parts are left out."""
    body: JsonObject = {}
    for part in parts:
        if part.is_file:
            continue
        rule = spec.fields.get(part.name)
        value: object = part.text
        if isinstance(rule, IntRange):
            try:
                value = int(part.text)
            except ValueError:
                raise _type_error(part.name, int, part.text) from None
        elif isinstance(rule, Flag):
            if part.text not in ("true", "false"):
                raise _type_error(part.name, bool, part.text)
            value = part.text == "true"
        body[part.name] = value
    return body


@dataclass(frozen=True, slots=True)
class SeenFile:
    """An input file as the emulator read it."""

    name: str
    width: int
    height: int
    mode: str
    fmt: str  # Pillow's format name: PNG, JPEG, WEBP, ...
    content_type: str | None


def _open(part: FormPart, param: str) -> SeenFile:
    try:
        with Image.open(io.BytesIO(part.data)) as image:
            mode = image.mode
            if "transparency" in image.info and mode in ("P", "RGB", "L"):
                mode = "RGBA"  # tRNS-transparent PNGs count as having alpha
            return SeenFile(
                part.name, image.width, image.height, mode, image.format or "", part.content_type
            )
    except (UnidentifiedImageError, OSError):
        raise ApiError(
            400,
            f"Invalid image file for '{param}': the file could not be decoded as an image.",
            param=param,
            code="invalid_image_file",
        ) from None


def check_files(parts: list[FormPart], files: FileSpec) -> tuple[list[SeenFile], SeenFile | None]:
    """The input images and the mask, checked as OpenAI checks them."""
    images: list[FormPart] = []
    mask: FormPart | None = None
    for part in parts:
        if part.name in ("image", "image[]", "mask"):
            if not part.is_file:
                raise ApiError(
                    400,
                    f"Invalid type for '{part.name}': expected a file, but got a string instead.",
                    param=part.name,
                    code="invalid_type",
                )
            if part.name == "mask":
                if not files.takes_mask:
                    raise ApiError(
                        400, "Unknown parameter: 'mask'.", param="mask", code="unknown_parameter"
                    )
                mask = part
            else:
                images.append(part)
        elif part.is_file:
            raise ApiError(
                400,
                f"Unknown parameter: '{part.name}'.",
                param=part.name,
                code="unknown_parameter",
            )
    if not images:
        raise missing("image")
    inputs = files.inputs
    if len(images) > inputs.max_images:
        raise ApiError(
            400,
            f"Invalid 'image': array too long. Expected an array with maximum length "
            f"{inputs.max_images}, but got an array with length {len(images)} instead.",
            param="image",
            code="array_above_max_length",
        )
    seen = [_check_image(part, inputs) for part in images]
    if mask is None:
        if inputs.alpha_without_mask and seen[0].mode not in ("RGBA", "LA", "L"):
            raise ApiError(
                400,
                f"Invalid input image - format must be in ['RGBA', 'LA', 'L'], got {seen[0].mode}.",
                param="image",
                code="invalid_image_format",
            )
        return seen, None
    mask_seen = _open(mask, "mask")
    if mask_seen.fmt != "PNG" or len(mask.data) >= 4 * 1024 * 1024:
        raise ApiError(400, "Uploaded mask must be a PNG and less than 4 MB.", param="mask")
    if (mask_seen.width, mask_seen.height) != (seen[0].width, seen[0].height):
        raise ApiError(
            400,
            "Invalid mask image - the mask must have the same dimensions as the image "
            f"({seen[0].width}x{seen[0].height}), got {mask_seen.width}x{mask_seen.height}.",
            param="mask",
            code="invalid_image_dimensions",
        )
    return seen, mask_seen


def _check_image(part: FormPart, inputs: Inputs) -> SeenFile:
    if inputs.png_only:
        seen = _open(part, "image")
        if seen.fmt != "PNG" or len(part.data) >= inputs.max_bytes:
            raise ApiError(400, "Uploaded image must be a PNG and less than 4 MB.")
        if inputs.square and seen.width != seen.height:
            raise ApiError(
                400,
                f"Invalid input image - image must be square, got {seen.width}x{seen.height}.",
                param="image",
                code="invalid_image_dimensions",
            )
        return seen
    declared = (part.content_type or "application/octet-stream").split(";")[0].strip()
    if inputs.mimetypes and declared not in inputs.mimetypes:
        raise ApiError(
            400,
            f"Invalid file '{part.name}': unsupported mimetype ('{declared}'). Supported file "
            f"formats are {_quoted(inputs.mimetypes)}.",
            param=part.name,
            code="unsupported_file_mimetype",
        )
    if len(part.data) >= inputs.max_bytes:
        raise ApiError(
            400,
            f"Invalid file '{part.name}': file too large. The maximum size is "
            f"{inputs.max_bytes // (1024 * 1024)} MB.",
            param=part.name,
            code="file_too_large",
        )
    return _open(part, part.name)


def edit_size(spec: ModelSpec, body: Mapping[str, Any], first: SeenFile) -> tuple[int, int]:
    """The output size of an edit: as asked, or for ``auto`` the accepted size nearest
    the first input's shape (gpt-image), or the model's default."""
    size = body.get("size") or "auto"
    if size != "auto":
        return parse_size(size)
    if spec.gpt_image:
        ratio = first.width / first.height
        if ratio > 1.2:
            return 1536, 1024
        if ratio < 1 / 1.2:
            return 1024, 1536
        return 1024, 1024
    return parse_size(spec.default_size)
