"""Wire types: the OpenAI-shaped requests and responses prismgate speaks on both faces."""

from prismgate.types.errors import ErrorBody, ErrorDetail
from prismgate.types.images import (
    IMAGE_GENERATION_PARAMS,
    ImageGenerationRequest,
    ImageObject,
    ImageResponse,
    ImageUsage,
    ImageUsageDetails,
)
from prismgate.types.meta import CallMeta

__all__ = [
    "IMAGE_GENERATION_PARAMS",
    "CallMeta",
    "ErrorBody",
    "ErrorDetail",
    "ImageGenerationRequest",
    "ImageObject",
    "ImageResponse",
    "ImageUsage",
    "ImageUsageDetails",
]
