"""OpenRouter: OpenAI's chat wire at `https://openrouter.ai/api/v1`, with image output.

Chat goes through the shared `OpenAIChat` (a caller's `modalities: ["image", "text"]` is
sent as given; drawn images come back in `choices[].message.images`, streamed in
`delta.images`). `/v1/images/generations` and `/v1/images/edits` go to OpenRouter's
Image API (`POST /images`); see `images.py`.
"""

from __future__ import annotations

from prismgate.providers.base import CredentialSpec, Provider
from prismgate.providers.openai.chat import OpenAIChat
from prismgate.providers.openai.wire import models_probe, openai_errors
from prismgate.providers.openrouter.images import OPENROUTER_IMAGE_FIELDS, OpenRouterImages
from prismgate.providers.openrouter.settings import OpenRouterSettings, openrouter_headers

__all__ = [
    "OPENROUTER",
    "OPENROUTER_IMAGE_FIELDS",
    "OpenRouterSettings",
]

_IMAGES = OpenRouterImages()

OPENROUTER = Provider(
    name="openrouter",
    # OpenRouter's errors are `{"error": {"code": <status>, "message", "metadata"}}`:
    # the OpenAI reader keeps the status, code and message.
    translate_error=openai_errors("openrouter"),
    credentials=CredentialSpec(
        api_key_env=("OPENROUTER_API_KEY", "OR_API_KEY"),
        api_base_env=("OPENROUTER_API_BASE",),
        default_api_base="https://openrouter.ai/api/v1",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    chat=OpenAIChat(provider="openrouter", headers=openrouter_headers),
    health_probe=models_probe(headers=openrouter_headers),
    settings_type=OpenRouterSettings,
)
