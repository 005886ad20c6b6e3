"""A real loopback HTTP server that speaks fal.ai's queue and synchronous APIs.

One port serves both of fal's hosts: the queue (https://queue.fal.run) at the root, and
the synchronous host (https://fal.run) under ``/run`` (``emu.sync_url``). As fal
documents them (docs.fal.ai, Queue API; fal's Python client ``fal_client/client.py``):

``POST /{model_id}``
    queue a request; answers ``{request_id, response_url, status_url, cancel_url,
    queue_position}``. The URLs name the app without its subpath (``fal-ai/flux``).
``GET /{owner}/{app}/requests/{id}/status``
    ``IN_QUEUE`` (``queue_position``), ``IN_PROGRESS``, then ``COMPLETED`` (with
    ``error`` and ``error_type`` when the job failed); ``?logs=1`` adds ``logs``.
``GET /{owner}/{app}/requests/{id}``
    the output: ``{images: [{url, width, height, content_type}], seed,
    has_nsfw_concepts, timings, prompt}``, or the job's error answer.
``PUT /{owner}/{app}/requests/{id}/cancel``
    202 ``CANCELLATION_REQUESTED``; 400 ``ALREADY_COMPLETED``; 404 ``NOT_FOUND``.
``POST /run/{model_id}``
    the synchronous host: the output at once.
``GET /files/<name>``
    result images (fal's CDN), 404 once ``url_ttl`` seconds have passed.

Every API request needs ``Authorization: Key <key>`` (401 otherwise). Inputs are checked
as fal's model schemas say (422 with fal's ``{"detail": [{loc, msg, type, url, ctx,
input}]}``): ``prompt`` required; ``image_size`` a preset (``square_hd`` 1024x1024,
``square`` 512x512, ``portrait_4_3`` 768x1024, ``portrait_16_9`` 576x1024,
``landscape_4_3`` 1024x768 (default), ``landscape_16_9`` 1024x576) or ``{width,
height}``; ``num_images`` 1-4; ``output_format`` jpeg or png; ``seed`` an integer;
``sync_mode`` returns data URIs. Kontext (``fal-ai/flux-pro/kontext``) requires
``image_url`` (a URL or data URI) and makes images of the input's size. Fields a model
does not take are ignored, as fal's input models do [U].

Outcomes on demand, by prompt: ``forbidden`` → the job fails with a 422
``content_policy_violation``; ``explode`` → the job fails with a 500
``runner_server_error``; ``nsfw`` → images flagged in ``has_nsfw_concepts``.
Timing: ``queue_seconds`` in the queue, then ``run_seconds`` running (per job, as set
when it was submitted). Faults: ``fail_next`` (submissions and synchronous calls),
``fail_next_poll`` (status requests), ``fail_next_result`` (result reads).
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from .images import MIME_TYPES, make_image
from .server import EmulatorServer, Fault, FaultKind, retry_headers

__all__ = ["DEFAULT_FAL_KEY", "FAL_MODELS", "FalEmulator"]

DEFAULT_FAL_KEY = "fal-emulator-key-0001:secret"
PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
# model id → its kind: text to image (with or without a negative prompt), or an edit.
FAL_MODELS = {
    "fal-ai/flux/dev": "flux",
    "fal-ai/flux/schnell": "flux",
    "fal-ai/fast-sdxl": "sdxl",
    "fal-ai/flux-pro/kontext": "kontext",
}
_DOCS = "https://docs.fal.ai/errors"


class FalInputError(Exception):
    """A model error: one entry of fal's ``detail`` list."""

    def __init__(self, field: str, msg: str, kind: str, value: Any = None, **ctx: Any) -> None:
        super().__init__(msg)
        self.entry = {
            "loc": ["body", field],
            "msg": msg,
            "type": kind,
            "url": f"{_DOCS}#{kind}",
            "ctx": ctx,
            "input": value,
        }


class FalRequestError(Exception):
    """A request error: ``{"detail": "...", "error_type": "..."}``."""

    def __init__(self, status: int, detail: str, error_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.error_type = status, detail, error_type


@dataclass
class Job:
    id: str
    model: str
    body: dict[str, Any]
    submitted: float
    queue_seconds: float
    run_seconds: float
    host: str
    cancelled: bool = False
    polls: int = 0
    outcome: tuple[int, dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def app(self) -> str:
        return "/".join(self.model.split("/")[:2])

    def state(self, now: float) -> str:
        elapsed = now - self.submitted
        if self.cancelled or elapsed >= self.queue_seconds + self.run_seconds:
            return "COMPLETED"
        return "IN_QUEUE" if elapsed < self.queue_seconds else "IN_PROGRESS"


class FalEmulator(EmulatorServer):
    """See the module docstring. ``requests`` lists every request received."""

    name = "fal_ai"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_FAL_KEY,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.1,
        url_ttl: float = 600.0,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.url_ttl = url_ttl
        # Where result links point, when set: a lying answer (an internal address).
        self.link_base: str | None = None
        self.jobs: dict[str, Job] = {}
        self._files: dict[str, tuple[bytes, float]] = {}

    @property
    def sync_url(self) -> str:
        """Where the synchronous host (https://fal.run) is served."""
        return self.base_url + "/run"

    @property
    def submissions(self) -> int:
        """Jobs put in the queue (and synchronous runs) so far."""
        return sum(1 for r in self.requests if r.method == "POST")

    @property
    def cancels(self) -> list[str]:
        """The job ids a cancel was asked for."""
        return [r.path.split("/")[-2] for r in self.requests if r.method == "PUT"]

    def reset(self) -> None:
        super().reset()
        self.jobs.clear()
        self.link_base = None

    def fail_next_poll(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next status requests (see ``fail_next``)."""
        self._queue_fault("poll", kind, times, status, retry_after, delay, message)

    def fail_next_result(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next result reads (see ``fail_next``)."""
        self._queue_fault("result", kind, times, status, None, None, message)

    # ------------------------------------------------------------------ plumbing

    def _fault_queue(self, request: web.Request) -> str | None:
        if request.path.startswith("/files/"):
            return None
        if request.method == "POST":
            return "api"
        if request.method == "GET":
            return "poll" if request.path.endswith("/status") else "result"
        return "cancel"

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        detail = fault.message or f"injected {fault.status}"
        kind = "rate_limited" if fault.status == 429 else "internal_error"
        return _request_error(FalRequestError(fault.status, detail, kind), fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except FalRequestError as error:
            return _request_error(error)
        except FalInputError as error:
            return web.json_response({"detail": [error.entry]}, status=422)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if path.startswith("/files/"):
            return self._file(path.removeprefix("/files/"))
        self._check_key(request)
        if method == "POST":
            sync = path.startswith("/run/")
            model = path.removeprefix("/run/" if sync else "/")
            body = _json_body(raw)
            if model not in FAL_MODELS:
                raise FalRequestError(404, f"Application '{model}' not found")
            _validate(FAL_MODELS[model], body)
            if sync:
                return _answer(*self._outcome(model, body, request.host))
            return self._submit(model, body, request.host)
        parts = path.strip("/").split("/")
        if "requests" not in parts[2:]:
            raise FalRequestError(404, f"Not found: {method} {path}")
        return self._queue_request(request, parts)

    def _queue_request(self, request: web.Request, parts: list[str]) -> web.Response:
        action = parts[-1] if parts[-1] in ("status", "cancel") else "result"
        job_id = parts[-2] if action != "result" else parts[-1]
        app = "/".join(parts[: parts.index("requests")])
        job = self.jobs.get(job_id)
        if job is None or job.app != app:
            if action == "cancel":
                return web.json_response({"status": "NOT_FOUND"}, status=404)
            raise FalRequestError(404, f"Request {job_id} not found")
        now = time.monotonic()
        state = job.state(now)
        if action == "cancel" and request.method == "PUT":
            if state == "COMPLETED":
                return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
            job.cancelled = True
            return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)
        if action == "status":
            job.polls += 1
            return web.json_response(self._status(job, state, now, request))
        if state != "COMPLETED":
            raise FalRequestError(400, "Request is still in progress")
        if job.cancelled:
            raise FalRequestError(499, "Request was cancelled", "client_cancelled")
        return _answer(*self._job_outcome(job))

    def _status(self, job: Job, state: str, now: float, request: web.Request) -> dict[str, Any]:
        base = f"http://{job.host}/{job.app}/requests/{job.id}"
        answer: dict[str, Any] = {"status": state, "request_id": job.id, "response_url": base}
        if request.query.get("logs") in ("1", "true"):
            answer["logs"] = [
                {
                    "message": "Generating...",
                    "level": "INFO",
                    "source": "user",
                    "timestamp": "2026-12-03T00:00:00Z",
                }
            ]
        else:
            answer["logs"] = None
        if state == "IN_QUEUE":
            left = job.queue_seconds - (now - job.submitted)
            answer["queue_position"] = max(
                0, math.ceil(3 * left / max(job.queue_seconds, 1e-9)) - 1
            )
        if state == "COMPLETED":
            answer["metrics"] = {"inference_time": job.run_seconds}
            if job.cancelled:
                answer["error"], answer["error_type"] = "Request was cancelled", "client_cancelled"
            else:
                status, outcome = self._job_outcome(job)
                if status >= 400:
                    answer["error"] = "Request failed"
                    answer["error_type"] = outcome.get("error_type") or "request_error"
        return answer

    # ------------------------------------------------------------------ the work

    def _submit(self, model: str, body: dict[str, Any], host: str) -> web.Response:
        job = Job(
            id=str(uuid.uuid4()),
            model=model,
            body=body,
            submitted=time.monotonic(),
            queue_seconds=self.queue_seconds,
            run_seconds=self.run_seconds,
            host=host,
        )
        self.jobs[job.id] = job
        base = f"http://{host}/{job.app}/requests/{job.id}"
        return web.json_response(
            {
                "request_id": job.id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": 0,
            }
        )

    def _job_outcome(self, job: Job) -> tuple[int, dict[str, Any]]:
        if job.outcome is None:  # made once: the same images however often it is read
            job.outcome = self._outcome(job.model, job.body, job.host)
        return job.outcome

    def _outcome(self, model: str, body: dict[str, Any], host: str) -> tuple[int, dict[str, Any]]:
        prompt = body["prompt"]
        if "forbidden" in prompt:
            error = FalInputError(
                "prompt",
                "The content was flagged by a content checker.",
                "content_policy_violation",
                prompt,
            )
            return 422, {"detail": [error.entry]}
        if "explode" in prompt:
            return 500, {
                "detail": "The runner crashed while processing the request",
                "error_type": "runner_server_error",
            }
        width, height = _output_size(FAL_MODELS[model], body)
        fmt = body.get("output_format", "jpeg")
        seed = body.get("seed", random.randint(1, 2**31))
        count = body.get("num_images", 1)
        images = []
        for index in range(count):
            picture = make_image(width, height, fmt, seed + index)
            if body.get("sync_mode"):
                url = f"data:{MIME_TYPES[fmt]};base64,{base64.b64encode(picture).decode()}"
            else:
                name = f"{uuid.uuid4().hex}.{fmt}"
                self._files[name] = (picture, time.monotonic() + self.url_ttl)
                url = f"{self.link_base or f'http://{host}'}/files/{name}"
            images.append(
                {"url": url, "width": width, "height": height, "content_type": MIME_TYPES[fmt]}
            )
        return 200, {
            "images": images,
            "timings": {"inference": 0.1},
            "seed": seed,
            "has_nsfw_concepts": ["nsfw" in prompt] * count,
            "prompt": prompt,
        }

    def _file(self, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None or time.monotonic() > found[1]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found[0], content_type=MIME_TYPES[name.rpartition(".")[2]])

    def _check_key(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Key {self.api_key}":
            raise FalRequestError(
                401, "Invalid Key Authorization header format or credentials", "unauthorized"
            )


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise FalRequestError(400, "The request body is not valid JSON", "bad_request") from None
    if not isinstance(body, dict):
        raise FalRequestError(400, "The request body must be a JSON object", "bad_request")
    return body


def _validate(kind: str, body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise FalInputError("prompt", "Field required", "missing", prompt)
    count = body.get("num_images", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
        raise FalInputError(
            "num_images", "Input should be between 1 and 4", "less_than_equal", count, le=4, ge=1
        )
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        raise FalInputError(
            "output_format",
            "Input should be 'jpeg' or 'png'",
            "enum",
            body["output_format"],
            expected="'jpeg' or 'png'",
        )
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FalInputError("seed", "Input should be a valid integer", "int_type", seed)
    if kind == "kontext":
        if not isinstance(body.get("image_url"), str):
            raise FalInputError("image_url", "Field required", "missing", None)
        _input_image(body["image_url"])
        return
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, str):
        if size not in PRESETS:
            raise FalInputError("image_size", f"Input should be {', '.join(PRESETS)}", "enum", size)
    elif not (
        isinstance(size, dict)
        and all(
            isinstance(size.get(side), int) and 64 <= size[side] <= 14142
            for side in ("width", "height")
        )
    ):
        raise FalInputError(
            "image_size", "Input should be a preset or {width, height}", "model_type", size
        )


def _input_image(url: str) -> Image.Image:
    if not url.startswith("data:"):
        raise FalInputError(
            "image_url", "Only data URIs are served by the emulator", "value_error", url
        )
    try:
        return Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    except Exception:
        raise FalInputError("image_url", "Could not read the image", "image_load_error") from None


def _output_size(kind: str, body: dict[str, Any]) -> tuple[int, int]:
    if kind == "kontext":
        width, height = _input_image(body["image_url"]).size
        return width, height
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, str):
        return PRESETS[size]
    return size["width"], size["height"]


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    kind = body.get("error_type")
    return web.json_response(
        body, status=status, headers={"X-Fal-Error-Type": kind} if kind else None
    )


def _request_error(error: FalRequestError, retry_after: float | None = None) -> web.Response:
    headers = retry_headers(retry_after)
    body: dict[str, Any] = {"detail": error.detail}
    if error.error_type:
        body["error_type"] = error.error_type
        headers["X-Fal-Error-Type"] = error.error_type
    return web.Response(
        status=error.status, text=json.dumps(body), content_type="application/json", headers=headers
    )
