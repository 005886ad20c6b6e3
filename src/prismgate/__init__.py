"""prismgate: one OpenAI-compatible API for image generation and vision, across providers.

    from prismgate import image_generation
    image = image_generation(prompt="A cute baby sea otter", model="mock/quickstart")

Names load on first use, so `import prismgate` is fast and makes no network call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from prismgate._version import __version__

if TYPE_CHECKING:
    from prismgate.catalog import ModelInfo
    from prismgate.config import Config, load_config
    from prismgate.errors import (
        AnswerTooLargeError,
        APIConnectionError,
        APIError,
        AuthenticationError,
        BadRequestError,
        ConfigError,
        ContentPolicyViolationError,
        ImageStoreError,
        InsufficientStorageError,
        NotFoundError,
        PermissionDeniedError,
        PrismgateError,
        RateLimitError,
        RequestTimeoutError,
        RequestTooLargeError,
        ServiceUnavailableError,
        Timeout,
        UnreadableAnswerError,
        UnsupportedParamsError,
    )
    from prismgate.gateway import CallOptions, Gateway
    from prismgate.sdk import (
        acompletion,
        aimage_edit,
        aimage_generation,
        aimage_variation,
        completion,
        get_model_info,
        image_edit,
        image_generation,
        image_variation,
        supports_vision,
    )
    from prismgate.types import (
        CallMeta,
        ImageEditRequest,
        ImageGenerationRequest,
        ImageObject,
        ImageResponse,
        ImageVariationRequest,
        InputImage,
    )
    from prismgate.types.chat import ChatChunk, ChatCompletion

_EXPORTS: dict[str, str] = {
    "image_generation": "prismgate.sdk",
    "completion": "prismgate.sdk",
    "acompletion": "prismgate.sdk",
    "aimage_generation": "prismgate.sdk",
    "image_edit": "prismgate.sdk",
    "aimage_edit": "prismgate.sdk",
    "image_variation": "prismgate.sdk",
    "aimage_variation": "prismgate.sdk",
    "supports_vision": "prismgate.sdk",
    "get_model_info": "prismgate.sdk",
    "Gateway": "prismgate.gateway",
    "CallOptions": "prismgate.gateway",
    "Config": "prismgate.config",
    "load_config": "prismgate.config",
    "ModelInfo": "prismgate.catalog",
    "CallMeta": "prismgate.types",
    "ImageGenerationRequest": "prismgate.types",
    "ImageEditRequest": "prismgate.types",
    "ImageVariationRequest": "prismgate.types",
    "InputImage": "prismgate.types",
    "ImageObject": "prismgate.types",
    "ImageResponse": "prismgate.types",
    "ChatCompletion": "prismgate.types.chat",
    "ChatChunk": "prismgate.types.chat",
    **{
        name: "prismgate.errors"
        for name in (
            "APIConnectionError",
            "APIError",
            "AnswerTooLargeError",
            "AuthenticationError",
            "BadRequestError",
            "ConfigError",
            "ContentPolicyViolationError",
            "ImageStoreError",
            "InsufficientStorageError",
            "NotFoundError",
            "PermissionDeniedError",
            "PrismgateError",
            "RateLimitError",
            "RequestTimeoutError",
            "RequestTooLargeError",
            "ServiceUnavailableError",
            "Timeout",
            "UnreadableAnswerError",
            "UnsupportedParamsError",
        )
    },
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "AnswerTooLargeError",
    "AuthenticationError",
    "BadRequestError",
    "CallMeta",
    "CallOptions",
    "ChatChunk",
    "ChatCompletion",
    "Config",
    "ConfigError",
    "ContentPolicyViolationError",
    "Gateway",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageObject",
    "ImageResponse",
    "ImageStoreError",
    "ImageVariationRequest",
    "InputImage",
    "InsufficientStorageError",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "PrismgateError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "Timeout",
    "UnreadableAnswerError",
    "UnsupportedParamsError",
    "__version__",
    "acompletion",
    "aimage_edit",
    "aimage_generation",
    "aimage_variation",
    "completion",
    "get_model_info",
    "image_edit",
    "image_generation",
    "image_variation",
    "load_config",
    "supports_vision",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prismgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
