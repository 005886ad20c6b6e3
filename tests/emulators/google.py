"""A real loopback HTTP server for Google: OAuth token endpoint, Vertex AI and the Gemini API.

One server, three routes:

* ``POST /token``: the OAuth 2.0 JWT-bearer grant for the test service account of
  :meth:`GoogleEmulator.service_account_info` (its ``token_uri`` points here);
* Vertex: ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  (and ``:streamGenerateContent``, and Imagen's ``:predict``; also ``/v1beta1``), with
  ``Authorization: Bearer``
  a token this server issued, for the emulator's project;
* Gemini API: ``POST /v1beta/models/{m}:generateContent`` (and ``:streamGenerateContent``;
  also ``/v1``), with ``x-goog-api-key``. ``?key=`` works too, and is recorded
  (:attr:`GoogleEmulator.key_in_url`): a gateway should never put the key in a URL.

    with GoogleEmulator() as emu:
        creds = service_account.Credentials.from_service_account_info(
            emu.service_account_info(), scopes=[CLOUD_PLATFORM])
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from aiohttp import web

from . import google_rules as rules
from .google_oauth import CLOUD_PLATFORM, JWT_BEARER, OAuthError, ServiceAccount, verify_assertion
from .google_rules import Face, GoogleError, JsonObject
from .server import (
    FAULT_KINDS,
    EmulatorServer,
    Fault,
    FaultKind,
    Received,
    break_stream,
    retry_headers,
    send,
    sse,
    start_stream,
)
from .vision import SeenImage

__all__ = ["CLOUD_PLATFORM", "DEFAULT_GOOGLE_API_KEY", "DEFAULT_PROJECT", "GoogleEmulator"]

DEFAULT_GOOGLE_API_KEY = "AIzaSyEmulator-Test-Key-000000000000001"
DEFAULT_PROJECT = "emulator-project"

_VERTEX = re.compile(
    r"/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)"
)
_GEMINI = re.compile(r"/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)")
_METHODS = ("generateContent", "streamGenerateContent")
_VERTEX_METHODS = (*_METHODS, "predict")
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please "
    "use API Key or other form of API consumer identity to call this API."
)


@dataclass(frozen=True, slots=True)
class _Token:
    expires_at: float
    scopes: tuple[str, ...]


class GoogleEmulator(EmulatorServer):
    """See the module docstring.

    ``models``: the model ids served (default: any id starting with ``gemini-``,
    ``imagen-`` or ``imagegeneration@``). Gemini ids containing ``image`` make images on
    ``:generateContent``; Imagen ids answer Vertex's ``:predict`` (Gemini ids there get
    Vertex's refusal). Safety outcomes on demand are listed in ``google_rules``: a prompt
    with ``FILTER_ME`` has every image withheld, ``FILTER_SOME`` one Imagen image,
    ``BLOCK_PROMPT`` the prompt refused, ``TEXT_ONLY`` a Gemini answer without an image.
    ``tokens_issued`` counts the access tokens the token endpoint granted since the last
    :meth:`reset` (tokens stay valid across resets); ``images`` lists every image of
    every accepted request.

    Faults (:meth:`fail_next`) hit the Vertex and Gemini routes, or the token endpoint
    with ``target="token"``. ``status`` answers with Google's error body (a 429 with
    ``retry_after`` adds a ``RetryInfo`` detail and a Retry-After header); ``stream_error``
    sends ``{"error": ...}`` after the first chunk of a stream (INTERNAL, or the status
    given) and answers a non-streamed request with that error; ``truncate`` on a stream
    stops after the first chunk.
    """

    name = "google"
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_GOOGLE_API_KEY,
        project: str = DEFAULT_PROJECT,
        models: Iterable[str] | None = None,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.project = project
        self.models: tuple[str, ...] | None = None if models is None else tuple(models)
        self.token_lifetime = token_lifetime
        self.account = ServiceAccount(
            project_id=project,
            client_email=f"prismgate-emulator@{project}.iam.gserviceaccount.com",
            client_id="100000000000000000001",
        )
        self.tokens_issued = 0
        self.generated = 0
        self.images: list[SeenImage] = []
        self._tokens: dict[str, _Token] = {}

    # ------------------------------------------------------------------ test controls

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account_info(self) -> JsonObject:
        """A service-account key (Google's JSON format) whose ``token_uri`` is this server."""
        return self.account.info(self.token_uri)

    def issue_token(self, scopes: Iterable[str] = (CLOUD_PLATFORM,)) -> str:
        """Grant an access token directly, as if a JWT grant had succeeded."""
        token = f"ya29.emulator-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = _Token(time.time() + self.token_lifetime, tuple(scopes))
            self.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        """Make every token granted so far invalid (the next API call gets 401)."""
        with self._lock:
            for token, grant in self._tokens.items():
                self._tokens[token] = _Token(0.0, grant.scopes)

    @property
    def key_in_url(self) -> list[Received]:
        """Requests that carried the API key as a ``?key=`` query parameter."""
        return [received for received in self.requests if "key" in received.query]

    def fail_next(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
        target: Literal["api", "token"] = "api",
    ) -> None:
        """As :meth:`EmulatorServer.fail_next`; ``target="token"`` fails the token endpoint."""
        if target not in ("api", "token"):
            raise ValueError(f"unknown fault target {target!r}; expected 'api' or 'token'")
        self._queue_fault(target, kind, times, status, retry_after, delay, message)

    def reset(self) -> None:
        """Forget recorded requests, seen images, pending faults and the token count."""
        super().reset()
        self.images.clear()
        self.tokens_issued = 0

    # ------------------------------------------------------------------ HTTP plumbing

    def _fault_queue(self, request: web.Request) -> str | None:
        return "token" if request.path == "/token" else "api"

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        assert fault.status is not None
        if request.path == "/token":
            code = "invalid_request"
            if fault.status == 429 or fault.status >= 500:
                code = "rate_limit_exceeded" if fault.status == 429 else "internal_failure"
            error = OAuthError(code, fault.message or "Backend Error", fault.status)
            headers = retry_headers(fault.retry_after)
            return web.json_response(error.body(), status=fault.status, headers=headers)
        face = _face(request.path)
        google_error = rules.injected_error(fault.status, face, fault.message, fault.retry_after)
        return _error_response(google_error, retry_after=fault.retry_after)

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            if request.path == "/token" and request.method == "POST":
                return self._token(raw)
            return await self._route(request, raw, fault)
        except GoogleError as error:
            return _error_response(error)
        except OAuthError as error:
            return web.json_response(error.body(), status=error.status)

    def _token(self, raw: bytes) -> web.Response:
        form = {key: values[0] for key, values in parse_qs(raw.decode("latin-1")).items()}
        grant = form.get("grant_type")
        if grant != JWT_BEARER:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant or ''}")
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "Missing required parameter: assertion")
        claims = verify_assertion(assertion, self.account, self.token_uri)
        token = self.issue_token(claims["scope"].split())
        body = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return web.json_response(body)

    async def _route(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        path = request.path
        vertex = _VERTEX.fullmatch(path)
        match = vertex or _GEMINI.fullmatch(path)
        methods = _VERTEX_METHODS if vertex else _METHODS
        if match is None or request.method != "POST" or match["method"] not in methods:
            raise GoogleError(404, "Requested entity was not found.")
        face: Face = "vertex" if vertex else "gemini"
        model = match["model"]
        if vertex:
            self._check_bearer(request)
            if match["project"] != self.project:
                resource = path.split(":")[0].removeprefix(f"/{match['version']}/")
                raise GoogleError(
                    403,
                    f"Permission 'aiplatform.endpoints.predict' denied on resource "
                    f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
                )
        else:
            self._check_key(request)
        if not self._known(model):
            raise self._not_found(match, face)
        if match["method"] == "predict":
            job = rules.validate_predict(rules.parse_body(raw), model)
            return web.json_response(rules.predict_answer(job, self._next_seed()))
        conv = rules.validate(rules.parse_body(raw), face=face, model=model)
        self.images.extend(conv.images)
        stream = match["method"] == "streamGenerateContent"
        response_id = uuid.uuid4().hex[:22]
        if rules.is_gemini_image(model):
            if fault is not None and fault.kind == "stream_error":
                raise rules.injected_error(fault.status or 500, face, fault.message)
            answer = rules.image_answer(conv, face=face, model=model, response_id=response_id,
                                        seed=self._next_seed())  # fmt: skip
            if stream:  # the whole answer as one event
                return await self._stream(request, [answer], face, None)
            return web.json_response(answer)
        reply = rules.answer(conv)
        bodies = rules.response_chunks(
            conv, reply, face=face, model=model, response_id=response_id, stream=stream
        )
        if not stream:
            if fault is not None and fault.kind == "stream_error":
                raise rules.injected_error(fault.status or 500, face, fault.message)
            return web.json_response(bodies[0])
        return await self._stream(request, bodies, face, fault)

    def _check_bearer(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            grant = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at < time.time():
            reason = "CREDENTIALS_MISSING" if not scheme else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            if grant is not None:
                reason = "ACCESS_TOKEN_EXPIRED"
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
            raise GoogleError(401, _UNAUTHENTICATED, [info])
        if CLOUD_PLATFORM not in grant.scopes:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
            raise GoogleError(403, "Request had insufficient authentication scopes.", [info])

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise GoogleError(403, _NO_KEY)
        if key != self.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            raise GoogleError(400, "API key not valid. Please pass a valid API key.", [info])

    def _known(self, model: str) -> bool:
        if self.models is not None:
            return model in self.models
        return model.startswith("gemini-") or rules.is_imagen(model)

    def _next_seed(self) -> int:
        """A new seed per generated answer, so two calls give different pictures."""
        with self._lock:
            self.generated += 1
            return self.generated

    @staticmethod
    def _not_found(match: re.Match[str], face: Face) -> GoogleError:
        model = match["model"]
        if face == "gemini":
            return GoogleError(
                404,
                f"models/{model} is not found for API version {match['version']}, or is not "
                f"supported for {match['method']}. Call ListModels to see the list of available "
                "models and their supported methods.",
            )
        name = (
            f"projects/{match['project']}/locations/{match['location']}/publishers/google/"
            f"models/{model}"
        )
        return GoogleError(
            404,
            f"Publisher Model `{name}` was not found or your project does not have access to "
            "it. Please ensure you are using a valid model version. For more information, see: "
            "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
        )

    async def _stream(
        self, request: web.Request, bodies: list[JsonObject], face: Face, fault: Fault | None
    ) -> web.StreamResponse:
        """``?alt=sse``: server-sent events; otherwise a JSON array sent piece by piece."""
        as_sse = request.query.get("alt") == "sse"
        content_type = "text/event-stream" if as_sse else "application/json"
        response = await start_stream(request, content_type)
        for index, body in enumerate(bodies):
            if as_sse:
                chunk = sse(body, newline="\r\n")
            else:
                chunk = (b"[" if index == 0 else b",\r\n") + _dumps(body)
            await send(response, chunk)
            if index == 0 and fault is not None and fault.kind == "truncate":
                return break_stream(request, response)
            if index == 0 and fault is not None and fault.kind == "stream_error":
                error = rules.injected_error(fault.status or 500, face, fault.message).body()
                tail = sse(error, newline="\r\n") if as_sse else b",\r\n" + _dumps(error)
                await send(response, tail)
                break
        if not as_sse:
            await send(response, b"]")
        await response.write_eof()
        return response


# ---------------------------------------------------------------------- helpers


def _face(path: str) -> Face:
    return "vertex" if "/projects/" in path else "gemini"


def _dumps(body: JsonObject) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _error_response(error: GoogleError, *, retry_after: float | None = None) -> web.Response:
    return web.json_response(error.body(), status=error.code, headers=retry_headers(retry_after))
