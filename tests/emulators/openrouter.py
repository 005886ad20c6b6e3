"""A real loopback HTTP server that speaks OpenRouter's chat API, with image output, and
its Image API.

Routes (under ``/api/v1``, as https://openrouter.ai/api/v1): ``POST /chat/completions``,
``POST /images`` and ``GET /models`` (free). Requests need
``Authorization: Bearer <api_key>``.

The Image API, as documented (https://openrouter.ai/docs/api/api-reference/images/
generate-an-image): ``model`` (an image model) and a non-empty ``prompt`` are required;
``n`` is 1-10, and a model that draws one image a call refuses more; ``size`` is a
resolution tier (``512``, ``1K``, ``2K``, ``4K``) or ``WIDTHxHEIGHT``, fitted to the
model's nearest aspect ratio; it may not contradict ``aspect_ratio`` or ``resolution``;
``quality``, ``background``, ``output_format`` and ``output_compression`` (0-100) take
their documented values; ``input_references`` (at most 16) are
``{"type": "image_url", "image_url": {"url": <data URL or https URL>}}``, each data URL
a real image. The answer is ``{"created", "data": [{"b64_json"}], "usage": {...,
"cost"}}``, the cost ``cost_per_image`` a drawn image (a test may change it, as
OpenRouter's prices change).

As OpenRouter documents it (https://openrouter.ai/docs/guides/overview/multimodal/
image-generation.md): ``model`` and a non-empty ``messages`` list are required;
``modalities`` is a list of ``"image"`` and ``"text"``; asking for ``"image"`` from a
model without image output is a 404 ("No endpoints found that support the requested
output modalities"). ``image_config.aspect_ratio`` is one of the documented ratios.
With image output the answer carries ``choices[0].message.images`` as
``[{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]``; a
streamed answer carries them in ``delta.images``. The images are real PNGs, shaped by
the aspect ratio.

A prompt containing ``fail in band`` gets a 200 whose body is an error (OpenRouter
reports errors that way once a model has started). Errors are OpenRouter's:
``{"error": {"code": <status>, "message", "metadata"}}``
(https://openrouter.ai/docs/api/reference/errors-and-debugging.md).
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import uuid
from typing import Any

from aiohttp import web
from PIL import Image

from .images import make_image
from .server import EmulatorServer, Fault, send, start_stream

__all__ = [
    "DEFAULT_OPENROUTER_KEY",
    "IMAGE_API_MODELS",
    "IMAGE_MODELS",
    "TEXT_MODELS",
    "OpenRouterEmulator",
]

DEFAULT_OPENROUTER_KEY = "sk-or-v1-emulator-0001"
IMAGE_MODELS = ("google/gemini-2.5-flash-image", "openai/gpt-5-image")
# The Image API's models: how many images each draws a call, and its aspect ratios.
IMAGE_API_MODELS: dict[str, tuple[int, tuple[str, ...]]] = {
    "google/gemini-2.5-flash-image": (1, ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4",
                                          "9:16", "16:9", "21:9")),
    "bytedance-seed/seedream-4.5": (1, ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9",
                                        "21:9")),
    "black-forest-labs/flux.2-pro": (4, ("1:1", "3:4", "4:3", "9:16", "16:9")),
}  # fmt: skip
_TIERS = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}
_ENUMS = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("auto", "transparent", "opaque"),
    "output_format": ("png", "jpeg", "webp"),
}
TEXT_MODELS = ("openai/gpt-4o-mini",)
_RATIOS = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}


class OpenRouterError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error_response(error: OpenRouterError) -> web.Response:
    body = {"error": {"code": error.status, "message": error.message, "metadata": {}}}
    return web.json_response(body, status=error.status)


class OpenRouterEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received."""

    name = "openrouter"

    def __init__(self, *, api_key: str = DEFAULT_OPENROUTER_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.cost_per_image = 0.04

    def reset(self) -> None:
        super().reset()
        self.cost_per_image = 0.04

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        return _error_response(OpenRouterError(fault.status, fault.message or "injected"))

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise OpenRouterError(401, "No auth credentials found")
            if request.method == "GET" and request.path == "/api/v1/models":
                return web.json_response({"data": [{"id": m} for m in IMAGE_MODELS]})
            if request.method == "POST" and request.path == "/api/v1/images":
                return web.json_response(self._images(_json_object(raw)))
            if request.method != "POST" or request.path != "/api/v1/chat/completions":
                raise OpenRouterError(404, f"Not Found ({request.method} {request.path})")
            body = _checked(raw)
        except OpenRouterError as error:
            return _error_response(error)
        if "fail in band" in json.dumps(body["messages"]):
            # An error once the model has started: a 200 carrying the error body.
            failed = {"error": {"code": 502, "message": "Provider returned error"}}
            return web.json_response(failed)
        answer = _completion(body)
        if not body.get("stream"):
            return web.json_response(answer)
        return await _streamed(request, answer)

    def _images(self, body: dict[str, Any]) -> dict[str, Any]:
        if "fail in band" in str(body.get("prompt")):
            return {"error": {"code": 502, "message": "Provider returned error"}}
        width, height, fmt, n = _checked_image_request(body)
        seed = len(body["prompt"]) + len(body.get("input_references", []))
        images = [
            {"b64_json": base64.b64encode(make_image(width, height, fmt, seed + i)).decode()}
            for i in range(n)
        ]
        usage = {"prompt_tokens": 10, "completion_tokens": 1290 * n, "total_tokens": 10 + 1290 * n}
        return {
            "created": int(time.time()),
            "data": images,
            "usage": {**usage, "cost": round(self.cost_per_image * n, 6)},
        }


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise OpenRouterError(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise OpenRouterError(400, "The body must be a JSON object")
    return body


def _checked_image_request(body: dict[str, Any]) -> tuple[int, int, str, int]:
    """The size, format and count of the images `body` asks for, as OpenRouter fits them."""
    known = {"model", "prompt", "n", "size", "aspect_ratio", "resolution", "quality", "seed",
             "background", "output_format", "output_compression", "input_references",
             "provider"}  # fmt: skip
    if unknown := set(body) - known:
        raise OpenRouterError(400, f"Unrecognized keys: {', '.join(sorted(unknown))}")
    model = body.get("model")
    if model not in IMAGE_API_MODELS:
        raise OpenRouterError(400, f"{model} is not a valid image model ID")
    max_n, ratios = IMAGE_API_MODELS[model]
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise OpenRouterError(400, "prompt: a non-empty string is required")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise OpenRouterError(400, "n: an integer from 1 to 10")
    if n > max_n:
        raise OpenRouterError(400, f"{model} generates {max_n} image(s) per request; got n={n}")
    for name, allowed in _ENUMS.items():
        if name in body and body[name] not in allowed:
            raise OpenRouterError(400, f"{name}: one of {', '.join(allowed)}")
    compression = body.get("output_compression", 100)
    if not isinstance(compression, int) or not 0 <= compression <= 100:
        raise OpenRouterError(400, "output_compression: an integer from 0 to 100")
    ratio, tier = _fitted(body, ratios)
    width, height = _RATIOS.get(ratio, (1024, 1024))
    references = body.get("input_references", [])
    if not isinstance(references, list) or len(references) > 16:
        raise OpenRouterError(400, "input_references: a list of at most 16 images")
    for reference in references:
        _check_reference(reference)
    fmt = body.get("output_format", "png")
    return int(width * _TIERS[tier]), int(height * _TIERS[tier]), fmt, n


def _fitted(body: dict[str, Any], ratios: tuple[str, ...]) -> tuple[str, str]:
    """The model's aspect ratio and resolution tier for the body's `size`, `aspect_ratio`
    and `resolution`: the nearest ratio the model makes, a contradiction refused."""
    ratio, tier = body.get("aspect_ratio"), body.get("resolution")
    if tier is not None and tier not in _TIERS:
        raise OpenRouterError(400, f"resolution: one of {', '.join(_TIERS)}")
    if ratio is not None and ratio != "auto" and ratio not in ratios:
        raise OpenRouterError(400, f"aspect_ratio: {ratio!r} is not supported by this model")
    size = body.get("size")
    if size is None:
        return (ratio if ratio not in (None, "auto") else "1:1"), tier or "1K"
    if size in _TIERS:
        if tier is not None and tier != size:
            raise OpenRouterError(400, "size and resolution conflict")
        return (ratio if ratio not in (None, "auto") else "1:1"), size
    width, _, height = str(size).partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise OpenRouterError(400, f"size: {size!r} is neither a tier nor WIDTHxHEIGHT")
    wanted = int(width) / int(height)
    nearest = min(ratios, key=lambda r: abs(math.log(_ratio(r) / wanted)))
    longest = max(int(width), int(height))
    fitted_tier = min(_TIERS, key=lambda t: abs(math.log(1024 * _TIERS[t] / longest)))
    if ratio not in (None, "auto", nearest) or tier not in (None, fitted_tier):
        raise OpenRouterError(400, "size conflicts with aspect_ratio or resolution")
    return nearest, fitted_tier


def _ratio(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


def _check_reference(reference: Any) -> None:
    url = reference.get("image_url", {}).get("url") if isinstance(reference, dict) else None
    if not isinstance(reference, dict) or reference.get("type") != "image_url" or not url:
        raise OpenRouterError(400, 'input_references: {"type": "image_url", "image_url": {"url"}}')
    if url.startswith("https://"):
        return
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise OpenRouterError(400, "input_references: a data URL or an https URL")
    try:
        Image.open(io.BytesIO(base64.b64decode(data, validate=True))).verify()
    except Exception:
        raise OpenRouterError(400, "input_references: the data URL is not an image") from None


def _checked(raw: bytes) -> dict[str, Any]:
    body = _json_object(raw)
    model = body.get("model")
    if model not in IMAGE_MODELS + TEXT_MODELS:
        raise OpenRouterError(400, f"{model} is not a valid model ID")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenRouterError(400, "messages: a non-empty list is required")
    modalities = body.get("modalities", ["text"])
    if not isinstance(modalities, list) or not set(modalities) <= {"image", "text"}:
        raise OpenRouterError(400, "modalities: a list of 'image' and 'text'")
    if "image" in modalities and model not in IMAGE_MODELS:
        raise OpenRouterError(
            404,
            "No endpoints found that support the requested output modalities: "
            + ", ".join(modalities),
        )
    ratio = (body.get("image_config") or {}).get("aspect_ratio", "1:1")
    if ratio not in _RATIOS:
        raise OpenRouterError(400, f"image_config.aspect_ratio: {ratio!r} is not supported")
    return body


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "Here is your picture."}
    if "image" in body.get("modalities", []):
        ratio = (body.get("image_config") or {}).get("aspect_ratio", "1:1")
        width, height = _RATIOS[ratio]
        png = base64.b64encode(make_image(width, height, "png", len(str(body["messages"]))))
        url = "data:image/png;base64," + png.decode()
        message["images"] = [{"type": "image_url", "image_url": {"url": url}}]
    return {
        "id": f"gen-{uuid.uuid4().hex[:12]}",
        "provider": "Google",
        "model": body["model"],
        "object": "chat.completion",
        "created": int(time.time()),
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1300, "total_tokens": 1312},
    }


async def _streamed(request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
    """The text, then the images, each in a delta, then `[DONE]`."""
    response = await start_stream(request, "text/event-stream", {"Cache-Control": "no-cache"})
    message = answer["choices"][0]["message"]
    deltas = [{"role": "assistant", "content": message["content"]}]
    if "images" in message:
        deltas.append({"role": "assistant", "content": "", "images": message["images"]})
    head = {k: answer[k] for k in ("id", "provider", "model", "created")}
    for delta in deltas:
        chunk = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        await send(response, f"data: {json.dumps(chunk)}\n\n".encode())
    last = {
        **head,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    await send(response, f"data: {json.dumps(last)}\n\n".encode())
    await send(response, b"data: [DONE]\n\n")
    await response.write_eof()
    return response
