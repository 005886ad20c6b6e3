"""fal.ai: image models behind a queue (submit, poll, result; cancel) or, for fast
models, one synchronous call. `fal_ai/<fal model id>`, as LiteLLM names it
(`fal_ai/fal-ai/flux/dev`); Portkey's `fal-ai` is an alias. Auth: `Key <FAL_KEY>`.

- `queue.py`: the queue's requests and fal's error answers.
- `images.py`: the field tables, generation and edits, and fal's output as OpenAI's.
- `settings.py`: `fal_sync`, and fal's two hosts.
"""

from __future__ import annotations

from prismgate.providers.base import CredentialSpec, Provider
from prismgate.providers.fal.images import FalImages
from prismgate.providers.fal.queue import fal_error
from prismgate.providers.fal.settings import QUEUE_BASE, FalSettings

__all__ = ["FAL_AI"]

_IMAGES = FalImages()

FAL_AI = Provider(
    name="fal_ai",
    translate_error=fal_error,
    aliases=("fal-ai",),
    credentials=CredentialSpec(
        # LiteLLM's name first, then the one fal's own clients read.
        api_key_env=("FAL_AI_API_KEY", "FAL_KEY"),
        api_base_env=("FAL_AI_API_BASE",),
        default_api_base=QUEUE_BASE,
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    settings_type=FalSettings,
)
