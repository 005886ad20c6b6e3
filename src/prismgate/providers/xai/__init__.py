"""xAI: OpenAI-shaped, but images take an `aspect_ratio` instead of a `size`."""

from __future__ import annotations

from typing import Any

from prismgate.catalog import ImageCapabilities
from prismgate.media.images import ImageLimits
from prismgate.providers.base import CredentialSpec, Field, ImageFamily, Provider
from prismgate.providers.image_rules import match_aspect_ratio
from prismgate.providers.openai.chat import OpenAIChat
from prismgate.providers.openai.wire import (
    OPENAI_IMAGE_FIELDS,
    OpenAIImages,
    OpenAISettings,
    models_probe,
    openai_errors,
)

# The ratios xAI documents, for models the catalog does not list yet.
XAI_ASPECT_RATIOS = (
    "1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2",
    "9:19.5", "19.5:9", "9:20", "20:9", "1:2", "2:1",
)  # fmt: skip


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or XAI_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


XAI_IMAGE_FIELDS = {
    **OPENAI_IMAGE_FIELDS,
    "size": Field(
        "aspect_ratio",
        convert=_aspect_ratio,
        note="the aspect ratio of the size (a ratio within 2 % is reported as adjusted)",
    ),
}

XAI = Provider(
    name="xai",
    translate_error=openai_errors("xai"),
    aliases=("x-ai",),
    credentials=CredentialSpec(
        api_key_env=("XAI_API_KEY",),
        api_base_env=("XAI_API_BASE",),
        default_api_base="https://api.x.ai/v1",
    ),
    image_generation=OpenAIImages(
        provider="xai",
        fields=XAI_IMAGE_FIELDS,
        families=(
            ImageFamily(
                "Grok image",
                ("xai/grok-imagine-image", "xai/grok-2-image", "xai/grok-2-image-1212"),
                XAI_IMAGE_FIELDS,
            ),
        ),
    ),
    chat=OpenAIChat(provider="xai"),
    # xAI's vision input: JPEG and PNG only, up to 20 MiB; others are transcoded.
    image_limits=ImageLimits(
        media_types=frozenset({"image/jpeg", "image/png"}), max_bytes=20 * 1024 * 1024
    ),
    health_probe=models_probe(),
    settings_type=OpenAISettings,
)

__all__ = ["XAI", "XAI_ASPECT_RATIOS"]
