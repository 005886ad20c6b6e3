"""A real loopback HTTP server that speaks Black Forest Labs' task API.

As BFL documents it (docs.bfl.ai: the model endpoints, Get Result, the integration
guidelines): ``POST /v1/<model>`` with the key in ``x-key`` answers
``{"id", "polling_url", "cost", "input_mp", "output_mp"}``; ``GET /v1/get_result?id=``
answers ``{"id", "status", "result", "progress", "details"}`` with ``status`` one of
``Pending``, ``Ready``, ``Error``, ``Content Moderated``, ``Request Moderated``,
``Task not found``; a Ready task's ``result.sample`` is a signed link (served here under
``/delivery/``) that expires ``sample_ttl`` seconds after the task ends (BFL: ten minutes),
after which it answers 403. A missing or wrong key is a 403 ``{"detail": "Not
authenticated"}``; a body BFL cannot take is FastAPI's 422
``{"detail": [{"loc": ["body", field], "msg", "type"}]}``; fields it does not know are
ignored (FastAPI's default), and recorded for the tests.

Checked per model: ``prompt`` required; FLUX.2 ``width``/``height`` multiples of 16, at
least 64, at most 4 MP, ``safety_tolerance`` 0-5, up to eight ``input_image*``; Kontext and
Ultra an ``aspect_ratio`` ``W:H`` between 21:9 and 9:21, ``safety_tolerance`` 0-6, up to four
``input_image*`` (Kontext); FLUX1.1 [pro] ``width``/``height`` multiples of 32 within
256-1440; ``output_format`` ``jpeg`` or ``png``; ``seed`` an integer.

Life cycle, with configurable timing: a task is queued (``Pending``, no progress) for
``queued_seconds``, then running (``Pending`` with a progress percentage) for
``running_seconds``, then ends. The prompt picks the end: ``moderate-output`` → Content
Moderated, ``moderate-request`` → Request Moderated, ``explode`` → Error; otherwise Ready
with a real image of the asked size. ``polling_base`` replaces the host the answers point
at (a foreign host, for the tests); ``lose_tasks`` makes them point at a task it does not
know (``Task not found``). Faults: ``fail_next`` hits submissions,
``fail_next_poll`` status polls, ``fail_next_delivery`` image downloads.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

from .images import MIME_TYPES, make_image
from .server import EmulatorServer, Fault, FaultKind, retry_headers

__all__ = ["BFL_MODELS", "DEFAULT_BFL_KEY", "BflEmulator"]

DEFAULT_BFL_KEY = "bfl-emulator-key-0001"
BFL_MODELS = (
    "flux-2-pro",
    "flux-2-max",
    "flux-kontext-pro",
    "flux-kontext-max",
    "flux-pro-1.1",
    "flux-pro-1.1-ultra",
)
_COMMON = frozenset(
    {
        "prompt",
        "seed",
        "output_format",
        "safety_tolerance",
        "webhook_url",
        "webhook_secret",
        "prompt_upsampling",
    }
)


class BflError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


def _invalid(field_name: str, message: str) -> BflError:
    return BflError(422, [{"loc": ["body", field_name], "msg": message, "type": "value_error"}])


@dataclass
class Task:
    id: str
    model: str
    body: dict[str, Any]
    submitted: float
    size: tuple[int, int]
    outcome: str
    ended: float | None = None
    sample: str | None = None
    polls: int = 0


@dataclass
class _Sample:
    data: bytes
    fmt: str
    expires: float


class BflEmulator(EmulatorServer):
    """See the module docstring. ``tasks`` holds every submitted task by id."""

    name = "black_forest_labs"

    def __init__(self, *, api_key: str = DEFAULT_BFL_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.queued_seconds = 0.0
        self.running_seconds = 0.0
        self.sample_ttl = 600.0
        self.polling_base: str | None = None
        self.lose_tasks = False  # answer polling URLs of tasks it no longer knows
        self.tasks: dict[str, Task] = {}
        self._samples: dict[str, _Sample] = {}

    @property
    def submissions(self) -> list[Task]:
        """The tasks submitted, in order."""
        return list(self.tasks.values())

    def reset(self) -> None:
        super().reset()
        self.queued_seconds = self.running_seconds = 0.0
        self.sample_ttl = 600.0
        self.polling_base = None
        self.lose_tasks = False
        self.tasks.clear()
        self._samples.clear()

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
        """As ``fail_next``, for status polls only."""
        self._queue_fault("poll", kind, times, status, retry_after, delay, message)

    def fail_next_delivery(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        delay: float | None = None,
    ) -> None:
        """As ``fail_next``, for image downloads only."""
        self._queue_fault("delivery", kind, times, status, None, delay, None)

    def _fault_queue(self, request: web.Request) -> str | None:
        if request.path.startswith("/delivery/"):
            return "delivery"
        return "poll" if request.path == "/v1/get_result" else "api"

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        detail = fault.message or f"injected {fault.status}"
        return _error(BflError(fault.status, detail), retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return self._route(request, raw)
        except BflError as error:
            return _error(error)

    def _route(self, request: web.Request, raw: bytes) -> web.Response:
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/delivery/"):
            return self._deliver(request)
        if request.headers.get("x-key") != self.api_key:
            raise BflError(403, "Not authenticated")
        if method == "GET" and path == "/v1/credits":
            return web.json_response({"credits": 1000.0})
        if method == "GET" and path == "/v1/get_result":
            return self._poll(request.query.get("id", ""))
        model = path.removeprefix("/v1/")
        if method != "POST" or not path.startswith("/v1/") or model not in BFL_MODELS:
            raise BflError(404, "Not Found")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _invalid("body", "JSON decode error") from None
        if not isinstance(body, dict):
            raise _invalid("body", "Input should be a valid dictionary")
        return self._submit(model, body, request)

    # ------------------------------------------------------------------ submit

    def _submit(self, model: str, body: dict[str, Any], request: web.Request) -> web.Response:
        size = _validate(model, body)
        prompt = body["prompt"]
        outcome = next((end for word, end in _OUTCOMES.items() if word in prompt), "Ready")
        task = Task(uuid.uuid4().hex, model, body, time.monotonic(), size, outcome)
        self.tasks[task.id] = task
        base = self.polling_base or f"http://{request.host}"
        megapixels = size[0] * size[1] / 1024 / 1024
        answer = {
            "id": task.id,
            "polling_url": f"{base}/v1/get_result?id={'lost' if self.lose_tasks else task.id}",
            "cost": round(3 + 1.5 * (math.ceil(megapixels) - 1), 2),
            "input_mp": 0.0,
            "output_mp": round(megapixels, 2),
        }
        return web.json_response(answer)

    # ------------------------------------------------------------------ poll

    def _poll(self, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return web.json_response(
                {
                    "id": task_id,
                    "status": "Task not found",
                    "result": None,
                    "progress": None,
                    "details": None,
                }
            )
        task.polls += 1
        elapsed = time.monotonic() - task.submitted
        answer: dict[str, Any] = {"id": task.id, "result": None, "progress": None, "details": None}
        if elapsed < self.queued_seconds:
            answer["status"] = "Pending"
        elif elapsed < self.queued_seconds + self.running_seconds:
            done = (elapsed - self.queued_seconds) / self.running_seconds
            answer.update(status="Pending", progress=round(max(1.0, 100 * done), 1))
        else:
            self._end(task)
            answer["status"] = task.outcome
            if task.outcome == "Ready":
                answer["result"] = {
                    "sample": task.sample,
                    "prompt": task.body["prompt"],
                    "seed": task.body.get("seed", 0),
                }
            elif task.outcome != "Error":
                answer["details"] = {"moderation": ["Derivative Works Filter"]}
            else:
                answer["details"] = {"error": "the generation failed on the worker"}
        return web.json_response(answer)

    def _end(self, task: Task) -> None:
        if task.ended is not None:
            return
        task.ended = time.monotonic()
        if task.outcome != "Ready":
            return
        fmt = task.body.get("output_format", "jpeg")
        name = f"{uuid.uuid4().hex}.{fmt}"
        seed = task.body.get("seed") or int(task.id[:8], 16)
        picture = make_image(*task.size, fmt, seed)
        self._samples[name] = _Sample(picture, fmt, task.ended + self.sample_ttl)
        base = self.polling_base or self.base_url
        task.sample = f"{base}/delivery/{name}?se={int(time.time() + self.sample_ttl)}&sig=x"

    def _deliver(self, request: web.Request) -> web.Response:
        sample = self._samples.get(request.path.removeprefix("/delivery/"))
        if sample is None or time.monotonic() >= sample.expires:
            return web.Response(
                status=403,
                text="AuthenticationFailed: Signed expiry time has passed",
                content_type="application/xml",
            )
        return web.Response(body=sample.data, content_type=MIME_TYPES[sample.fmt])


_OUTCOMES = {
    "moderate-output": "Content Moderated",
    "moderate-request": "Request Moderated",
    "explode": "Error",
}


def _validate(model: str, body: dict[str, Any]) -> tuple[int, int]:
    """Check `body` as BFL does for `model`; the size of the image it will make."""
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise BflError(
            422, [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]
        )
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        raise _invalid("output_format", "Input should be 'jpeg' or 'png'")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _invalid("seed", "Input should be a valid integer")
    flux2, kontext = model.startswith("flux-2"), model.startswith("flux-kontext")
    _integer(body, "safety_tolerance", 0, 5 if flux2 else 6)
    images = sorted(name for name in body if name.startswith("input_image"))
    allowed = 8 if flux2 else 4 if kontext else 0
    if len(images) > allowed:
        raise _invalid(images[-1], f"at most {allowed} input images")
    first = _decoded(body[images[0]]) if images else None
    if flux2:
        return _free_size(body, first, step=16, low=64, high=None, max_pixels=4 * 1024 * 1024)
    if kontext or model.endswith("ultra"):
        return _ratio_size(body, first, megapixels=1 if kontext else 4)
    return _free_size(body, None, step=32, low=256, high=1440, max_pixels=None, default=(1024, 768))


def _decoded(value: Any) -> tuple[int, int]:
    try:
        return Image.open(io.BytesIO(base64.b64decode(value))).size
    except Exception:
        raise _invalid("input_image", "not a base64 encoded image") from None


def _integer(body: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "Input should be a valid integer")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _invalid(name, f"Input should be {bound}")
    return value


def _free_size(
    body: dict[str, Any],
    first: tuple[int, int] | None,
    *,
    step: int,
    low: int,
    high: int | None,
    max_pixels: int | None,
    default: tuple[int, int] = (1024, 1024),
) -> tuple[int, int]:
    width, height = _integer(body, "width", low, high), _integer(body, "height", low, high)
    for name, value in (("width", width), ("height", height)):
        if value is not None and value % step:
            raise _invalid(name, f"must be a multiple of {step}")
    size = (width or (first or default)[0], height or (first or default)[1])
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise _invalid("width", "width x height must be at most 4 megapixels")
    return size


def _ratio_size(
    body: dict[str, Any], first: tuple[int, int] | None, megapixels: int
) -> tuple[int, int]:
    ratio = body.get("aspect_ratio")
    if ratio is None:
        value = first[0] / first[1] if first else 1.0
    else:
        try:
            w, _, h = str(ratio).partition(":")
            value = int(w) / int(h)
        except ValueError:
            raise _invalid("aspect_ratio", "must be of the form W:H") from None
        if not 9 / 21 - 1e-9 <= value <= 21 / 9 + 1e-9:
            raise _invalid("aspect_ratio", "Aspect ratio must be between 21:9 and 9:21")
    pixels = megapixels * 1024 * 1024
    width = round(math.sqrt(pixels * value) / 32) * 32
    return width, round(pixels / width / 32) * 32


def _error(error: BflError, retry_after: float | None = None) -> web.Response:
    return web.Response(
        status=error.status,
        text=json.dumps({"detail": error.detail}),
        content_type="application/json",
        headers=retry_headers(retry_after),
    )
