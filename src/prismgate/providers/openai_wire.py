"""The OpenAI images wire, shared by every provider that speaks it (OpenAI, Azure, xAI,
self-hosted OpenAI-compatible servers). Each of those modules only declares data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from prismgate.errors import PrismgateError, from_upstream
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    Credentials,
    Deployment,
    Field,
    FieldTable,
    HealthProbe,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    retry_after_seconds,
)
from prismgate.types import IMAGE_GENERATION_PARAMS, ImageObject, ImageResponse, ImageUsage

__all__ = [
    "OPENAI_IMAGE_FIELDS",
    "OpenAIImageGeneration",
    "bearer",
    "models_probe",
    "openai_error",
    "openai_families",
    "v1_url",
]

# OpenAI's own parameters reach an OpenAI-shaped API unchanged.
OPENAI_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    **{name: Field(name) for name in IMAGE_GENERATION_PARAMS},
}


def openai_families(prefix: str) -> tuple[ImageFamily, ...]:
    """OpenAI's image models as `prefix` serves them (OpenAI itself, Azure)."""
    return (
        ImageFamily(
            "GPT image",
            tuple(f"{prefix}/{m}" for m in ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")),
            OPENAI_IMAGE_FIELDS,
            operations=("edit",),
        ),
        ImageFamily("DALL·E 3", (f"{prefix}/dall-e-3",), OPENAI_IMAGE_FIELDS),
        ImageFamily(
            "DALL·E 2", (f"{prefix}/dall-e-2",), OPENAI_IMAGE_FIELDS, ("edit", "variation")
        ),
    )


UrlFor = Callable[[Credentials, Deployment, str], str]
HeadersFor = Callable[[Credentials, Mapping[str, Any]], dict[str, str]]


def bearer(credentials: Credentials, settings: Mapping[str, Any]) -> dict[str, str]:
    """`Authorization: Bearer <key>` (none for a keyless self-hosted server), and
    `OpenAI-Organization` when the deployment names one."""
    headers = {}
    if credentials.api_key:
        headers["Authorization"] = f"Bearer {credentials.api_key}"
    if organization := settings.get("organization"):
        headers["OpenAI-Organization"] = str(organization)
    return headers


def models_probe(url: str = "/models", headers: HeadersFor = bearer) -> HealthProbe:
    """A health probe that lists models: free, and it proves the key and the host."""

    def probe(credentials: Credentials, settings: Mapping[str, Any]) -> UpstreamRequest:
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


@dataclass(frozen=True, slots=True)
class OpenAIImageGeneration:
    """`POST …/images/generations` with an OpenAI body; the answer is OpenAI's ImagesResponse.

    Unknown answer fields (Azure's content filter annotations, say) are dropped by decoding
    into `ImageResponse`.
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
        body = self.body(call)
        request = UpstreamRequest(
            method="POST",
            url=self.url(call.credentials, call.deployment, "/images/generations"),
            provider=self.provider,
            headers={
                **self.headers(call.credentials, call.settings),
                "Content-Type": "application/json",
            },
            body=msgspec.json.encode(body),
            timeout=call.timeout,
        )
        response = await http.send(request)
        if response.status >= 400:
            raise openai_error(self.provider, response, call.redact)
        try:
            if call.relay and self.relayable:
                return _skimmed(response.body)
            return msgspec.json.decode(response.body, type=ImageResponse)
        except msgspec.DecodeError as exc:
            raise from_upstream(
                502,
                f"the answer was not an OpenAI images response ({exc})",
                provider=self.provider,
            ) from exc

    def body(self, call: ImageGenerationCall) -> dict[str, Any]:
        """The JSON body for `call`: mapped OpenAI fields, then provider extras as given."""
        values: Mapping[str, Any] = msgspec.structs.asdict(call.request)
        body: dict[str, Any] = {}
        if self.model_in_body(call.credentials):
            body["model"] = call.deployment.model
        body.update(build_body(self.fields, values, call.capabilities, call.extra))
        return body
