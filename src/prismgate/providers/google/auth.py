"""How a call reaches Google (URL and credentials, on Vertex AI or the Gemini API) for
Gemini chat, Gemini image models and Imagen's `:predict` alike, and how Google's refusals
(`google.rpc.Status` errors) are read.

Vertex's project and location come from the call's settings (`vertex_project`, or LiteLLM's
`vertex_ai_project`; the same for the location), then the environment snapshot, then (the
project) the credentials; they shape the URL only, never the body. Its token comes from
google-auth: `vertex_credentials` (a service-account JSON, or its path) or Application
Default Credentials. One Credentials object per source lives in the gateway's
ProviderCache, keyed by a digest (never the secret), refreshed only when no longer valid
or refused; loading and refreshing are blocking I/O, run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import msgspec

from prismgate.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    PrismgateError,
    ServiceUnavailableError,
    from_upstream,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import ProviderCall, ProviderSettings, Setting, settings_of
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
    retry_after_seconds,
)

__all__ = [
    "GoogleErrorDetail",
    "generate",
    "generate_stream",
    "status_error",
    "vertex_access",
    "vertex_host",
]

PROVIDER = "vertex_ai"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# Where a service-account key is exchanged for a token. A caller's own key may point
# nowhere else: its `token_uri` would make the gateway call a host of the caller's choice.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (an address, not a secret)
PROJECT_ENV = ("VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT")
LOCATION_ENV = ("VERTEXAI_LOCATION", "GOOGLE_CLOUD_LOCATION")
DEFAULT_LOCATION = "us-central1"
# Both end up in the URL (the location in the host name): nothing else may get through.
_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,127}")
_LOCATION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_MODEL_SAFE = "@.-_"  # model ids are quoted into the path: no `/`, `?` or `:` of their own


async def generate(
    call: ProviderCall,
    provider: str,
    body: bytes,
    http: Transport,
    *,
    vertex: bool,
    method: str = "generateContent",
) -> UpstreamResponse:
    """POST `body` to the model's `:generateContent` (or `method`: Imagen's `:predict`).
    A Vertex token Google refuses (revoked, or expired early) is replaced once; a failed
    answer raises."""
    request, token = await _request(call, provider, body, vertex=vertex, method=method)
    response = await http.send(request)
    if response.status == 401 and token is not None:
        request, _ = await _request(call, provider, body, vertex=vertex, method=method,
                                    rejected=token)  # fmt: skip
        response = await http.send(request)
    if response.status >= 400:
        raise google_error(provider, response, call.redact)
    return response


@contextlib.asynccontextmanager
async def generate_stream(
    call: ProviderCall, provider: str, body: bytes, http: Transport, *, vertex: bool
) -> AsyncIterator[UpstreamStream]:
    """`:streamGenerateContent?alt=sse`, opened, under the same rules as `generate`."""
    stream = "streamGenerateContent"
    request, token = await _request(call, provider, body, vertex=vertex, method=stream)
    async with contextlib.AsyncExitStack() as opened:
        upstream = await opened.enter_async_context(http.stream(request))
        if upstream.status == 401 and token is not None:
            await opened.aclose()
            request, _ = await _request(call, provider, body, vertex=vertex, method=stream,
                                        rejected=token)  # fmt: skip
            upstream = await opened.enter_async_context(http.stream(request))
        if upstream.status >= 400:
            failed = UpstreamResponse(upstream.status, upstream.headers, await upstream.read())
            raise google_error(provider, failed, call.redact)
        yield upstream


async def _request(
    call: ProviderCall,
    provider: str,
    body: bytes,
    *,
    vertex: bool,
    method: str,
    rejected: str | None = None,
) -> tuple[UpstreamRequest, str | None]:
    """The request, and the Vertex token in it (None on the Gemini API, whose key goes in
    the `x-goog-api-key` header only: a key in a URL ends up in logs)."""
    headers = {"content-type": "application/json"}
    token: str | None = None
    model = quote(call.deployment.model.removeprefix("models/"), safe=_MODEL_SAFE)
    if vertex:
        models, token = await vertex_access(call, rejected=rejected)
        headers["authorization"] = f"Bearer {token}"
    else:
        models = f"{call.credentials.api_base}/v1beta/models"
        headers["x-goog-api-key"] = call.credentials.api_key or ""
    url = f"{models}/{model}:{method}"
    if method == "streamGenerateContent":
        url += "?alt=sse"
    request = UpstreamRequest(method="POST", url=url, provider=provider, headers=headers,
                              body=body, timeout=call.timeout,
                              connect_timeout=call.connect_timeout)  # fmt: skip
    return request, token


class GoogleErrorDetail(msgspec.Struct):
    """Google's error (`google.rpc.Status`): HTTP code, message, and status name."""

    code: int = 0
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _Error(msgspec.Struct):
    error: GoogleErrorDetail = msgspec.field(default_factory=GoogleErrorDetail)


def google_error(provider: str, response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Google's `{"error": {code, message, status}}` into the tree, HTTP status kept."""
    try:
        detail = msgspec.json.decode(response.body, type=_Error).error
    except msgspec.DecodeError:
        detail = GoogleErrorDetail(message=response.body[:300].decode("utf-8", "replace"))
    return status_error(provider, detail, redact, status=response.status,
                        retry_after=retry_after_seconds(response.headers))  # fmt: skip


def vertex_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """A Vertex AI error answer, into the tree."""
    return google_error("vertex_ai", response, redact)


def gemini_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """A Gemini API error answer, into the tree."""
    return google_error("gemini", response, redact)


def status_error(
    provider: str, detail: GoogleErrorDetail, redact: Redactor, *, status: int | None = None,
    retry_after: float | None = None,
) -> PrismgateError:  # fmt: skip
    """One Google error (an answer's, or a stream's `{"error": ...}` event) into the tree;
    `status` defaults to the error's own code (a 500 when it has none)."""
    if status is None:
        status = detail.code if detail.code >= 400 else 500
    return from_upstream(
        status,
        redact(detail.message or detail.status or f"HTTP {status}"),
        provider=provider,
        code=detail.status or None,
        retry_after=retry_after if retry_after is not None else _retry_delay(detail.details),
    )


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """`google.rpc.RetryInfo`'s `retryDelay` ("1.5s"), when Google sent no header."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str):
            try:
                return float(delay.removesuffix("s"))
            except ValueError:
                return None
    return None


def vertex_host(location: str) -> str:
    """Google's host for `location`: regional, or the global one."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


async def vertex_access(call: ProviderCall, *, rejected: str | None = None) -> tuple[str, str]:
    """(the URL of the project's publisher models, a token) for `call`. `rejected`: a
    token Google has just refused, so a new one is made even if it looks valid."""
    if call.credentials.api_key:  # not silently ignored: the caller meant something
        raise BadRequestError("vertex_ai takes vertex_credentials or Application Default "
                              "Credentials, not api_key (Gemini API keys: use gemini/)",
                              param="api_key", provider=PROVIDER)  # fmt: skip
    settings = settings_of(call, VertexSettings)
    source = _credential_source(settings.vertex_credentials)
    if call.caller_credentials_only and source is not None:
        source = _callers_key(source)
    if source is None and call.caller_credentials_only:
        # ADC is the server's own identity: never lent to a caller, nor to a stored key.
        raise AuthenticationError(
            "this call uses only the credentials it brings (direct provider mode, or a "
            "virtual key stored over the API) and it brings no Vertex credentials; the "
            "gateway's own Google identity is never used for it",
            provider="vertex_ai",
            code="missing_credentials",
        )
    key = ("google", "vertex_credentials", _digest(source))
    tokens = call.cache.get_or_create(key, lambda: _TokenSource(source))
    token = None if rejected else tokens.valid_token()
    if token is None:
        token = await _refreshed(tokens, rejected, call.redact)
    environ = call.environ  # the config's snapshot: this module never reads os.environ
    project = _first_set(settings.vertex_project, settings.vertex_ai_project) or _first(
        environ, PROJECT_ENV
    )
    project = project or tokens.project
    if not project:
        raise BadRequestError(
            "vertex_ai needs a project: pass vertex_project (or vertex_ai_project) or set "
            f"{' or '.join(PROJECT_ENV)}",
            param="vertex_project",
            provider=PROVIDER,
        )
    location = (
        _first_set(settings.vertex_location, settings.vertex_ai_location)
        or _first(environ, LOCATION_ENV)
        or DEFAULT_LOCATION
    )
    _check("vertex_project", project, _PROJECT)
    _check("vertex_location", location, _LOCATION)
    # A caller's api_base (an emulator, a private endpoint) replaces scheme and host.
    base = (call.deployment.api_base or vertex_host(location)).rstrip("/")
    return f"{base}/v1/projects/{project}/locations/{location}/publishers/google/models", token


def _first_set(*values: str | int | None) -> str | None:
    return next((str(value) for value in values if value), None)


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[name] for name in names if environ.get(name)), None)


def _check(name: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.fullmatch(value):
        raise BadRequestError(
            f"{name} {value!r} is not a valid Google Cloud {name.removeprefix('vertex_')}",
            param=name,
            provider=PROVIDER,
        )


# A service-account JSON as text or a mapping, a path to one, or None (ADC).
_Source = str | dict[str, Any] | None


def _credential_source(value: object) -> _Source:
    if isinstance(value, str | Mapping | None):
        return dict(value) if isinstance(value, Mapping) else value or None
    raise BadRequestError(
        "vertex_credentials must be a service-account JSON (text or object) or a file path",
        param="vertex_credentials",
        provider=PROVIDER,
    )


def _callers_key(source: str | dict[str, Any]) -> dict[str, Any]:
    """A caller's own service-account key, as it may be used: the JSON itself (never a
    path: the gateway's files are not the caller's to name, nor to probe), of type
    service_account, exchanged at Google's token endpoint only."""
    info: Any = source
    if isinstance(source, str):
        try:
            info = json.loads(source) if source.lstrip().startswith("{") else None
        except ValueError:
            info = None
    if not isinstance(info, dict):
        raise BadRequestError(
            "your vertex credentials must be the service-account key's JSON itself",
            param="vertex_credentials",
            provider=PROVIDER,
        )
    if info.get("type") != "service_account":
        raise BadRequestError(
            "your vertex credentials must be a service-account key (type service_account)",
            param="vertex_credentials",
            provider=PROVIDER,
        )
    if info.get("token_uri", GOOGLE_TOKEN_URI) != GOOGLE_TOKEN_URI:
        raise BadRequestError(
            f"your service-account key's token_uri must be {GOOGLE_TOKEN_URI}: the gateway "
            "exchanges a caller's key at Google's token endpoint only",
            param="vertex_credentials",
            provider=PROVIDER,
        )
    return info


# LiteLLM's names, and Portkey's where it has one. `vertex_credentials` may be a path on
# the gateway's host in the config file; anywhere else, only the key's JSON itself.
class VertexSettings(ProviderSettings, frozen=True, kw_only=True):
    """Where Vertex AI calls go, and as whom. A project may be its number."""

    vertex_project: Annotated[
        str | int | None, Setting(shown=True, portkey="vertex_project_id")
    ] = None
    vertex_ai_project: Annotated[str | int | None, Setting(shown=True)] = None
    vertex_location: Annotated[str | None, Setting(shown=True, portkey="vertex_region")] = None
    vertex_ai_location: Annotated[str | None, Setting(shown=True)] = None
    vertex_credentials: Annotated[
        str | dict[str, Any] | None,
        Setting(
            secret=True,
            portkey="vertex_service_account_json",
            structured=True,
            host_local=True,
            inline=_callers_key,
        ),
    ] = None


def _digest(source: _Source) -> str:
    if source is None:
        return "application-default"
    text = source if isinstance(source, str) else json.dumps(source, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class _TokenSource:
    """One google-auth Credentials object; loaded and refreshed under a thread lock, so
    concurrent calls make one token between them."""

    def __init__(self, source: _Source) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._request: Any = None
        self.project: str | None = None

    def valid_token(self) -> str | None:
        """The cached token while google-auth deems it valid (not near its expiry)."""
        credentials = self._credentials
        if credentials is not None and credentials.valid:
            return str(credentials.token)
        return None

    def refreshed_token(self, rejected: str | None) -> str:
        """Blocking: load the credentials if needed, and make a new token unless another
        thread has just made one."""
        with self._lock:
            if self._credentials is None:
                import google.auth.transport.requests

                self._credentials, self.project = _load(self._source)
                self._request = google.auth.transport.requests.Request()
            credentials = self._credentials
            if not credentials.valid or credentials.token == rejected:
                credentials.refresh(self._request)
            return str(credentials.token)


def _load(source: _Source) -> tuple[Any, str | None]:
    """(credentials, their project) from `source`; blocking (files, ADC's metadata probe)."""
    import google.auth
    from google.oauth2 import service_account

    if source is None:
        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
        return credentials, project
    info = source if isinstance(source, dict) else _read_json(source)
    if info.get("type") != "service_account":
        raise BadRequestError(
            f"vertex_credentials of type {info.get('type')!r} are not supported: give a "
            "service-account key, or use Application Default Credentials for other kinds",
            param="vertex_credentials",
            provider=PROVIDER,
        )
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM]
        )
    except (ValueError, KeyError, TypeError):
        # google-auth's message may quote the key material: it is not passed on.
        raise BadRequestError(
            "vertex_credentials: the service-account JSON is incomplete or its key is invalid",
            param="vertex_credentials",
            provider=PROVIDER,
        ) from None
    return credentials, info.get("project_id")


def _read_json(text_or_path: str) -> dict[str, Any]:
    text = text_or_path
    if not text.lstrip().startswith("{"):
        try:
            text = Path(text_or_path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise BadRequestError(
                f"vertex_credentials: cannot read the file {text_or_path!r} "
                f"({exc.strerror or type(exc).__name__})",
                param="vertex_credentials",
                provider=PROVIDER,
            ) from None
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise BadRequestError(
            "vertex_credentials is not a JSON object (a service-account key, or its path)",
            param="vertex_credentials",
            provider=PROVIDER,
        )
    return info


async def _refreshed(tokens: _TokenSource, rejected: str | None, redact: Redactor) -> str:
    """A fresh token, made in a worker thread; google-auth's failures translated."""
    try:
        from google.auth import exceptions
    except ImportError:
        raise PrismgateError(
            "Vertex AI needs google-auth: pip install 'prismgate[vertex]'",
            provider=PROVIDER,
            code="missing_dependency",
        ) from None

    try:
        return await asyncio.to_thread(tokens.refreshed_token, rejected)
    except exceptions.DefaultCredentialsError:
        raise AuthenticationError(
            "vertex_ai found no credentials: pass vertex_credentials (a service-account JSON "
            "or its path) or set up Application Default Credentials",
            provider=PROVIDER,
            code="missing_credentials",
        ) from None
    except exceptions.RefreshError as exc:
        reason = redact(_reason(exc))
        if exc.retryable:  # Google's token endpoint failed, not the credentials
            raise ServiceUnavailableError(f"Google's token endpoint failed: {reason}",
                                          provider=PROVIDER) from None  # fmt: skip
        raise AuthenticationError(
            f"Google refused the vertex_ai credentials: {reason}",
            provider=PROVIDER,
            code="invalid_credentials",
        ) from None
    except exceptions.TransportError as exc:
        raise APIConnectionError(
            f"could not reach Google's token endpoint: {redact(_reason(exc))}", provider=PROVIDER
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        # An answer that is not a token (an HTML error page, a proxy's body): google-auth
        # fails to parse it.
        raise ServiceUnavailableError(
            "Google's token endpoint answered with something that is not a token "
            f"({type(exc).__name__})",
            provider=PROVIDER,
        ) from None


def _reason(exc: Exception) -> str:
    # google-auth puts a readable message first and the raw answer after it.
    return str(exc.args[0] if exc.args else type(exc).__name__)[:300]
