"""A real loopback HTTP server that speaks BytePlus ModelArk's image generation API.

Route: ``POST /api/v3/images/generations`` (JSON), and ``GET /files/<name>`` where
``url`` images are served. Requests need ``Authorization: Bearer <api_key>``. Errors are
ModelArk's ``{"error": {"code", "message", "param", "type"}}``.

Checked as ModelArk documents it for Seedream 4.x (its API reference, as quoted by the
catalog's sources): ``model`` one of :data:`SEEDREAM_MODELS`; ``prompt`` required;
``size`` either a preset (``1K``, ``2K``, ``4K``; 4.5 has no 1K) or ``WIDTHxHEIGHT`` whose
pixel count is within the model's bounds and whose aspect ratio is within 1:16 to 16:1
(default 2048x2048); ``response_format`` ``url`` or ``b64_json``; ``seed`` an integer from
-1 to 2147483647; ``watermark`` a boolean; ``image`` one URL or data URL, or a list of at
most 14; ``sequential_image_generation`` ``auto`` or ``disabled``, with
``sequential_image_generation_options.max_images`` (inputs plus outputs at most 15);
any other field is refused.

The answer is ``{"model", "created", "data": [{"url"|"b64_json", "size"}], "usage":
{"generated_images", "output_tokens", "total_tokens"}}``; images are real JPEGs of the
asked size (shrunk 4x to keep tests fast when above 2 megapixels: ``size`` still names the
asked one), drawn from the seed and prompt.

Safety outcome on demand: a prompt containing ``forbidden`` is refused with 400
``InputTextSensitiveContentDetected``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import uuid
import zlib
from typing import Any

from aiohttp import web

from .images import make_image
from .server import EmulatorServer, Fault, retry_headers

__all__ = ["DEFAULT_BYTEPLUS_KEY", "SEEDREAM_MODELS", "BytePlusEmulator"]

DEFAULT_BYTEPLUS_KEY = "ark-emulator-key-0001"
# model → (min pixels, max pixels, presets)
SEEDREAM_MODELS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "seedream-4-0-250828": (1280 * 720, 4096 * 4096, ("1K", "2K", "4K")),
    "seedream-4-5-251128": (3_686_400, 4096 * 4096, ("2K", "4K")),
}
_PRESETS = {"1K": 1024, "2K": 2048, "4K": 4096}
_FIELDS = frozenset({
    "model", "prompt", "size", "response_format", "seed", "watermark", "image",
    "sequential_image_generation", "sequential_image_generation_options", "stream",
    "optimize_prompt_options",
})  # fmt: skip
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_TYPES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 429: "TooManyRequests",
          500: "InternalServiceError", 503: "ServiceUnavailable"}  # fmt: skip
_PREVIEW_PIXELS = 2_000_000


class ArkError(Exception):
    def __init__(
        self, status: int, message: str, code: str = "InvalidParameter", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class BytePlusEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received."""

    name = "byteplus"

    def __init__(self, *, api_key: str = DEFAULT_BYTEPLUS_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._files: dict[str, bytes] = {}

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        code = "RateLimitExceeded" if fault.status == 429 else "InternalServiceError"
        error = ArkError(fault.status, fault.message or f"injected {fault.status}", code)
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except ArkError as error:
            return _error_response(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/files/"):
            data = self._files.get(path.removeprefix("/files/"))
            if data is None:
                raise ArkError(404, "file not found", "NotFound")
            return web.Response(body=data, content_type="image/jpeg")
        if method != "POST" or path != "/api/v3/images/generations":
            raise ArkError(404, f"{method} {path} is not a valid route", "NotFound")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise ArkError(
                401, "The API key in the request is missing or invalid.", "AuthenticationError"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise ArkError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ArkError(400, "The request body must be a JSON object.")
        return self._generate(body, request)

    def _generate(self, body: dict[str, Any], request: web.Request) -> web.Response:
        width, height = _validate(body)
        if "forbidden" in body["prompt"]:
            raise ArkError(
                400, "The request failed because the input text may contain sensitive "
                "information.", "InputTextSensitiveContentDetected",
            )  # fmt: skip
        seed = body.get("seed", -1)
        seed = seed if seed >= 0 else zlib.crc32(body["prompt"].encode())
        scale = max(1.0, math.sqrt(width * height / _PREVIEW_PIXELS))
        picture = make_image(round(width / scale), round(height / scale), "jpeg", seed)
        item: dict[str, Any] = {"size": f"{width}x{height}"}
        if body.get("response_format", "url") == "b64_json":
            item["b64_json"] = base64.b64encode(picture).decode()
        else:
            name = f"{uuid.uuid4().hex}.jpeg"
            self._files[name] = picture
            item["url"] = f"http://{request.host}/files/{name}"
        tokens = width * height // 256
        answer = {
            "model": body["model"],
            "created": int(time.time()),
            "data": [item],
            "usage": {"generated_images": 1, "output_tokens": tokens, "total_tokens": tokens},
        }
        return web.json_response(answer)


def _validate(body: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of a valid request; an ArkError otherwise."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ArkError(400, f"The parameter `{unknown[0]}` is not supported.", param=unknown[0])
    model = body.get("model")
    if model not in SEEDREAM_MODELS:
        raise ArkError(
            404, f"The model or endpoint {model} does not exist or you do not have access "
            "to it.", "InvalidEndpointOrModel.NotFound", "model",
        )  # fmt: skip
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise ArkError(400, "The parameter `prompt` is required.", param="prompt")
    if body.get("response_format", "url") not in ("url", "b64_json"):
        raise ArkError(400, "The parameter `response_format` must be url or b64_json.",
                       param="response_format")  # fmt: skip
    seed = body.get("seed", -1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not -1 <= seed <= 2**31 - 1:
        raise ArkError(400, "The parameter `seed` must be an integer in [-1, 2147483647].",
                       param="seed")  # fmt: skip
    if "watermark" in body and not isinstance(body["watermark"], bool):
        raise ArkError(400, "The parameter `watermark` must be a boolean.", param="watermark")
    images = body.get("image")
    if images is not None:
        listed = images if isinstance(images, list) else [images]
        if not 1 <= len(listed) <= 14 or not all(
            isinstance(i, str) and i.startswith(("http", "data:image/")) for i in listed
        ):
            raise ArkError(400, "The parameter `image` must be 1 to 14 image URLs or data "
                           "URLs.", param="image")  # fmt: skip
    if body.get("sequential_image_generation", "disabled") not in ("auto", "disabled"):
        raise ArkError(400, "The parameter `sequential_image_generation` must be auto or "
                       "disabled.", param="sequential_image_generation")  # fmt: skip
    return _size(str(body.get("size", "2048x2048")), *SEEDREAM_MODELS[str(model)])


def _size(size: str, low: int, high: int, presets: tuple[str, ...]) -> tuple[int, int]:
    if size in presets:
        side = _PRESETS[size]
        return side, side
    found = _SIZE.match(size)
    if not found:
        raise ArkError(400, f"The parameter `size` specified in the request is not valid: "
                       f"{size}.", param="size")  # fmt: skip
    width, height = int(found[1]), int(found[2])
    pixels = width * height
    if not low <= pixels <= high or max(width, height) > 16 * min(width, height):
        raise ArkError(
            400, f"The parameter `size` specified in the request is not valid: the total "
            f"pixels must be within [{low}, {high}] and the aspect ratio within [1/16, 16].",
            param="size",
        )  # fmt: skip
    return width, height


def _error_response(error: ArkError, retry_after: float | None = None) -> web.Response:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "param": error.param or "",
            "type": _TYPES.get(error.status, "BadRequest"),
        }
    }
    return web.Response(
        status=error.status, text=json.dumps(body), content_type="application/json",
        headers=retry_headers(retry_after),
    )  # fmt: skip
