"""What `prismgate generate` and `prismgate chat` do around one call through the SDK:
the `--param` values, the call's report (request id, latency), the images written with
a JSON sidecar each, and the question's image as a data URL."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from prismgate._version import __version__
from prismgate.media import sniff_image_type
from prismgate.observers import CallReport
from prismgate.types import ImageObject, ImageResponse
from prismgate.types.meta import CallMeta

__all__ = [
    "AnswerError",
    "CallRecorder",
    "ParamError",
    "SavedImage",
    "bound_names",
    "image_bytes",
    "image_data_url",
    "save_images",
    "sdk_keywords",
]

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
# The most `prismgate generate` downloads for one image given as a link.
MAX_DOWNLOAD_BYTES = 64 << 20
DOWNLOAD_TIMEOUT_SECONDS = 120


class ParamError(ValueError):
    """A mistake on the command line: a `--param` that is not `key=value`, or that the
    command sets itself, or of the wrong type; a file that is not an image."""


class AnswerError(Exception):
    """An answer the command cannot turn into image files: it holds no image, its base64
    does not decode, or its link cannot be downloaded."""


def sdk_keywords(
    function: Callable[..., Any], pairs: Iterable[str], *, taken: Mapping[str, str]
) -> dict[str, Any]:
    """`--param key=value` pairs as keywords for the SDK `function`: each value as JSON
    when it reads as JSON (`steps=4`, `extra={"a": 1}`, `flag=true`), else as the text it
    is. Refused with a ParamError:

    - a key in `taken` (what the command's own call fills, see `bound_names`), with what
      `taken` says to do instead;
    - a key naming one of `function`'s own arguments (read from its signature) that its
      value does not fit (`timeout=soon`; `api_key=123` is the text `123`).

    Other keys are request parameters, checked by the call itself."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    own = {
        name: hints.get(name, Any)
        for name, parameter in signature.parameters.items()
        if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamError(f"--param {pair!r}: write it as key=value, for example steps=30")
        if key in taken:
            raise ParamError(f"--param {key}: {taken[key]}")
        value = _json_or_text(text)
        params[key] = _argument(key, value, text, own[key]) if key in own else value
    return params


def bound_names(function: Callable[..., Any], *args: Any, **keywords: Any) -> list[str]:
    """The names the call `function(*args, **keywords)` fills, read from `function`'s
    signature: its arguments (the positional ones by name) and the keys its `**`
    argument takes. A `--param` of one of them would be a second value for it."""
    signature = inspect.signature(function)
    names: list[str] = []
    for name, value in signature.bind_partial(*args, **keywords).arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            names.extend(value)
        else:
            names.append(name)
    return names


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _argument(key: str, value: Any, text: str, kind: Any) -> Any:
    """`value` (else `text`, as written) as the SDK argument `key` of type `kind`."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as error:
        try:
            return msgspec.convert(text, kind, strict=False)
        except msgspec.ValidationError:
            raise ParamError(f"--param {key}: {error}") from None


@dataclass(slots=True)
class CallRecorder:
    """An observer keeping the report of each call (its request id and latency)."""

    reports: list[CallReport] = field(default_factory=list)

    def observe(self, report: CallReport) -> None:
        self.reports.append(report)

    @property
    def last(self) -> CallReport | None:
        return self.reports[-1] if self.reports else None


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image written to `path`, with its sidecar beside it."""

    path: Path
    sidecar: Path
    data: bytes
    revised_prompt: str | None


async def image_bytes(response: ImageResponse) -> list[bytes]:
    """Each image of `response`: decoded base64, a `data:` URL, or fetched from its link."""
    return [await _image_bytes(item) for item in response.data]


def save_images(
    response: ImageResponse,
    images: list[bytes],
    *,
    out: Path,
    call: Mapping[str, Any],
    report: CallReport | None,
) -> list[SavedImage]:
    """Write `images` (those of `response`) to `out` (made if missing) as
    `image-<created>-<index>.<ext>`, and beside each `image-<created>-<index>.json` with
    what the call was: `call` (prompt, model, params) and what served it (deployment,
    cost, latency, request id, revised prompt)."""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for index, (item, data) in enumerate(zip(response.data, images, strict=True)):
        media_type = sniff_image_type(data[:16]) or "application/octet-stream"
        path = out / f"image-{response.created}-{index}.{EXTENSIONS.get(media_type, 'bin')}"
        path.write_bytes(data)
        sidecar = path.with_suffix(".json")
        record = {
            **call,
            **_served(response, report),
            "file": path.name,
            "index": index,
            "media_type": media_type,
            "bytes": len(data),
            "revised_prompt": item.revised_prompt,
            "url": item.url if item.url and not item.url.startswith("data:") else None,
        }
        sidecar.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        saved.append(SavedImage(path, sidecar, data, item.revised_prompt))
    return saved


def _served(response: ImageResponse, report: CallReport | None) -> dict[str, Any]:
    """What served the call: deployment, cost, latency, request id."""
    meta: CallMeta | None = response._hidden_params
    served: dict[str, Any] = {}
    if meta is not None:
        served = {
            "model_group": meta.model_group,
            "provider": meta.provider,
            "deployment": f"{meta.provider}/{meta.model}",
            "api_base": meta.api_base,
            "cost_usd": meta.response_cost,
            "images_in_call": len(response.data),
            "adjusted": list(meta.adjusted),
            "dropped_params": list(meta.dropped_params),
            "attempts": list(meta.attempts),
        }
    return {
        **served,
        "created": response.created,
        "request_id": report.request_id if report else None,
        "latency_seconds": round(report.latency, 3) if report else None,
        "prismgate": __version__,
    }


async def _image_bytes(item: ImageObject) -> bytes:
    """The image itself: decoded base64, a `data:` URL, or fetched from its link."""
    if item.b64_json:
        return _decoded(item.b64_json, "b64_json")
    url = item.url or ""
    if url.startswith("data:"):
        return _decoded(url.partition(",")[2], "data: URL")
    if url.startswith(("https://", "http://")):
        return await _download(url)
    raise AnswerError("the answer holds no image (neither b64_json nor a url)")


def _decoded(text: str, what: str) -> bytes:
    """Strict base64 (line breaks allowed): anything else is an AnswerError, never bytes
    that are not the image."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as error:
        raise AnswerError(f"the answer's image ({what}) is not valid base64: {error}") from None


async def _download(url: str) -> bytes:
    import aiohttp

    where = url.split("?", 1)[0]  # a signed link's query is a credential
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as answer:
            answer.raise_for_status()
            data = await answer.content.read(MAX_DOWNLOAD_BYTES + 1)
    except aiohttp.ClientResponseError as error:
        raise AnswerError(f"cannot download the image at {where}: {error.status}") from None
    except (aiohttp.ClientError, TimeoutError) as error:  # its text may hold the whole URL
        raise AnswerError(f"cannot download the image at {where}: {type(error).__name__}") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise AnswerError(f"the image at {where} is over {MAX_DOWNLOAD_BYTES} bytes")
    return data


def image_data_url(path: Path) -> str:
    """The image file at `path` as a `data:` URL, its type read from its bytes."""
    data = path.read_bytes()
    media_type = sniff_image_type(data[:16])
    if media_type is None:
        raise ParamError(f"{path} is not an image (PNG, JPEG, WebP, GIF or HEIC)")
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"
