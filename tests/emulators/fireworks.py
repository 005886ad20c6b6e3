"""A real loopback HTTP server that speaks Fireworks AI's FLUX text-to-image workflow API.

Routes: ``POST /inference/v1/workflows/accounts/fireworks/models/{model}/text_to_image``
(``model`` one of :data:`FIREWORKS_IMAGE_MODELS`) and the free ``GET /inference/v1/models``.
Requests need ``Authorization: Bearer <api_key>`` and a JSON body, checked as Fireworks
documents it: ``prompt`` required; ``aspect_ratio`` one of eleven ratios (default 1:1);
``guidance_scale`` a number; ``num_inference_steps`` an integer 1-50; ``seed`` an
integer ≥ 0 (0: random); ``safety_check`` a boolean; any other field is a 400.

``Accept: application/json`` answers ``{"id","base64":["data:image/png;base64,..."],
"finishReason","seed"}`` with PNGs, or the type the ``Json-Return-Image-Accept`` header
names (``image/jpeg`` or ``image/png``); ``Accept: image/jpeg`` or ``image/png`` answers
the bytes. Images are real, about one megapixel at the asked ratio, drawn from the seed.
Errors are ``{"error": {"object":"error","type","code","message"}}``.

Safety outcome on demand: with ``safety_check: true``, a prompt containing ``filtered``
is answered 200 with ``finishReason: CONTENT_FILTERED`` (and a blank image).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

from aiohttp import web

from .images import make_image
from .server import EmulatorServer, Fault, retry_headers
from .stability import RATIO_SIZES

__all__ = ["DEFAULT_FIREWORKS_KEY", "FIREWORKS_IMAGE_MODELS", "FireworksEmulator"]

DEFAULT_FIREWORKS_KEY = "fw-emulator-key-0001"
FIREWORKS_IMAGE_MODELS = ("flux-1-schnell-fp8", "flux-1-dev-fp8")
_PREFIX = "/inference/v1/workflows/accounts/fireworks/models/"
_RATIOS = ("1:1", "21:9", "16:9", "3:2", "5:4", "4:5", "2:3", "9:16", "9:21", "4:3", "3:4")
_FIELDS = frozenset(
    {"prompt", "aspect_ratio", "guidance_scale", "num_inference_steps", "seed", "safety_check"}
)
_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg"}


class FireworksError(Exception):
    def __init__(self, status: int, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FireworksEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received."""

    name = "fireworks_ai"

    def __init__(self, *, api_key: str = DEFAULT_FIREWORKS_KEY) -> None:
        super().__init__()
        self.api_key = api_key

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = FireworksError(fault.status, fault.message or f"injected {fault.status}")
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except FireworksError as error:
            return _error_response(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path == "/inference/v1/models":
            self._check_key(request)
            models = [{"id": f"accounts/fireworks/models/{m}", "object": "model"}
                      for m in FIREWORKS_IMAGE_MODELS]  # fmt: skip
            return web.json_response({"object": "list", "data": models})
        model, _, operation = path.removeprefix(_PREFIX).partition("/")
        if method != "POST" or not path.startswith(_PREFIX) or operation != "text_to_image":
            raise FireworksError(404, f"{method} {path} not found", "NOT_FOUND")
        self._check_key(request)
        if model not in FIREWORKS_IMAGE_MODELS:
            raise FireworksError(404, f"Model not found: accounts/fireworks/models/{model}",
                                 "NOT_FOUND")  # fmt: skip
        try:
            body = json.loads(raw)
        except ValueError:
            raise FireworksError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise FireworksError(400, "the request body must be a JSON object")
        return self._generate(body, request)

    def _generate(self, body: dict[str, Any], request: web.Request) -> web.Response:
        _validate(body)
        width, height = RATIO_SIZES[body.get("aspect_ratio", "1:1")]
        seed = body.get("seed") or random.randint(1, 2**31)
        filtered = bool(body.get("safety_check")) and "filtered" in body["prompt"]
        accept = request.headers.get("Accept", "application/json")
        if accept in _IMAGE_TYPES:
            fmt = _IMAGE_TYPES[accept]
            picture = make_image(width, height, fmt, 0 if filtered else seed)
            return web.Response(body=picture, content_type=accept)
        if accept != "application/json":
            raise FireworksError(400, "Accept must be application/json, image/jpeg or image/png")
        wanted = request.headers.get("Json-Return-Image-Accept", "image/png")
        if wanted not in _IMAGE_TYPES:
            raise FireworksError(400, "Json-Return-Image-Accept must be image/jpeg or image/png")
        picture = make_image(width, height, _IMAGE_TYPES[wanted], 0 if filtered else seed)
        encoded = f"data:{wanted};base64,{base64.b64encode(picture).decode()}"
        return web.json_response({
            "id": uuid.uuid4().hex,
            "base64": [encoded],
            "finishReason": "CONTENT_FILTERED" if filtered else "SUCCESS",
            "seed": seed,
        })  # fmt: skip

    def _check_key(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise FireworksError(401, "The API key you provided is invalid.", "UNAUTHENTICATED")


def _validate(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise FireworksError(400, f"Unknown field in the request: {unknown[0]}")
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise FireworksError(400, "prompt is required")
    if body.get("aspect_ratio", "1:1") not in _RATIOS:
        raise FireworksError(400, f"aspect_ratio must be one of {', '.join(_RATIOS)}")
    if "guidance_scale" in body and (
        isinstance(body["guidance_scale"], bool)
        or not isinstance(body["guidance_scale"], int | float)
    ):
        raise FireworksError(400, "guidance_scale must be a number")
    steps = body.get("num_inference_steps", 4)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 50:
        raise FireworksError(400, "num_inference_steps must be an integer from 1 to 50")
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FireworksError(400, "seed must be a non-negative integer")
    if not isinstance(body.get("safety_check", False), bool):
        raise FireworksError(400, "safety_check must be a boolean")


def _error_response(error: FireworksError, retry_after: float | None = None) -> web.Response:
    body = {"error": {"object": "error", "type": "invalid_request_error", "code": error.code,
                      "message": error.message}}  # fmt: skip
    return web.Response(
        status=error.status,
        text=json.dumps(body),
        content_type="application/json",
        headers=retry_headers(retry_after),
    )
