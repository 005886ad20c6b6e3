"""Image generation on Google: Imagen through Vertex AI's `:predict`, and Gemini's image
models through `:generateContent` (on Vertex AI and on the Gemini API).

Each family's field table builds its body. Imagen makes up to four images a call
(`sampleCount`), and the images its safety filter withholds are left out of
`predictions` or come back with only a `raiFilteredReason`: they are reported in
`ImageResponse.filtered`. A Gemini image model makes one image a call; an answer with no
image and a safety finish reason is a refusal. Addresses, tokens and Google's errors are
`auth`'s business: the project, location and credentials never enter a body.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import ImageCapabilities
from prismgate.errors import (
    APIError,
    BadRequestError,
    ContentPolicyViolationError,
    unreadable_answer,
)
from prismgate.providers.base import (
    Convert,
    Field,
    FieldTable,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.providers.google.auth import generate
from prismgate.providers.image_rules import match_aspect_ratio
from prismgate.transport import Transport, UpstreamResponse, answer_cap, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse, ImageUsage
from prismgate.types.images import ImageUsageDetails

__all__ = [
    "GEMINI_IMAGE_FIELDS",
    "IMAGEN_4_FIELDS",
    "IMAGEN_FIELDS",
    "VERTEX_GEMINI_IMAGE_FIELDS",
    "GoogleImageGeneration",
    "gemini_image_families",
    "vertex_image_families",
]

# What each model takes when the catalog does not say (an uncatalogued model id).
_IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
_GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_RATIO_NOTE = "the aspect ratio of the size; within 2 % is reported as adjusted"
# OpenAI parameters a family may leave out of its table: refused, never dropped silently.
_CHOICES = ("quality", "style", "background", "moderation", "negative_prompt", "size",
            "output_format", "output_compression")  # fmt: skip
# Imagen writes to Cloud Storage instead of answering with the image: not an OpenAI answer.
_STORAGE = ("storageUri", "storage_uri")
# Finish reasons of a Gemini answer that withheld its image.
_REFUSALS = frozenset({
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE", "IMAGE_RECITATION",
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION",
})  # fmt: skip


def _ratio(default: tuple[str, ...]) -> Convert:
    def convert(size: str, capabilities: ImageCapabilities | None) -> str:
        ratios = capabilities.aspect_ratios if capabilities and capabilities.aspect_ratios else None
        return match_aspect_ratio(size, ratios or default)[0]

    return convert


def _mime(output_format: str, _: ImageCapabilities | None) -> str:
    return f"image/{output_format}"


def _instances(prompt: str, _: ImageCapabilities | None) -> list[dict[str, str]]:
    return [{"prompt": prompt}]


def _contents(prompt: str, _: ImageCapabilities | None) -> list[dict[str, Any]]:
    return [{"role": "user", "parts": [{"text": prompt}]}]


def _one_per_call(_n: int, _: ImageCapabilities | None) -> dict[str, Any]:
    return {}


_IMAGEN_EXTRAS: FieldTable = {
    "seed": Field("parameters.seed", note="Google ignores it unless add_watermark is false"),
    "person_generation": Field("parameters.personGeneration"),
    "safety_setting": Field("parameters.safetySetting"),
    "add_watermark": Field("parameters.addWatermark"),
    "enhance_prompt": Field("parameters.enhancePrompt"),
    "guidance_scale": Field("parameters.guidanceScale"),
    "language": Field("parameters.language"),
    "sample_image_size": Field("parameters.sampleImageSize"),
}

# Imagen 4: no negative prompt.
IMAGEN_4_FIELDS: FieldTable = {
    "prompt": Field("instances", _instances, note="sent as instances[0].prompt"),
    "n": Field("parameters.sampleCount", note="1 when unset (Imagen's own default is 4)"),
    "size": Field("parameters.aspectRatio", _ratio(_IMAGEN_RATIOS), note=_RATIO_NOTE),
    "output_format": Field("parameters.outputOptions.mimeType", _mime, note="as image/<format>"),
    "output_compression": Field("parameters.outputOptions.compressionQuality"),
    **_IMAGEN_EXTRAS,
}
IMAGEN_FIELDS: FieldTable = {
    **IMAGEN_4_FIELDS,
    "negative_prompt": Field("parameters.negativePrompt"),
}

_GEMINI_COMMON: FieldTable = {
    "prompt": Field("contents", _contents, note="sent as the text of one user turn"),
    "n": Field(None, _one_per_call, note="one image a call: the gateway makes n calls"),
    "size": Field(
        "generationConfig.imageConfig.aspectRatio", _ratio(_GEMINI_RATIOS), note=_RATIO_NOTE
    ),
    "image_size": Field("generationConfig.imageConfig.imageSize"),
    "seed": Field("generationConfig.seed"),
}
GEMINI_IMAGE_FIELDS: FieldTable = _GEMINI_COMMON
# Output format and people controls exist on Vertex only (the Gemini API refuses them).
VERTEX_GEMINI_IMAGE_FIELDS: FieldTable = {
    **_GEMINI_COMMON,
    "output_format": Field(
        "generationConfig.imageConfig.imageOutputOptions.mimeType", _mime, note="as image/<format>"
    ),
    "output_compression": Field(
        "generationConfig.imageConfig.imageOutputOptions.compressionQuality"
    ),
    "person_generation": Field("generationConfig.imageConfig.personGeneration"),
}


def vertex_image_families() -> tuple[ImageFamily, ...]:
    """The image models Vertex AI serves, and how each maps OpenAI's parameters."""
    imagen = ("imagen-3.0-generate-002", "imagen-3.0-generate-001", "imagen-3.0-fast-generate-001",
              "imagegeneration@006", "imagegeneration@005")  # fmt: skip
    imagen_4 = ("imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001",
                "imagen-4.0-fast-generate-001")  # fmt: skip
    return (
        ImageFamily("Imagen 3 / Imagen 2", tuple(f"vertex_ai/{m}" for m in imagen), IMAGEN_FIELDS),
        ImageFamily("Imagen 4", tuple(f"vertex_ai/{m}" for m in imagen_4), IMAGEN_4_FIELDS),
        ImageFamily(
            "Gemini image", ("vertex_ai/gemini-2.5-flash-image",), VERTEX_GEMINI_IMAGE_FIELDS
        ),
    )


def gemini_image_families() -> tuple[ImageFamily, ...]:
    """The image models the Gemini API serves (Gemini's own; Imagen is on Vertex AI)."""
    return (ImageFamily("Gemini image", ("gemini/gemini-2.5-flash-image",), GEMINI_IMAGE_FIELDS),)


def _is_gemini(model: str) -> bool:
    return model.removeprefix("models/").startswith("gemini-")


def _is_imagen(model: str) -> bool:
    return model.removeprefix("models/").startswith(("imagen-", "imagegeneration"))


# ---------------------------------------------------------------------------- answers


class _Prediction(msgspec.Struct, rename="camel"):
    bytes_base64_encoded: str | None = None
    mime_type: str | None = None
    rai_filtered_reason: str | None = None
    gcs_uri: str | None = None
    prompt: str | None = None


class _Predictions(msgspec.Struct):
    predictions: list[_Prediction] = msgspec.field(default_factory=list)


class _Blob(msgspec.Struct, rename="camel"):
    mime_type: str = ""
    data: str = ""


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    inline_data: _Blob | None = None
    thought: bool = False


class _Content(msgspec.Struct):
    parts: list[_Part] = msgspec.field(default_factory=list)


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content = msgspec.field(default_factory=_Content)
    finish_reason: str | None = None
    finish_message: str | None = None


class _Modality(msgspec.Struct, rename="camel"):
    modality: str = ""
    token_count: int = 0


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    total_token_count: int = 0
    prompt_tokens_details: list[_Modality] = msgspec.field(default_factory=list)
    candidates_tokens_details: list[_Modality] = msgspec.field(default_factory=list)


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class _Answer(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = msgspec.field(default_factory=list)
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None


def _decode(provider: str, answer: UpstreamResponse, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(answer.body, type=kind)
    except msgspec.DecodeError as exc:
        raise unreadable_answer(provider, answer.status, str(exc)) from None


def imagen_response(provider: str, answer: UpstreamResponse, asked: int) -> ImageResponse:
    """Imagen's `predictions` as OpenAI's answer: one image per prediction with bytes, one
    `filtered` reason per prediction with only a reason and per image left out."""
    predictions = _decode(provider, answer, _Predictions).predictions
    data: list[ImageObject] = []
    filtered: list[str] = []
    for prediction in predictions:
        if prediction.bytes_base64_encoded:
            data.append(ImageObject(b64_json=prediction.bytes_base64_encoded,
                                    revised_prompt=prediction.prompt))  # fmt: skip
        elif prediction.rai_filtered_reason:
            filtered.append(prediction.rai_filtered_reason)
        else:
            raise unreadable_answer(provider, answer.status, "a prediction came without an image")
    missing = asked - len(data) - len(filtered)
    filtered += ["withheld by Imagen's safety filter"] * max(missing, 0)
    response = ImageResponse(created=int(time.time()), data=data)
    response.filtered = tuple(filtered)
    return response


def _usage(meta: _UsageMetadata | None) -> ImageUsage | None:
    if meta is None:
        return None

    def by_modality(details: list[_Modality], extra_text: int = 0) -> ImageUsageDetails:
        counts = {d.modality: d.token_count for d in details}
        return ImageUsageDetails(text_tokens=counts.get("TEXT", 0) + extra_text,
                                 image_tokens=counts.get("IMAGE", 0))  # fmt: skip

    # Thinking tokens (Gemini 3 image models) are billed as text output.
    output = meta.candidates_token_count + meta.thoughts_token_count
    out_details = by_modality(meta.candidates_tokens_details, meta.thoughts_token_count)
    if not meta.candidates_tokens_details:  # no breakdown: all of it is the image
        out_details = ImageUsageDetails(text_tokens=meta.thoughts_token_count,
                                        image_tokens=meta.candidates_token_count)  # fmt: skip
    return ImageUsage(
        input_tokens=meta.prompt_token_count,
        output_tokens=output,
        total_tokens=meta.total_token_count or meta.prompt_token_count + output,
        input_tokens_details=by_modality(meta.prompt_tokens_details)
        if meta.prompt_tokens_details
        else None,
        output_tokens_details=out_details,
    )


def gemini_response(provider: str, sent: UpstreamResponse) -> ImageResponse:
    """The images of a `GenerateContentResponse` (thought images and text left out); no
    image with a safety reason is the provider's refusal."""
    answer = _decode(provider, sent, _Answer)
    data = [
        ImageObject(b64_json=part.inline_data.data)
        for candidate in answer.candidates
        for part in candidate.content.parts
        if part.inline_data is not None and part.inline_data.data and not part.thought
    ]
    if not data:
        raise _no_image(provider, answer)
    return ImageResponse(created=int(time.time()), data=data, usage=_usage(answer.usage_metadata))


def _no_image(provider: str, answer: _Answer) -> Exception:
    feedback = answer.prompt_feedback
    if feedback is not None and feedback.block_reason:
        said = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
        return ContentPolicyViolationError(
            f"{provider} blocked the prompt: {feedback.block_reason}{said}. Change the prompt "
            "and try again.",
            provider=provider,
            upstream_message=feedback.block_reason,
        )
    for candidate in answer.candidates:
        if candidate.finish_reason in _REFUSALS:
            said = f" ({candidate.finish_message})" if candidate.finish_message else ""
            return ContentPolicyViolationError(
                f"{provider} made no image: {candidate.finish_reason}{said}. Change the prompt "
                "and try again.",
                provider=provider,
                upstream_message=candidate.finish_reason,
            )
    reason = next((c.finish_reason for c in answer.candidates if c.finish_reason), "none")
    return APIError(
        f"{provider}'s model answered without an image (finish reason {reason}); try again, "
        "or make the prompt ask for a picture",
        provider=provider,
    )


# ---------------------------------------------------------------------------- requests


def _table(model: str, vertex: bool) -> FieldTable:
    if _is_gemini(model):
        return VERTEX_GEMINI_IMAGE_FIELDS if vertex else GEMINI_IMAGE_FIELDS
    return IMAGEN_4_FIELDS if "imagen-4" in model else IMAGEN_FIELDS


def _camel_aliases(table: FieldTable) -> dict[str, str]:
    """camelCase spelling → the table's name (`personGeneration` → `person_generation`),
    for the rows that pass their value unchanged."""
    return {
        rule.target.rsplit(".", 1)[-1]: name
        for name, rule in table.items()
        if rule.target and rule.convert is None and "_" in name
    }


def _values(call: ImageGenerationCall, table: FieldTable) -> dict[str, Any]:
    """The request's set fields; a choice the family has no field for is a 400."""
    values = msgspec.structs.asdict(call.request)
    for name in _CHOICES:
        if values.get(name) is not None and name not in table:
            raise BadRequestError(
                f"{call.deployment.model} does not support {name!r}. Remove it, or set "
                "drop_params=True to drop unsupported parameters.",
                param=name,
                code="unsupported_parameter",
            )
    return values


def _extra(call: ImageGenerationCall, table: FieldTable) -> dict[str, Any]:
    aliases = _camel_aliases(table)
    extra: dict[str, Any] = {}
    for key, value in call.extra.items():
        if key in _STORAGE or (key == "parameters" and isinstance(value, Mapping)
                               and any(k in _STORAGE for k in value)):  # fmt: skip
            raise BadRequestError(
                "storageUri is not supported: the gateway returns the images themselves "
                "(response_format b64_json or url)",
                param="storageUri",
            )
        extra[aliases.get(key, key)] = dict(value) if isinstance(value, Mapping) else value
    return extra


def imagen_body(call: ImageGenerationCall) -> dict[str, Any]:
    """The `:predict` body: the table's fields, `includeRaiReason` so withheld images come
    back with their reason, and one image when `n` is unset."""
    table = _table(call.deployment.model, vertex=True)
    values = _values(call, table)
    values["n"] = values.get("n") or 1
    body = _build(table, values, call)
    body.setdefault("parameters", {})["includeRaiReason"] = True
    return body


def gemini_body(call: ImageGenerationCall, *, vertex: bool) -> dict[str, Any]:
    """The `:generateContent` body: the prompt as one user turn, images only out."""
    table = _table(call.deployment.model, vertex)
    body = _build(table, _values(call, table), call)
    body.setdefault("generationConfig", {}).setdefault("responseModalities", ["IMAGE"])
    return body


def _build(
    table: FieldTable, values: Mapping[str, Any], call: ImageGenerationCall
) -> dict[str, Any]:
    """`build_body`, with provider objects the caller gave (`parameters`, ...) merged one
    level deep into the mapped ones rather than replacing them."""
    extra = _extra(call, table)
    objects = {k: v for k, v in extra.items() if isinstance(v, dict) and k not in table}
    body = build_body(table, values, call.capabilities,
                      {k: v for k, v in extra.items() if k not in objects})  # fmt: skip
    for key, value in objects.items():
        known = body.get(key)
        body[key] = known | value if isinstance(known, dict) else value
    return body


@dataclass(frozen=True, slots=True)
class GoogleImageGeneration:
    """Image generation on Vertex AI (Imagen and Gemini) or the Gemini API (Gemini only)."""

    provider: str
    vertex: bool
    families: tuple[ImageFamily, ...] = ()

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One `:predict` (Imagen) or `:generateContent` (Gemini) call."""
        model = call.deployment.model
        http = answer_cap(http, image_answer_bytes(call.request.n or 1))
        if _is_gemini(model):
            body = gemini_body(call, vertex=self.vertex)
            sent = await generate(call, self.provider, msgspec.json.encode(body), http,
                                  vertex=self.vertex)  # fmt: skip
            return gemini_response(self.provider, sent)
        if not self.vertex:  # the Gemini API's :predict (Imagen) is deprecated
            name = model.removeprefix("models/")
            where = (f"Imagen is served by Vertex AI: use vertex_ai/{name}, or"
                     if _is_imagen(model) else "use")  # fmt: skip
            raise BadRequestError(
                f"gemini/ makes images with Gemini image models only; {where} a Gemini image "
                "model such as gemini/gemini-2.5-flash-image",
                param="model",
                code="model_not_supported",
            )
        body = imagen_body(call)
        sent = await generate(call, self.provider, msgspec.json.encode(body), http,
                              vertex=self.vertex, method="predict")  # fmt: skip
        return imagen_response(self.provider, sent, body["parameters"]["sampleCount"])
