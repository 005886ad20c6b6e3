"""OpenAI, and self-hosted servers that speak its API (`openai/<name>` with an `api_base`,
`xinference/`, `hosted_vllm/`)."""

from __future__ import annotations

from prismgate.catalog import ModelInfo
from prismgate.media.images import ImageLimits
from prismgate.providers.base import CredentialSpec, Provider
from prismgate.providers.openai.chat import OpenAIChat
from prismgate.providers.openai.wire import (
    OpenAIImages,
    OpenAISettings,
    models_probe,
    openai_errors,
    openai_families,
)

# OpenAI's vision input: PNG, JPEG, WebP and non-animated GIF, up to 20 MB an image.
OPENAI_IMAGE_LIMITS = ImageLimits(
    media_types=frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"}),
    max_bytes=20 * 1024 * 1024,
    # OpenAI-style servers fetch URLs themselves (self-hosted ones often on plain http).
    url_schemes=frozenset({"https", "http"}),
)

# One object serves generations, edits and variations: they share URL, auth and errors.
_OPENAI_IMAGES = OpenAIImages(provider="openai", families=openai_families("openai"))

OPENAI = Provider(
    name="openai",
    translate_error=openai_errors("openai"),
    aliases=("openai-compatible",),
    credentials=CredentialSpec(
        api_key_env=("OPENAI_API_KEY",),
        api_base_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        default_api_base="https://api.openai.com/v1",
        key_optional_with_custom_base=True,
    ),
    image_generation=_OPENAI_IMAGES,
    image_edit=_OPENAI_IMAGES,
    image_variation=_OPENAI_IMAGES,
    chat=OpenAIChat(provider="openai"),
    image_limits=OPENAI_IMAGE_LIMITS,
    health_probe=models_probe(),
    settings_type=OpenAISettings,
)

# Unknown models on a self-hosted server: nothing is assumed, the server decides.
_SELF_HOSTED_INFO = ModelInfo(mode="image_generation", image=None)

_XINFERENCE_IMAGES = OpenAIImages(provider="xinference")

XINFERENCE = Provider(
    name="xinference",
    translate_error=openai_errors("xinference"),
    credentials=CredentialSpec(
        api_key_env=("XINFERENCE_API_KEY",),
        api_base_env=("XINFERENCE_API_BASE",),
        default_api_base="http://127.0.0.1:9997/v1",
        key_required=False,
    ),
    image_generation=_XINFERENCE_IMAGES,
    image_edit=_XINFERENCE_IMAGES,
    image_variation=_XINFERENCE_IMAGES,
    chat=OpenAIChat(provider="xinference"),
    image_limits=OPENAI_IMAGE_LIMITS,
    health_probe=models_probe(),
    settings_type=OpenAISettings,
    default_info=_SELF_HOSTED_INFO,
)

_HOSTED_VLLM_IMAGES = OpenAIImages(provider="hosted_vllm")

HOSTED_VLLM = Provider(
    name="hosted_vllm",
    translate_error=openai_errors("hosted_vllm"),
    credentials=CredentialSpec(
        api_key_env=("HOSTED_VLLM_API_KEY",),
        api_base_env=("HOSTED_VLLM_API_BASE",),
        key_required=False,
    ),
    image_generation=_HOSTED_VLLM_IMAGES,
    image_edit=_HOSTED_VLLM_IMAGES,
    image_variation=_HOSTED_VLLM_IMAGES,
    chat=OpenAIChat(provider="hosted_vllm"),
    image_limits=OPENAI_IMAGE_LIMITS,
    health_probe=models_probe(),
    settings_type=OpenAISettings,
    default_info=_SELF_HOSTED_INFO,
)

__all__ = ["HOSTED_VLLM", "OPENAI", "OPENAI_IMAGE_LIMITS", "XINFERENCE"]
