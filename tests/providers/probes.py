"""Send a provider's health probe, as `/health` does, and say what the provider answered."""

from __future__ import annotations

import asyncio

from prismgate.providers import get_provider
from prismgate.providers.base import Credentials
from prismgate.transport import HttpTransport


def probe_status(provider_name: str, api_base: str, api_key: str) -> int:
    """The status of `provider_name`'s health probe against `api_base` with `api_key`."""
    provider = get_provider(provider_name)
    assert provider.health_probe is not None, f"{provider_name} has no health probe"
    probe = provider.health_probe(
        Credentials(api_base=api_base, api_key=api_key), provider.typed_settings({})
    )

    async def send() -> int:
        transport = HttpTransport()
        try:
            return (await transport.send(probe)).status
        finally:
            await transport.aclose()

    return asyncio.run(send())
