"""A real loopback HTTP server that speaks the OpenAI images wire format.

Four flavors: ``openai`` (api.openai.com), ``azure`` (Azure OpenAI, classic and v1
routes), ``xai`` (api.x.ai) and ``compatible`` (a lenient self-hosted server).
Besides generations, ``openai`` and ``compatible`` answer ``/v1/images/edits`` and
``/v1/images/variations`` (multipart; ``OpenAIEmulator.form(received)`` reads back what
was sent), and ``azure`` answers edits on both its route styles (it has no variations);
xAI has neither. Input files are checked as OpenAI does (see ``openai_rules.check_files``):
dall-e-2 takes one square PNG under 4 MB (with transparency when there is no mask),
gpt-image models up to 16 PNG/JPEG/WebP files by their declared type, and a mask must be a
PNG of the first image's dimensions. A prompt with the word "forbidden" is refused by the
safety system, on every endpoint.
Besides images it answers chat completions (vision included; see ``openai_chat.py``):
``POST /v1/chat/completions``, and on Azure ``/openai/deployments/{d}/chat/completions``
and ``/openai/v1/chat/completions``; any Azure deployment name serves chat.
The server runs aiohttp in a background thread with its own event loop, records
every request it receives and can be told to fail the next requests in several
ways (error status, delay, connection reset, truncated body).

    with OpenAIEmulator(flavor="openai") as emu:
        emu.fail_next("status", status=429, retry_after=1)
        ...  # point a client at f"{emu.base_url}/v1"
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
import uuid
import zlib
from typing import Literal

from aiohttp import web

from . import openai_chat as chat
from . import openai_rules as rules
from .images import MIME_TYPES, make_image
from .openai_rules import ApiError, FileSpec, FormPart, JsonObject, ModelSpec
from .server import EmulatorServer, Fault, FaultKind, Received, retry_headers
from .vision import SeenImage

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENTS",
    "Fault",
    "FaultKind",
    "Flavor",
    "OpenAIEmulator",
    "Received",
]

Flavor = Literal["openai", "azure", "xai", "compatible"]

DEFAULT_API_KEY = "sk-emulator-test-key-0001"
DEFAULT_DEPLOYMENTS: dict[str, str] = {
    "dall-e-3": "dall-e-3",
    "gpt-image-1": "gpt-image-1",
    "dall-e-2": "dall-e-2",
}

_FLAVORS: tuple[str, ...] = ("openai", "azure", "xai", "compatible")
_FAULT_KINDS: tuple[str, ...] = ("status", "delay", "reset", "truncate", "stream_error")

_AZURE_CLASSIC = re.compile(
    r"/openai/deployments/(?P<deployment>[^/]+)/images/(?P<operation>generations|edits)"
)
_AZURE_V1 = re.compile(r"/openai/v1/images/(?P<operation>generations|edits)")
_AZURE_CLASSIC_CHAT = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")
_AZURE_V1_CHAT = "/openai/v1/chat/completions"
_OPENAI_CHAT = "/v1/chat/completions"
_OPENAI_GENERATIONS = "/v1/images/generations"
_OPENAI_FILES = re.compile(r"/v1/images/(?P<operation>edits|variations)")
_FILE = re.compile(r"/files/(?P<name>[0-9a-f]{32}\.(?P<ext>png|jpeg|webp))")

_AZURE_BAD_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_AZURE_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again."
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class OpenAIEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received, in order.

    Faults (:meth:`fail_next`): ``status`` answers with the flavor's error body, plus
    Retry-After and retry-after-ms headers when ``retry_after`` is given; ``delay``,
    ``reset`` and ``truncate`` as in :mod:`tests.emulators.server`; ``stream_error`` sends
    an error event after the first text delta of a streamed chat answer, and answers any
    other request with that error (500 unless ``status``). ``reset()`` keeps the stored
    images available. ``images`` lists every image of every accepted chat request.
    """

    fault_kinds = _FAULT_KINDS

    def __init__(
        self,
        flavor: Flavor = "openai",
        *,
        api_key: str = DEFAULT_API_KEY,
        deployments: dict[str, str] | None = None,
        require_key: bool | None = None,
    ) -> None:
        if flavor not in _FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; expected one of {_FLAVORS}")
        super().__init__()
        self.name = flavor
        self.flavor: Flavor = flavor
        self.api_key = api_key
        # Self-hosted servers (vLLM, xinference) usually run without a key, or ignore it.
        self.require_key = flavor != "compatible" if require_key is None else require_key
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)
        self._files: dict[str, bytes] = {}
        self.images: list[SeenImage] = []
        # While set to an unset Event, a streamed image answer sends its previews and waits
        # for it before its completed events: what arrived before can be seen to arrive.
        self.hold_completed: threading.Event | None = None

    def reset(self) -> None:
        """Forget recorded requests, seen chat images and pending faults."""
        super().reset()
        self.images.clear()
        self.hold_completed = None

    # ------------------------------------------------------------------ HTTP plumbing

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = rules.injected_error(fault.status, azure=self.flavor == "azure")
        if fault.message is not None:
            error.message = fault.message
        return _error_response(error, retry_after=fault.retry_after)

    async def _on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            target = self._chat_target(request)
            if target is not None:
                return await self._chat(request, raw, fault, target)
            answer = self._route(request, raw)
            if isinstance(answer, _ImageEvents):
                return await self._send_events(request, answer.events, fault)
            if fault is not None and fault.kind == "stream_error":
                return self._status_fault(request, Fault("status", status=fault.status or 500))
            return answer
        except ApiError as error:
            return _error_response(error)

    async def _send_events(
        self, request: web.Request, events: list[tuple[str, str]], fault: Fault | None
    ) -> web.StreamResponse:
        """A streamed image answer, event by event (a `stream_error` fault: an error event
        after the first one)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number, (kind, event) in enumerate(events):
            if kind == "completed" and (hold := self.hold_completed) is not None:
                while not hold.is_set():
                    await asyncio.sleep(0.01)
            await response.write(event.encode())
            if number == 0 and fault is not None and fault.kind == "stream_error":
                message = fault.message or "The server had an error"
                error = {"message": message, "type": "server_error", "code": "server_error"}
                await response.write(_sse("error", {"error": error}).encode())
                break
        await response.write_eof()
        return response

    def _chat_target(self, request: web.Request) -> tuple[str | None] | None:
        """``None``: not a chat route; else the Azure classic deployment (or ``None``)."""
        if request.method != "POST":
            return None
        if self.flavor != "azure":
            return (None,) if request.path == _OPENAI_CHAT else None
        if request.path == _AZURE_V1_CHAT:
            return (None,)
        match = _AZURE_CLASSIC_CHAT.fullmatch(request.path)
        return (match["deployment"],) if match else None

    async def _chat(
        self, request: web.Request, raw: bytes, fault: Fault | None, target: tuple[str | None]
    ) -> web.StreamResponse:
        (deployment,) = target
        if self.flavor == "azure":
            self._check_azure_key(request)
            if deployment is not None and not request.query.get("api-version"):
                raise rules.azure_error(404, "404", "Resource not found")
        else:
            self._check_bearer(request)
        body = chat.parse_body(raw)
        conversation = chat.validate(body, self.flavor, model=deployment)
        if fault is not None and fault.kind == "stream_error" and not conversation.stream:
            status = fault.status or 500
            return self._status_fault(
                request, Fault("status", status=status, message=fault.message)
            )
        self.images.extend(conversation.images)
        return await chat.respond(request, conversation, fault)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and (match := _FILE.fullmatch(path)):
            return self._serve_file(match["name"], match["ext"])
        if self.flavor != "azure":
            if method == "POST" and path == _OPENAI_GENERATIONS:
                self._check_bearer(request)
                return self._generate(rules.parse_json_object(raw), deployment=None)
            files = _OPENAI_FILES.fullmatch(path)
            if method == "POST" and files is not None and self.flavor != "xai":
                self._check_bearer(request)
                return self._with_files(request, raw, files["operation"], deployment=None)
            if method == "GET" and path == "/v1/models":
                self._check_bearer(request)
                return self._model_list(rules.models_for(self.flavor))
            raise ApiError(404, f"Invalid URL ({method} {path})")
        if method == "GET" and path in ("/openai/models", "/openai/v1/models"):
            self._check_azure_key(request)
            if path == "/openai/models" and not request.query.get("api-version"):
                raise rules.azure_error(404, "404", "Resource not found")
            return self._model_list(sorted(self.deployments.values()))
        route = _AZURE_CLASSIC.fullmatch(path) or _AZURE_V1.fullmatch(path)
        if method != "POST" or route is None:
            raise rules.azure_error(404, "404", "Resource not found")
        classic = route if "deployment" in route.groupdict() else None
        self._check_azure_key(request)
        if classic is not None and not request.query.get("api-version"):
            raise rules.azure_error(404, "404", "Resource not found")
        if route["operation"] == "edits":
            deployment = classic["deployment"] if classic is not None else None
            return self._with_files(request, raw, "edits", deployment=deployment)
        body = rules.parse_json_object(raw)
        if classic is not None:
            return self._generate(body, deployment=classic["deployment"])
        deployment = body.get("model")
        if deployment is None:
            raise rules.missing("model")
        rules.Text().check("model", deployment)
        return self._generate(body, deployment=deployment)

    @staticmethod
    def _model_list(names: list[str]) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "emulator"} for name in names
        ]
        return web.json_response({"object": "list", "data": data})

    def _serve_file(self, name: str, ext: str) -> web.Response:
        data = self._files.get(name)
        if data is None:
            raise ApiError(404, f"File not found: {name}")
        return web.Response(body=data, content_type=MIME_TYPES[ext])

    def _check_bearer(self, request: web.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if not self.require_key or (scheme.lower() == "bearer" and key.strip() == self.api_key):
            return
        if not key.strip():
            raise ApiError(401, _NO_KEY, code="invalid_api_key")
        message = f"Incorrect API key provided: {rules.mask_key(key.strip())}."
        raise ApiError(401, message, code="invalid_api_key")

    def _check_azure_key(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        bearer_ok = scheme.lower() == "bearer" and token.strip() == self.api_key
        if request.headers.get("api-key") != self.api_key and not bearer_ok:
            raise rules.azure_error(401, "401", _AZURE_BAD_KEY)

    # ------------------------------------------------------------------ generation

    def _resolve(self, body: JsonObject, deployment: str | None) -> ModelSpec:
        if self.flavor == "compatible":
            return rules.COMPATIBLE
        if deployment is not None:  # azure
            model = self.deployments.get(deployment)
            if model is None:
                raise rules.azure_error(404, "DeploymentNotFound", _AZURE_NO_DEPLOYMENT)
            spec = rules.OPENAI_MODELS.get(model)
            if spec is None:
                raise rules.model_not_found(model)
            return spec
        model = body.get("model")
        if model is None:
            raise rules.missing("model")
        rules.Text().check("model", model)
        models = rules.XAI_MODELS if self.flavor == "xai" else rules.OPENAI_MODELS
        spec = models.get(model)
        if spec is None:
            raise rules.model_not_found(model)
        return spec

    def _generate(self, body: JsonObject, *, deployment: str | None) -> web.Response:
        spec = self._resolve(body, deployment)
        rules.validate(spec, body)
        prompt: str = body["prompt"]
        if rules.is_blocked(prompt):
            raise self._blocked(spec)
        width, height = rules.output_size(spec, body)
        count: int = body.get("n") or 1
        seed = zlib.crc32(prompt.encode())
        if spec.gpt_image:
            return self._gpt_image_answer(body, prompt, width, height, count, seed)
        return self._dall_e_answer(spec, body, prompt, width, height, count, seed)

    def _dall_e_answer(
        self,
        spec: ModelSpec,
        body: JsonObject,
        prompt: str,
        width: int,
        height: int,
        count: int,
        seed: int,
    ) -> web.Response:
        as_b64 = body.get("response_format") == "b64_json"
        items: list[JsonObject] = []
        for index in range(count):
            image = make_image(width, height, "png", seed + index)
            item: JsonObject = {"b64_json": _b64(image)} if as_b64 else {"url": self._store(image)}
            if spec.revises_prompt:
                item["revised_prompt"] = f"A detailed rendering of: {prompt}"
            if self.flavor == "azure" and spec.family == "dall-e-3":
                item["content_filter_results"] = rules.content_filter_results()
                item["prompt_filter_results"] = rules.prompt_filter_results()
            items.append(item)
        return web.json_response({"created": int(time.time()), "data": items})

    def _gpt_image_answer(
        self,
        body: JsonObject,
        prompt: str,
        width: int,
        height: int,
        count: int,
        seed: int,
        *,
        input_images: int = 0,
        event: str = "image_generation",
    ) -> web.Response:
        fmt: str = body.get("output_format") or "png"
        transparent = body.get("background") == "transparent"
        quality: str = body.get("quality") or "auto"
        quality = "medium" if quality == "auto" else quality
        compression: int | None = body.get("output_compression")
        images = [
            make_image(
                width,
                height,
                fmt,
                seed + index,
                transparent=transparent,
                quality=None if fmt == "png" else compression,
            )
            for index in range(count)
        ]
        meta: JsonObject = {
            "background": "transparent" if transparent else "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{width}x{height}",
        }
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "created": created,
                    "data": [{"b64_json": _b64(image)} for image in images],
                    **meta,
                    "usage": rules.usage(
                        prompt, quality, width, height, count, input_images=input_images
                    ),
                }
            )
        # Streaming: partials, then the final image, each image in turn; sent event by event.
        events: list[tuple[str, str]] = []
        single_usage = rules.usage(prompt, quality, width, height, 1, input_images=input_images)
        for image in images:
            base = {"b64_json": _b64(image), "created_at": created, **meta}
            for index in range(body.get("partial_images") or 0):
                partial = {**base, "partial_image_index": index}
                events.append(("partial", _sse(f"{event}.partial_image", partial)))
            events.append(
                ("completed", _sse(f"{event}.completed", {**base, "usage": single_usage}))
            )
        return _ImageEvents(events)

    # ------------------------------------------------------------------ edits, variations

    @staticmethod
    def form(received: Received) -> list[FormPart]:
        """The multipart parts of a recorded edit or variation request, in order."""
        return rules.parse_form(received.raw, received.headers.get("content-type", ""))

    def _with_files(
        self, request: web.Request, raw: bytes, operation: str, *, deployment: str | None
    ) -> web.Response:
        """``/images/edits`` or ``/images/variations``: a multipart form with files."""
        parts = rules.parse_form(raw, request.headers.get("Content-Type", ""))
        files = self._resolve_files(parts, operation, deployment)
        spec = files.model
        body = rules.form_body(parts, spec)
        if operation == "edits" and body.get("prompt") is None:
            raise rules.missing("prompt")
        rules.validate(spec, body)
        seen, _mask = rules.check_files(parts, files)
        prompt: str = body.get("prompt") or ""
        if rules.is_blocked(prompt):
            raise self._blocked(spec)
        width, height = rules.edit_size(spec, body, seen[0])
        count: int = body.get("n") or 1
        first = next(part for part in parts if part.name in ("image", "image[]"))
        seed = zlib.crc32(prompt.encode() + first.data[:4096])
        if spec.gpt_image:
            return self._gpt_image_answer(
                body, prompt, width, height, count, seed,
                input_images=len(seen), event="image_edit",
            )  # fmt: skip
        return self._dall_e_answer(spec, body, prompt, width, height, count, seed)

    def _resolve_files(
        self, parts: list[FormPart], operation: str, deployment: str | None
    ) -> FileSpec:
        if self.flavor == "compatible":
            return rules.COMPATIBLE_FILES
        sent = next((part.text for part in parts if part.name == "model"), None)
        if self.flavor == "azure":
            name = deployment if deployment is not None else sent
            if name is None:
                raise rules.missing("model")
            model = self.deployments.get(name)
            if model is None:
                raise rules.azure_error(404, "DeploymentNotFound", _AZURE_NO_DEPLOYMENT)
        else:
            default = rules.DEFAULT_EDIT_MODEL if operation == "edits" else "dall-e-2"
            model = sent or default
        table = rules.EDIT_MODELS if operation == "edits" else rules.VARIATION_MODELS
        if model in table:
            return table[model]
        if model in rules.OPENAI_MODELS:
            raise rules.not_for_operation(model, operation)
        raise rules.model_not_found(model)

    def _blocked(self, spec: ModelSpec) -> ApiError:
        if self.flavor == "azure":
            inner = {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": rules.content_filter_results(blocked=True),
            }
            message = (
                f"{rules.SAFETY_MESSAGE} Your prompt may contain text that is not allowed by "
                "our safety system."
            )
            return ApiError(
                400, message, code="content_policy_violation", extra={"inner_error": inner}
            )
        return ApiError(400, rules.SAFETY_MESSAGE, code=spec.blocked_code)

    def _store(self, image: bytes) -> str:
        name = f"{uuid.uuid4().hex}.png"
        self._files[name] = image
        return f"{self.base_url}/files/{name}"


# ---------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _ImageEvents(web.Response):
    """A streamed image answer still to be sent (by `_send_events`)."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        super().__init__(status=200)
        self.events = events


def _sse(event: str, payload: JsonObject) -> str:
    return f"event: {event}\ndata: {json.dumps({'type': event, **payload})}\n\n"


def _error_response(error: ApiError, *, retry_after: float | None = None) -> web.Response:
    headers = retry_headers(retry_after, with_ms=True)
    return web.json_response(error.to_body(), status=error.status, headers=headers)
