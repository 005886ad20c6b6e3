"""One image call on one deployment, split and merged: which provider method serves it,
how many upstream calls it takes (`n` fanned out when a model makes fewer images per
call than asked), running them (bounded, all or nothing) and merging their answers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from prismgate.catalog import ImageCapabilities, ModelInfo
from prismgate.errors import (
    APIError,
    BadRequestError,
    ContentPolicyViolationError,
    PrismgateError,
)
from prismgate.providers.base import ImageCall, Provider
from prismgate.providers.image_rules import accepts
from prismgate.transport import Transport
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageRequest,
    ImageResponse,
    ImageUsage,
    ImageUsageDetails,
    ImageVariationRequest,
)

__all__ = [
    "MAX_FAN_OUT",
    "ImageOperation",
    "fan_out",
    "image_operation",
    "run_all",
    "withheld_or_empty",
]

# Parallel upstream calls for one fanned-out request.
MAX_FAN_OUT = 4
_IMAGE_MODES = frozenset({"image_generation", "image_edit"})
R = TypeVar("R", ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)


ImageOperation = Callable[[ImageCall[Any], Transport], Awaitable[ImageResponse]]


def image_operation(
    provider: Provider, request: ImageRequest, info: ModelInfo | None, group: str
) -> ImageOperation:
    """The provider method that serves `request`, or a 400 saying the model cannot."""
    capabilities = info.image if info else None
    operation: ImageOperation | None = None
    if isinstance(request, ImageEditRequest):
        verb, allowed = "edit images", capabilities is None or capabilities.edits is not False
        if provider.image_edit is not None and allowed:
            operation = provider.image_edit.edit
    elif isinstance(request, ImageVariationRequest):
        verb = "make image variations"
        allowed = capabilities is None or capabilities.variations is not False
        if provider.image_variation is not None and allowed:
            operation = provider.image_variation.vary
    else:
        verb = "generate images"
        if provider.image_generation is not None:
            operation = provider.image_generation.generate
    other_mode = info.mode if info and info.mode and info.mode not in _IMAGE_MODES else None
    if operation is None or other_mode:
        raise BadRequestError(
            f"{group} cannot {verb}" + (f" (it is a {other_mode} model)" if other_mode else ""),
            param="model",
            code="model_not_supported",
        )
    return operation


def withheld_or_empty(provider: str, reasons: tuple[str, ...]) -> PrismgateError:
    """No image came back: the safety filter's refusal (with its reasons), or a fault."""
    if not reasons:
        return APIError(f"{provider} answered without any image", provider=provider)
    unique = "; ".join(dict.fromkeys(reasons))
    return ContentPolicyViolationError(
        f"{provider}'s safety filter withheld every image ({len(reasons)}): {unique}. "
        "Change the prompt (or the input image) and try again.",
        provider=provider,
    )


async def run_all(
    operation: ImageOperation, calls: list[ImageCall[Any]], http: Transport
) -> ImageResponse:
    """Run the calls (at most MAX_FAN_OUT at once), all or nothing; a fanned-out call
    the safety filter refused counts as its images withheld, not as a failure."""
    if len(calls) == 1:
        return await operation(calls[0], http)
    limit = asyncio.Semaphore(MAX_FAN_OUT)

    async def one(call: ImageCall[Any]) -> ImageResponse:
        async with limit:
            try:
                return await operation(call, http)
            except ContentPolicyViolationError as refused:
                withheld = ImageResponse(created=int(time.time()))
                withheld.filtered = (refused.message,) * (call.request.n or 1)
                return withheld

    try:  # the first failure cancels the rest
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(call)) for call in calls]
    except* PrismgateError as failures:
        raise failures.exceptions[0] from None
    return _merge([task.result() for task in tasks])


def fan_out(call: ImageCall[R], capabilities: ImageCapabilities | None) -> list[ImageCall[R]]:
    """One call, or several when the model makes fewer images per call than asked.

    A model without an `n` field makes one image per call and is never sent `n`.
    """
    wanted = call.request.n or 1
    takes_n = accepts(capabilities, "n")
    if takes_n:
        per_call = capabilities.max_n if capabilities and capabilities.max_n else wanted
    else:
        per_call = 1
    if wanted <= per_call and (takes_n or call.request.n is None):
        return [call]
    sizes = [per_call] * (wanted // per_call) + ([wanted % per_call] if wanted % per_call else [])
    return [
        # Merged answers are re-encoded, so none of them is relayed as it came.
        dataclasses.replace(
            call,
            request=msgspec.structs.replace(call.request, n=size if takes_n else None),
            relay=False,
        )
        for size in sizes
    ]


def _merge(responses: list[ImageResponse]) -> ImageResponse:
    usages = [r.usage for r in responses if r.usage is not None]
    merged = msgspec.structs.replace(
        responses[0],
        created=max(r.created for r in responses),
        data=[image for r in responses for image in r.data],
        usage=_sum_usage(usages) if len(usages) == len(responses) else None,
    )
    merged.filtered = tuple(reason for r in responses for reason in r.filtered)
    billed = [r.billed_cost for r in responses if r.billed_cost is not None]
    merged.billed_cost = sum(billed) if len(billed) == len(responses) else None
    return merged


def _sum_usage(usages: list[ImageUsage]) -> ImageUsage:
    def details(parts: list[ImageUsageDetails | None]) -> ImageUsageDetails | None:
        present = [p for p in parts if p is not None]
        if not present:
            return None
        return ImageUsageDetails(
            text_tokens=sum(p.text_tokens or 0 for p in present),
            image_tokens=sum(p.image_tokens or 0 for p in present),
        )

    return ImageUsage(
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        total_tokens=sum(u.total_tokens for u in usages),
        input_tokens_details=details([u.input_tokens_details for u in usages]),
        output_tokens_details=details([u.output_tokens_details for u in usages]),
    )
