"""Configuration: LiteLLM's `config.yaml`, plus prismgate's additions in `general_settings`.

This is the one place environment variables are read. `load_config` takes a snapshot of
the environment; `os.environ/NAME` references resolve against it at load time, and
providers read default credentials (`OPENAI_API_KEY`, ...) from `Config.environ`, never
from `os.environ`.

Errors name the exact path (`model_list[2].litellm_params.api_base`). Unknown keys are
logged as warnings and ignored, except in `litellm_params`, where LiteLLM sends them to
the provider as request parameters, and so do we.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from prismgate.catalog import ModelInfo
from prismgate.errors import ConfigError
from prismgate.types.validation import plain_validation_error

__all__ = [
    "CONFIG_PATH_VARIABLE",
    "Config",
    "GeneralSettings",
    "LiteLLMParams",
    "LiteLLMSettings",
    "ModelEntry",
    "RouterSettings",
    "config_path_from_environment",
    "load_config",
    "sorted_params",
]

log = logging.getLogger("prismgate.config")

ENV_REFERENCE = "os.environ/"
# How `prismgate serve` tells its worker processes which config to load.
CONFIG_PATH_VARIABLE = "PRISMGATE_CONFIG"


def config_path_from_environment() -> str | None:
    """The config file named by PRISMGATE_CONFIG, if any."""
    return os.environ.get(CONFIG_PATH_VARIABLE) or None


class _Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    pass


class LiteLLMParams(_Section, frozen=True):
    """How to call one deployment (`model_list[].litellm_params`)."""

    model: str
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    timeout: float | None = None
    # Seconds to wait for the connection alone (the rest of `timeout` is for the answer).
    connect_timeout: float | None = None
    stream_timeout: float | None = None
    max_retries: int | None = None
    # prismgate: an image generation that may have reached this deployment before a
    # timeout or a broken connection may be sent again (it does not bill twice).
    safe_to_retry: bool = False
    custom_llm_provider: str | None = None
    drop_params: bool | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    # The keys a provider declares as its settings (organization, cloud credentials,
    # regions, projects, under LiteLLM's names): how the provider is reached.
    settings: dict[str, Any] = msgspec.field(default_factory=dict)
    # Every other key: sent to the provider as a request parameter (LiteLLM's behaviour).
    provider_params: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api_base is not None:
            check_api_base(self.api_base)


class ModelEntry(_Section, frozen=True):
    """One deployment: the public `model_name`, how to call it, and what it can do."""

    model_name: str
    litellm_params: LiteLLMParams
    model_info: ModelInfo | None = None


class MediaSettings(_Section, frozen=True):
    """Image inputs: which private hosts may be fetched, and how large images may be."""

    allowed_hosts: tuple[str, ...] = ()
    max_image_bytes: int = 20 * 1024 * 1024
    oversize: Literal["downscale", "reject"] = "downscale"
    # Pixels an input image may declare (width x height, read from its header before any
    # decoding): 2**26, about 67 megapixels. Above every common camera (61 MP full frame,
    # 50 and 64 MP phones), below the decompression bombs that cost gigabytes.
    max_image_pixels: int = 1 << 26

    def __post_init__(self) -> None:
        if not 1 <= self.max_image_pixels <= 1 << 27:
            raise ValueError("max_image_pixels must be between 1 and 134217728 (2**27)")


class ImageStoreSettings(_Section, frozen=True):
    """Where base64-only answers are kept when a caller asked for URLs."""

    type: Literal["local", "s3"] = "local"
    path: str = "./prismgate-images"
    public_base_url: str | None = None
    url_ttl_seconds: int = 3600
    # The disk the store may use (1 GiB): a full store answers `url` requests with a 507
    # rather than filling the disk.
    max_bytes: int = 1 << 30
    # An image is removed once every link to it has expired: the link lifetime plus this
    # margin (for clocks that differ between workers), checked every `sweep_interval_seconds`.
    expiry_margin_seconds: int = 300
    sweep_interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.url_ttl_seconds < 1:
            raise ValueError("url_ttl_seconds must be at least 1")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self.expiry_margin_seconds < 0:
            raise ValueError("expiry_margin_seconds must be 0 or more")
        if not self.sweep_interval_seconds > 0:
            raise ValueError("sweep_interval_seconds must be more than 0")

    @property
    def max_age_seconds(self) -> int:
        """How long a stored image is kept: until the last link to it has expired."""
        return self.url_ttl_seconds + self.expiry_margin_seconds


class GroupAlias(_Section, frozen=True):
    """A `model_group_alias` entry in its long form: `{model: <group>, hidden: true}`."""

    model: str
    hidden: bool = False


class RetrySettingsSection(_Section, frozen=True):
    """`general_settings.retries`: how retries wait (prismgate's addition)."""

    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    budget_ratio: float = 0.2
    budget_floor: int = 10


_Positive = msgspec.Meta(gt=0)


class ServerSettings(_Section, frozen=True):
    """`general_settings.server`: how long `prismgate serve` waits for a client, and how
    many connections each worker keeps (prismgate's addition)."""

    # From connect (or the first byte of a request on a kept-alive connection) to the
    # end of its headers.
    header_timeout_seconds: Annotated[float, _Positive] = 10.0
    # From the end of the headers to the end of the body, plus one second per
    # `body_min_bytes_per_second` received: slow uploads pass, trickles do not.
    body_timeout_seconds: Annotated[float, _Positive] = 30.0
    body_min_bytes_per_second: Annotated[int, _Positive] = 65536
    # How long a connection may wait for its next request.
    keep_alive_timeout_seconds: Annotated[float, _Positive] = 5.0
    # Above this, each worker closes its longest-idle connection; never more than half
    # the worker's file descriptors, so upstream calls and files always find one.
    max_connections: Annotated[int, _Positive] = 4096


class GeneralSettings(_Section, frozen=True):
    """`general_settings`: LiteLLM's keys, and prismgate's own additions."""

    master_key: str | None = None
    max_request_size_mb: float = 32
    allow_client_provider_keys: bool = False
    default_image_model: str = "gpt-image-1"
    media: MediaSettings = msgspec.field(default_factory=MediaSettings)
    retries: RetrySettingsSection = msgspec.field(default_factory=RetrySettingsSection)
    # Seconds to wait for a provider connection, unless a deployment says otherwise.
    connect_timeout: float = 10.0
    # Keys in the shared Redis start with this (several gateways may share one Redis).
    redis_prefix: str = "prismgate:"
    # Seconds a Redis operation may take; past it, routing state and the cache are kept in
    # this process until Redis answers a probe (sent every `redis_retry_interval` s).
    redis_timeout: Annotated[float, _Positive] = 0.1
    redis_retry_interval: Annotated[float, _Positive] = 5.0
    image_store: ImageStoreSettings = msgspec.field(default_factory=ImageStoreSettings)
    # PostgreSQL (or SQLite) for keys, teams, budgets and spend; unset, the proxy keeps them
    # in an embedded SQLite file in `data_dir`, so one instance needs no database server.
    database_url: str | None = None
    # The gateway's own files: the embedded database and the spend log's spool.
    data_dir: str = "./prismgate-data"
    # LiteLLM's switch: no spend-log rows at all (budgets and /key/info spend still count).
    disable_spend_logs: bool = False
    # LiteLLM's name: keep each call's prompt (its first 200 characters) in the spend log.
    store_prompts_in_spend_logs: bool = True
    # The disk the spend log's spool (`data_dir`/spend-spool) may fill while the database
    # does not answer; rows past it are dropped, with a logged count.
    spend_spool_max_bytes: Annotated[int, _Positive] = 256 << 20
    # Seals the provider keys of virtual keys made over the API (identity/sealing.py). A
    # list rotates it: the first seals, every one opens. Unset: PRISMGATE_ENCRYPTION_KEY,
    # then LiteLLM's LITELLM_SALT_KEY, from the environment.
    encryption_key: str | list[str] | None = None
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)


class RouterSettings(_Section, frozen=True):
    """`router_settings`: how model groups route, retry and fall back."""

    routing_strategy: str = "simple-shuffle"
    num_retries: int | None = None
    timeout: float | None = None
    allowed_fails: int | None = None
    cooldown_time: float | None = None
    retry_after: float | None = None
    fallbacks: list[dict[str, list[str]]] = msgspec.field(default_factory=list)
    content_policy_fallbacks: list[dict[str, list[str]]] = msgspec.field(default_factory=list)
    default_fallbacks: list[str] = msgspec.field(default_factory=list)
    model_group_alias: dict[str, str | GroupAlias] = msgspec.field(default_factory=dict)
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int | None = None
    redis_password: str | None = None


class LiteLLMSettings(_Section, frozen=True):
    """`litellm_settings`: defaults for every call."""

    drop_params: bool = False
    num_retries: int | None = None
    request_timeout: float | None = None
    cache: bool = False
    cache_params: dict[str, Any] = msgspec.field(default_factory=dict)
    set_verbose: bool = False


class Config(_Section, frozen=True):
    """The whole configuration, validated. Build it with `load_config`."""

    model_list: list[ModelEntry] = msgspec.field(default_factory=list)
    general_settings: GeneralSettings = msgspec.field(default_factory=GeneralSettings)
    router_settings: RouterSettings = msgspec.field(default_factory=RouterSettings)
    litellm_settings: LiteLLMSettings = msgspec.field(default_factory=LiteLLMSettings)
    virtual_keys: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    portkey_configs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # LiteLLM's `environment_variables`: added to the snapshot, never to os.environ.
    environment_variables: dict[str, str] = msgspec.field(default_factory=dict)
    # The environment snapshot taken at load time (not read from the file).
    environ: dict[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        # The environment and the keys hold secrets: a repr shows their shape only.
        groups = sorted({entry.model_name for entry in self.model_list})
        return f"Config(model groups={groups}, environ=<{len(self.environ)} variables>)"


def check_api_base(url: str) -> None:
    """An endpoint must not carry credentials (`user:pass@host`): they would reach logs,
    /model/info and every error that names the URL. Credentials go in `api_key`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- reading it raises when the port is not a number
    except ValueError as exc:
        raise ValueError(f"api_base is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        raise ValueError(
            "api_base must not carry credentials (user:password@); put the key in api_key"
        )


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate a config from a YAML file, a mapping, or nothing (defaults).

    `environ` defaults to a snapshot of `os.environ`. Raises ConfigError naming the exact
    path of the first problem.
    """
    snapshot = dict(os.environ if environ is None else environ)
    raw: Any = _read(source)
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping at the top level")
    snapshot.update({str(k): str(v) for k, v in (raw.get("environment_variables") or {}).items()})
    raw = _resolve_env(raw, snapshot, path="")
    raw.pop("environ", None)
    _gather_provider_params(raw)
    for path in _unknown_keys(raw, Config, ""):
        log.warning("config: unknown key %s is ignored", path)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        where, detail = plain_validation_error(exc)
        raise ConfigError(f"{where or '(top level)'}: {detail}") from None
    _check_backends(config)
    return msgspec.structs.replace(config, environ=snapshot)


# The backends each store setting has code behind; anything else fails at load time,
# never at the first request.
_CACHE_TYPES = ("local", "redis")


def _check_backends(config: Config) -> None:
    """A ConfigError for a store backend this version has no code for."""
    store = config.general_settings.image_store
    if store.type != "local":
        raise ConfigError(
            f"general_settings.image_store.type: {store.type!r} is not available in this "
            "version; use 'local' (a folder shared by the instances)"
        )
    cache_type = config.litellm_settings.cache_params.get("type", "local")
    if cache_type not in _CACHE_TYPES:
        raise ConfigError(
            f"litellm_settings.cache_params.type: {cache_type!r} is not supported; use "
            f"{' or '.join(repr(t) for t in _CACHE_TYPES)}"
        )


def _read(source: str | os.PathLike[str] | Mapping[str, Any] | None) -> Any:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    import yaml

    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None


def _resolve_env(node: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, str) and node.startswith(ENV_REFERENCE):
        name = node[len(ENV_REFERENCE) :]
        if name not in environ:
            raise ConfigError(f"{path.lstrip('.')}: environment variable {name} is not set")
        return environ[name]
    if isinstance(node, dict):
        return {k: _resolve_env(v, environ, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, environ, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _gather_provider_params(raw: dict[str, Any]) -> None:
    """Sort every model_list entry's `litellm_params` (see `sorted_params`)."""
    for i, entry in enumerate(raw.get("model_list") or []):
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if isinstance(params, dict):
            entry["litellm_params"] = sorted_params(params, f"model_list[{i}].litellm_params")


def sorted_params(params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`litellm_params` as LiteLLMParams reads them: the keys a provider declares as its
    settings under `settings`, other unknown keys under `provider_params` (each said
    once: they are sent to the provider as request parameters)."""
    from prismgate.providers import provider_settings

    declared = provider_settings()
    known = set(LiteLLMParams.__struct_fields__) - {"provider_params", "settings"}
    out = {k: v for k, v in params.items() if k in known}
    others = {k: v for k, v in params.items() if k not in known}
    settings = {k: v for k, v in others.items() if k in declared and v is not None}
    extra = {k: v for k, v in others.items() if k not in declared}
    for key, value in settings.items():
        if declared[key].endpoint and isinstance(value, str):
            try:
                check_api_base(value)
            except ValueError as exc:
                raise ConfigError(f"{where}.{key}: {str(exc).replace('api_base', key)}") from None
    for key in extra:
        log.warning(
            "config: %s.%s is not a prismgate setting; it is sent to the provider as a "
            "request parameter",
            where,
            key,
        )
    if settings:
        out["settings"] = settings
    if extra:
        out["provider_params"] = extra
    return out


def _unknown_keys(node: Any, kind: Any, path: str) -> list[str]:
    """Paths of mapping keys that `kind` does not declare, found by walking its types."""
    info = msgspec.inspect.type_info(kind)
    return _walk(node, info, path)


def _walk(node: Any, info: msgspec.inspect.Type, path: str) -> list[str]:
    if isinstance(info, msgspec.inspect.UnionType):
        found: list[str] = []
        for option in info.types:
            if isinstance(option, msgspec.inspect.StructType | msgspec.inspect.ListType):
                found += _walk(node, option, path)
        return found
    if isinstance(info, msgspec.inspect.StructType) and isinstance(node, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        unknown = [f"{path}.{k}".lstrip(".") for k in node if k not in fields]
        for key, value in node.items():
            if key in fields:
                unknown += _walk(value, fields[key], f"{path}.{key}")
        return unknown
    if isinstance(info, msgspec.inspect.ListType) and isinstance(node, list):
        return [
            p for i, item in enumerate(node) for p in _walk(item, info.item_type, f"{path}[{i}]")
        ]
    return []
