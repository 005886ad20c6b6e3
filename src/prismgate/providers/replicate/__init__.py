"""Replicate's predictions API: image models by `owner/name` (or `owner/name:version`),
answered at once when fast (`Prefer: wait`), polled otherwise; FLUX.1 Kontext edits.

The model id after `replicate/` is Replicate's own: `replicate/black-forest-labs/flux-schnell`.
"""

from __future__ import annotations

from prismgate.providers.base import CredentialSpec, Provider
from prismgate.providers.openai.wire import models_probe
from prismgate.providers.replicate.fields import REPLICATE_FAMILIES
from prismgate.providers.replicate.images import ReplicateImages
from prismgate.providers.replicate.prediction import replicate_error

__all__ = ["REPLICATE", "REPLICATE_FAMILIES"]

_IMAGES = ReplicateImages()

REPLICATE = Provider(
    name="replicate",  # LiteLLM's and Portkey's name alike
    translate_error=replicate_error,
    credentials=CredentialSpec(
        api_key_env=("REPLICATE_API_KEY", "REPLICATE_API_TOKEN"),
        api_base_env=("REPLICATE_API_BASE",),
        default_api_base="https://api.replicate.com/v1",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    # The account behind the token: free, and it proves the key.
    health_probe=models_probe("/account"),
)
