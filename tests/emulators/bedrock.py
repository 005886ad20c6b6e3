"""A real loopback HTTP server that speaks the AWS Bedrock runtime API.

Routes: ``POST /model/{modelId}/converse``, ``/converse-stream``, ``/invoke`` and
``/invoke-with-response-stream`` (the last two for Claude Messages bodies and Amazon
Nova ``messages-v1`` bodies); ``/invoke`` also serves the image models (Stability SDXL,
SD3 / SD3.5 / Ultra / Core, Titan Image Generator, Nova Canvas), validated and answered
as ``bedrock_image_rules`` describes, safety triggers (``FILTER_ME``, ``FILTER_SOME``)
included. Every request must be SigV4-signed for service
``bedrock`` with the emulator's credentials (verified with botocore against the raw,
still percent-encoded path) or carry ``Authorization: Bearer <api_key>``. Streams use
AWS event-stream binary framing.

    with BedrockEmulator(region="eu-west-1") as emu:
        emu.fail_next("status", status=429)  # ThrottlingException
        ...  # point botocore at endpoint_url=emu.base_url
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from urllib.parse import unquote

from aiohttp import web

from . import anthropic_rules, aws
from . import bedrock_image_rules as image_rules
from . import bedrock_rules as rules
from .anthropic_rules import AnthropicError
from .aws import AwsCredentials, AwsError, JsonObject
from .server import (
    FAULT_KINDS,
    EmulatorServer,
    Fault,
    break_stream,
    retry_headers,
    send,
    start_stream,
)
from .vision import SeenImage

__all__ = [
    "BEDROCK_MODELS",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "BedrockEmulator",
]

BEDROCK_MODELS = rules.BEDROCK_MODELS + image_rules.IMAGE_MODELS
DEFAULT_ACCESS_KEY_ID = "AKIAEMULATOR00000001"
DEFAULT_SECRET_ACCESS_KEY = "emulator/secret/access/key/0000000000001"
_OPERATIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream")
_EVENT_STREAM = "application/vnd.amazon.eventstream"


class BedrockEmulator(EmulatorServer):
    """See the module docstring.

    ``models``: the base model ids it serves (default :data:`BEDROCK_MODELS`);
    inference-profile ids (``us.``/``eu.``/``global.``... prefixes) and ARNs of those
    resolve to them. ``requests`` lists every request; ``images`` every image of every
    accepted request.

    Faults (:meth:`fail_next`): ``status`` answers with Bedrock's error for that status
    (``x-amzn-ErrorType`` ThrottlingException for 429, ModelTimeoutException for 408,
    ...); ``stream_error`` sends an exception message after the first text event of a
    stream (``modelStreamErrorException``, or the exception for ``status``), and
    answers a non-streamed request with that error as its HTTP status; ``truncate`` on
    a stream stops after the first text event.
    """

    name = "bedrock"
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY,
        session_token: str | None = None,
        region: str = "us-east-1",
        api_key: str | None = None,
        *,
        models: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.credentials = AwsCredentials(access_key_id, secret_access_key, session_token)
        self.region = region
        self.api_key = api_key
        self.models: tuple[str, ...] = tuple(BEDROCK_MODELS if models is None else models)
        self.images: list[SeenImage] = []
        self._filter_turns = 0  # FILTER_SOME calls to one-image models so far

    def reset(self) -> None:
        """Forget recorded requests, seen images, pending faults and FILTER_SOME turns."""
        super().reset()
        self.images.clear()
        self._filter_turns = 0

    # ------------------------------------------------------------------ HTTP plumbing

    async def _on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        response.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        error = rules.injected_error(fault.status, fault.message)
        return _error_response(error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            return await self._route(request, raw, fault)
        except AwsError as error:
            return _error_response(error)

    async def _route(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        # Split the raw path: a model id may hold an encoded "/" (ARNs), so decode after.
        raw_path = request.raw_path.split("?", 1)[0]
        parts = raw_path.split("/")
        if (
            request.method != "POST"
            or len(parts) != 4
            or parts[1] != "model"
            or parts[3] not in _OPERATIONS
        ):
            raise AwsError(404, "UnknownOperationException", "Unknown operation", service=False)
        self._authenticate(request, raw)
        operation, model_id = parts[3], unquote(parts[2])
        base = rules.resolve_model(model_id, self.models)
        body = rules.parse_body(raw)
        started = time.perf_counter()
        claude = base.startswith("anthropic.")
        if operation.startswith("converse"):
            conv = rules.validate_converse(body, claude=claude)
            reply = rules.answer(conv)
            self.images.extend(conv.images)
            latency = max(1, round((time.perf_counter() - started) * 1000))
            if operation == "converse":
                _raise_stream_fault(fault)
                return web.json_response(rules.converse_body(conv, reply, latency))
            events = rules.converse_stream_events(conv, reply, latency)
            return await self._stream(request, events, fault, text_at=1)
        if base in image_rules.IMAGE_MODELS:
            if operation != "invoke":
                raise aws.validation(f"{base} does not support response streaming.")
            _raise_stream_fault(fault)
            turn = self._filter_turns
            if image_rules.FILTER_SOME in json.dumps(body):
                self._filter_turns += 1
            return web.json_response(image_rules.answer(base, body, turn))
        if claude:
            return await self._invoke_claude(request, body, model_id, fault, operation)
        if base.startswith("amazon.nova"):
            return await self._invoke_nova(request, body, fault, operation)
        raise aws.validation(f"The emulator has no InvokeModel body rules for {base}.")

    def _authenticate(self, request: web.Request, raw: bytes) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            if self.api_key is None or token.strip() != self.api_key:
                raise AwsError(
                    403,
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                    service=False,
                )
            return
        aws.verify_sigv4(
            method=request.method,
            raw_path=request.raw_path,
            headers=request.headers,
            multi_headers=list(request.headers.items()),
            body=raw,
            credentials=self.credentials,
            region=self.region,
        )

    # ------------------------------------------------------------------ InvokeModel

    async def _invoke_claude(
        self,
        request: web.Request,
        body: JsonObject,
        model_id: str,
        fault: Fault | None,
        operation: str,
    ) -> web.StreamResponse:
        try:
            conv = anthropic_rules.validate(body, platform="bedrock")
        except AnthropicError as error:
            raise aws.validation(error.message) from None
        self.images.extend(conv.images)
        reply = anthropic_rules.answer(conv)
        message_id = f"msg_bdrk_{uuid.uuid4().hex[:24]}"
        message = anthropic_rules.message_body(message_id, model_id, conv, reply)
        usage = message["usage"]
        if operation == "invoke":
            _raise_stream_fault(fault)
            headers = _token_headers(usage["input_tokens"], usage["output_tokens"])
            return web.json_response(message, headers=headers)
        events = anthropic_rules.stream_events(message)
        metrics = {
            "inputTokenCount": usage["input_tokens"],
            "outputTokenCount": usage["output_tokens"],
            "invocationLatency": 1,
            "firstByteLatency": 1,
        }
        chunks: list[tuple[str, JsonObject]] = []
        for name, data in events:
            if name == "ping":
                continue
            extra = {"amazon-bedrock-invocationMetrics": metrics} if name == "message_stop" else {}
            encoded = base64.b64encode(json.dumps({**data, **extra}).encode()).decode()
            chunks.append(("chunk", {"bytes": encoded}))
        # message_start, content_block_start, then the first text delta.
        return await self._stream(request, chunks, fault, text_at=2)

    async def _invoke_nova(
        self, request: web.Request, body: JsonObject, fault: Fault | None, operation: str
    ) -> web.StreamResponse:
        body = dict(body)
        version = body.pop("schemaVersion", "messages-v1")
        if version != "messages-v1":
            raise aws.validation(
                f"Malformed input request: #/schemaVersion: {version} is not "
                "a valid enum value, please reformat your input and try again."
            )
        config = body.get("inferenceConfig")
        if isinstance(config, dict):
            names = {"max_new_tokens": "maxTokens", "top_p": "topP", "top_k": None}
            body["inferenceConfig"] = {
                names.get(key, key): value
                for key, value in config.items()
                if names.get(key, key) is not None
            }
        conv = rules.validate_converse(body, claude=False)
        self.images.extend(conv.images)
        reply = rules.answer(conv)
        answer = rules.converse_body(conv, reply, 1)
        answer.pop("metrics")
        if operation == "invoke":
            _raise_stream_fault(fault)
            usage = answer["usage"]
            headers = _token_headers(usage["inputTokens"], usage["outputTokens"])
            return web.json_response(answer, headers=headers)
        events = rules.converse_stream_events(conv, reply, 1)
        chunks = [
            ("chunk", {"bytes": base64.b64encode(json.dumps({name: data}).encode()).decode()})
            for name, data in events
        ]
        return await self._stream(request, chunks, fault, text_at=1)

    # ------------------------------------------------------------------ streaming

    async def _stream(
        self,
        request: web.Request,
        events: list[tuple[str, JsonObject]],
        fault: Fault | None,
        *,
        text_at: int,
    ) -> web.StreamResponse:
        """Send ``events`` as event-stream frames; a stream fault strikes after ``text_at``."""
        response = await start_stream(request, _EVENT_STREAM)
        for index, (name, payload) in enumerate(events):
            await send(response, aws.event_frame(name, payload))
            if index == text_at and fault is not None:
                if fault.kind == "truncate":
                    return break_stream(request, response)
                if fault.kind == "stream_error":
                    kind, error = rules.stream_exception(fault.status, fault.message)
                    await send(response, aws.exception_frame(kind, error))
                    break
        await response.write_eof()
        return response


# ---------------------------------------------------------------------- helpers


def _raise_stream_fault(fault: Fault | None) -> None:
    if fault is not None and fault.kind == "stream_error":
        raise rules.injected_error(fault.status or 424, fault.message)


def _token_headers(input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {
        "X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": str(output_tokens),
        "X-Amzn-Bedrock-Invocation-Latency": "1",
    }


def _error_response(error: AwsError, *, retry_after: float | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": error.header, **retry_headers(retry_after)}
    return web.json_response(error.body(), status=error.status, headers=headers)
