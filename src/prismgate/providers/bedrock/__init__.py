"""AWS Bedrock: chat over the Converse API (images sent as bytes only, ConverseStream's
binary event stream decoded with botocore as it arrives), and image generation, edits and
variations over InvokeModel. Addressing, signing and errors live in `auth`; the
Converse wire shapes in `converse`; the image models in `images`.

botocore is imported on first use, so the provider costs nothing until it is called.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

import msgspec

from prismgate.errors import unreadable_answer
from prismgate.media.images import ImageLimits
from prismgate.providers.base import ChatCall, CredentialSpec, Provider
from prismgate.providers.bedrock.auth import (
    ENDPOINT,
    BedrockSettings,
    bedrock_error,
    call_redactor,
    signed_request,
)
from prismgate.providers.bedrock.converse import (
    CHAT_UNSUPPORTED,
    FORMATS,
    StreamTranslator,
    completion,
    converse_body,
)
from prismgate.providers.bedrock.images import BEDROCK_IMAGES
from prismgate.providers.sse import sse_data
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse
from prismgate.types.chat import ChatCompletion

__all__ = ["BEDROCK", "bedrock_error"]


def _completion_id(headers: Mapping[str, str]) -> str:
    return "chatcmpl-" + (headers.get("x-amzn-requestid") or uuid.uuid4().hex)


# ---------------------------------------------------------------------------- the capability


@dataclass(frozen=True, slots=True)
class BedrockChat:
    """Chat over Converse and ConverseStream."""

    async def _request(self, call: ChatCall, *, stream: bool) -> UpstreamRequest:
        body = msgspec.json.encode(converse_body(call.request, call.extra))
        operation = "converse-stream" if stream else "converse"
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        return await signed_request(call, operation, body, accept=accept)

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer."""
        response = await http.send(await self._request(call, stream=False))
        if response.status >= 400:
            raise bedrock_error(response, call_redactor(call))
        try:
            return completion(
                response.body, _completion_id(response.headers), call.deployment.model
            )
        except msgspec.DecodeError as exc:
            raise unreadable_answer(
                "bedrock", response.status, f"not a Converse answer ({exc})"
            ) from exc

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """ConverseStream's event frames as OpenAI chunks; an exception frame raises."""
        from botocore.eventstream import EventStreamBuffer, ParserError

        redact = call_redactor(call)
        async with http.stream(await self._request(call, stream=True)) as upstream:
            if upstream.status >= 400:
                failed = UpstreamResponse(upstream.status, upstream.headers, await upstream.read())
                raise bedrock_error(failed, redact)
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
                    raise unreadable_answer(
                        "bedrock",
                        upstream.status,
                        f"a malformed event stream ({type(exc).__name__})",
                    ) from exc
                for message in messages:
                    for chunk in translator.feed(message.headers, message.payload, redact):
                        yield sse_data(msgspec.json.encode(chunk))
            for chunk in translator.finish():
                yield sse_data(msgspec.json.encode(chunk))
            yield b"data: [DONE]\n\n"


BEDROCK = Provider(
    name="bedrock",
    translate_error=bedrock_error,
    # LiteLLM's assumed-role and web-identity routes to AWS credentials.
    unsupported_settings=frozenset(
        {
            "aws_external_id",
            "aws_role_name",
            "aws_session_name",
            "aws_sts_endpoint",
            "aws_web_identity_token",
        }
    ),
    credentials=CredentialSpec(
        # Bedrock API keys; without one, requests are SigV4-signed with AWS credentials.
        api_key_env=("AWS_BEARER_TOKEN_BEDROCK",),
        default_api_base=ENDPOINT,
        key_required=False,
    ),
    chat=BedrockChat(),
    settings_type=BedrockSettings,
    image_generation=BEDROCK_IMAGES,
    image_edit=BEDROCK_IMAGES,
    image_variation=BEDROCK_IMAGES,
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
