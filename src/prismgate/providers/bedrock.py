"""AWS Bedrock's Converse API: requests signed with botocore's SigV4 signer (or a Bedrock
API key), images sent as bytes only, and ConverseStream's binary event stream decoded with
botocore as it arrives. The wire shapes live in `bedrock_converse`.

botocore is imported on first use, so the provider costs nothing until it is called.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    PrismgateError,
    from_upstream,
)
from prismgate.media.images import ImageLimits
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import ChatCall, CredentialSpec, Provider
from prismgate.providers.bedrock_converse import (
    CHAT_UNSUPPORTED,
    FORMATS,
    StreamTranslator,
    completion,
    converse_body,
)
from prismgate.providers.sse import sse_data
from prismgate.transport import Transport, UpstreamRequest, retry_after_seconds
from prismgate.types.chat import ChatCompletion

__all__ = ["BEDROCK", "bedrock_error"]

SIGNING_NAME = "bedrock"  # the host says bedrock-runtime; SigV4 scopes to "bedrock"
# The endpoint when neither api_base nor aws_bedrock_runtime_endpoint is given.
_ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"


# ---------------------------------------------------------------------------- auth


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


async def _aws_credentials(call: ChatCall) -> Any:
    """Settings first, then the environment snapshot, then botocore's chain (cached)."""
    settings, environ = call.settings, call.environ
    key_id, secret, token = (
        settings.get("aws_access_key_id"),
        settings.get("aws_secret_access_key"),
        settings.get("aws_session_token"),
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
        from botocore.credentials import Credentials

        # The secret is part of the key (hashed), so a corrected secret is not shadowed.
        digest = hashlib.sha256(f"{secret}\0{token or ''}".encode()).hexdigest()[:16]
        key = ("bedrock-credentials", key_id, digest)
        return call.cache.get_or_create(key, lambda: Credentials(key_id, secret, token))
    if call.caller_credentials_only:
        raise AuthenticationError(
            "direct provider mode needs your own AWS keys or a Bedrock API key; the "
            "gateway's own AWS identity is never used for it",
            provider="bedrock",
            code="missing_credentials",
        )
    profile = settings.get("aws_profile_name") or ""
    chain = call.cache.get_or_create(
        ("bedrock-credentials", "chain", profile), lambda: _CredentialChain(profile or None)
    )
    return await chain.frozen()


def _region(call: ChatCall) -> str | None:
    names = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_REGION_NAME")
    return call.settings.get("aws_region_name") or next(
        (call.environ[name] for name in names if call.environ.get(name)), None
    )


def _need_region() -> BadRequestError:
    return BadRequestError(
        "bedrock needs an AWS region: pass aws_region_name or set AWS_REGION",
        param="aws_region_name",
    )


def _endpoint(call: ChatCall, region: str | None) -> str:
    if call.credentials.api_base != _ENDPOINT:  # api_base was given
        return call.credentials.api_base
    custom = call.settings.get("aws_bedrock_runtime_endpoint") or call.environ.get(
        "AWS_BEDROCK_RUNTIME_ENDPOINT"
    )
    if custom:
        return str(custom).rstrip("/")
    if not region:
        raise _need_region()
    return _ENDPOINT.format(region=region)


def _signed(
    url: str, body: bytes, headers: dict[str, str], creds: Any, region: str
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(creds, SIGNING_NAME, region).add_auth(request)
    return {name: value for name, value in request.headers.items()}


# ---------------------------------------------------------------------------- answers


def bedrock_error(
    status: int, body: bytes, headers: Mapping[str, str], redact: Redactor
) -> PrismgateError:
    """Bedrock's `{"message"}` with its `x-amzn-ErrorType` header, into the tree."""
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


def _completion_id(headers: Mapping[str, str]) -> str:
    return "chatcmpl-" + (headers.get("x-amzn-requestid") or uuid.uuid4().hex)


# ---------------------------------------------------------------------------- the capability


@dataclass(frozen=True, slots=True)
class BedrockChat:
    """Chat over Converse and ConverseStream."""

    async def _request(self, call: ChatCall, *, stream: bool) -> UpstreamRequest:
        _botocore()
        from botocore.utils import percent_encode

        body = msgspec.json.encode(converse_body(call.request, call.extra))
        region = _region(call)
        # botocore's own path-label encoding: ':' → %3A, an ARN's '/' → %2F.
        model = percent_encode(call.deployment.model)
        operation = "converse-stream" if stream else "converse"
        url = f"{_endpoint(call, region)}/model/{model}/{operation}"
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept}
        # An explicit api_key wins; explicit AWS keys win over a key from the environment.
        bearer = call.deployment.api_key or (
            None if call.settings.get("aws_access_key_id") else call.credentials.api_key
        )
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        else:
            if not region:
                raise _need_region()
            headers = _signed(url, body, headers, await _aws_credentials(call), region)
        return UpstreamRequest(
            method="POST", url=url, provider="bedrock", headers=headers, body=body,
            timeout=call.timeout,
        )  # fmt: skip

    def _redactor(self, call: ChatCall) -> Redactor:
        return call.redact.including(
            call.settings.get("aws_secret_access_key"), call.settings.get("aws_session_token")
        )

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer."""
        response = await http.send(await self._request(call, stream=False))
        if response.status >= 400:
            raise bedrock_error(
                response.status, response.body, response.headers, self._redactor(call)
            )
        return completion(response.body, _completion_id(response.headers), call.deployment.model)

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """ConverseStream's event frames as OpenAI chunks; an exception frame raises."""
        from botocore.eventstream import EventStreamBuffer, ParserError

        redact = self._redactor(call)
        async with http.stream(await self._request(call, stream=True)) as upstream:
            if upstream.status >= 400:
                raise bedrock_error(upstream.status, await upstream.read(), upstream.headers,
                                    redact)  # fmt: skip
            translator = StreamTranslator(
                id=_completion_id(upstream.headers),
                created=int(time.time()),
                model=call.deployment.model,
            )
            frames = EventStreamBuffer()
            async for piece in upstream.chunks():
                frames.add_data(piece)
                try:
                    messages = list(frames)  # the complete frames so far
                except ParserError as exc:
                    raise APIError(
                        f"bedrock sent a malformed event stream ({type(exc).__name__})",
                        provider="bedrock",
                    ) from exc
                for message in messages:
                    for chunk in translator.feed(message.headers, message.payload, redact):
                        yield sse_data(msgspec.json.encode(chunk))
            for chunk in translator.finish():
                yield sse_data(msgspec.json.encode(chunk))
            yield b"data: [DONE]\n\n"


BEDROCK = Provider(
    name="bedrock",
    credentials=CredentialSpec(
        # Bedrock API keys; without one, requests are SigV4-signed with AWS credentials.
        api_key_env=("AWS_BEARER_TOKEN_BEDROCK",),
        default_api_base=_ENDPOINT,
        key_required=False,
    ),
    chat=BedrockChat(),
    chat_unsupported=frozenset(CHAT_UNSUPPORTED),
    # 3.75 MB and 8000 px an image, four types, and no URL sources: every remote image is
    # fetched by the gateway and sent as bytes.
    image_limits=ImageLimits(
        media_types=frozenset(FORMATS),
        max_bytes=3_932_160,
        max_side=8000,
        url_schemes=frozenset(),
    ),
)
