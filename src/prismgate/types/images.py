"""Image generation request and response, as OpenAI's `/v1/images/generations` defines them."""

from __future__ import annotations

from typing import Literal

import msgspec

from prismgate.types.meta import WithCallMeta

ResponseFormat = Literal["url", "b64_json"]


class ImageGenerationRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An OpenAI image generation request. `None` means the caller did not set the field."""

    prompt: str
    model: str | None = None
    n: int | None = None
    quality: str | None = None
    response_format: ResponseFormat | None = None
    size: str | None = None
    style: str | None = None
    user: str | None = None
    # gpt-image fields
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None


# The optional OpenAI parameters: what a provider must map, or refuse.
IMAGE_GENERATION_PARAMS: tuple[str, ...] = tuple(
    name for name in ImageGenerationRequest.__struct_fields__ if name not in ("prompt", "model")
)


class ImageObject(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One generated image: base64 or a URL, and the prompt the provider actually used."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImageUsageDetails(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Token counts by modality (gpt-image models)."""

    text_tokens: int | None = None
    image_tokens: int | None = None


class ImageUsage(msgspec.Struct, kw_only=True):
    """Token usage of a gpt-image call; the basis of its cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: ImageUsageDetails | None = None
    output_tokens_details: ImageUsageDetails | None = None


class ImageResponse(msgspec.Struct, WithCallMeta, kw_only=True, omit_defaults=True, dict=True):
    """OpenAI's `ImagesResponse`.

    `dict=True` lets the gateway attach `_hidden_params` (provider, cost, adjustments), as
    LiteLLM users read them, without that metadata ever reaching the wire.
    """

    created: int
    data: list[ImageObject] = msgspec.field(default_factory=list)
    usage: ImageUsage | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None

    @property
    def relayed_body(self) -> bytes | None:
        """The provider's own answer, when it is already this response's wire form.

        Set only for answers the proxy may relay unchanged; its `data` items are then
        empty placeholders (the count is right; the images are in these bytes). Any copy
        made with `msgspec.structs.replace` drops it, as it should.
        """
        body: bytes | None = self.__dict__.get("_relayed_body")
        return body

    @relayed_body.setter
    def relayed_body(self, body: bytes) -> None:
        self.__dict__["_relayed_body"] = body
