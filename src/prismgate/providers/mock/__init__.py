"""`mock/<name>`: a built-in, offline provider for quickstarts and client tests.

It draws real images (PNG, JPEG or WebP) of the requested size with the prompt written
on them; the same prompt, size, index and `seed` always give the same bytes. Asked to
chat, it describes the images it received, as the gateway delivered them. It is a
development provider: it never calls anything and costs nothing.

`mock/<name>` of a catalogued model (`mock/dall-e-3`, `mock/gpt-image-1`, `mock/gpt-4o`)
obeys that model's catalog entry, through the same checks as the real provider: its
sizes, images per call (`n` beyond them is fanned out), qualities, styles, prompt limit,
vision, edits and variations. Only what makes it a mock differs: it answers in base64
(the gateway delivers URLs, as it does for gpt-image) and it is free. Any other name
(`mock/anything`) is permissive: any size from 16 to 4096 pixels a side, up to 10 images.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import textwrap
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import Catalog, ImageCapabilities, ImagePricing, ModelInfo
from prismgate.errors import BadRequestError
from prismgate.media.images import ImageLimits, image_bytes_from_b64, parse_data_url
from prismgate.media.inputs import image_header
from prismgate.providers.base import (
    ChatCall,
    CredentialSpec,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    ImageVariationCall,
    Provider,
)
from prismgate.providers.image_rules import accepts, parse_size
from prismgate.providers.openai.wire import openai_errors
from prismgate.transport import Transport
from prismgate.types import IMAGE_GENERATION_PARAMS, ImageObject, ImageResponse, InputImage
from prismgate.types.chat import (
    ChatChoice,
    ChatChunk,
    ChatCompletion,
    ChatCompletionRequest,
    ChatUsage,
    ChunkChoice,
    ChunkDelta,
    ResponseMessage,
    TextPart,
)

MIN_SIDE, MAX_SIDE = 16, 4096
DEFAULT_SIZE = (1024, 1024)
MAX_SEED_DIGITS = 20
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_SAVE_OPTIONS: dict[str, dict[str, int]] = {
    "png": {"compress_level": 1},
    "jpeg": {"quality": 85},
    "webp": {"quality": 80},
}


def render_image(
    prompt: str,
    width: int,
    height: int,
    fmt: str,
    *,
    index: int = 0,
    seed: int = 0,
    transparent: bool = False,
) -> bytes:
    """A deterministic picture of `prompt`, `width`x`height`, encoded as `fmt`."""
    from PIL import Image, ImageDraw, ImageFont

    digest = hashlib.sha256(f"{seed}\0{index}\0{prompt}".encode()).digest()
    background = (digest[0], digest[1], digest[2], 0 if transparent else 255)
    ink = (255, 255, 255, 255) if sum(background[:3]) < 384 else (0, 0, 0, 255)
    image = Image.new("RGBA" if transparent else "RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for k in range(3):  # a few shapes, so images differ visibly, not only in colour
        x0, y0 = digest[4 + k] * width // 256, digest[8 + k] * height // 256
        x1, y1 = x0 + max(2, width // 4), y0 + max(2, height // 4)
        draw.ellipse((x0, y0, x1, y1), fill=(digest[12 + k], digest[16 + k], digest[20 + k], 255))
    font_size = max(8, min(width, height) // 14)
    font = ImageFont.load_default(size=font_size)
    columns = max(8, int(width / (font_size * 0.6)) - 2)
    text = textwrap.fill(prompt, width=columns, max_lines=max(1, height // (font_size * 2)))
    draw.multiline_text((font_size // 2, font_size // 2), text, fill=ink, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL_FORMATS[fmt], **_SAVE_OPTIONS[fmt])
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class MockImages:
    """Draws the images in a worker thread; honours n, size, output_format and background.
    Edits and variations are drawn the same way, at the first input image's size unless
    `size` says otherwise."""

    families: tuple[ImageFamily, ...] = ()

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Render `n` images for the call, without any network."""
        return await _draw(call, call.request.prompt, _default_size(call.capabilities))

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """Render `n` edited images: the prompt drawn at the input image's size."""
        return await _draw(call, call.request.prompt, _dimensions(call.request.image[0]))

    async def vary(self, call: ImageVariationCall, http: Transport) -> ImageResponse:
        """Render `n` variations at the input image's size."""
        return await _draw(call, "a variation", _dimensions(call.request.image))


def _default_size(capabilities: ImageCapabilities | None) -> tuple[int, int]:
    """The model's default size when it names one (`auto` is 1024x1024)."""
    size = capabilities.default_size if capabilities else None
    return parse_size(size) if size and size != "auto" else DEFAULT_SIZE


def _dimensions(image: InputImage) -> tuple[int, int]:
    header = image_header(image)
    return header.width, header.height


async def _draw(call: ImageCall[Any], prompt: str, default_size: tuple[int, int]) -> ImageResponse:
    request = call.request
    unknown = set(call.extra) - {"seed"}
    if unknown:
        raise BadRequestError(
            f"the mock provider has no parameter {sorted(unknown)[0]!r}; it takes: seed",
            param=sorted(unknown)[0],
            provider="mock",
        )
    # `auto` reaches the mock only for models that list it: their own default size.
    auto = request.size in (None, "auto")
    width, height = default_size if auto else parse_size(str(request.size))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise BadRequestError(
            f"mock images are {MIN_SIDE} to {MAX_SIDE} pixels a side; got {width}x{height}",
            param="size",
            code="invalid_value",
            provider="mock",
        )
    fmt = getattr(request, "output_format", None) or "png"
    seed = _seed(call.extra.get("seed", 0))
    transparent = getattr(request, "background", None) == "transparent"

    def render(index: int) -> str:
        image = render_image(
            prompt, width, height, fmt, index=index, seed=seed, transparent=transparent
        )
        return base64.b64encode(image).decode()

    def render_all() -> list[str]:
        return [render(index) for index in range(request.n or 1)]

    images = await asyncio.to_thread(render_all)
    revised = f"{prompt} (drawn by the prismgate mock provider)"
    data = [ImageObject(b64_json=image, revised_prompt=revised) for image in images]
    if not accepts(call.capabilities, "output_format"):
        # A model without gpt-image's fields (dall-e-3) does not answer with them either.
        return ImageResponse(created=int(time.time()), data=data)
    return ImageResponse(
        created=int(time.time()),
        data=data,
        size=f"{width}x{height}",
        output_format=fmt,
        quality=getattr(request, "quality", None) or "standard",
        background="transparent" if transparent else "opaque",
    )


def _seed(value: Any) -> int:
    """`seed`: a whole number (form fields send it as text)."""
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        value = int(value) if len(value) <= MAX_SEED_DIGITS else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(
            f"seed must be a whole number of at most {MAX_SEED_DIGITS} digits, for example 42",
            param="seed",
            code="invalid_value",
            provider="mock",
        )
    return value


def describe_images(request: ChatCompletionRequest) -> str:
    """What the mock model answers: the images it got, as the gateway delivered them."""
    seen: list[str] = []
    for message in request.messages:
        for part in message.image_parts():
            data_url = parse_data_url(part.image.url)
            if data_url is None:
                seen.append(f"a linked image ({part.image.url.split('?')[0]})")
                continue
            declared, payload = data_url
            # Read as every input image is: an unreadable one is the caller's 400.
            data = image_bytes_from_b64(payload)
            image = image_header(InputImage(data=data, media_type=declared), param="image_url")
            seen.append(f"{image.width}x{image.height} {declared}")
    last = next((m for m in reversed(request.messages) if m.role == "user"), request.messages[-1])
    said = (
        last.content
        if isinstance(last.content, str)
        else " ".join(p.text for p in last.content or () if isinstance(p, TextPart))
    )
    images = f"I see {len(seen)} image(s): {'; '.join(seen)}." if seen else "I see no image."
    return f"{images} You said: {said}"


@dataclass(frozen=True, slots=True)
class MockChat:
    """Answers by describing the images it received; streams word by word."""

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One deterministic answer."""
        text = await asyncio.to_thread(describe_images, call.request)
        prompt_tokens = sum(len(str(m.content).split()) for m in call.request.messages)
        return ChatCompletion(
            id=f"chatcmpl-mock-{hashlib.sha256(text.encode()).hexdigest()[:16]}",
            created=int(time.time()),
            model=call.deployment.model,
            choices=[
                ChatChoice(
                    index=0,
                    message=ResponseMessage(content=text),
                    finish_reason="stop",
                )
            ],
            usage=ChatUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=len(text.split()),
                total_tokens=prompt_tokens + len(text.split()),
            ),
        )

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """The same answer as OpenAI chunks, one word each, then usage and [DONE]."""
        answer = await self.complete(call, http)
        words = (answer.choices[0].message.content or "").split(" ")
        encode = msgspec.json.encode
        for index, word in enumerate(words):
            delta = ChunkDelta(role="assistant" if index == 0 else None,
                               content=word if index == 0 else " " + word)  # fmt: skip
            chunk = ChatChunk(
                id=answer.id, created=answer.created, model=answer.model,
                choices=[ChunkChoice(delta=delta)],
            )  # fmt: skip
            yield b"data: " + encode(chunk) + b"\n\n"
        last = ChatChunk(
            id=answer.id, created=answer.created, model=answer.model,
            choices=[ChunkChoice(finish_reason="stop")], usage=answer.usage,
        )  # fmt: skip
        yield b"data: " + encode(last) + b"\n\ndata: [DONE]\n\n"


# The mock's own answer to every image parameter (base64 only: the gateway converts).
_MOCK_IMAGE_PARAMS = (
    *(p for p in IMAGE_GENERATION_PARAMS if p != "response_format"),
    "input_fidelity",
)
_FREE_IMAGES = ImagePricing(per_image={"*": {"*": 0.0}})


def as_catalogued(model: str, catalog: Catalog) -> ModelInfo | None:
    """What `mock/<model>` is when `model` is catalogued (a bare name, or
    `provider/model`): the real model's entry, answering in base64 and free. None for
    other names, which get the permissive `default_info`."""
    real = catalog.lookup(model)
    if real is None:
        return None
    image = real.image
    if image is not None:
        image = msgspec.structs.replace(
            image,
            # The gateway fulfils response_format for base64-only models.
            params=tuple(p for p in image.params or _MOCK_IMAGE_PARAMS if p != "response_format"),
            response_formats=("b64_json",),
            pricing=_FREE_IMAGES,
        )
    return msgspec.structs.replace(
        real,
        provider="mock",
        image=image,
        input_cost_per_token=0.0,
        output_cost_per_token=0.0,
    )


MOCK = Provider(
    name="mock",
    translate_error=openai_errors("mock"),
    credentials=CredentialSpec(default_api_base="mock://local", key_required=False),
    image_generation=MockImages(),
    image_edit=MockImages(),
    image_variation=MockImages(),
    chat=MockChat(),
    image_limits=ImageLimits(
        media_types=frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"}),
        max_bytes=20 * 1024 * 1024,
        url_schemes=frozenset({"https", "http"}),  # links are only named, never fetched
    ),
    default_info=ModelInfo(
        provider="mock",
        mode="image_generation",
        supports_vision=True,
        # It never calls anything: its chat is free, like its images.
        input_cost_per_token=0.0,
        output_cost_per_token=0.0,
        image=ImageCapabilities(
            # Base64 only, like most providers: the gateway delivers URLs when asked.
            params=_MOCK_IMAGE_PARAMS,
            max_n=10,
            qualities=("auto", "standard", "hd", "low", "medium", "high"),
            styles=("vivid", "natural"),
            output_formats=("png", "jpeg", "webp"),
            backgrounds=("auto", "transparent", "opaque"),
            max_prompt_chars=32000,
            response_formats=("b64_json",),
            pricing=_FREE_IMAGES,
        ),
    ),
    describe_model=as_catalogued,
)

__all__ = ["MOCK", "as_catalogued", "describe_images", "render_image"]
