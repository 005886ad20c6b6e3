"""A real loopback HTTP server that speaks Stability AI's v2beta Stable Image API.

Routes: ``POST /v2beta/stable-image/generate/{ultra|core|sd3}`` and the free
``GET /v1/user/balance``. Requests need ``Authorization: Bearer <api_key>`` and, like
Stability, a ``multipart/form-data`` body (a JSON body gets Stability's 400). Fields are
checked as Stability documents them: required ``prompt`` (1-10,000 characters), the nine
aspect ratios, output formats per endpoint (``/sd3`` makes only png and jpeg), seed range,
``style_preset`` on /core and /sd3, ``model``/``mode``/``image``/``strength``/``cfg_scale``
on /sd3 (``image`` and ``strength`` required with ``mode=image-to-image``, where
``aspect_ratio`` is refused), and any other field is an error. ``Accept:
application/json`` answers ``{"image","finish_reason","seed"}``; ``image/*`` answers the
bytes with ``finish-reason`` and ``seed`` headers. Errors are ``{"id","name","errors"}``.

Images are real: about one megapixel at the asked aspect ratio (image-to-image: the
input's size), drawn from the seed (a random one when 0 or absent) and the model.

Safety outcomes on demand, by prompt:

- a prompt containing ``forbidden`` is refused with 403 ``content_moderation``;
- a prompt containing ``filtered`` is answered 200 with ``finish_reason: CONTENT_FILTERED``
  (and a blank image, as Stability blurs it).

``forms`` holds each accepted form as parsed: text fields as ``str``, files as
:class:`FormFile`.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import random
import uuid
import zlib
from dataclasses import dataclass

from aiohttp import web
from PIL import Image

from .images import MIME_TYPES, make_image
from .server import EmulatorServer, Fault, retry_headers

__all__ = [
    "DEFAULT_STABILITY_KEY",
    "RATIO_SIZES",
    "STABILITY_MODELS",
    "FormFile",
    "StabilityEmulator",
    "parse_form",
]

DEFAULT_STABILITY_KEY = "sk-stability-emulator-0001"
STABILITY_MODELS = (
    "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3-large", "sd3-large-turbo",
    "sd3-medium",
)  # fmt: skip
# About one megapixel per aspect ratio, each side a multiple of 64.
RATIO_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "2:3": (832, 1216),
    "3:2": (1216, 832), "4:5": (896, 1088), "5:4": (1088, 896), "9:16": (768, 1344),
    "9:21": (640, 1536), "4:3": (1152, 896), "3:4": (896, 1152),
}  # fmt: skip
_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
STYLE_PRESETS = (
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
    "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
    "origami", "photographic", "pixel-art", "tile-texture",
)  # fmt: skip
_COMMON = frozenset({"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format"})
_FIELDS = {
    "ultra": _COMMON,
    "core": _COMMON | {"style_preset"},
    "sd3": _COMMON | {"style_preset", "model", "mode", "image", "strength", "cfg_scale"},
}
_FORMATS = {"ultra": ("png", "jpeg", "webp"), "core": ("png", "jpeg", "webp"),
            "sd3": ("png", "jpeg")}  # fmt: skip
_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          413: "payload_too_large", 422: "invalid_parameters", 429: "rate_limit_exceeded",
          500: "internal_error", 503: "service_unavailable"}  # fmt: skip
_MAX_SEED = 4294967294


@dataclass(frozen=True, slots=True)
class FormFile:
    """A file part of a multipart form."""

    data: bytes
    filename: str | None
    content_type: str


FormValue = str | FormFile


class StabilityError(Exception):
    def __init__(self, status: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.name = name or _NAMES.get(status, "error")


def parse_form(content_type: str, raw: bytes) -> dict[str, FormValue]:
    """The fields of a multipart/form-data body (the last one wins for a repeated name)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    if not message.is_multipart():
        raise StabilityError(400, "content-type: the body is not a valid multipart form")
    fields: dict[str, FormValue] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise StabilityError(400, "a form part has no name")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = FormFile(data, filename, part.get_content_type())
        else:
            fields[name] = data.decode("utf-8")
    return fields


class StabilityEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request; ``forms`` the forms."""

    name = "stability"

    def __init__(self, *, api_key: str = DEFAULT_STABILITY_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.forms: list[dict[str, FormValue]] = []

    def reset(self) -> None:
        """Forget recorded requests and forms, and pending faults."""
        super().reset()
        self.forms.clear()

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = StabilityError(fault.status, fault.message or f"injected {fault.status}")
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except StabilityError as error:
            return _error_response(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path = request.path
        if request.method == "GET" and path == "/v1/user/balance":
            self._check_key(request)
            return web.json_response({"credits": 42.5})
        prefix = "/v2beta/stable-image/generate/"
        endpoint = path.removeprefix(prefix)
        if request.method != "POST" or not path.startswith(prefix) or endpoint not in _FIELDS:
            raise StabilityError(404, f"{request.method} {path} is not a valid route")
        self._check_key(request)
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise StabilityError(
                400, "content-type: must be multipart/form-data (the request was "
                f"{content_type or 'without a content type'})"
            )  # fmt: skip
        accept = request.headers.get("Accept", "image/*")
        if accept not in ("application/json", "image/*"):
            raise StabilityError(400, "accept: must be application/json or image/*")
        form = parse_form(content_type, raw)
        width, height, fmt, seed, prompt = _validate(endpoint, form)
        self.forms.append(form)
        if "forbidden" in prompt:
            raise StabilityError(
                403, "Your request was flagged by our content moderation system, as a "
                "result your request was denied and you were not charged.",
                "content_moderation",
            )  # fmt: skip
        filtered = "filtered" in prompt
        model = str(form.get("model", "sd3.5-large")) if endpoint == "sd3" else endpoint
        picture = make_image(
            width, height, fmt, 0 if filtered else (seed ^ zlib.crc32(model.encode()))
        )
        finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
        if accept == "image/*":
            return web.Response(
                body=picture,
                content_type=MIME_TYPES[fmt],
                headers={"finish-reason": finish, "seed": str(seed)},
            )
        image = base64.b64encode(picture).decode()
        return web.json_response({"image": image, "finish_reason": finish, "seed": seed})

    def _check_key(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise StabilityError(401, "authorization: invalid or missing header value")


def _validate(endpoint: str, form: dict[str, FormValue]) -> tuple[int, int, str, int, str]:
    """(width, height, format, seed, prompt) of a valid form; a StabilityError otherwise."""
    # Stability's own examples send an empty `none` file to force a multipart body.
    none = form.get("none")
    if none is not None and (none == "" or (isinstance(none, FormFile) and not none.data)):
        del form["none"]
    unknown = sorted(set(form) - _FIELDS[endpoint])
    if unknown:
        raise StabilityError(400, f"{unknown[0]}: unrecognized field for /{endpoint}")
    text = {name: value for name, value in form.items() if isinstance(value, str)}
    files = sorted(set(form) - set(text) - {"image"})
    if files:
        raise StabilityError(400, f"{files[0]}: must be a text field, not a file")
    prompt = text.get("prompt", "")
    if not 1 <= len(prompt) <= 10_000:
        raise StabilityError(400, "prompt: is required and must be 1 to 10000 characters")
    if len(text.get("negative_prompt", "")) > 10_000:
        raise StabilityError(400, "negative_prompt: must be at most 10000 characters")
    fmt = text.get("output_format", "png")
    if fmt not in _FORMATS[endpoint]:
        allowed = ", ".join(_FORMATS[endpoint])
        raise StabilityError(400, f"output_format: must be one of {allowed}")
    if "style_preset" in text and text["style_preset"] not in STYLE_PRESETS:
        raise StabilityError(400, "style_preset: not a valid style preset")
    seed = _number(text, "seed", 0, _MAX_SEED, integer=True)
    seed = int(seed) if seed else random.randint(1, _MAX_SEED)
    if endpoint == "sd3":
        if text.get("model", "sd3.5-large") not in STABILITY_MODELS:
            raise StabilityError(400, f"model: must be one of {', '.join(STABILITY_MODELS)}")
        _number(text, "cfg_scale", 1, 10)
        if text.get("mode", "text-to-image") == "image-to-image":
            width, height = _input_size(form)
            if _number(text, "strength", 0, 1) is None:
                raise StabilityError(400, "strength: is required for image-to-image")
            if "aspect_ratio" in text:
                raise StabilityError(400, "aspect_ratio: is not allowed for image-to-image")
            return width, height, fmt, seed, prompt
        if text.get("mode", "text-to-image") != "text-to-image":
            raise StabilityError(400, "mode: must be text-to-image or image-to-image")
        if "image" in form or "strength" in text:
            raise StabilityError(400, "image, strength: only allowed with mode=image-to-image")
    ratio = text.get("aspect_ratio", "1:1")
    if ratio not in _ASPECT_RATIOS:
        raise StabilityError(400, f"aspect_ratio: must be one of {', '.join(_ASPECT_RATIOS)}")
    width, height = RATIO_SIZES[ratio]
    return width, height, fmt, seed, prompt


def _number(
    text: dict[str, str], name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    if name not in text:
        return None
    try:
        value = int(text[name]) if integer else float(text[name])
    except ValueError:
        raise StabilityError(400, f"{name}: must be a number") from None
    if not low <= value <= high:
        raise StabilityError(400, f"{name}: must be between {low:g} and {high:g}")
    return value


def _input_size(form: dict[str, FormValue]) -> tuple[int, int]:
    image = form.get("image")
    if not isinstance(image, FormFile):
        raise StabilityError(400, "image: is required for image-to-image")
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            width, height = opened.size
            kind = (opened.format or "").lower()
    except OSError:
        raise StabilityError(400, "image: could not be decoded as an image") from None
    if kind not in ("png", "jpeg", "webp"):
        raise StabilityError(400, "image: must be jpeg, png or webp")
    if min(width, height) < 64:
        raise StabilityError(400, "image: each side must be at least 64 pixels")
    return width, height


def _error_response(error: StabilityError, retry_after: float | None = None) -> web.Response:
    body = {"id": uuid.uuid4().hex, "name": error.name, "errors": [error.message]}
    return web.Response(
        status=error.status,
        text=json.dumps(body),
        content_type="application/json",
        headers=retry_headers(retry_after),
    )
