"""Wire types: the OpenAI-shaped requests and responses prismgate speaks on both faces."""

from prismgate.types.errors import ErrorBody, ErrorDetail
from prismgate.types.images import (
    IMAGE_GENERATION_PARAMS,
    ImageCompletedEvent,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageObject,
    ImagePartialEvent,
    ImageRequest,
    ImageResponse,
    ImageStreamEvent,
    ImageUsage,
    ImageUsageDetails,
    ImageVariationRequest,
    InputImage,
    PartialImage,
    image_params,
)
from prismgate.types.meta import CallMeta, Served

__all__ = [
    "IMAGE_GENERATION_PARAMS",
    "CallMeta",
    "ErrorBody",
    "ErrorDetail",
    "ImageCompletedEvent",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageObject",
    "ImagePartialEvent",
    "ImageRequest",
    "ImageResponse",
    "ImageStreamEvent",
    "ImageUsage",
    "ImageUsageDetails",
    "ImageVariationRequest",
    "InputImage",
    "PartialImage",
    "Served",
    "image_params",
]
