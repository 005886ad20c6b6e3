"""How a Bedrock runtime request is addressed, signed and answered with an error: shared by
Converse (chat) and InvokeModel (images).

Requests are SigV4-signed with botocore's signer (or carry a Bedrock API key as a bearer
token); the model id in the path is percent-encoded as botocore encodes it. botocore is
imported on first use, so the provider costs nothing until it is called.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from prismgate.errors import (
    AuthenticationError,
    BadRequestError,
    PrismgateError,
    from_upstream,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import ProviderCall, ProviderSettings, Setting, settings_of
from prismgate.transport import UpstreamRequest, UpstreamResponse, retry_after_seconds

__all__ = ["ENDPOINT", "BedrockSettings", "bedrock_error", "call_redactor", "signed_request"]

SIGNING_NAME = "bedrock"  # the host says bedrock-runtime; SigV4 scopes to "bedrock"
# The endpoint when neither api_base nor aws_bedrock_runtime_endpoint is given.
ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"
# An AWS region name (it becomes part of the endpoint's host name).
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


class BedrockSettings(ProviderSettings, frozen=True, kw_only=True):
    """LiteLLM's names, and Portkey's where it has one."""

    aws_access_key_id: Annotated[str | None, Setting(portkey="aws_access_key_id")] = None
    aws_secret_access_key: Annotated[
        str | None, Setting(secret=True, portkey="aws_secret_access_key")
    ] = None
    aws_session_token: Annotated[str | None, Setting(secret=True, portkey="aws_session_token")] = (
        None
    )
    aws_region_name: Annotated[str | None, Setting(shown=True, portkey="aws_region")] = None
    # A profile in the gateway host's AWS files: the config file's to name, nobody else's.
    aws_profile_name: Annotated[str | None, Setting(host_local=True)] = None
    aws_bedrock_runtime_endpoint: Annotated[str | None, Setting(endpoint=True)] = None


def _botocore() -> None:
    try:
        import botocore  # noqa: F401
    except ImportError:
        raise PrismgateError(
            "Bedrock needs botocore: pip install 'prismgate[bedrock]'",
            provider="bedrock",
            code="missing_dependency",
        ) from None


@dataclass(slots=True)
class _CredentialChain:
    """botocore's credential chain (profile files, SSO, container and instance roles),
    found once; botocore renews refreshable credentials as they near expiry."""

    profile: str | None
    found: Any = None

    async def frozen(self) -> Any:
        if self.found is None:  # file and network look-ups: off the event loop
            self.found = await asyncio.to_thread(self._find)
        return await asyncio.to_thread(self.found.get_frozen_credentials)

    def _find(self) -> Any:
        import botocore.session
        from botocore.exceptions import BotoCoreError

        try:
            found = botocore.session.Session(profile=self.profile).get_credentials()
        except BotoCoreError as exc:
            found, reason = None, f" ({exc})"
        else:
            reason = ""
        if found is None:
            raise AuthenticationError(
                "no AWS credentials for bedrock: pass aws_access_key_id and "
                f"aws_secret_access_key, or a Bedrock api_key{reason}",
                provider="bedrock",
                code="missing_credentials",
            )
        return found


async def _aws_credentials(call: ProviderCall) -> Any:
    """Settings first, then the environment snapshot, then botocore's chain (cached)."""
    settings, environ = settings_of(call, BedrockSettings), call.environ
    key_id, secret, token = (
        settings.aws_access_key_id,
        settings.aws_secret_access_key,
        settings.aws_session_token,
    )
    if not key_id:
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        key_id, secret, token = (environ.get(name) for name in names)
    if key_id:
        if not secret:
            raise AuthenticationError(
                "bedrock got an AWS access key id without its secret access key",
                provider="bedrock",
                code="missing_credentials",
            )
        from botocore.credentials import Credentials as AwsCredentials

        # The secret is part of the key (hashed), so a corrected secret is not shadowed.
        digest = hashlib.sha256(f"{secret}\0{token or ''}".encode()).hexdigest()[:16]
        key = ("bedrock-credentials", key_id, digest)
        return call.cache.get_or_create(key, lambda: AwsCredentials(key_id, secret, token))
    if call.caller_credentials_only:
        raise AuthenticationError(
            "this call uses only the credentials it brings (direct provider mode, or a "
            "virtual key stored over the API) and it brings no AWS keys or Bedrock API key; "
            "the gateway's own AWS identity is never used for it",
            provider="bedrock",
            code="missing_credentials",
        )
    profile = settings.aws_profile_name or ""
    chain = call.cache.get_or_create(
        ("bedrock-credentials", "chain", profile), lambda: _CredentialChain(profile or None)
    )
    return await chain.frozen()


def _region(call: ProviderCall) -> str | None:
    names = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_REGION_NAME")
    region = settings_of(call, BedrockSettings).aws_region_name or next(
        (call.environ[name] for name in names if call.environ.get(name)), None
    )
    if region is not None and not (isinstance(region, str) and _REGION.fullmatch(region)):
        # It names the endpoint's host: nothing but a region may stand there.
        raise BadRequestError(
            f"aws_region_name {str(region)[:40]!r} is not an AWS region (for example us-east-1)",
            param="aws_region_name",
            provider="bedrock",
        )
    return region


def _need_region() -> BadRequestError:
    return BadRequestError(
        "bedrock needs an AWS region: pass aws_region_name or set AWS_REGION",
        param="aws_region_name",
    )


def _endpoint(call: ProviderCall, region: str | None) -> str:
    if call.credentials.api_base != ENDPOINT:  # api_base was given
        return call.credentials.api_base
    custom = settings_of(call, BedrockSettings).aws_bedrock_runtime_endpoint or call.environ.get(
        "AWS_BEDROCK_RUNTIME_ENDPOINT"
    )
    if custom:
        return str(custom).rstrip("/")
    if not region:
        raise _need_region()
    return ENDPOINT.format(region=region)


def _signed(
    url: str, body: bytes, headers: dict[str, str], creds: Any, region: str
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(creds, SIGNING_NAME, region).add_auth(request)
    return {name: value for name, value in request.headers.items()}


async def signed_request(
    call: ProviderCall, operation: str, body: bytes, *, accept: str = "application/json"
) -> UpstreamRequest:
    """`POST {endpoint}/model/{modelId}/{operation}` with `body`, signed (or with the
    Bedrock API key as a bearer token)."""
    _botocore()
    from botocore.utils import percent_encode

    region = _region(call)
    # botocore's own path-label encoding: ':' → %3A, an ARN's '/' → %2F.
    model = percent_encode(call.deployment.model)
    url = f"{_endpoint(call, region)}/model/{model}/{operation}"
    headers = {"Content-Type": "application/json", "Accept": accept}
    # An explicit api_key wins; explicit AWS keys win over a key from the environment.
    bearer = call.deployment.api_key or (
        None if settings_of(call, BedrockSettings).aws_access_key_id else call.credentials.api_key
    )
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    else:
        if not region:
            raise _need_region()
        headers = _signed(url, body, headers, await _aws_credentials(call), region)
    return UpstreamRequest(
        method="POST", url=url, provider="bedrock", headers=headers, body=body,
        timeout=call.timeout, connect_timeout=call.connect_timeout,
    )  # fmt: skip


def call_redactor(call: ProviderCall) -> Redactor:
    """The call's redactor, also removing the AWS secret and session token it was given."""
    settings = settings_of(call, BedrockSettings)
    return call.redact.including(settings.aws_secret_access_key, settings.aws_session_token)


def bedrock_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Bedrock's `{"message"}` with its `x-amzn-ErrorType` header, into the tree."""
    status, headers, body = response.status, response.headers, response.body
    # The header may carry a ":http://internal.amazon.com/coral/..." suffix.
    error_type = headers.get("x-amzn-errortype", "").split(":")[0] or None
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        payload = None
    message = ""
    if isinstance(payload, dict):
        message = str(payload.get("message") or payload.get("Message") or "")
        error_type = error_type or payload.get("__type")
    message = message or body[:300].decode("utf-8", "replace") or (error_type or "no message")
    return from_upstream(
        status,
        redact(message),
        provider="bedrock",
        code=error_type,
        retry_after=retry_after_seconds(headers),
    )
