"""Black Forest Labs' own API (FLUX.2, FLUX.1 Kontext, FLUX1.1 [pro] and Ultra): each
image is a task that is submitted, polled, and read from a link that expires in minutes.

`api_base` picks the region: `https://api.bfl.ai/v1` (global, the default),
`https://api.eu.bfl.ai/v1` or `https://api.us.bfl.ai/v1`; the task is then polled where
BFL says (see `job.py` for which hosts are followed).
"""

from __future__ import annotations

from prismgate.providers.base import Credentials, CredentialSpec, Provider, ProviderSettings
from prismgate.providers.black_forest_labs.fields import BFL_FAMILIES
from prismgate.providers.black_forest_labs.images import BflImages
from prismgate.providers.black_forest_labs.job import bfl_error
from prismgate.transport import UpstreamRequest

__all__ = ["BFL_FAMILIES", "BLACK_FOREST_LABS"]

_IMAGES = BflImages()


def _credits_probe(credentials: Credentials, _settings: ProviderSettings) -> UpstreamRequest:
    """`GET /credits`: free, and it proves the key and the region."""
    return UpstreamRequest(
        method="GET",
        url=credentials.api_base + "/credits",
        provider="health",
        headers={"x-key": credentials.api_key or "", "accept": "application/json"},
        timeout=10.0,
    )


BLACK_FOREST_LABS = Provider(
    name="black_forest_labs",  # LiteLLM's name; Portkey's gateway has no BFL provider
    translate_error=bfl_error,
    credentials=CredentialSpec(
        api_key_env=("BFL_API_KEY",),
        api_base_env=("BFL_API_BASE",),
        default_api_base="https://api.bfl.ai/v1",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    health_probe=_credits_probe,
)
