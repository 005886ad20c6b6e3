"""A real loopback HTTP server that speaks OpenRouter's chat API, with image output.

Routes (under ``/api/v1``, as https://openrouter.ai/api/v1): ``POST /chat/completions``
and ``GET /models`` (free). Requests need ``Authorization: Bearer <api_key>``.

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
import json
import time
import uuid
from typing import Any

from aiohttp import web

from .images import make_image
from .server import EmulatorServer, Fault, send, start_stream

__all__ = ["DEFAULT_OPENROUTER_KEY", "IMAGE_MODELS", "TEXT_MODELS", "OpenRouterEmulator"]

DEFAULT_OPENROUTER_KEY = "sk-or-v1-emulator-0001"
IMAGE_MODELS = ("google/gemini-2.5-flash-image", "openai/gpt-5-image")
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


def _checked(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise OpenRouterError(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise OpenRouterError(400, "The body must be a JSON object")
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
