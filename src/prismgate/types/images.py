"""Image generation request and response, as OpenAI's `/v1/images/generations` defines them."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import msgspec

from prismgate.types.answer import AnswerObject
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
    # Not OpenAI's: what the image must not show (Stability, Titan, Imagen, ...). Models
    # without one refuse it like any other parameter they have no meaning for.
    negative_prompt: str | None = None


class InputImage(msgspec.Struct, kw_only=True, frozen=True):
    """An image sent to be edited or varied: its bytes, and its type from those bytes."""

    data: bytes
    media_type: str
    filename: str | None = None

    def data_url(self) -> str:
        """The image as a `data:<type>;base64,` URL (how several providers take inputs)."""
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"


class ImageEditRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An OpenAI image edit: `image` holds one or more input images (`image[]`); fully
    transparent pixels of `mask` mark where the first one may change."""

    prompt: str
    # An edit changes an image: without one there is nothing to edit.
    image: Annotated[list[InputImage], msgspec.Meta(min_length=1)]
    mask: InputImage | None = None
    model: str | None = None
    n: int | None = None
    quality: str | None = None
    response_format: ResponseFormat | None = None
    size: str | None = None
    user: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    input_fidelity: str | None = None
    negative_prompt: str | None = None


class ImageVariationRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An OpenAI image variation (`/v1/images/variations`): new images like `image`."""

    image: InputImage
    model: str | None = None
    n: int | None = None
    response_format: ResponseFormat | None = None
    size: str | None = None
    user: str | None = None


ImageRequest = ImageGenerationRequest | ImageEditRequest | ImageVariationRequest

# Fields that carry the subject of a request rather than a choice about its result.
_SUBJECT = frozenset({"prompt", "model", "image", "mask"})


def image_params(kind: type[ImageRequest]) -> tuple[str, ...]:
    """The optional parameters of a request type: what a provider must map, or refuse."""
    return tuple(name for name in kind.__struct_fields__ if name not in _SUBJECT)


IMAGE_GENERATION_PARAMS: tuple[str, ...] = image_params(ImageGenerationRequest)


class ImageObject(AnswerObject, msgspec.Struct, kw_only=True, omit_defaults=True):
    """One generated image: base64 or a URL, and the prompt the provider actually used."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImageUsageDetails(AnswerObject, msgspec.Struct, kw_only=True, omit_defaults=True):
    """Token counts by modality (gpt-image models)."""

    text_tokens: int | None = None
    image_tokens: int | None = None


class ImageUsage(AnswerObject, msgspec.Struct, kw_only=True):
    """Token usage of a gpt-image call; the basis of its cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: ImageUsageDetails | None = None
    output_tokens_details: ImageUsageDetails | None = None


class ImageResponse(
    AnswerObject, msgspec.Struct, WithCallMeta, kw_only=True, omit_defaults=True, dict=True
):
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

    @property
    def filtered(self) -> tuple[str, ...]:
        """One reason per image the provider's safety filter withheld from `data`."""
        reasons: tuple[str, ...] = self.__dict__.get("_filtered", ())
        return reasons

    @filtered.setter
    def filtered(self, reasons: tuple[str, ...]) -> None:
        self.__dict__["_filtered"] = reasons

    @property
    def billed_cost(self) -> float | None:
        """What the provider says it charged for this answer, in USD, where it says
        (OpenRouter's `usage.cost`): it is the cost, whatever the catalog's prices."""
        cost: float | None = self.__dict__.get("_billed_cost")
        return cost

    @billed_cost.setter
    def billed_cost(self, cost: float | None) -> None:
        self.__dict__["_billed_cost"] = cost


class PartialImage(msgspec.Struct, kw_only=True, frozen=True):
    """A preview of an image still being made, as a provider reports it mid-call."""

    b64_json: str
    partial_image_index: int
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None


class ImagePartialEvent(AnswerObject, msgspec.Struct, kw_only=True, omit_defaults=True):
    """OpenAI's `image_generation.partial_image` (or `image_edit.partial_image`) event."""

    type: str
    b64_json: str
    partial_image_index: int
    created_at: int
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None


class ImageCompletedEvent(AnswerObject, msgspec.Struct, kw_only=True, omit_defaults=True):
    """OpenAI's `image_generation.completed` (or `image_edit.completed`) event: one
    finished image, and the usage of its call where the provider counts tokens."""

    type: str
    b64_json: str
    created_at: int
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    usage: ImageUsage | None = None


ImageStreamEvent = ImagePartialEvent | ImageCompletedEvent
