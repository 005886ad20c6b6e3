"""Azure OpenAI: the OpenAI wire behind a deployment URL, an `api-version`, and `api-key`.

Two URL styles: the classic `…/openai/deployments/{deployment}/…?api-version=…` (the model
moves into the path), and the v1 API (`api_base` ending in `/openai/v1`), used like OpenAI
with the deployment name as the body's `model`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from prismgate.providers.base import (
    Credentials,
    CredentialSpec,
    Deployment,
    Provider,
    ProviderSettings,
    Setting,
)
from prismgate.providers.openai import OPENAI_IMAGE_LIMITS
from prismgate.providers.openai.chat import OpenAIChat
from prismgate.providers.openai.wire import OpenAIImages, openai_errors, openai_families
from prismgate.transport import UpstreamRequest


def _is_v1(credentials: Credentials) -> bool:
    return credentials.api_base.endswith("/openai/v1")


def _url(credentials: Credentials, deployment: Deployment, path: str) -> str:
    if _is_v1(credentials):
        return credentials.api_base + path
    base = credentials.api_base.removesuffix("/openai")
    version = quote(credentials.api_version or "", safe="")
    return (
        f"{base}/openai/deployments/{quote(deployment.model, safe='')}{path}?api-version={version}"
    )


class AzureSettings(ProviderSettings, frozen=True, kw_only=True):
    """Portkey's target option for the deployment's api_version (it sets the deployment's
    own `api_version`, never a setting of the call)."""

    api_version: Annotated[str | None, Setting(portkey="azure_api_version")] = None


def _headers(credentials: Credentials, _settings: ProviderSettings) -> dict[str, str]:
    return {"api-key": credentials.api_key} if credentials.api_key else {}


def _models_probe(credentials: Credentials, settings: ProviderSettings) -> UpstreamRequest:
    if _is_v1(credentials):
        url = credentials.api_base + "/models"
    else:
        base = credentials.api_base.removesuffix("/openai")
        url = f"{base}/openai/models?api-version={quote(credentials.api_version or '', safe='')}"
    return UpstreamRequest(
        method="GET", url=url, provider="azure", headers=_headers(credentials, settings)
    )


_IMAGES = OpenAIImages(
    provider="azure",
    # The catalogue's Azure GPT image models; Azure has no variations route.
    families=openai_families(
        "azure", gpt_image=("gpt-image-1", "gpt-image-1-mini"), gpt_image_2=(), variations=False
    ),
    url=_url,
    headers=_headers,
    model_in_body=_is_v1,
    relayable=False,  # its content filter annotations are stripped
)

AZURE = Provider(
    name="azure",
    translate_error=openai_errors("azure"),
    aliases=("azure-openai",),
    # LiteLLM's Entra ID routes (a token, a token provider, a service principal, a user).
    unsupported_settings=frozenset(
        {
            "azure_ad_token",
            "azure_ad_token_provider",
            "azure_password",
            "azure_scope",
            "azure_username",
            "client_id",
            "client_secret",
            "tenant_id",
        }
    ),
    credentials=CredentialSpec(
        api_key_env=("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
        api_base_env=("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"),
        api_version_env=("AZURE_API_VERSION", "OPENAI_API_VERSION"),
        # The first dated version with both DALL·E 3 and gpt-image-1.
        default_api_version="2025-04-01-preview",
    ),
    image_generation=_IMAGES,
    # Edits share the deployment URL; Azure has no variations route (its SDK's list of
    # deployment paths has none), so `image_variation` stays empty.
    image_edit=_IMAGES,
    settings_type=AzureSettings,
    portkey_fields_instead={
        "resource_name": "give api_base instead (https://<resource>.openai.azure.com)",
        "deployment_name": "the request's model names the Azure deployment",
        "deployment_config": "the request's model names the Azure deployment",
    },
    chat=OpenAIChat(provider="azure", url=_url, headers=_headers, model_in_body=_is_v1),
    image_limits=OPENAI_IMAGE_LIMITS,
    health_probe=_models_probe,
)

__all__ = ["AZURE"]
