"""A real loopback HTTP server that speaks Together AI's images API.

Routes: ``POST /v1/images/generations`` (JSON), ``GET /v1/models`` (free) and
``GET /files/<name>`` (where ``response_format: "url"`` images are served). Requests need
``Authorization: Bearer <api_key>``. The body is checked as Together documents it:
``model`` (one of :data:`TOGETHER_IMAGE_MODELS`) and ``prompt`` required; ``width`` and
``height`` integers (64-1792, default 1024); ``n`` 1-4; ``steps`` 1-50; ``seed`` an
integer; ``guidance_scale`` a number; ``response_format`` ``base64`` or ``url`` (OpenAI's
``b64_json`` is refused, as Together does); ``output_format`` ``jpeg`` (default) or
``png``; ``negative_prompt``, ``image_url``, ``disable_safety_checker`` accepted; any other
field is a 400. Errors are OpenAI-shaped ``{"error": {"message","type","param","code"}}``.

The answer is ``{"id","model","object":"list","data":[{"index", "b64_json"|"url",
"type"}]}``; images are real, ``width`` x ``height``, one per ``n``, drawn from the seed.

Safety outcome on demand: a prompt containing ``forbidden`` is refused with 422 and a
message saying NSFW content was detected (Together refuses the call).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

from aiohttp import web

from .images import MIME_TYPES, make_image
from .server import EmulatorServer, Fault, retry_headers

__all__ = ["DEFAULT_TOGETHER_KEY", "TOGETHER_IMAGE_MODELS", "TogetherEmulator"]

DEFAULT_TOGETHER_KEY = "together-emulator-key-0001"
TOGETHER_IMAGE_MODELS = (
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-schnell-Free",
    "black-forest-labs/FLUX.1.1-pro",
    "black-forest-labs/FLUX.1-dev",
)
_FIELDS = frozenset({
    "model", "prompt", "width", "height", "n", "steps", "seed", "negative_prompt",
    "guidance_scale", "response_format", "output_format", "image_url",
    "disable_safety_checker",
})  # fmt: skip
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "not_found",
          422: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error",
          503: "server_error"}  # fmt: skip


class TogetherError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class TogetherEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received."""

    name = "together_ai"

    def __init__(self, *, api_key: str = DEFAULT_TOGETHER_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._files: dict[str, bytes] = {}

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = TogetherError(fault.status, fault.message or f"injected {fault.status}")
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except TogetherError as error:
            return _error_response(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/files/"):
            data = self._files.get(path.removeprefix("/files/"))
            if data is None:
                raise TogetherError(404, "file not found")
            return web.Response(body=data, content_type=MIME_TYPES[path.rpartition(".")[2]])
        if method == "GET" and path == "/v1/models":
            self._check_key(request)
            return web.json_response(
                [{"id": model, "object": "model", "type": "image"}
                 for model in TOGETHER_IMAGE_MODELS]
            )  # fmt: skip
        if method != "POST" or path != "/v1/images/generations":
            raise TogetherError(404, f"Invalid URL ({method} {path})")
        self._check_key(request)
        try:
            body = json.loads(raw)
        except ValueError:
            raise TogetherError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise TogetherError(400, "the request body must be a JSON object")
        return self._generate(body, request)

    def _generate(self, body: dict[str, Any], request: web.Request) -> web.Response:
        _validate(body)
        if "forbidden" in body["prompt"]:
            raise TogetherError(
                422, "NSFW content detected in the prompt. Please modify your prompt and "
                "try again."
            )  # fmt: skip
        width, height = body.get("width", 1024), body.get("height", 1024)
        fmt = body.get("output_format", "jpeg")
        seed = body.get("seed") or random.randint(1, 2**31)
        data = []
        for index in range(body.get("n", 1)):
            picture = make_image(width, height, fmt, seed + index)
            if body.get("response_format") == "base64":
                item = {"index": index, "b64_json": base64.b64encode(picture).decode(),
                        "type": "b64_json"}  # fmt: skip
            else:
                name = f"{uuid.uuid4().hex}.{fmt}"
                self._files[name] = picture
                url = f"http://{request.host}/files/{name}"
                item = {"index": index, "url": url, "type": "url"}
            data.append(item)
        answer = {"id": uuid.uuid4().hex, "model": body["model"], "object": "list", "data": data}
        return web.json_response(answer)

    def _check_key(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise TogetherError(401, "Invalid API key provided. You can find your API key at "
                                "https://api.together.xyz/settings/api-keys.")  # fmt: skip


def _validate(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise TogetherError(400, f"Unrecognized request argument supplied: {unknown[0]}",
                            unknown[0])  # fmt: skip
    if body.get("model") not in TOGETHER_IMAGE_MODELS:
        raise TogetherError(404, f"Unable to access model {body.get('model')}.", "model")
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise TogetherError(400, "prompt is required", "prompt")
    _integer(body, "width", 64, 1792)
    _integer(body, "height", 64, 1792)
    _integer(body, "n", 1, 4)
    _integer(body, "steps", 1, 50)
    _integer(body, "seed", 0, 2**63)
    if "guidance_scale" in body and not isinstance(body["guidance_scale"], int | float):
        raise TogetherError(400, "guidance_scale must be a number", "guidance_scale")
    if body.get("response_format", "url") not in ("base64", "url"):
        raise TogetherError(
            400, "response_format must be one of: base64, url", "response_format"
        )  # fmt: skip
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        raise TogetherError(400, "output_format must be one of: jpeg, png", "output_format")
    for name in ("negative_prompt", "image_url"):
        if name in body and not isinstance(body[name], str):
            raise TogetherError(400, f"{name} must be a string", name)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TogetherError(400, f"{name} must be an integer from {low} to {high}", name)


def _error_response(error: TogetherError, retry_after: float | None = None) -> web.Response:
    body = {
        "error": {
            "message": error.message,
            "type": _TYPES.get(error.status, "invalid_request_error"),
            "param": error.param,
            "code": None,
        }
    }
    return web.Response(
        status=error.status,
        text=json.dumps(body),
        content_type="application/json",
        headers=retry_headers(retry_after),
    )
