"""OpenRouter's settings: the optional attribution headers its docs describe
(`HTTP-Referer`, the site; `X-Title`, the app's name), and the headers of every call."""

from __future__ import annotations

from typing import Annotated

from prismgate.providers.base import Credentials, ProviderSettings, Setting
from prismgate.providers.openai.wire import bearer

__all__ = ["OpenRouterSettings", "openrouter_headers"]


class OpenRouterSettings(ProviderSettings, frozen=True, kw_only=True):
    """Who is calling, for OpenRouter's app rankings; neither is a secret."""

    openrouter_site_url: Annotated[str | None, Setting()] = None
    openrouter_app_name: Annotated[str | None, Setting()] = None


def openrouter_headers(credentials: Credentials, settings: ProviderSettings) -> dict[str, str]:
    """`Authorization: Bearer <key>`, plus the attribution headers the deployment sets."""
    headers = bearer(credentials, settings)
    if isinstance(settings, OpenRouterSettings):
        if settings.openrouter_site_url:
            headers["HTTP-Referer"] = settings.openrouter_site_url
        if settings.openrouter_app_name:
            headers["X-Title"] = settings.openrouter_app_name
    return headers
