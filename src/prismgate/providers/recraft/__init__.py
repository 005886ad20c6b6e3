"""Recraft: an OpenAI-like `POST /v1/images/generations` (sizes from a fixed list, up to
six images a call, `url` or `b64_json`), and two edit endpoints that map onto OpenAI's
`/v1/images/edits`: `imageToImage` (the whole image reworked, by a `strength`) without a
mask, and `inpaint` (only the masked area redrawn) with one. Edits are multipart forms.

Recraft's V3 models take a `style` (its own words: `realistic_image`, ...) and a negative
prompt; the V4 and V4.1 models take neither (their catalog entries refuse them).
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import (
    BadRequestError,
    PrismgateError,
    UnsupportedParamsError,
    from_upstream,
    unreadable_answer,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    CredentialSpec,
    Field,
    FieldTable,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    Provider,
    build_body,
)
from prismgate.providers.openai.wire import bearer, models_probe
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    image_answer_bytes,
    multipart_body,
    retry_after_seconds,
)
from prismgate.types import ImageObject, ImageResponse, InputImage

__all__ = ["DEFAULT_STRENGTH", "RECRAFT", "RECRAFT_FAMILIES", "recraft_error", "recraft_mask"]

_PROVIDER = "recraft"
# imageToImage needs a strength (0 keeps the input, 1 ignores it); when the caller gives
# none, the input keeps its composition while the prompt still changes it visibly.
DEFAULT_STRENGTH = 0.5

_STRENGTH_NOTE = (
    f"edits without a mask only: 0 keeps the input image, 1 ignores it ({DEFAULT_STRENGTH} "
    "when not given, as Recraft needs one)"
)
V4_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "n": Field("n"),
    "size": Field("size"),
    "response_format": Field("response_format"),
    "controls": Field("controls"),
    "strength": Field("strength", note=_STRENGTH_NOTE),
}
V3_FIELDS: FieldTable = {
    **V4_FIELDS,
    "style": Field("style"),
    "substyle": Field("substyle"),
    "negative_prompt": Field("negative_prompt"),
}

# One family per size list (1K, 2K, V3's), so the README tables list each one's sizes.
RECRAFT_FAMILIES = (
    ImageFamily("Recraft V4.1 and V4 (1K)", ("recraft/recraftv4_1", "recraft/recraftv4"),
                V4_FIELDS, operations=("edit",)),
    ImageFamily("Recraft V4.1 Pro and V4 Pro (2K)",
                ("recraft/recraftv4_1_pro", "recraft/recraftv4_pro"), V4_FIELDS,
                operations=("edit",)),
    ImageFamily("Recraft V3", ("recraft/recraftv3",), V3_FIELDS, operations=("edit",)),
)  # fmt: skip


def _table(model: str) -> FieldTable:
    return V3_FIELDS if model.startswith(("recraftv3", "recraftv2")) else V4_FIELDS


# ---------------------------------------------------------------------------- answers


class _Image(msgspec.Struct):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class _Answer(msgspec.Struct):
    data: list[_Image] = msgspec.field(default_factory=list)
    created: int | None = None


class _Error(msgspec.Struct):
    code: str | None = None
    message: str | None = None


def recraft_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Recraft's errors are JSON (`{"code","message"}`) or plain text (`request
    unauthorized`, `404 page not found`): both keep their status and words."""
    detail = _Error()
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        detail = msgspec.json.decode(response.body, type=_Error)
    text = detail.message or response.body[:300].decode("utf-8", "replace").strip()
    return from_upstream(
        response.status,
        redact(text or "(empty body)"),
        provider=_PROVIDER,
        code=detail.code,
        retry_after=retry_after_seconds(response.headers),
    )


def _answer(response: UpstreamResponse) -> ImageResponse:
    try:
        answer = msgspec.json.decode(response.body, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            _PROVIDER, response.status, f"not Recraft's images JSON ({exc})"
        ) from exc
    data = [
        ImageObject(url=item.url, b64_json=item.b64_json, revised_prompt=item.revised_prompt)
        for item in answer.data
    ]
    return ImageResponse(created=answer.created or int(time.time()), data=data)


# ---------------------------------------------------------------------------- requests


async def _send(
    call: ImageCall[Any], http: Transport, path: str, body: bytes, content_type: str
) -> ImageResponse:
    images = call.request.n or 1
    request = UpstreamRequest(
        method="POST",
        url=call.credentials.api_base + path,
        provider=_PROVIDER,
        headers={**bearer(call.credentials, call.settings), "Content-Type": content_type},
        body=body,
        timeout=call.timeout,
        connect_timeout=call.connect_timeout,
        max_answer_bytes=image_answer_bytes(images),
    )
    response = await http.send(request)
    if response.status >= 400:
        raise recraft_error(response, call.redact)
    return _answer(response)


def _values(call: ImageCall[Any]) -> dict[str, Any]:
    request = call.request
    return {
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "response_format": request.response_format,
        "style": getattr(request, "style", None),
        "negative_prompt": request.negative_prompt,
    }


def _form_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadRequestError(
        f"recraft's edits are multipart forms of text fields; {name!r} is a "
        f"{type(value).__name__} (send nested values such as controls only to generations)",
        param=name,
        provider=_PROVIDER,
    )


def recraft_mask(mask: InputImage, size: tuple[int, int]) -> InputImage:
    """OpenAI's mask (fully transparent pixels may change) as Recraft's: a grayscale PNG,
    white where the image is redrawn and black where it is kept, the image's size."""
    from PIL import Image

    with Image.open(io.BytesIO(mask.data)) as picture:
        if picture.size != size:
            raise BadRequestError(
                f"the mask is {picture.size[0]}x{picture.size[1]} but the image is "
                f"{size[0]}x{size[1]}; give a mask of the same size",
                param="mask",
            )
        alpha = picture.convert("RGBA").getchannel("A")
    if alpha.getextrema()[0] != 0:
        raise BadRequestError(
            "the mask has no fully transparent pixels, so nothing would change; make the "
            "area to edit fully transparent",
            param="mask",
        )
    redraw = alpha.point([255] + [0] * 255)  # alpha 0 → white (redraw), else black
    buffer = io.BytesIO()
    redraw.save(buffer, format="PNG")
    return InputImage(data=buffer.getvalue(), media_type="image/png", filename="mask.png")


def _image_size(image: InputImage) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image.data)) as picture:
            return picture.size
    except OSError:
        raise BadRequestError("the image could not be read", param="image") from None


@dataclass(frozen=True, slots=True)
class RecraftImages:
    """Generation on /images/generations; edits on /images/imageToImage and /inpaint."""

    families: tuple[ImageFamily, ...] = RECRAFT_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Up to six images from a prompt."""
        table = _table(call.deployment.model)
        built = build_body(table, _values(call), call.capabilities, call.extra)
        if "strength" in built:
            raise UnsupportedParamsError(
                "strength applies to recraft's edits (image to image) only: remove it",
                param="strength",
            )
        body = {"model": call.deployment.model, **built}
        return await _send(
            call, http, "/images/generations", msgspec.json.encode(body), "application/json"
        )

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """The first input image reworked (`imageToImage`), or its masked area redrawn
        (`inpaint`)."""
        request = call.request
        if len(request.image) != 1:
            raise UnsupportedParamsError(
                f"recraft edits one input image; got {len(request.image)}: send only the "
                "image to change",
                param="image",
            )
        if request.size is not None:
            raise UnsupportedParamsError(
                "recraft's edits keep the input image's size, so they take no size: remove "
                "size (or resize the input image)",
                param="size",
            )
        image = request.image[0]
        values = _values(call)
        extra = dict(call.extra)
        if request.mask is None:
            path = "/images/imageToImage"
            extra.setdefault("strength", DEFAULT_STRENGTH)
        else:
            path = "/images/inpaint"
            if "strength" in extra:
                raise UnsupportedParamsError(
                    "recraft's inpainting redraws the masked area and takes no strength: "
                    "remove strength (or the mask, to rework the whole image)",
                    param="strength",
                )
        built = build_body(_table(call.deployment.model), values, call.capabilities, extra)
        fields: list[tuple[str, str | InputImage]] = [
            ("model", call.deployment.model),
            ("image", image),
        ]
        if request.mask is not None:
            fields.append(("mask", recraft_mask(request.mask, _image_size(image))))
        fields += [(name, _form_value(name, value)) for name, value in built.items()]
        body, content_type = await multipart_body(fields)
        return await _send(call, http, path, body, content_type)


_IMAGES = RecraftImages()

RECRAFT = Provider(
    name=_PROVIDER,
    translate_error=recraft_error,
    # Portkey's provider slug.
    aliases=("recraft-ai",),
    credentials=CredentialSpec(
        # LiteLLM's name first, then the one Recraft's own docs use.
        api_key_env=("RECRAFT_API_KEY", "RECRAFT_API_TOKEN"),
        api_base_env=("RECRAFT_API_BASE",),
        default_api_base="https://external.api.recraft.ai/v1",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    # The account and its credits: free, and it proves the key.
    health_probe=models_probe("/users/me"),
)
