"""A real loopback HTTP server that speaks Replicate's predictions API.

As Replicate documents it (replicate.com/docs/reference/http, "Create a prediction"):
``POST /v1/models/{owner}/{name}/predictions`` (official models) or
``POST /v1/predictions`` with ``version``, a body ``{"input": {...}}`` and
``Authorization: Bearer <token>``; ``Prefer: wait=<n>`` holds the request open up to
``n`` seconds (at most 60) and answers the finished prediction when it ends in time,
otherwise the prediction as it stands. ``GET /v1/predictions/{id}`` answers it;
``POST /v1/predictions/{id}/cancel`` cancels it. A prediction is
``{"id", "model", "version", "input", "status", "output", "error", "logs", "urls":
{"get", "cancel"}, ...}`` with ``status`` ``starting``, ``processing``, ``succeeded``,
``failed`` or ``canceled``; output files are served here under ``/files/`` and expire
``file_ttl`` seconds after the prediction ends (Replicate: an hour). Errors are problem
details ``{"title", "detail", "status"}`` (a 422 adds ``invalid_fields``).

Checked for the FLUX models: ``input.prompt`` required; ``aspect_ratio`` one of the
listed; ``num_outputs`` 1-4 (flux-schnell, flux-dev; FLUX1.1 [pro] has none);
``output_format`` ``webp``, ``jpg`` or ``png``; unknown input fields are refused.
FLUX.1 Kontext (pro, max) edits: ``input_image`` is a data URI or a file uploaded through
``POST /v1/files`` (multipart ``content``; ``DELETE /v1/files/{id}`` removes it), and the
output keeps its size under ``aspect_ratio: match_input_image`` (the default);
``output_format`` ``jpg`` or ``png``; ``safety_tolerance`` at most 2 with an input image.

Life cycle with configurable timing: ``starting_seconds`` then ``processing_seconds``
(logs print a progress bar). The prompt picks the end: ``explode`` → failed, ``nsfw`` →
failed with Replicate's NSFW message; otherwise real images of the ratio. ``output_base``
replaces the host output links point at. Faults: ``fail_next`` hits creates,
``fail_next_poll`` gets and cancels, ``fail_next_file`` downloads.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import io
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from .images import MIME_TYPES, make_image
from .server import EmulatorServer, Fault, FaultKind, retry_headers

__all__ = ["DEFAULT_REPLICATE_KEY", "REPLICATE_MODELS", "ReplicateEmulator"]

DEFAULT_REPLICATE_KEY = "r8_emulator_key_0001"
_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
_FLUX = frozenset(
    {
        "prompt",
        "aspect_ratio",
        "num_outputs",
        "output_format",
        "seed",
        "go_fast",
        "megapixels",
        "num_inference_steps",
        "disable_safety_checker",
        "output_quality",
        "guidance",
    }
)
_PRO = frozenset(
    {
        "prompt",
        "aspect_ratio",
        "output_format",
        "seed",
        "safety_tolerance",
        "prompt_upsampling",
        "output_quality",
    }
)
_KONTEXT = frozenset(
    {
        "prompt",
        "input_image",
        "aspect_ratio",
        "output_format",
        "seed",
        "safety_tolerance",
        "prompt_upsampling",
    }
)
_KONTEXT_RATIOS = (*_RATIOS, "2:1", "1:2", "match_input_image")
_IDEOGRAM = frozenset(
    {
        "prompt",
        "aspect_ratio",
        "resolution",
        "magic_prompt_option",
        "image",
        "mask",
        "style_type",
        "style_reference_images",
        "seed",
    }
)
_IDEOGRAM_RATIOS = (
    "1:3",
    "3:1",
    "1:2",
    "2:1",
    "9:16",
    "16:9",
    "10:16",
    "16:10",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "1:1",
)
REPLICATE_MODELS = {
    "black-forest-labs/flux-schnell": _FLUX,
    "black-forest-labs/flux-dev": _FLUX,
    "black-forest-labs/flux-1.1-pro": _PRO,
    "black-forest-labs/flux-kontext-pro": _KONTEXT,
    "black-forest-labs/flux-kontext-max": _KONTEXT,
    "ideogram-ai/ideogram-v3-turbo": _IDEOGRAM,
    "ideogram-ai/ideogram-v3-balanced": _IDEOGRAM,
    "ideogram-ai/ideogram-v3-quality": _IDEOGRAM,
}
IDEOGRAM_RESOLUTIONS = frozenset(
    f"{w}x{h}"
    for w, h in [
        (512, 1536),
        (576, 1408),
        (576, 1472),
        (576, 1536),
        (640, 1344),
        (640, 1408),
        (640, 1472),
        (640, 1536),
        (704, 1152),
        (704, 1216),
        (704, 1280),
        (704, 1344),
        (704, 1408),
        (704, 1472),
        (736, 1312),
        (768, 1088),
        (768, 1216),
        (768, 1280),
        (768, 1344),
        (800, 1280),
        (832, 960),
        (832, 1024),
        (832, 1088),
        (832, 1152),
        (832, 1216),
        (832, 1248),
        (864, 1152),
        (896, 960),
        (896, 1024),
        (896, 1088),
        (896, 1120),
        (896, 1152),
    ]
    for w, h in ((w, h), (h, w))
) | {"1024x1024", "960x1024", "1024x960", "1088x960", "960x1088"}
_NSFW = "NSFW content detected. Try running it again, or try a different prompt."
SCHNELL_VERSION = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"
VERSION_IDS = {SCHNELL_VERSION: "black-forest-labs/flux-schnell"}


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


@dataclass
class Run:
    id: str
    model: str
    input: dict[str, Any]
    created: float
    outcome: str
    input_size: tuple[int, int] | None = None  # of `input_image`, for `match_input_image`
    cancelled: bool = False
    ended: float | None = None
    files: list[str] = field(default_factory=list)


class ReplicateEmulator(EmulatorServer):
    """See the module docstring. ``runs`` holds every prediction by id."""

    name = "replicate"

    def __init__(self, *, api_key: str = DEFAULT_REPLICATE_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.runs: dict[str, Run] = {}
        self._files: dict[str, tuple[bytes, str, float]] = {}
        # Files uploaded through the Files API, by id (bytes, content type).
        self.uploads: dict[str, tuple[bytes, str]] = {}
        self.deleted_uploads: list[str] = []
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.starting_seconds = self.processing_seconds = 0.0
        self.file_ttl = 3600.0
        self.max_hold = 60.0  # a test knob: the longest a `Prefer: wait` is held here
        self.data_uris = False  # answer outputs as data URIs (Replicate did, in sync mode)
        self.output_base: str | None = None
        self.runs.clear()
        self._files.clear()
        self.uploads.clear()
        self.deleted_uploads.clear()

    def fail_next_poll(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        delay: float | None = None,
    ) -> None:
        self._queue_fault("poll", kind, times, status, None, delay, None)

    def fail_next_file(self, kind: FaultKind, *, times: int = 1, status: int | None = None) -> None:
        self._queue_fault("file", kind, times, status, None, None, None)

    def _fault_queue(self, request: web.Request) -> str | None:
        if request.path.startswith("/files/"):
            return "file"
        return "poll" if request.path.startswith("/v1/predictions/") else "api"

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = Problem(fault.status, "Injected", fault.message or f"injected {fault.status}")
        return _problem(error, fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return await self._route(request, raw)
        except Problem as error:
            return _problem(error)

    async def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/files/"):
            return self._file(path.removeprefix("/files/"))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise Problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "predictions"]:
            return self._answer(self._run(parts[2]), request)
        if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
            run = self._run(parts[2])
            if self._status(run) not in ("succeeded", "failed"):
                run.cancelled, run.ended = True, time.monotonic()
            return self._answer(run, request)
        if method == "POST" and path == "/v1/files":
            return self._upload(request, raw)
        if method == "DELETE" and len(parts) == 3 and parts[:2] == ["v1", "files"]:
            if self.uploads.pop(parts[2], None) is None:
                raise Problem(404, "Not found", "The requested resource could not be found.")
            self.deleted_uploads.append(parts[2])
            return web.Response(status=204)
        if method == "GET" and path == "/v1/account":
            return web.json_response({"type": "user", "username": "emulator"})
        if method == "POST" and path == "/v1/predictions":
            body = _json(raw)
            model = VERSION_IDS.get(str(body.get("version")))
            if model is None:
                raise Problem(
                    422,
                    "Invalid version or not permitted",
                    "The specified version does not exist (or perhaps you don't "
                    "have permission to use it?)",
                )
            return await self._create(model, body, request)
        if (
            method == "POST"
            and len(parts) == 5
            and parts[0:2] == ["v1", "models"]
            and parts[4] == "predictions"
        ):
            model = f"{parts[2]}/{parts[3]}"
            if model not in REPLICATE_MODELS:
                raise Problem(404, "Not found", "The requested resource could not be found.")
            return await self._create(model, _json(raw), request)
        raise Problem(404, "Not found", "The requested resource could not be found.")

    async def _create(self, model: str, body: dict[str, Any], request: web.Request) -> web.Response:
        input_ = body.get("input")
        if not isinstance(input_, dict):
            raise Problem(
                422,
                "Input validation failed",
                "input is required",
                invalid_fields=[
                    {"type": "required", "field": "", "description": "input is required"}
                ],
            )
        _validate(model, input_)
        size = self._input_size(input_["input_image"]) if "input_image" in input_ else None
        prompt = str(input_["prompt"])
        outcome = "nsfw" if "nsfw" in prompt else "explode" if "explode" in prompt else "ok"
        run = Run(uuid.uuid4().hex[:26], model, input_, time.monotonic(), outcome, size)
        self.runs[run.id] = run
        wait = min(self.max_hold, _prefer_wait(request.headers.get("Prefer")))
        if wait:
            end = time.monotonic() + wait
            while self._status(run) not in ("succeeded", "failed") and time.monotonic() < end:
                await asyncio.sleep(0.02)
        return self._answer(run, request, status=201)

    def _upload(self, request: web.Request, raw: bytes) -> web.Response:
        """`POST /v1/files`: a multipart `content` file, kept for predictions to read."""
        head = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        parts = (
            [
                p
                for p in form.iter_parts()
                if p.get_param("name", header="content-disposition") == "content"
            ]
            if form.is_multipart()
            else []
        )
        if not parts:
            raise Problem(400, "Bad request", "A multipart field `content` is required")
        data = parts[0].get_payload(decode=True)
        file_id = uuid.uuid4().hex[:12]
        kind = parts[0].get_content_type()
        self.uploads[file_id] = (data, kind)
        url = f"http://{request.host}/v1/files/{file_id}"
        answer = {"id": file_id, "name": parts[0].get_filename(), "content_type": kind,
                  "size": len(data), "urls": {"get": url}}  # fmt: skip
        return web.json_response(answer, status=201)

    def _input_size(self, reference: Any) -> tuple[int, int]:
        """The size of `input_image`: a data URI, or a file uploaded here."""
        reference = str(reference)
        if reference.startswith("data:image/"):
            data = base64.b64decode(reference.partition(",")[2])
        elif "/v1/files/" in reference and (
            upload := self.uploads.get(reference.rpartition("/")[2])
        ):
            data = upload[0]
        else:
            raise _invalid("input_image", "Could not read the file at the given URI")
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Exception:
            raise _invalid("input_image", "The file is not an image") from None

    def _run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise Problem(404, "Not found", "The requested resource could not be found.")
        return run

    def _status(self, run: Run) -> str:
        if run.cancelled:
            return "canceled"
        elapsed = time.monotonic() - run.created
        if elapsed < self.starting_seconds:
            return "starting"
        if elapsed < self.starting_seconds + self.processing_seconds:
            return "processing"
        return "succeeded" if run.outcome == "ok" else "failed"

    def _answer(self, run: Run, request: web.Request, status: int = 200) -> web.Response:
        state = self._status(run)
        base = f"http://{request.host}/v1/predictions/{run.id}"
        answer: dict[str, Any] = {
            "id": run.id,
            "model": run.model,
            "version": "hidden",
            "input": run.input,
            "status": state,
            "output": None,
            "error": None,
            "logs": "",
            "data_removed": False,
            "urls": {"get": base, "cancel": base + "/cancel"},
        }
        if state == "processing":
            done = (
                time.monotonic() - run.created - self.starting_seconds
            ) / self.processing_seconds
            percent = max(1, min(99, int(100 * done)))
            answer["logs"] = f"generating\n{percent:3d}%|{'#' * (percent // 10):10}| {percent}/100"
        elif state == "succeeded":
            answer["output"] = self._outputs(run, request)
            answer["logs"] = "100%|##########| 4/4"
        elif state == "failed":
            answer["error"] = _NSFW if run.outcome == "nsfw" else "CUDA out of memory"
        return web.json_response(answer, status=status)

    def _outputs(self, run: Run, request: web.Request) -> str | list[str]:
        if run.ended is None:
            run.ended = time.monotonic()
            ideogram = REPLICATE_MODELS[run.model] is _IDEOGRAM
            kontext = REPLICATE_MODELS[run.model] is _KONTEXT
            fmt = (
                "png" if ideogram else run.input.get("output_format", "png" if kontext else "webp")
            )
            resolution = run.input.get("resolution", "None")
            ratio = run.input.get("aspect_ratio", "match_input_image" if kontext else "1:1")
            if resolution != "None":
                width, height = (int(side) for side in resolution.split("x"))
            elif run.input_size is not None and ratio == "match_input_image":
                width, height = run.input_size
            else:
                width, height = _dimensions("1:1" if ratio == "match_input_image" else ratio)
            for index in range(run.input.get("num_outputs", 1)):
                name = f"{uuid.uuid4().hex}.{fmt}"
                picture = make_image(
                    width,
                    height,
                    "jpeg" if fmt == "jpg" else fmt,
                    (run.input.get("seed") or 1) + index,
                )
                self._files[name] = (picture, fmt, run.ended + self.file_ttl)
                run.files.append(name)
        base = self.output_base or f"http://{request.host}"
        links = [f"{base}/files/{name}" for name in run.files]
        if self.data_uris:
            links = [_data_uri(*self._files[name][:2]) for name in run.files]
        return links if REPLICATE_MODELS[run.model] is _FLUX else links[0]

    def _file(self, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None or time.monotonic() >= found[2]:
            return web.Response(status=404, text="Not Found")
        fmt = "jpeg" if found[1] == "jpg" else found[1]
        return web.Response(body=found[0], content_type=MIME_TYPES[fmt])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise Problem(400, "Bad request", "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "The request body must be a JSON object")
    return body


def _data_uri(data: bytes, fmt: str) -> str:
    kind = MIME_TYPES["jpeg" if fmt == "jpg" else fmt]
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _prefer_wait(header: str | None) -> float:
    if not header or not header.startswith("wait"):
        return 0.0
    _, _, seconds = header.partition("=")
    return float(min(60, int(seconds))) if seconds else 60.0


def _invalid(field_name: str, description: str) -> Problem:
    return Problem(
        422,
        "Input validation failed",
        f"- input.{field_name}: {description}",
        invalid_fields=[
            {"type": "invalid", "field": f"input.{field_name}", "description": description}
        ],
    )


def _validate(model: str, input_: dict[str, Any]) -> None:
    allowed = REPLICATE_MODELS[model]
    for name in input_:
        if name not in allowed:
            raise _invalid(name, f"Additional property {name} is not allowed")
    if not isinstance(input_.get("prompt"), str) or not input_["prompt"]:
        raise _invalid("prompt", "prompt is required")
    ratios = {_IDEOGRAM: _IDEOGRAM_RATIOS, _KONTEXT: _KONTEXT_RATIOS}.get(allowed, _RATIOS)
    if input_.get("aspect_ratio", "1:1") not in ratios:
        raise _invalid("aspect_ratio", f"aspect_ratio must be one of: {', '.join(ratios)}")
    resolution = input_.get("resolution", "None")
    if resolution != "None" and resolution not in IDEOGRAM_RESOLUTIONS:
        raise _invalid("resolution", "resolution must be None or one of the listed sizes")
    if input_.get("output_format", "webp") not in ("webp", "jpg", "png"):
        raise _invalid("output_format", "output_format must be one of: webp, jpg, png")
    if allowed is _KONTEXT:
        if input_.get("output_format", "png") not in ("jpg", "png"):
            raise _invalid("output_format", "output_format must be one of: jpg, png")
        if "input_image" in input_ and input_.get("safety_tolerance", 2) > 2:
            raise _invalid("safety_tolerance", "2 is the maximum allowed with input images")
    count = input_.get("num_outputs", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
        raise _invalid("num_outputs", "Must be between 1 and 4")


def _dimensions(ratio: str) -> tuple[int, int]:
    w, _, h = ratio.partition(":")
    value = int(w) / int(h)
    width = round(math.sqrt(1024 * 1024 * value) / 16) * 16
    return width, round(1024 * 1024 / width / 16) * 16


def _problem(error: Problem, retry_after: float | None = None) -> web.Response:
    body = {"title": error.title, "detail": error.detail, "status": error.status, **error.extra}
    return web.Response(
        status=error.status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers=retry_headers(retry_after),
    )
