"""The provider contract, and the small engine that applies a provider's field table.

A provider module declares data: where its credentials come from (`CredentialSpec`), a
`FieldTable` per capability that says where each OpenAI parameter goes in its body, and
one small object per capability it offers (`ImageGeneration`). Shared code never names a
provider; it reaches them through the registry in `prismgate.providers`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import yarl

from prismgate.catalog import Catalog, ImageCapabilities, ModelInfo
from prismgate.errors import AuthenticationError, BadRequestError, PrismgateError
from prismgate.media.images import ImageLimits
from prismgate.observability.redaction import Redactor
from prismgate.providers.jobs import ProgressCallback
from prismgate.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
)
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageResponse,
    ImageVariationRequest,
    PartialImage,
)
from prismgate.types.chat import ChatCompletion, ChatCompletionRequest

T = TypeVar("T")
R = TypeVar("R", ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)

__all__ = [
    "ChatCall",
    "ChatCompletions",
    "CredentialSpec",
    "Credentials",
    "Deployment",
    "Field",
    "FieldTable",
    "HealthProbe",
    "ImageCall",
    "ImageEditCall",
    "ImageEdits",
    "ImageFamily",
    "ImageGeneration",
    "ImageGenerationCall",
    "ImageVariationCall",
    "ImageVariations",
    "Provider",
    "ProviderCache",
    "ProviderCall",
    "ProviderSettings",
    "Setting",
    "TranslateError",
    "build_body",
    "declared_settings",
    "followable",
    "settings_of",
]


@dataclass(frozen=True, slots=True)
class Deployment:
    """One concrete target: a provider, its own model id, and how to reach it."""

    provider: str
    model: str
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    timeout: float | None = None
    connect_timeout: float | None = None
    drop_params: bool | None = None
    # How to reach the provider beyond key and base (organization, region, project, ...).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Defaults for the provider's request body (unknown `litellm_params`).
    params: Mapping[str, Any] = field(default_factory=dict)
    info: ModelInfo | None = None
    # Secrets it holds that the gateway's redactor was not built with (those of a virtual
    # key stored over the API): removed from every error of a call made with it too.
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Setting:
    """What one field of a provider's settings Struct is: see `ProviderSettings`. The
    field's name is LiteLLM's `litellm_params` name for it.

    Settings are the operator's: they come from the config (`litellm_params`, virtual
    keys, saved Portkey configs) and never from a caller's request (prismgate.authority
    derives that rule from these declarations)."""

    # Filled from the field's name when the provider's declaration is read.
    name: str = ""
    # Redacted from every log line and error, like api_key.
    secret: bool = False
    # Listed by /model/info: where a deployment points (a region, a project), not who it is.
    shown: bool = False
    # Its name as a target option in a Portkey config (`aws_region`), if Portkey has one.
    portkey: str | None = None
    # Its value may be a JSON object (a service-account key), not only a string.
    structured: bool = False
    # Its value is a URL the provider is called at: checked like api_base.
    endpoint: bool = False
    # Its value may point at the gateway's own host (a credential file, a profile in the
    # host's AWS config), which only the operator's config file may do. Sent over the
    # network (a virtual key stored over the API), it is refused, unless `inline` takes
    # the value as the credential itself.
    host_local: bool = False
    # For a `host_local` setting that may also hold the credential itself: checks such a
    # value (a service-account key's JSON, never a path) and returns it as it is used, or
    # raises a BadRequestError naming the setting.
    inline: Callable[[Any], Any] | None = None


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How a deployment reaches its provider beyond key and base (an account, a region or
    project, a credential or credential file, an endpoint), typed per provider. Another
    provider's settings in the same `litellm_params` are not this one's: left out.

    A provider subclasses it, one optional field per setting under LiteLLM's name, each
    annotated with its `Setting` (`Annotated[str | None, Setting(secret=True)]`). Config
    parsing, Portkey's option names, redaction, `/model/info` and the caller-authority
    rule are all derived from these declarations; no other list of setting names exists.
    """


P = TypeVar("P", bound=ProviderSettings)


def declared_settings(kind: type[ProviderSettings]) -> tuple[Setting, ...]:
    """The `Setting` of each field of `kind`, named after its field."""
    hints = typing.get_type_hints(kind, include_extras=True)
    declared = []
    for name in kind.__struct_fields__:
        found = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Setting)]
        if len(found) != 1:
            raise TypeError(f"{kind.__name__}.{name} must be annotated with one Setting")
        declared.append(dataclasses.replace(found[0], name=name))
    return tuple(declared)


def followable(url: str, api_base: str, domains: tuple[str, ...]) -> bool:
    """Whether the gateway may follow `url`, taken from a provider's answer (a job's
    polling URL, a result link): https on one of the provider's `domains` (or a host under
    one), or the scheme, host and port of the deployment's own `api_base` (a proxy, an
    emulator). Anything else, an internal address say, is never called: answers can lie."""
    try:
        target, base = yarl.URL(url), yarl.URL(api_base)
    except (TypeError, ValueError):
        return False
    if not target.is_absolute() or target.host is None:
        return False
    if (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port):
        return True
    host = target.host.lower().rstrip(".")
    return target.scheme == "https" and any(
        host == domain or host.endswith("." + domain) for domain in domains
    )


def settings_of(call: ProviderCall, kind: type[P]) -> P:
    """`call`'s settings as the provider's own Struct (a provider is only ever given its
    own: the gateway builds them with `Provider.typed_settings`)."""
    settings = call.settings
    if not isinstance(settings, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(settings).__name__}")
    return settings


@dataclass(frozen=True, slots=True)
class Credentials:
    """The resolved address and secrets for one call."""

    api_base: str
    api_key: str | None = None
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialSpec:
    """Where a provider's credentials come from when the deployment does not set them."""

    api_key_env: tuple[str, ...] = ()
    api_base_env: tuple[str, ...] = ()
    api_version_env: tuple[str, ...] = ()
    default_api_base: str | None = None
    default_api_version: str | None = None
    key_required: bool = True
    # OpenAI's key is needed at api.openai.com, not on a self-hosted server behind api_base.
    key_optional_with_custom_base: bool = False

    def resolve(
        self, provider: str, deployment: Deployment, environ: Mapping[str, str]
    ) -> Credentials:
        """Deployment values first, then the environment snapshot, then the defaults."""
        api_base = (
            deployment.api_base or _first(environ, self.api_base_env) or self.default_api_base
        )
        if not api_base:
            where = " or ".join(self.api_base_env) or "litellm_params.api_base"
            raise BadRequestError(
                f"{provider} needs an api_base: pass api_base or set {where}",
                param="api_base",
                provider=provider,
            )
        api_key = deployment.api_key or _first(environ, self.api_key_env)
        custom_base = api_base != self.default_api_base
        key_optional = not self.key_required or (self.key_optional_with_custom_base and custom_base)
        if not api_key and not key_optional:
            raise AuthenticationError(
                f"no API key for {provider}: pass api_key or set {' or '.join(self.api_key_env)}",
                provider=provider,
                code="missing_api_key",
            )
        api_version = (
            deployment.api_version
            or _first(environ, self.api_version_env)
            or self.default_api_version
        )
        return Credentials(api_base=api_base.rstrip("/"), api_key=api_key, api_version=api_version)


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[name] for name in names if environ.get(name)), None)


Convert = Callable[[Any, ImageCapabilities | None], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """Where one OpenAI parameter goes in a provider's body.

    `target` is a dotted path (`imageGenerationConfig.numberOfImages`). With no target,
    `convert` returns a mapping of paths to values, so one input can fill several outputs
    (`size` → `width` and `height`).
    """

    target: str | None = None
    convert: Convert | None = None
    # How the value is changed on the way, for the README's parameter tables (a field
    # with a `convert` must say it: the tables are generated from these).
    note: str = ""


FieldTable = Mapping[str, Field]


@dataclass(frozen=True, slots=True)
class ImageFamily:
    """Image models of one provider that share a wire body (Stability SDXL on Bedrock,
    Imagen on Vertex, ...). The README's tables of how each OpenAI parameter is honoured
    are generated from these, so they cannot drift from the code.

    `models` are catalog ids (the first one stands for the family in the tables);
    `fields` maps OpenAI parameters (and named provider extras) to the wire body.
    """

    name: str
    models: tuple[str, ...]
    fields: FieldTable
    # Operations beyond generation this family offers: "edit", "variation".
    operations: tuple[str, ...] = ()


def build_body(
    table: FieldTable,
    values: Mapping[str, Any],
    capabilities: ImageCapabilities | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply `table` to the set values. Parameters absent from the table are not sent
    (the model's rules refused them already).

    `extra` holds the caller's provider parameters: those the table names (`seed`,
    `cfg_scale`, ...) are put where it says, the others are sent as given, at the top.
    """
    body: dict[str, Any] = {}
    for name, value in (extra or {}).items():
        if name not in table:
            body[name] = value
    for name, value in {**values, **(extra or {})}.items():
        rule = table.get(name)
        if value is None or rule is None:
            continue
        converted = rule.convert(value, capabilities) if rule.convert else value
        if rule.target is None:
            for path, part in converted.items():
                _put(body, path, part)
        else:
            _put(body, rule.target, converted)
    return body


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        body = body.setdefault(key, {})
    body[leaf] = value


class ProviderCache:
    """Per-gateway memory for providers: credential objects and tokens that are costly to
    make (Google OAuth tokens, AWS credential chains), kept until they expire. It lives on
    the Gateway, so nothing is shared between gateways or held in module globals."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, ...], Any] = {}

    def get_or_create(self, key: tuple[str, ...], create: Callable[[], T]) -> T:
        """The value for `key`, made by `create` the first time it is asked for."""
        if key not in self._items:
            self._items[key] = create()
        value: T = self._items[key]
        return value


@dataclass(frozen=True, slots=True)
class ImageCall(Generic[R]):
    """Everything a provider needs for one image call (generation, edit or variation),
    already checked against the model's rules."""

    request: R
    deployment: Deployment
    credentials: Credentials
    capabilities: ImageCapabilities | None
    # Provider-specific parameters, sent as given (never dropped silently).
    extra: Mapping[str, Any]
    # Provider settings (organization, region, project, ...): they never enter the body.
    settings: ProviderSettings
    timeout: float
    redact: Redactor
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # The caller takes the provider's answer as-is when it is already OpenAI's shape
    # (the proxy), so the image payload need not be decoded.
    relay: bool = False
    # As on ChatCall: caller credentials only, the provider cache, the environment.
    caller_credentials_only: bool = False
    cache: ProviderCache = field(default_factory=ProviderCache)
    environ: Mapping[str, str] = field(default_factory=dict)
    # For providers that answer with a job (prismgate.providers.jobs): told as it moves.
    on_progress: ProgressCallback | None = None
    # A streamed call: previews of the images, up to `partial_images` each, handed over
    # as the provider sends them (OpenAI's `partial_images`; polling providers' previews).
    on_partial: Callable[[PartialImage], None] | None = None
    partial_images: int = 0


ImageGenerationCall = ImageCall[ImageGenerationRequest]
ImageEditCall = ImageCall[ImageEditRequest]
ImageVariationCall = ImageCall[ImageVariationRequest]


class ProviderCall(Protocol):
    """What reaching and authenticating with a provider takes from a call, a `ChatCall`
    and an `ImageCall` alike (cloud providers sign or mint tokens from these)."""

    @property
    def deployment(self) -> Deployment: ...
    @property
    def credentials(self) -> Credentials: ...
    @property
    def settings(self) -> ProviderSettings: ...
    @property
    def environ(self) -> Mapping[str, str]: ...
    @property
    def cache(self) -> ProviderCache: ...
    @property
    def caller_credentials_only(self) -> bool: ...
    @property
    def timeout(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def redact(self) -> Redactor: ...


class ImageGeneration(Protocol):
    """The image generation capability of one provider.

    A provider whose safety filter withheld images returns the others, with one reason
    per withheld image in `ImageResponse.filtered` (an empty `data` when all were); it
    may also raise `ContentPolicyViolationError` when the provider refused the call.
    The gateway turns "everything filtered" into a 400 and reports partial filtering.
    """

    @property
    def families(self) -> tuple[ImageFamily, ...]:
        """The model families it serves, and how each maps OpenAI's parameters."""
        ...

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse: ...


class ImageEdits(Protocol):
    """Image edits (`/v1/images/edits`): input images, an optional mask, a prompt."""

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse: ...


class ImageVariations(Protocol):
    """Image variations (`/v1/images/variations`): new images like the input."""

    async def vary(self, call: ImageVariationCall, http: Transport) -> ImageResponse: ...


@dataclass(frozen=True, slots=True)
class ChatCall:
    """Everything a provider needs for one chat completion, images already prepared."""

    request: ChatCompletionRequest
    deployment: Deployment
    credentials: Credentials
    extra: Mapping[str, Any]
    settings: ProviderSettings
    timeout: float
    redact: Redactor
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    relay: bool = False
    # Portkey's direct-provider mode: only the caller's own credentials. Providers must
    # not fall back to ambient ones (botocore's chain, Google's ADC): those are the
    # server's identity.
    caller_credentials_only: bool = False
    # OpenAI fields dropped (drop_params) because the provider has no meaning for them.
    dropped: tuple[str, ...] = ()
    cache: ProviderCache = field(default_factory=ProviderCache)
    # The config's environment snapshot (empty for direct-provider calls), for providers
    # whose credentials are more than a key (AWS_ACCESS_KEY_ID, AWS_REGION, ...).
    environ: Mapping[str, str] = field(default_factory=dict)


class ChatCompletions(Protocol):
    """The chat capability of one provider, images included."""

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer."""
        ...

    def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """The answer as OpenAI server-sent events (`data: {chunk}` lines, then
        `data: [DONE]`), whatever the provider's own streaming format."""
        ...


HealthProbe = Callable[[Credentials, ProviderSettings], UpstreamRequest]

# A provider's failed answer (status, headers, body) as the error the caller gets, its
# message passed through the redactor. Every provider has one, with this signature.
TranslateError = Callable[[UpstreamResponse, Redactor], PrismgateError]


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider: its name, credentials, and the capabilities it offers."""

    name: str
    credentials: CredentialSpec
    # How its error answers become prismgate's errors.
    translate_error: TranslateError
    # Other spellings callers use for it (Portkey's `x-portkey-provider` values).
    aliases: tuple[str, ...] = ()
    image_generation: ImageGeneration | None = None
    image_edit: ImageEdits | None = None
    image_variation: ImageVariations | None = None
    chat: ChatCompletions | None = None
    # OpenAI chat fields this provider has no meaning for: refused with a 400 naming them,
    # or dropped when the caller set drop_params (the gateway does it, for every provider).
    chat_unsupported: frozenset[str] = frozenset()
    # What one image in a chat message may be, for this provider.
    image_limits: ImageLimits | None = None
    # A free call that proves the key works (listing models); never a paid generation.
    health_probe: HealthProbe | None = None
    # Used for models the catalog does not list (self-hosted, or a `mock/` model).
    default_info: ModelInfo | None = None
    # Describes, from the catalog, a model it does not list under this provider's name
    # (`mock/dall-e-3` takes dall-e-3's rules); None, or no answer: `default_info`.
    describe_model: Callable[[str, Catalog], ModelInfo | None] | None = None
    # What configures how this provider is reached, rather than filling its body.
    settings_type: type[ProviderSettings] = ProviderSettings
    # LiteLLM's settings for this provider that prismgate does not act on (another way to
    # authenticate, say): refused in a config unless allowed, never taken from a caller.
    unsupported_settings: frozenset[str] = frozenset()
    # Fields of Portkey's virtual-key API for this provider that prismgate does not take,
    # each with what to do instead (the 400 says it).
    portkey_fields_instead: Mapping[str, str] = field(default_factory=dict)
    # Derived from `settings_type`: each setting's declaration, and their names (for the
    # per-call split of keywords into settings and body fields).
    settings: tuple[Setting, ...] = field(init=False)
    setting_names: frozenset[str] = field(init=False)
    _no_settings: ProviderSettings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        settings = declared_settings(self.settings_type)
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "setting_names", frozenset(s.name for s in settings))
        object.__setattr__(self, "_no_settings", self.settings_type())

    def typed_settings(self, values: Mapping[str, Any]) -> ProviderSettings:
        """`values` (a deployment's settings, a call's) as this provider's Struct; a 400
        naming the setting whose value has the wrong type."""
        if not values:
            return self._no_settings
        try:
            return msgspec.convert(values, self.settings_type)
        except msgspec.ValidationError as exc:
            # "Expected `str | null`, got `int` - at `$.aws_region_name`"
            detail, _, where = str(exc).partition(" - at `$.")
            name = where.split("`")[0].split(".")[0].split("[")[0] or None
            what = f"{self.name} setting {name}" if name else f"{self.name} settings"
            raise BadRequestError(f"{what}: {detail}", param=name, provider=self.name) from None

    def uncatalogued_info(self, model: str, catalog: Catalog) -> ModelInfo | None:
        """What is known about `model`, which `catalog` does not list for this provider."""
        described = self.describe_model(model, catalog) if self.describe_model else None
        return described if described is not None else self.default_info
