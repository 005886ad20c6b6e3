"""Wire types: the OpenAI-shaped requests and responses prismgate speaks on both faces."""

from prismgate.types.errors import ErrorBody, ErrorDetail
from prismgate.types.images import (
    IMAGE_GENERATION_PARAMS,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageObject,
    ImageRequest,
    ImageResponse,
    ImageUsage,
    ImageUsageDetails,
    ImageVariationRequest,
    InputImage,
    image_params,
)
from prismgate.types.meta import CallMeta, Served

__all__ = [
    "IMAGE_GENERATION_PARAMS",
    "CallMeta",
    "ErrorBody",
    "ErrorDetail",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageObject",
    "ImageRequest",
    "ImageResponse",
    "ImageUsage",
    "ImageUsageDetails",
    "ImageVariationRequest",
    "InputImage",
    "Served",
    "image_params",
]
