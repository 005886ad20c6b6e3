"""The OpenAI images wire, shared by every provider that speaks it (OpenAI, Azure, xAI,
self-hosted OpenAI-compatible servers). Each of those modules only declares data.

Generations are JSON; edits and variations are `multipart/form-data` with the input
images as files. The same field table builds both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from prismgate.errors import BadRequestError, PrismgateError, from_upstream, unreadable_answer
from prismgate.media.inputs import ImageHeader, image_header
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    Credentials,
    Deployment,
    Field,
    FieldTable,
    HealthProbe,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    ImageVariationCall,
    ProviderSettings,
    Setting,
    TranslateError,
    build_body,
)
from prismgate.providers.sse import read_events
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    image_answer_bytes,
    multipart_body,
    retry_after_seconds,
)
from prismgate.types import (
    IMAGE_GENERATION_PARAMS,
    ImageEditRequest,
    ImageObject,
    ImageResponse,
    ImageUsage,
    ImageVariationRequest,
    InputImage,
    PartialImage,
    image_params,
)

__all__ = [
    "DALL_E_2_INPUTS",
    "GPT_IMAGE_INPUTS",
    "GPT_IMAGE_MODELS",
    "OPENAI_IMAGE_FIELDS",
    "InputRules",
    "OpenAIImages",
    "OpenAISettings",
    "bearer",
    "check_inputs",
    "in_band_error",
    "input_rules",
    "models_probe",
    "openai_error",
    "openai_errors",
    "openai_families",
    "v1_url",
]

# OpenAI's own parameters (generations, edits, variations) reach an OpenAI-shaped API
# unchanged; each request type carries only its own.
OPENAI_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    **{
        name: Field(name)
        for name in (
            *IMAGE_GENERATION_PARAMS,
            *image_params(ImageEditRequest),
            *image_params(ImageVariationRequest),
        )
    },
}


GPT_IMAGE_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
# Free sizes within rules (multiples of 16, ...), the same fields otherwise.
GPT_IMAGE_2_MODELS = (
    "gpt-image-2",
    "gpt-image-2.5-sunburst",
    "gpt-image-2.5-flare",
    "gpt-image-2.6-sunburst",
    "gpt-image-2.6-flare",
)


def openai_families(
    prefix: str,
    *,
    gpt_image: tuple[str, ...] = GPT_IMAGE_MODELS,
    gpt_image_2: tuple[str, ...] = GPT_IMAGE_2_MODELS,
    variations: bool = True,
) -> tuple[ImageFamily, ...]:
    """OpenAI's image models as `prefix` serves them (OpenAI itself; Azure, which has
    fewer GPT image models and no variations route)."""
    newest = (
        ImageFamily(
            "GPT image 2",
            tuple(f"{prefix}/{m}" for m in gpt_image_2),
            OPENAI_IMAGE_FIELDS,
            operations=("edit",),
        ),
    )
    return (
        *(newest if gpt_image_2 else ()),
        ImageFamily(
            "GPT image",
            tuple(f"{prefix}/{m}" for m in gpt_image),
            OPENAI_IMAGE_FIELDS,
            operations=("edit",),
        ),
        ImageFamily("DALL·E 3", (f"{prefix}/dall-e-3",), OPENAI_IMAGE_FIELDS),
        ImageFamily(
            "DALL·E 2",
            (f"{prefix}/dall-e-2",),
            OPENAI_IMAGE_FIELDS,
            ("edit", "variation") if variations else ("edit",),
        ),
    )


UrlFor = Callable[[Credentials, Deployment, str], str]
HeadersFor = Callable[[Credentials, ProviderSettings], dict[str, str]]


class OpenAISettings(ProviderSettings, frozen=True, kw_only=True):
    """OpenAI's account header, for servers that speak OpenAI's wire with `bearer`."""

    organization: Annotated[str | None, Setting(portkey="openai_organization")] = None


def bearer(credentials: Credentials, settings: ProviderSettings) -> dict[str, str]:
    """`Authorization: Bearer <key>` (none for a keyless self-hosted server), and
    `OpenAI-Organization` when the deployment names one."""
    headers = {}
    if credentials.api_key:
        headers["Authorization"] = f"Bearer {credentials.api_key}"
    if isinstance(settings, OpenAISettings) and settings.organization:
        headers["OpenAI-Organization"] = settings.organization
    return headers


def models_probe(url: str = "/models", headers: HeadersFor = bearer) -> HealthProbe:
    """A health probe that lists models: free, and it proves the key and the host."""

    def probe(credentials: Credentials, settings: ProviderSettings) -> UpstreamRequest:
        return UpstreamRequest(
            method="GET",
            url=credentials.api_base + url,
            provider="health",
            headers=headers(credentials, settings),
            timeout=10.0,
        )

    return probe


def v1_url(credentials: Credentials, _deployment: Deployment, path: str) -> str:
    """`{api_base}{path}`: the URL of an OpenAI-style API."""
    return credentials.api_base + path


class _Skim(msgspec.Struct):
    """What cost and logs need from an images answer; each image stays raw bytes."""

    created: int
    data: list[msgspec.Raw] = msgspec.field(default_factory=list)
    usage: ImageUsage | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail | str | None = None


# Models that stream their images as events (OpenAI: GPT image models only).
STREAMING_MODEL_PREFIXES = ("gpt-image", "chatgpt-image")


class _StreamEvent(msgspec.Struct):
    type: str = ""
    b64_json: str | None = None
    partial_image_index: int | None = None
    created_at: int | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    usage: ImageUsage | None = None
    error: _ErrorDetail | str | None = None


_stream_event = msgspec.json.Decoder(_StreamEvent)


def _stream_error(
    provider: str, error: _ErrorDetail | str | None, redact: Redactor
) -> PrismgateError:
    """An `error` event: the stream's status was 200, so the error's own code decides."""
    detail = error if isinstance(error, _ErrorDetail) else _ErrorDetail(message=error)
    code = None if detail.code is None else str(detail.code)
    status = 400 if code in ("moderation_blocked", "content_policy_violation") else 500
    message = redact(detail.message or "the image stream ended with an error")
    return from_upstream(status, message, provider=provider, code=code, param=detail.param)


def _preview(event: _StreamEvent) -> PartialImage:
    assert event.b64_json is not None
    return PartialImage(
        b64_json=event.b64_json,
        partial_image_index=event.partial_image_index or 0,
        size=event.size,
        quality=event.quality,
        background=event.background,
        output_format=event.output_format,
    )


def _summed(usages: list[ImageUsage]) -> ImageUsage | None:
    """One usage for several completed images (each event counts its own)."""
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]
    return ImageUsage(
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        total_tokens=sum(u.total_tokens for u in usages),
    )


def _skimmed(body: bytes) -> ImageResponse:
    skim = msgspec.json.decode(body, type=_Skim)
    response = ImageResponse(
        created=skim.created,
        data=[ImageObject() for _ in skim.data],
        usage=skim.usage,
        background=skim.background,
        output_format=skim.output_format,
        quality=skim.quality,
        size=skim.size,
    )
    response.relayed_body = body
    return response


def openai_error(provider: str, response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Translate an OpenAI-shaped error answer, keeping its status, code and message."""
    detail = _ErrorDetail()
    try:
        envelope = msgspec.json.decode(response.body, type=_ErrorEnvelope)
        if isinstance(envelope.error, _ErrorDetail):
            detail = envelope.error
        elif isinstance(envelope.error, str):
            detail = _ErrorDetail(message=envelope.error)
    except msgspec.DecodeError:
        pass
    message = detail.message or response.body[:300].decode("utf-8", "replace") or "(empty body)"
    return from_upstream(
        response.status,
        redact(message),
        provider=provider,
        code=None if detail.code is None else str(detail.code),
        param=detail.param,
        retry_after=retry_after_seconds(response.headers),
    )


def in_band_error(
    provider: str, response: UpstreamResponse, redact: Redactor
) -> PrismgateError | None:
    """The error a 200 answer carries as `{"error": {...}}` instead of a result, or None.

    OpenRouter answers so once a model has started
    (https://openrouter.ai/docs/api/reference/errors-and-debugging.md); the error's
    numeric `code` is its status (502 when it has none).
    """
    try:
        error = msgspec.json.decode(response.body, type=_ErrorEnvelope).error
    except msgspec.DecodeError:
        return None
    if not isinstance(error, _ErrorDetail):
        return None
    code = str(error.code or "")
    status = int(code) if code.isdigit() and 400 <= int(code) < 600 else 502
    return openai_error(provider, UpstreamResponse(status, response.headers, response.body), redact)


def openai_errors(provider: str) -> TranslateError:
    """`openai_error` for one provider that speaks OpenAI's wire."""

    def translate(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
        return openai_error(provider, response, redact)

    return translate


@dataclass(frozen=True, slots=True)
class InputRules:
    """What OpenAI takes as input images for one model family (edits, variations)."""

    kinds: str  # what the files may be, for messages ("a square PNG under 4 MB")
    media_types: frozenset[str]
    max_bytes: int
    max_images: int
    square: bool = False
    # DALL·E 2 edits the transparent area of the image itself when no mask is given.
    alpha_without_mask: bool = False


_MB = 1024 * 1024
DALL_E_2_INPUTS = InputRules(
    "a square PNG under 4 MB",
    frozenset({"image/png"}),
    max_bytes=4 * _MB,
    max_images=1,
    square=True,
    alpha_without_mask=True,
)
GPT_IMAGE_INPUTS = InputRules(
    "PNG, WebP or JPEG files under 50 MB each",
    frozenset({"image/png", "image/webp", "image/jpeg"}),
    max_bytes=50 * _MB,
    max_images=16,
)
# A mask is a PNG under 4 MB of the first image's dimensions, for every model.
_MASK_MAX_BYTES = 4 * _MB


def input_rules(model: str) -> InputRules | None:
    """OpenAI's documented input rules for `model` (dated ids included), or None for a
    model it does not document (a self-hosted server decides for itself)."""
    name = model.rpartition("/")[2]
    if name.startswith("dall-e-2"):
        return DALL_E_2_INPUTS
    if name.startswith(("gpt-image", "chatgpt-image")):
        return GPT_IMAGE_INPUTS
    return None


def check_inputs(
    images: list[InputImage],
    mask: InputImage | None,
    rules: InputRules,
    model: str,
    *,
    edit: bool = True,
) -> None:
    """A 400 naming `image` or `mask` for input files `model` cannot take (`edit=False`
    for a variation, which has no area to edit)."""
    if not images:
        raise BadRequestError("image is required: send the image to edit", param="image")
    if len(images) > rules.max_images:
        raise BadRequestError(
            f"{model} takes at most {rules.max_images} input image"
            f"{'s' if rules.max_images > 1 else ''}; got {len(images)}. Send fewer images.",
            param="image",
            code="too_many_images",
        )
    first: ImageHeader | None = None
    for index, image in enumerate(images, start=1):
        which = "the image" if len(images) == 1 else f"image {index}"
        header = image_header(image, which=which)
        first = first or header
        wrong_type = header.media_type not in rules.media_types
        if wrong_type or len(image.data) >= rules.max_bytes:
            got = f"a {header.media_type.partition('/')[2].upper()} of {len(image.data)} bytes"
            raise BadRequestError(
                f"{which} is {got}; {model} takes {rules.kinds}. Convert or shrink it.",
                param="image",
                code="invalid_image",
            )
        if rules.square and header.width != header.height:
            raise BadRequestError(
                f"{which} is {header.width}x{header.height}; {model} takes a square image. "
                "Crop or pad it to a square.",
                param="image",
                code="invalid_image",
            )
    assert first is not None
    if mask is None:
        if edit and rules.alpha_without_mask and not first.alpha:
            raise BadRequestError(
                f"the image has no transparency, so {model} has nothing to edit: send a mask, "
                "or a PNG whose transparent pixels mark the area to change",
                param="mask",
                code="invalid_image",
            )
        return
    shape = image_header(mask, param="mask", which="the mask")
    if shape.media_type != "image/png" or len(mask.data) >= _MASK_MAX_BYTES:
        raise BadRequestError(
            "the mask must be a PNG under 4 MB; convert or shrink it",
            param="mask",
            code="invalid_image",
        )
    if (shape.width, shape.height) != (first.width, first.height):
        raise BadRequestError(
            f"the mask is {shape.width}x{shape.height} but the image is "
            f"{first.width}x{first.height}; send a mask of the same dimensions",
            param="mask",
            code="invalid_image",
        )


def _form_fields(name: str, value: Any) -> list[tuple[str, str]]:
    """One body value as form fields, as OpenAI's SDK sends them: booleans as
    `true`/`false`, objects as `name[key]`, arrays as `name[]`."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [(name, "true" if value else "false")]
    if isinstance(value, Mapping):
        return [
            part for key, item in value.items() for part in _form_fields(f"{name}[{key}]", item)
        ]
    if isinstance(value, (list, tuple)):
        return [part for item in value for part in _form_fields(f"{name}[]", item)]
    return [(name, str(value))]


@dataclass(frozen=True, slots=True)
class OpenAIImages:
    """OpenAI's images API: `POST …/images/generations` (JSON), `…/images/edits` and
    `…/images/variations` (multipart); every answer is OpenAI's ImagesResponse.

    One object serves a provider's generation, edit and variation slots. Unknown answer
    fields (Azure's content filter annotations, say) are dropped by decoding into
    `ImageResponse`.
    """

    provider: str
    fields: FieldTable = field(default_factory=lambda: OPENAI_IMAGE_FIELDS)
    families: tuple[ImageFamily, ...] = ()
    url: UrlFor = v1_url
    headers: HeadersFor = bearer
    model_in_body: Callable[[Credentials], bool] = lambda _credentials: True
    # Whether this provider's answers are plain OpenAI (nothing to strip), so they can be
    # relayed without decoding the images.
    relayable: bool = True

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Build, send and decode one OpenAI-shaped image generation call."""
        body = msgspec.json.encode(self.body(call))
        return await self._send(call, http, "/images/generations", body, "application/json")

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """`…/images/edits`: the input images as `image` (one) or `image[]` (several, as
        OpenAI's SDK names them), the optional `mask`, and the mapped fields."""
        request = call.request
        if rules := input_rules(self._model(call)):
            check_inputs(request.image, request.mask, rules, self._model(call))
        name = "image" if len(request.image) == 1 else "image[]"
        files: list[tuple[str, str | InputImage]] = [(name, image) for image in request.image]
        if request.mask is not None:
            files.append(("mask", request.mask))
        return await self._send_form(call, http, "/images/edits", files)

    async def vary(self, call: ImageVariationCall, http: Transport) -> ImageResponse:
        """`…/images/variations`: one input image and the mapped fields."""
        image = call.request.image
        if rules := input_rules(self._model(call)):
            check_inputs([image], None, rules, self._model(call), edit=False)
        return await self._send_form(call, http, "/images/variations", [("image", image)])

    def body(self, call: ImageCall[Any]) -> dict[str, Any]:
        """The body for `call`: mapped OpenAI fields, then provider extras as given.
        Input files (`image`, `mask`) are not part of it."""
        values = {
            name: value
            for name, value in msgspec.structs.asdict(call.request).items()
            if name not in ("image", "mask")
        }
        body: dict[str, Any] = {}
        if self.model_in_body(call.credentials):
            body["model"] = call.deployment.model
        body.update(build_body(self.fields, values, call.capabilities, call.extra))
        if self._streams(call):
            body.update(stream=True, partial_images=call.partial_images)
        return body

    def _stream_event(self, data: bytes, status: int, redact: Redactor) -> _StreamEvent:
        """One event of an image stream; an `error` event raises."""
        try:
            event = _stream_event.decode(data)
        except msgspec.DecodeError as exc:
            raise unreadable_answer(
                self.provider, status, f"not an image stream event ({exc})"
            ) from exc
        if event.error is not None or event.type == "error":
            raise _stream_error(self.provider, event.error, redact)
        return event

    def _streams(self, call: ImageCall[Any]) -> bool:
        """Whether to ask for the answer as events: the caller wants previews, and the
        model makes them (GPT image models do; DALL·E does not)."""
        wanted = call.on_partial is not None and call.partial_images > 0
        return wanted and self._model(call).startswith(STREAMING_MODEL_PREFIXES)

    @staticmethod
    def _model(call: ImageCall[Any]) -> str:
        # An Azure deployment may be named anything; its base_model names the model.
        info = call.deployment.info
        return info.base_model if info and info.base_model else call.deployment.model

    async def _send_form(
        self,
        call: ImageCall[Any],
        http: Transport,
        path: str,
        files: list[tuple[str, str | InputImage]],
    ) -> ImageResponse:
        fields: list[tuple[str, str | InputImage]] = [
            part for name, value in self.body(call).items() for part in _form_fields(name, value)
        ]
        body, content_type = await multipart_body([*fields, *files])
        return await self._send(call, http, path, body, content_type)

    async def _send(
        self, call: ImageCall[Any], http: Transport, path: str, body: bytes, content_type: str
    ) -> ImageResponse:
        request = UpstreamRequest(
            method="POST",
            url=self.url(call.credentials, call.deployment, path),
            provider=self.provider,
            headers={
                **self.headers(call.credentials, call.settings),
                "Content-Type": content_type,
            },
            body=body,
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
            # A stream carries the previews besides the images.
            max_answer_bytes=image_answer_bytes((call.request.n or 1) * (1 + call.partial_images)),
        )
        if self._streams(call):
            return await self._streamed(call, http, request)
        response = await http.send(request)
        if response.status >= 400:
            raise openai_error(self.provider, response, call.redact)
        try:
            if call.relay and self.relayable:
                return _skimmed(response.body)
            return msgspec.json.decode(response.body, type=ImageResponse)
        except msgspec.DecodeError as exc:
            raise unreadable_answer(
                self.provider, response.status, f"not an OpenAI images response ({exc})"
            ) from exc

    async def _streamed(
        self, call: ImageCall[Any], http: Transport, request: UpstreamRequest
    ) -> ImageResponse:
        """The answer as events: each preview handed to `call.on_partial` as it arrives,
        the completed images gathered into one ImagesResponse (usage summed)."""
        assert call.on_partial is not None  # _streams said so
        async with http.stream(request) as upstream:
            if upstream.status >= 400:
                failed = UpstreamResponse(upstream.status, upstream.headers, await upstream.read())
                raise openai_error(self.provider, failed, call.redact)
            done: list[_StreamEvent] = []
            relayed = False
            try:
                async for event in read_events(upstream.chunks()):
                    data = self._stream_event(event.data, upstream.status, call.redact)
                    if data.type.endswith(".partial_image") and data.b64_json:
                        call.on_partial(_preview(data))
                        relayed = True
                    elif data.type.endswith(".completed") and data.b64_json:
                        done.append(data)
            except PrismgateError as error:
                # Previews have reached the caller, and the images are billed: a retry
                # would make them again.
                error.request_sent = error.request_sent or relayed
                raise
        if not done:
            raise unreadable_answer(self.provider, upstream.status, "a stream with no image")
        last = done[-1]
        return ImageResponse(
            created=last.created_at or int(time.time()),
            data=[ImageObject(b64_json=event.b64_json) for event in done],
            usage=_summed([event.usage for event in done if event.usage is not None]),
            background=last.background,
            output_format=last.output_format,
            quality=last.quality,
            size=last.size,
        )
