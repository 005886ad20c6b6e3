"""Wire rules of Gemini ``generateContent`` on Vertex AI and on the Gemini API.

Body validation follows proto-JSON (camelCase or snake_case field names; unknown
names are rejected; a part sets exactly one ``data`` field), the answers and stream
chunks are ``GenerateContentResponse`` objects, and errors use Google's
``{"error": {code, message, status, details}}``. Image output (Gemini image models'
``responseModalities``/``imageConfig``, and Imagen's ``:predict`` body) is checked and
answered at the end of the module, with safety outcomes on demand. Nothing in this module
does I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from .images import make_image
from .vision import (
    Reply,
    SeenImage,
    UnreadableImage,
    chunks,
    count_tokens,
    decode_base64,
    finish,
    matches,
    reply_text,
)

JsonObject = dict[str, Any]
Face = Literal["vertex", "gemini"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
OTHER_TYPES = ("application/pdf", "text/plain")
MEDIA_RESOLUTIONS = (
    "MEDIA_RESOLUTION_UNSPECIFIED",
    "MEDIA_RESOLUTION_LOW",
    "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
)
VERTEX_MAX_INLINE_IMAGE = 7 * 1024 * 1024
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_TROUBLESHOOTING = "https://developers.generativeai.google/guide/troubleshooting"
_STATUS_MESSAGES: dict[tuple[int, Face], str] = {
    (429, "gemini"): "You exceeded your current quota, please check your plan and billing "
    "details. For more information on this error, head to: "
    "https://ai.google.dev/gemini-api/docs/rate-limits.",
    (429, "vertex"): "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
    (
        500,
        "gemini",
    ): f"An internal error has occurred. Please retry or report in {_TROUBLESHOOTING}",
    (500, "vertex"): "Internal error encountered.",
    (503, "gemini"): "The model is overloaded. Please try again later.",
    (503, "vertex"): "The service is currently unavailable.",
    (504, "gemini"): "Deadline expired before operation could complete.",
    (504, "vertex"): "Deadline expired before operation could complete.",
}
_TOP_LEVEL = {
    "contents", "systemInstruction", "generationConfig", "safetySettings", "tools",
    "toolConfig", "cachedContent",
}  # fmt: skip
_GENERATION_FIELDS = {
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
    "responseJsonSchema", "responseModalities", "seed", "responseLogprobs", "logprobs",
    "mediaResolution", "speechConfig", "thinkingConfig", "imageConfig", "audioTimestamp",
    "enableEnhancedCivicAnswers", "routingConfig",
}  # fmt: skip
_DATA_FIELDS = (
    "text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
    "codeExecutionResult",
)  # fmt: skip
_PART_EXTRAS = {"thought", "thoughtSignature", "videoMetadata", "mediaResolution", "partMetadata"}


class GoogleError(Exception):
    def __init__(self, code: int, message: str, details: list[JsonObject] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    @property
    def status(self) -> str:
        return _STATUS_NAMES.get(self.code, "UNKNOWN")

    def body(self) -> JsonObject:
        error: JsonObject = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str) -> GoogleError:
    return GoogleError(400, message)


def unknown_name(name: str, where: str | None) -> GoogleError:
    at = f" at '{where}'" if where else ""
    message = f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    violation = {"field": where or "", "description": message}
    details = [
        {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
    ]
    return GoogleError(400, message, details)


def injected_error(
    code: int, face: Face, message: str | None = None, retry_after: float | None = None
) -> GoogleError:
    """The error Google sends with ``code`` when it fails on its own accord."""
    if message is None:
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        message = _STATUS_MESSAGES.get((code, face), phrase + ".")
    details: list[JsonObject] = []
    if retry_after is not None:
        delay = f"{retry_after:g}s"
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return GoogleError(code, message, details)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _fields(obj: JsonObject, known: set[str] | tuple[str, ...], where: str | None) -> JsonObject:
    """``obj`` with snake_case names mapped to camelCase; unknown names rejected."""
    by_snake = {snake(name): name for name in known}
    out: JsonObject = {}
    for key, value in obj.items():
        name = key if key in known else by_snake.get(key)
        if name is None:
            raise unknown_name(key, where)
        out[name] = value
    return out


def parse_body(raw: bytes) -> JsonObject:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise invalid(f"Invalid JSON payload received. {error}") from None
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    return body


# ---------------------------------------------------------------------------- validation


@dataclass(slots=True)
class Conversation:
    images: list[SeenImage] = field(default_factory=list)
    said: str = ""
    text_tokens: int = 0
    image_tokens: int = 0
    max_tokens: int | None = None
    stop_sequences: list[str] = field(default_factory=list)
    media_resolution: str | None = None
    # Image output (Gemini image models).
    modalities: list[str] = field(default_factory=lambda: ["TEXT"])
    aspect_ratio: str = "1:1"
    image_size: str = "1K"
    image_format: str = "png"
    image_quality: int | None = None
    seed: int | None = None


def image_tokens(model: str, width: int | None, height: int | None, resolution: str | None) -> int:
    """Gemini's per-image cost: fixed per media resolution, else 258 per 768x768 tile."""
    if model.startswith("gemini-3"):
        fixed = {"MEDIA_RESOLUTION_LOW": 280, "MEDIA_RESOLUTION_MEDIUM": 560}
        return fixed.get(resolution or "", 1120)
    fixed = {"MEDIA_RESOLUTION_LOW": 64, "MEDIA_RESOLUTION_MEDIUM": 256}
    if resolution in fixed:
        return fixed[resolution]
    if width is None or height is None or max(width, height) <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def validate(body: JsonObject, *, face: Face, model: str) -> Conversation:
    """Raise the first :class:`GoogleError` the real API would give for ``body``."""
    fields = _fields(body, _TOP_LEVEL, None)
    conv = Conversation()
    if is_gemini_image(model):
        conv.modalities = ["TEXT", "IMAGE"]
    _check_generation(fields.get("generationConfig"), conv, face, model)
    contents = fields.get("contents")
    if not contents:
        if face == "gemini":
            raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
        raise invalid("Unable to submit request because it has an empty contents field.")
    if not isinstance(contents, list):
        raise invalid(f"Invalid value at 'contents' (type.googleapis.com/Content), {contents}")
    for index, content in enumerate(contents):
        texts = _check_content(f"contents[{index}]", content, conv, face, model)
        conv.text_tokens += sum(count_tokens(text) for text in texts)
        role = content.get("role") or "user"
        if role == "user":
            conv.said = " ".join(texts)
    system = fields.get("systemInstruction")
    if system is not None:
        texts = _check_content("system_instruction", system, conv, face, model, system=True)
        conv.text_tokens += sum(count_tokens(text) for text in texts)
    return conv


def _check_content(
    where: str, content: object, conv: Conversation, face: Face, model: str, system: bool = False
) -> list[str]:
    if not isinstance(content, dict):
        raise invalid(f"Invalid value at '{where}' (type.googleapis.com/Content), {content}")
    fields = _fields(content, {"role", "parts"}, where)
    role = fields.get("role")
    if not system and role not in (None, "", "user", "model"):
        raise invalid("Please use a valid role: user, model.")
    parts = fields.get("parts")
    if not parts:
        raise invalid(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
        )
    if not isinstance(parts, list):
        raise invalid(f"Invalid value at '{where}.parts' (type.googleapis.com/Part), {parts}")
    texts: list[str] = []
    for index, part in enumerate(parts):
        part_where = f"{where}.parts[{index}]"
        if not isinstance(part, dict):
            raise invalid(f"Invalid value at '{part_where}' (type.googleapis.com/Part), {part}")
        fields = _fields(part, (*_DATA_FIELDS, *_PART_EXTRAS), part_where)
        data = [name for name in _DATA_FIELDS if name in fields and fields[name] not in ("", None)]
        if not data:
            raise invalid(
                f"* GenerateContentRequest.{part_where}.data: required oneof field 'data' must "
                "have one initialized field\n"
            )
        if len(data) > 1:
            raise invalid(
                "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set "
                f"'{data[1]}'"
            )
        value = fields[data[0]]
        if data[0] == "text":
            if not isinstance(value, str):
                raise invalid(f"Invalid value at '{part_where}.text' (TYPE_STRING), {value}")
            texts.append(value)
        elif data[0] == "inlineData":
            _check_inline(f"{part_where}.inline_data", value, conv, face, model)
        elif data[0] == "fileData":
            _check_file(f"{part_where}.file_data", value, conv, face, model)
    return texts


def _mime(where: str, value: JsonObject) -> str:
    mime = value.get("mimeType")
    if not mime:
        raise invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is not specified\n")
    if not isinstance(mime, str):
        raise invalid(f"Invalid value at '{where}.mime_type' (TYPE_STRING), {mime}")
    if mime not in IMAGE_TYPES + OTHER_TYPES and not mime.startswith(("audio/", "video/")):
        raise invalid(f"Unsupported MIME type: {mime}")
    return mime


def _check_inline(where: str, value: object, conv: Conversation, face: Face, model: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{where}' (type.googleapis.com/Blob), {value}")
    fields = _fields(value, {"mimeType", "data", "displayName"}, where)
    mime = _mime(where, fields)
    text = fields.get("data")
    data = decode_base64(text, urlsafe=True) if isinstance(text, str) else None
    if data is None:
        shown = text if not isinstance(text, str) or len(text) < 40 else text[:40] + "..."
        raise invalid(
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
        )
    if not data:
        raise invalid(f"* GenerateContentRequest.{where}.data: data is empty\n")
    if not (mime in IMAGE_TYPES or mime == "application/pdf"):
        return
    bad = (
        f"Unable to process input image. Please retry or report in {_TROUBLESHOOTING}"
        if face == "gemini"
        else "Provided image is not valid."
    )
    if not matches(mime, data):
        raise invalid(bad)
    if mime == "application/pdf":
        return
    if face == "vertex" and len(data) > VERTEX_MAX_INLINE_IMAGE:
        raise invalid(
            f"Inline image is too large: {len(data)} bytes > {VERTEX_MAX_INLINE_IMAGE} bytes."
        )
    if mime in ("image/heic", "image/heif"):  # Pillow cannot read HEIF headers
        seen = SeenImage(mime, size=len(data), uri="inline HEIF data")
    else:
        try:
            seen = SeenImage.from_bytes(mime, data)
        except UnreadableImage:
            raise invalid(bad) from None
    conv.images.append(seen)
    conv.image_tokens += image_tokens(model, seen.width, seen.height, conv.media_resolution)


def _check_file(where: str, value: object, conv: Conversation, face: Face, model: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{where}' (type.googleapis.com/FileData), {value}")
    fields = _fields(value, {"mimeType", "fileUri", "displayName"}, where)
    mime = _mime(where, fields)
    uri = fields.get("fileUri")
    if not isinstance(uri, str) or not uri:
        raise invalid(f"* GenerateContentRequest.{where}.file_uri: file_uri is not specified\n")
    allowed = ("gs://", "https://") if face == "vertex" else ("https://",)
    if not uri.startswith(allowed):
        raise invalid(f"Unsupported file uri: {uri}")
    conv.images.append(SeenImage(mime, uri=uri))
    conv.image_tokens += image_tokens(model, None, None, conv.media_resolution)


def _number(where: str, value: object, low: float, high: float | None, *, integer: bool) -> None:
    ok = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
    if not ok:
        kind = "TYPE_INT32" if integer else "TYPE_FLOAT"
        raise invalid(f"Invalid value at 'generation_config.{where}' ({kind}), {value}")
    assert isinstance(value, int | float)
    if value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise invalid(
            f"* GenerateContentRequest.generation_config.{where}: {where} must be in the range "
            f"{bounds}\n"
        )


def _check_generation(config: object, conv: Conversation, face: Face, model: str) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise invalid(
            f"Invalid value at 'generation_config' (type.googleapis.com/GenerationConfig), {config}"
        )
    fields = _fields(config, _GENERATION_FIELDS, "generation_config")
    for name, value in fields.items():
        where = snake(name)
        if name == "temperature":
            _number(where, value, 0.0, 2.0, integer=False)
        elif name == "topP":
            _number(where, value, 0.0, 1.0, integer=False)
        elif name in ("topK", "candidateCount"):
            _number(where, value, 1, None, integer=True)
        elif name == "maxOutputTokens":
            _number(where, value, 1, None, integer=True)
            conv.max_tokens = value
        elif name == "stopSequences":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise invalid(
                    f"Invalid value at 'generation_config.{where}' (TYPE_STRING), {value}"
                )
            if len(value) > 5:
                raise invalid(
                    "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop "
                    "sequences are allowed\n"
                )
            conv.stop_sequences = list(value)
        elif name == "mediaResolution":
            if value not in MEDIA_RESOLUTIONS:
                raise invalid(
                    "Invalid value at 'generation_config.media_resolution' (type.googleapis.com/"
                    "google.ai.generativelanguage.v1beta.GenerationConfig.MediaResolution), "
                    f'"{value}"'
                )
            conv.media_resolution = value
        elif name == "seed" and isinstance(value, int):
            conv.seed = value
        elif name == "responseModalities":
            check_modalities(value, conv, model)
        elif name == "imageConfig":
            _check_image_config(value, conv, face)


# ---------------------------------------------------------------------------- answers

_FINISH = {"end": "STOP", "stop_sequence": "STOP", "max_tokens": "MAX_TOKENS"}


def answer(conv: Conversation) -> Reply:
    text = reply_text(conv.images, conv.said)
    return finish(text, max_tokens=conv.max_tokens, stop_sequences=conv.stop_sequences)


def usage(conv: Conversation, reply: Reply | None, face: Face) -> JsonObject:
    prompt = conv.text_tokens + conv.image_tokens
    details = [{"modality": "TEXT", "tokenCount": conv.text_tokens}]
    if conv.image_tokens:
        details.append({"modality": "IMAGE", "tokenCount": conv.image_tokens})
    meta: JsonObject = {"promptTokenCount": prompt}
    if reply is not None:
        meta["candidatesTokenCount"] = reply.output_tokens
    meta["totalTokenCount"] = prompt + (reply.output_tokens if reply is not None else 0)
    meta["promptTokensDetails"] = details
    if face == "vertex":
        meta["trafficType"] = "ON_DEMAND"
    return meta


def response_chunks(
    conv: Conversation, reply: Reply, *, face: Face, model: str, response_id: str, stream: bool
) -> list[JsonObject]:
    """The whole answer (one object), or its stream chunks; the last carries finishReason."""
    pieces = chunks(reply.text) if stream else [reply.text]
    out: list[JsonObject] = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        candidate: JsonObject = {"content": {"role": "model", "parts": [{"text": piece}]}}
        if last:
            candidate["finishReason"] = _FINISH[reply.stopped_by]
        candidate["index"] = 0
        chunk: JsonObject = {
            "candidates": [candidate],
            "usageMetadata": usage(conv, reply if last else None, face),
            "modelVersion": model,
            "responseId": response_id,
        }
        if face == "vertex":
            chunk["createTime"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append(chunk)
    return out


# ---------------------------------------------------------------------------- image output
#
# Safety outcomes on demand, by a word in the prompt:
#   FILTER_ME    every image is withheld (Imagen: left out, or only a raiFilteredReason when
#                includeRaiReason is true; Gemini: finishReason IMAGE_SAFETY, no content)
#   FILTER_SOME  one image of an Imagen call is withheld (the others are made)
#   BLOCK_PROMPT the prompt itself is refused (Imagen: a 400; Gemini: promptFeedback)
#   TEXT_ONLY    a Gemini image model answers with text and no image (finishReason STOP)

FILTER_ALL, FILTER_ONE, BLOCK_PROMPT, TEXT_ONLY = (
    "FILTER_ME",
    "FILTER_SOME",
    "BLOCK_PROMPT",
    "TEXT_ONLY",
)
RAI_REASON = (
    "Your current safety filter threshold filtered out 1 generated image. You will not be "
    "charged for blocked images. Try rephrasing the prompt. Support codes: 58061214"
)
PROMPT_REFUSED = (
    "Image generation failed with the following error: The prompt could not be submitted. "
    "This prompt contains sensitive words that violate Google's Responsible AI practices. Try "
    "rephrasing the prompt. If you think this was an error, send feedback. Support codes: 42876398"
)
GEMINI_ON_PREDICT = (
    "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow "
    "https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/quickstart-multimodal "
    "for Gemini usage."
)
IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
# Imagen 2/3/4 at 1K; Imagen 4 doubles both sides at sampleImageSize 2K.
IMAGEN_SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
                "9:16": (768, 1408), "16:9": (1408, 768)}  # fmt: skip
GEMINI_SIZES = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
GEMINI_IMAGE_SIZES = {"1K": 1, "2K": 2, "4K": 4}
_PREDICT_TOP = {"instances", "parameters", "labels"}
_IMAGEN_PARAMETERS = {
    "sampleCount", "aspectRatio", "negativePrompt", "seed", "guidanceScale", "personGeneration",
    "safetySetting", "addWatermark", "includeRaiReason", "includeSafetyAttributes", "language",
    "enhancePrompt", "sampleImageSize", "storageUri", "outputOptions",
}  # fmt: skip
_PERSON = ("dont_allow", "allow_adult", "allow_all")
_SAFETY = ("block_low_and_above", "block_medium_and_above", "block_only_high", "block_none",
           "block_most", "block_some", "block_few", "block_fewest")  # fmt: skip
_LANGUAGES = ("auto", "en", "ja", "ko", "hi", "zh", "pt", "es")
_MODALITIES = ("TEXT", "IMAGE", "AUDIO")
_IMAGE_CONFIG = {"aspectRatio", "imageSize"}
_VERTEX_IMAGE_CONFIG = {"personGeneration", "prominentPeople", "imageOutputOptions"}


def is_imagen(model: str) -> bool:
    return model.startswith(("imagen-", "imagegeneration@"))


def is_gemini_image(model: str) -> bool:
    return model.startswith("gemini-") and "image" in model


@dataclass(slots=True)
class ImagenJob:
    """What one valid ``:predict`` call asks for."""

    prompt: str
    count: int = 4  # Imagen's own default
    ratio: str = "1:1"
    fmt: str = "png"
    quality: int | None = None
    seed: int | None = None
    include_reason: bool = False
    enhance: bool = False
    scale: int = 1


def _enum(where: str, value: object, allowed: tuple[str, ...], *, fold: bool = False) -> str:
    text = value.lower() if fold and isinstance(value, str) else value
    if not isinstance(text, str) or text not in allowed:
        raise invalid(f"Invalid {where}: {value!r}. Supported values: {', '.join(allowed)}.")
    return text


def validate_predict(body: JsonObject, model: str) -> ImagenJob:
    """Raise the first :class:`GoogleError` Vertex gives for an Imagen ``:predict`` body."""
    if is_gemini_image(model) or model.startswith("gemini-"):
        raise GoogleError(400, GEMINI_ON_PREDICT)
    for key in body:
        if key not in _PREDICT_TOP:
            raise unknown_name(key, None)
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise invalid("Exactly one instance is supported per request.")
    prompt = instances[0].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("Image generation failed with the following error: prompt is required.")
    job = ImagenJob(prompt=prompt)
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid(f"Invalid value at 'parameters', {parameters}")
    imagen_4 = model.startswith("imagen-4")
    for name, value in parameters.items():
        if name not in _IMAGEN_PARAMETERS:
            raise invalid(f"Image generation failed with the following error: unsupported "
                          f"parameter '{name}'.")  # fmt: skip
        _imagen_parameter(job, name, value, model, imagen_4)
    return job


def _imagen_parameter(job: ImagenJob, name: str, value: Any, model: str, imagen_4: bool) -> None:
    most = 1 if "ultra" in model else 4
    if name == "sampleCount":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise invalid(f"Image generation failed with the following error: sampleCount must "
                          f"be between 1 and {most}, got {value!r}.")  # fmt: skip
        job.count = value
    elif name == "aspectRatio":
        job.ratio = _enum("aspectRatio", value, IMAGEN_RATIOS)
    elif name == "negativePrompt":
        if imagen_4:
            raise invalid("Negative prompts are not supported by this model.")
        if not isinstance(value, str):
            raise invalid(f"Invalid negativePrompt: {value!r}")
    elif name == "seed":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2**31 - 1:
            raise invalid(f"Invalid seed: {value!r}. It must be between 1 and 2147483647.")
        job.seed = value
    elif name == "personGeneration":
        _enum("personGeneration", value, _PERSON, fold=True)
    elif name == "safetySetting":
        _enum("safetySetting", value, _SAFETY, fold=True)
    elif name == "language":
        _enum("language", value, _LANGUAGES)
    elif name in ("addWatermark", "includeRaiReason", "includeSafetyAttributes", "enhancePrompt"):
        if not isinstance(value, bool):
            raise invalid(f"Invalid {name}: {value!r}. It must be a boolean.")
        job.include_reason = value if name == "includeRaiReason" else job.include_reason
        job.enhance = value if name == "enhancePrompt" else job.enhance
    elif name == "guidanceScale":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise invalid(f"Invalid guidanceScale: {value!r}")
    elif name == "sampleImageSize":
        sizes = ("1K", "2K") if imagen_4 else ()
        if value not in sizes:
            raise invalid(f"Invalid sampleImageSize: {value!r}. Supported values: "
                          f"{', '.join(sizes) or 'none for this model'}.")  # fmt: skip
        job.scale = 2 if value == "2K" else 1
    elif name == "outputOptions":
        _output_options("outputOptions", value, job)
    elif name == "storageUri" and not (isinstance(value, str) and value.startswith("gs://")):
        raise invalid(f"Invalid storageUri: {value!r}")


def _output_options(where: str, value: object, job: ImagenJob) -> None:
    if not isinstance(value, dict):
        raise invalid(f"Invalid {where}: {value!r}")
    for key, option in value.items():
        if key == "mimeType":
            job.fmt = _enum(f"{where}.mimeType", option, ("image/png", "image/jpeg"))[6:]
        elif key == "compressionQuality":
            if not isinstance(option, int) or isinstance(option, bool) or not 0 <= option <= 100:
                raise invalid(f"Invalid {where}.compressionQuality: {option!r}. It must be "
                              "between 0 and 100.")  # fmt: skip
            job.quality = option
        else:
            raise unknown_name(key, where)


def predict_answer(job: ImagenJob, seed: int) -> JsonObject:
    """The ``:predict`` answer: images of the asked ratio, minus the filtered ones."""
    if BLOCK_PROMPT in job.prompt:
        raise invalid(PROMPT_REFUSED)
    withheld = job.count if FILTER_ALL in job.prompt else int(FILTER_ONE in job.prompt)
    width, height = IMAGEN_SIZES[job.ratio]
    predictions: list[JsonObject] = []
    for index in range(job.count - withheld):
        image = make_image(width * job.scale, height * job.scale, job.fmt,
                           (job.seed or seed) + index, quality=job.quality)  # fmt: skip
        prediction: JsonObject = {
            "mimeType": f"image/{job.fmt}",
            "bytesBase64Encoded": base64.b64encode(image).decode(),
        }
        if job.enhance:
            prediction["prompt"] = f"A detailed, high-quality picture of: {job.prompt}"
        predictions.append(prediction)
    if job.include_reason:
        predictions += [{"raiFilteredReason": RAI_REASON}] * withheld
    return {"predictions": predictions} if predictions else {}


def _check_image_config(config: object, conv: Conversation, face: Face) -> None:
    if not isinstance(config, dict):
        raise invalid(f"Invalid value at 'generation_config.image_config', {config}")
    known = _IMAGE_CONFIG | (_VERTEX_IMAGE_CONFIG if face == "vertex" else set())
    fields = _fields(config, known, "generation_config.image_config")
    if "aspectRatio" in fields:
        conv.aspect_ratio = _enum("aspect ratio", fields["aspectRatio"], tuple(GEMINI_SIZES))
    if "imageSize" in fields:
        conv.image_size = _enum("image size", fields["imageSize"], tuple(GEMINI_IMAGE_SIZES))
    if "personGeneration" in fields:
        _enum("person generation", fields["personGeneration"],
              ("ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE", *_PERSON), fold=False)  # fmt: skip
    options = fields.get("imageOutputOptions")
    if options is not None:
        job = ImagenJob(prompt="")
        where = "generation_config.image_config.image_output_options"
        _output_options(where, _fields(options, {"mimeType", "compressionQuality"}, where), job)
        conv.image_format, conv.image_quality = job.fmt, job.quality


def check_modalities(value: object, conv: Conversation, model: str) -> None:
    if not isinstance(value, list) or not value:
        raise invalid(f"Invalid value at 'generation_config.response_modalities', {value}")
    for modality in value:
        _enum("response modality", modality, _MODALITIES)
    if "IMAGE" in value and not is_gemini_image(model):
        raise invalid("Multi-modal output is not supported.")
    if "IMAGE" in value and "TEXT" not in value and "AUDIO" in value:
        raise invalid("Response modalities IMAGE and AUDIO cannot be combined.")
    conv.modalities = list(value)


def image_answer(conv: Conversation, *, face: Face, model: str, response_id: str,
                 seed: int) -> JsonObject:  # fmt: skip
    """A Gemini image model's answer: one image of the asked ratio (and size), or the
    safety outcome the prompt asks for."""
    if BLOCK_PROMPT in conv.said:
        return {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": usage(conv, None, face), "modelVersion": model,
                "responseId": response_id}  # fmt: skip
    parts: list[JsonObject] = []
    finish_reason, image_tokens_out = "STOP", 0
    if FILTER_ALL in conv.said:
        finish_reason = "IMAGE_SAFETY"
    elif TEXT_ONLY in conv.said or "IMAGE" not in conv.modalities:
        parts.append({"text": "I can only describe it: a picture of " + conv.said})
    else:
        width, height = GEMINI_SIZES[conv.aspect_ratio]
        scale = GEMINI_IMAGE_SIZES[conv.image_size] if model.startswith("gemini-3") else 1
        image = make_image(width * scale, height * scale, conv.image_format, conv.seed or seed,
                           quality=conv.image_quality)  # fmt: skip
        if "TEXT" in conv.modalities:
            parts.append({"text": "Here is your image."})
        parts.append({"inlineData": {"mimeType": f"image/{conv.image_format}",
                                     "data": base64.b64encode(image).decode()}})  # fmt: skip
        image_tokens_out = (2000 if scale == 4 else 1120) if model.startswith("gemini-3") else 1290
    candidate: JsonObject = {"finishReason": finish_reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    text_out = sum(count_tokens(p["text"]) for p in parts if "text" in p)
    meta = usage(conv, None, face)
    meta["candidatesTokenCount"] = text_out + image_tokens_out
    meta["totalTokenCount"] = meta["promptTokenCount"] + text_out + image_tokens_out
    meta["candidatesTokensDetails"] = [
        {"modality": m, "tokenCount": c}
        for m, c in (("TEXT", text_out), ("IMAGE", image_tokens_out))
        if c
    ]
    return {"candidates": [candidate], "usageMetadata": meta, "modelVersion": model,
            "responseId": response_id}  # fmt: skip
