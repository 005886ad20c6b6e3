"""A real loopback HTTP server that speaks Recraft's images API.

Routes (under ``/v1``, as at ``https://external.api.recraft.ai/v1``): ``GET /users/me``
(free, the account), ``POST /images/generations`` (JSON), ``POST /images/imageToImage``
and ``POST /images/inpaint`` (``multipart/form-data``), and ``GET /files/<name>`` where
``url`` images are served.
Requests need ``Authorization: Bearer <api_key>``; without it Recraft answers 401 with the
plain text ``request unauthorized``, and an unknown path is a plain ``404 page not found``
(Recraft's docs, "Errors"). Other refusals are JSON ``{"code", "message"}``.

Checked as Recraft documents it (API reference: endpoints, appendix, model pages):
``prompt`` required, at most 10,000 characters for V4/V4.1 and 1,000 for V2/V3; ``n`` 1
to 6; ``model`` one of :data:`RECRAFT_MODELS`; ``size`` one of the model's sizes (or one
of its aspect ratios ``w:h``); ``response_format`` ``url`` or ``b64_json``; ``style`` and
``negative_prompt`` only with V2/V3 models; ``controls`` an object; ``strength`` a number
from 0 to 1, required by imageToImage; inpaint needs a ``mask`` the size of the image.
Any other field is refused.

The answer is ``{"created", "credits", "data": [{"image_id", "url"|"b64_json"}]}``;
images are real PNGs of the asked size (edits: the input's size), drawn from the prompt.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import time
import uuid
import zlib
from typing import Any

from aiohttp import web
from PIL import Image

from .images import make_image
from .server import EmulatorServer, Fault, retry_headers

__all__ = ["DEFAULT_RECRAFT_KEY", "RECRAFT_MODELS", "RecraftEmulator"]

DEFAULT_RECRAFT_KEY = "recraft-emulator-token-0001"
_V4 = {
    "1:1": "1024x1024", "2:1": "1536x768", "1:2": "768x1536", "3:2": "1280x832",
    "2:3": "832x1280", "4:3": "1216x896", "3:4": "896x1216", "5:4": "1152x896",
    "4:5": "896x1152", "6:10": "832x1344", "14:10": "1280x896", "10:14": "896x1280",
    "16:9": "1344x768", "9:16": "768x1344",
}  # fmt: skip
_V4_PRO = {
    "1:1": "2048x2048", "2:1": "3072x1536", "1:2": "1536x3072", "3:2": "2560x1664",
    "2:3": "1664x2560", "4:3": "2432x1792", "3:4": "1792x2432", "5:4": "2304x1792",
    "4:5": "1792x2304", "6:10": "1664x2688", "14:10": "2560x1792", "10:14": "1792x2560",
    "16:9": "2688x1536", "9:16": "1536x2688",
}  # fmt: skip
_V3 = {
    "1:1": "1024x1024", "2:1": "2048x1024", "1:2": "1024x2048", "3:2": "1536x1024",
    "2:3": "1024x1536", "4:3": "1365x1024", "3:4": "1024x1365", "5:4": "1280x1024",
    "4:5": "1024x1280", "6:10": "1024x1707", "10:6": "1707x1024", "14:10": "1434x1024",
    "10:14": "1024x1434", "16:9": "1820x1024", "9:16": "1024x1820",
}  # fmt: skip
# model → (sizes by aspect ratio, prompt limit, whether it takes style/negative_prompt)
RECRAFT_MODELS: dict[str, tuple[dict[str, str], int, bool]] = {
    "recraftv4_1": (_V4, 10_000, False),
    "recraftv4_1_pro": (_V4_PRO, 10_000, False),
    "recraftv4": (_V4, 10_000, False),
    "recraftv4_pro": (_V4_PRO, 10_000, False),
    "recraftv3": (_V3, 1000, True),
    "recraftv2": (_V3, 1000, True),
}
_STYLES = ("any", "realistic_image", "digital_illustration", "vector_illustration",
           "logo_raster", "icon")  # fmt: skip
_COMMON = frozenset({"prompt", "model", "n", "style", "substyle", "style_id",
                     "negative_prompt", "response_format", "controls"})  # fmt: skip
_FIELDS = {
    "generations": _COMMON | {"size", "text_layout"},
    "imageToImage": _COMMON | {"image", "strength"},
    "inpaint": _COMMON | {"image", "mask"},
}


class RecraftError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class RecraftEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request; ``forms`` the edit
    forms (text fields as ``str``, files as ``bytes``)."""

    name = "recraft"

    def __init__(self, *, api_key: str = DEFAULT_RECRAFT_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.forms: list[dict[str, str | bytes]] = []
        self._files: dict[str, bytes] = {}

    def reset(self) -> None:
        super().reset()
        self.forms.clear()

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = RecraftError(fault.status, fault.message or f"injected {fault.status}")
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except RecraftError as error:
            return _error_response(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/files/"):
            data = self._files.get(path.removeprefix("/files/"))
            if data is None:
                raise RecraftError(404, "404 page not found")
            return web.Response(body=data, content_type="image/png")
        if method == "GET" and path == "/v1/users/me":
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise RecraftError(401, "request unauthorized")
            account = {"id": "u-emulator", "email": "e@example.org", "credits": 1000}
            return web.json_response(account)
        endpoint = path.removeprefix("/v1/images/")
        if method != "POST" or not path.startswith("/v1/images/") or endpoint not in _FIELDS:
            raise RecraftError(404, "404 page not found")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise RecraftError(401, "request unauthorized")
        if endpoint == "generations":
            body = _json_body(raw)
        else:
            body = _form(request.headers.get("Content-Type", ""), raw)
            self.forms.append(body)
        return self._answer(endpoint, body, request)

    def _answer(self, endpoint: str, body: dict[str, Any], request: web.Request) -> web.Response:
        width, height, n = _validate(endpoint, body)
        seed = zlib.crc32(str(body["prompt"]).encode())
        data = []
        for index in range(n):
            picture = make_image(width, height, "png", seed + index)
            item: dict[str, Any] = {"image_id": str(uuid.uuid4())}
            if body.get("response_format", "url") == "b64_json":
                item["b64_json"] = base64.b64encode(picture).decode()
            else:
                name = f"{uuid.uuid4().hex}.png"
                self._files[name] = picture
                item["url"] = f"http://{request.host}/files/{name}"
            data.append(item)
        return web.json_response({"created": int(time.time()), "credits": 40 * n, "data": data})


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise RecraftError(400, "the request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise RecraftError(400, "the request body must be a JSON object", "invalid_json")
    return body


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    if not content_type.startswith("multipart/form-data"):
        raise RecraftError(400, "expected a multipart/form-data body", "invalid_content_type")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[str(name)] = data if part.get_filename() is not None else data.decode()
    return fields


def _validate(endpoint: str, body: dict[str, Any]) -> tuple[int, int, int]:
    """(width, height, n) of a valid request; a RecraftError otherwise."""
    unknown = sorted(set(body) - _FIELDS[endpoint])
    if unknown:
        raise RecraftError(400, f"unknown parameter: {unknown[0]}", "invalid_parameter")
    model = body.get("model", "recraftv4_1")
    if model not in RECRAFT_MODELS:
        raise RecraftError(400, f"unknown model: {model}", "invalid_model")
    sizes, limit, styled = RECRAFT_MODELS[model]
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RecraftError(400, "prompt is required", "invalid_prompt")
    if len(prompt) > limit:
        raise RecraftError(400, f"prompt is longer than {limit} characters", "prompt_too_long")
    n = _number(body, "n", 1, 6, integer=True) or 1
    if body.get("response_format", "url") not in ("url", "b64_json"):
        raise RecraftError(400, "response_format must be url or b64_json", "invalid_parameter")
    for name in ("style", "negative_prompt", "substyle"):
        if name in body and not styled:
            raise RecraftError(400, f"{name} is not supported by {model}", "invalid_parameter")
    if "style" in body and body["style"] not in _STYLES:
        raise RecraftError(400, f"unknown style: {body['style']}", "invalid_style")
    if "controls" in body and not isinstance(body["controls"], dict):
        raise RecraftError(400, "controls must be an object", "invalid_parameter")
    if endpoint == "generations":
        size = str(body.get("size", next(iter(sizes.values()))))
        size = sizes.get(size, size)
        if size not in sizes.values():
            raise RecraftError(400, "Image size is not supported", "invalid_size")
        width, _, height = size.partition("x")
        return int(width), int(height), n
    width, height = _picture(body.get("image"), "image")
    if endpoint == "imageToImage":
        if _number(body, "strength", 0, 1) is None:
            raise RecraftError(400, "strength is required", "invalid_parameter")
    elif _picture(body.get("mask"), "mask") != (width, height):
        raise RecraftError(400, "mask must have the same size as the image", "invalid_mask")
    return width, height, n


def _number(
    body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    if name not in body:
        return None
    try:
        value = int(body[name]) if integer else float(body[name])
    except (TypeError, ValueError):
        raise RecraftError(400, f"{name} must be a number", "invalid_parameter") from None
    if not low <= value <= high:
        raise RecraftError(400, f"{name} must be from {low:g} to {high:g}", "invalid_parameter")
    return value


def _picture(data: Any, name: str) -> tuple[int, int]:
    if not isinstance(data, bytes):
        raise RecraftError(400, f"{name} is required (a file)", "invalid_parameter")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except OSError:
        raise RecraftError(400, f"{name} could not be decoded", "invalid_image") from None
    if name == "image" and not (min(width, height) >= 256 and max(width, height) <= 4096):
        raise RecraftError(400, "image sides must be from 256 to 4096 px", "invalid_image")
    return width, height


def _error_response(error: RecraftError, retry_after: float | None = None) -> web.Response:
    headers = retry_headers(retry_after)
    if error.status in (401, 404):  # Recraft answers these in plain text
        return web.Response(status=error.status, text=error.message, headers=headers)
    body = {"code": error.code or "error", "message": error.message}
    return web.Response(
        status=error.status, text=json.dumps(body), content_type="application/json",
        headers=headers,
    )  # fmt: skip
