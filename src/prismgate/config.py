"""Configuration: LiteLLM's `config.yaml`, plus prismgate's additions in `general_settings`.

This is the one place environment variables are read. `load_config` takes a snapshot of
the environment; `os.environ/NAME` references resolve against it at load time, and
providers read default credentials (`OPENAI_API_KEY`, ...) from `Config.environ`, never
from `os.environ`.

Errors name the exact path (`model_list[2].litellm_params.api_base`). A config mistake is
always an error, never ignored: a key that is not a setting (with a "did you mean" when
one is close), a LiteLLM setting prismgate does not act on (unless the operator allows
them: `general_settings.allow_unused_litellm_settings`), a wrong type, an unknown routing
strategy, a fallback or alias naming no model group. `config_keys.py` says which keys are
which. Unknown keys of `litellm_params` are the exception LiteLLM made: they are request
parameters, sent to the provider. An error never shows the value of a setting that may
hold a secret, only its path and type.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from prismgate.catalog import ImageCapabilities, ImagePricing, ModelInfo
from prismgate.config_checks import (
    check_aliases,
    check_backends,
    check_callback_settings,
    check_fallbacks,
    check_metrics_access,
    check_routing,
    restart_only_changes,
)
from prismgate.config_keys import ALLOW_UNUSED, check_keys, litellm_only, refusal
from prismgate.errors import ConfigError
from prismgate.types.validation import plain_validation_error

__all__ = [
    "CONFIG_PATH_VARIABLE",
    "METRICS_FOLDER_VARIABLE",
    "SUPERVISOR_PID_VARIABLE",
    "CallbackSettings",
    "Config",
    "ConsoleSettings",
    "GeneralSettings",
    "LiteLLMParams",
    "LiteLLMSettings",
    "ModelEntry",
    "RouterSettings",
    "check_aliases",
    "check_fallbacks",
    "config_path_from_environment",
    "load_config",
    "metrics_folder_from_environment",
    "restart_only_changes",
    "sorted_params",
    "terminal_hints",
]

log = logging.getLogger("prismgate.config")

ENV_REFERENCE = "os.environ/"
# How `prismgate serve` tells its worker processes which config to load, and, with
# several workers, the supervisor's pid (a config reload asks it to reload them all).
CONFIG_PATH_VARIABLE = "PRISMGATE_CONFIG"
SUPERVISOR_PID_VARIABLE = "PRISMGATE_SUPERVISOR_PID"


def config_path_from_environment() -> str | None:
    """The config file named by PRISMGATE_CONFIG, if any."""
    return os.environ.get(CONFIG_PATH_VARIABLE) or None


# prometheus-client's own variable: the folder where several workers keep their metrics.
METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_folder_from_environment() -> str | None:
    """The folder `prismgate serve --workers N` made for the workers' metrics, if any."""
    return os.environ.get(METRICS_FOLDER_VARIABLE) or None


# What tells a terminal that shows images apart (kitty's and iTerm2's image protocols),
# and tmux, which runs inside one and passes neither protocol through.
_TERMINAL_VARIABLES = ("TERM", "TERM_PROGRAM", "KITTY_WINDOW_ID", "LC_TERMINAL", "TMUX")


def terminal_hints() -> dict[str, str]:
    """The environment variables that say which terminal `prismgate` runs in."""
    return {name: os.environ[name] for name in _TERMINAL_VARIABLES if name in os.environ}


class _Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    pass


_Positive = msgspec.Meta(gt=0)
_NotNegative = msgspec.Meta(ge=0)
Seconds = Annotated[float, _Positive]
Count = Annotated[int, _NotNegative]
Price = Annotated[float, _NotNegative]


class LiteLLMParams(_Section, frozen=True):
    """How to call one deployment (`model_list[].litellm_params`)."""

    model: str
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    timeout: Seconds | None = None
    # Seconds to wait for the connection alone (the rest of `timeout` is for the answer).
    connect_timeout: Seconds | None = None
    # LiteLLM's timeout for streamed calls. Accepted, not acted on: `timeout` bounds a
    # streamed call too (said when the config loads). Like every field here, only the
    # operator may set it (prismgate.authority).
    stream_timeout: Seconds | None = None
    # LiteLLM's prices for this deployment, in USD: folded into its `model_info` when the
    # config loads (`input_cost_per_token`, `output_cost_per_token`, and
    # `image.pricing.per_image` for every quality and size), so costs and budgets use them.
    input_cost_per_token: Price | None = None
    output_cost_per_token: Price | None = None
    output_cost_per_image: Price | None = None
    # prismgate: an image generation that may have reached this deployment before a
    # timeout or a broken connection may be sent again (it does not bill twice).
    safe_to_retry: bool = False
    custom_llm_provider: str | None = None
    drop_params: bool | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    weight: Annotated[float, _NotNegative] | None = None
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
    """Where base64-only answers are kept when a caller asked for URLs: a local folder, or
    an S3-compatible bucket (`storage/s3_images.py`)."""

    type: Literal["local", "s3"] = "local"
    path: str = "./prismgate-images"
    # type: s3. The bucket, and a folder in it (`images/`); the region and the endpoint of
    # an S3-compatible store (MinIO, R2, GCS); credentials, else the usual AWS sources.
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    # How answers link to images in the bucket: the gateway's own signed links (the bytes
    # flow through the gateway), or presigned S3 URLs (they never do).
    links: Literal["gateway", "presigned"] = "gateway"
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
        if self.type == "s3":
            _check_s3(self)
        else:
            given = [name for name in _S3_ONLY if getattr(self, name) not in (None, "")]
            if self.links != "gateway":
                given.append("links")
            if given:
                raise ValueError(
                    f"{', '.join(given)} {'is a setting' if len(given) == 1 else 'are settings'}"
                    " of type: s3, and this store is type: local"
                )

    def __repr__(self) -> str:
        # The credentials are secrets: a repr says whether they are set, never what they are.
        shown = {
            name: ("<set>" if name in _S3_SECRETS and value else value)
            for name, value in msgspec.structs.asdict(self).items()
        }
        return "ImageStoreSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def max_age_seconds(self) -> int:
        """How long a stored image is kept: until the last link to it has expired."""
        return self.url_ttl_seconds + self.expiry_margin_seconds


_S3_ONLY = (
    "bucket",
    "prefix",
    "region",
    "endpoint_url",
    "access_key_id",
    "secret_access_key",
    "session_token",
)
_S3_SECRETS = frozenset({"access_key_id", "secret_access_key", "session_token"})


def _check_s3(settings: ImageStoreSettings) -> None:
    """A ValueError for S3 settings that cannot work (never showing a credential)."""
    if not settings.bucket:
        raise ValueError("type: s3 needs a bucket (general_settings.image_store.bucket)")
    if settings.endpoint_url is not None:
        parts = urlsplit(settings.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "endpoint_url must be an http:// or https:// URL (for example "
                "http://minio:9000 or https://<account>.r2.cloudflarestorage.com)"
            )
        if parts.username or parts.password:
            raise ValueError(
                "endpoint_url must not carry credentials (user:password@); put them in "
                "access_key_id and secret_access_key"
            )
    if bool(settings.access_key_id) != bool(settings.secret_access_key):
        raise ValueError(
            "access_key_id and secret_access_key go together: set both, or neither (the "
            "usual AWS sources are used then)"
        )
    if settings.session_token and not settings.access_key_id:
        raise ValueError("session_token goes with access_key_id and secret_access_key")
    if settings.prefix.startswith("/"):
        raise ValueError("prefix is a folder in the bucket: it does not start with '/'")


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
    # On SIGTERM: readiness answers 503 at once while the worker still takes connections
    # for this long (so a load balancer sees it and stops sending), then it stops
    # listening and its calls in flight (streams too) get `drain_seconds` to finish;
    # those still running then are cancelled, the spend queue is flushed, and it exits.
    shutdown_delay_seconds: Annotated[float, _NotNegative] = 0.0
    drain_seconds: Annotated[float, _Positive] = 30.0


class ConsoleSettings(_Section, frozen=True):
    """`general_settings.console`: what the console keeps of each call (prismgate's
    addition; call_records.py). Off by default: keeping every image costs a decode, a hash
    and a file per image (about as much CPU again as serving a small answer), and it
    keeps the callers' images on the operator's disk. Kept only on spend-log rows (none with
    `disable_spend_logs` or without a database). A key or team whose metadata says
    `keep_images: false` keeps nothing either way."""

    # The images of each answer (and an edit's input images) go to the image store, named
    # on the call's spend-log row, for `keep_images_days`.
    keep_images: bool = False
    keep_images_days: Annotated[float, _Positive] = 7.0
    # The disk kept images may use (1 GiB); past it the oldest kept images go first.
    keep_images_max_bytes: Annotated[int, _Positive] = 1 << 30
    # The request as received and what was sent upstream (images described, never their
    # bytes; no credential), on the call's spend-log row.
    keep_request_details: bool = False


class GeneralSettings(_Section, frozen=True):
    """`general_settings`: LiteLLM's keys, and prismgate's own additions."""

    master_key: str | None = None
    max_request_size_mb: Annotated[float, _Positive] = 32
    allow_client_provider_keys: bool = False
    # LiteLLM settings prismgate does not act on are refused unless this is set; then
    # they are ignored, and `prismgate serve` says which when it starts.
    allow_unused_litellm_settings: bool = False
    default_image_model: str = "gpt-image-2"
    media: MediaSettings = msgspec.field(default_factory=MediaSettings)
    retries: RetrySettingsSection = msgspec.field(default_factory=RetrySettingsSection)
    # Seconds to wait for a provider connection, unless a deployment says otherwise.
    connect_timeout: Seconds = 10.0
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
    # Who may read GET /metrics: `loopback` (clients on this machine without a key, others
    # with the master key or an admin's key), `admin` (always such a key) or `open`.
    metrics_access: Literal["loopback", "admin", "open"] = "loopback"
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)
    # The webhook callbacks' records carry the call's prompt (its first 200 characters).
    send_prompts_to_callbacks: bool = False


class RouterSettings(_Section, frozen=True):
    """`router_settings`: how model groups route, retry and fall back."""

    routing_strategy: str = "simple-shuffle"
    num_retries: Count | None = None
    timeout: Seconds | None = None
    allowed_fails: Count | None = None
    cooldown_time: Annotated[float, _NotNegative] | None = None
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
    num_retries: Count | None = None
    request_timeout: Seconds | None = None
    cache: bool = False
    # Checked key by key at load (config_keys.py): type, ttl, supported_call_types, and
    # the Redis of `type: redis` (host, port, password, url).
    cache_params: dict[str, Any] = msgspec.field(default_factory=dict)
    # LiteLLM's switch for a key on /metrics: general_settings.metrics_access: admin.
    require_auth_for_metrics_endpoint: bool = False
    # LiteLLM's switch for JSON logs: `prismgate serve --log-format json`.
    json_logs: bool = False
    # LiteLLM's callbacks, by name: "otel", "generic_api" or a callback_settings entry
    # (observability/callbacks.py); every call, successes only, failures only.
    callbacks: list[str] = msgspec.field(default_factory=list)
    success_callback: list[str] = msgspec.field(default_factory=list)
    failure_callback: list[str] = msgspec.field(default_factory=list)


class CallbackSettings(_Section, frozen=True):
    """A `callback_settings` entry (LiteLLM's): a webhook that is sent call records.
    Checked at load (observability/callbacks.py)."""

    callback_type: str | None = None  # only "generic_api" (a webhook)
    endpoint: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    event_types: list[Literal["llm_api_success", "llm_api_failure"]] | None = None
    log_format: Literal["json_array", "ndjson"] = "json_array"
    batch_size: Annotated[int, _Positive] = 100
    flush_interval: Seconds = 5.0
    # prismgate: records kept while the endpoint does not answer; past it they are
    # dropped, counted and logged.
    max_queued: Annotated[int, _Positive] = 10_000
    # prismgate: the longest wait, in seconds, between tries while the endpoint fails
    # (the wait doubles from `flush_interval` up to this).
    max_backoff: Seconds = 60.0


class Config(_Section, frozen=True):
    """The whole configuration, validated. Build it with `load_config`."""

    model_list: list[ModelEntry] = msgspec.field(default_factory=list)
    general_settings: GeneralSettings = msgspec.field(default_factory=GeneralSettings)
    router_settings: RouterSettings = msgspec.field(default_factory=RouterSettings)
    litellm_settings: LiteLLMSettings = msgspec.field(default_factory=LiteLLMSettings)
    virtual_keys: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    portkey_configs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    callback_settings: dict[str, CallbackSettings] = msgspec.field(default_factory=dict)
    # LiteLLM's `environment_variables`: added to the snapshot, never to os.environ.
    environment_variables: dict[str, str] = msgspec.field(default_factory=dict)
    # The environment snapshot taken at load time (not read from the file).
    environ: dict[str, str] = msgspec.field(default_factory=dict)
    # The LiteLLM settings the file holds that prismgate ignores, by path (not read from
    # the file; set when `general_settings.allow_unused_litellm_settings` let them pass).
    unused_settings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The environment and the keys hold secrets: a repr shows their shape only.
        groups = sorted({entry.model_name for entry in self.model_list})
        return f"Config(model groups={groups}, environ=<{len(self.environ)} variables>)"


def check_api_base(url: str) -> None:
    """An endpoint must not carry credentials (`user:pass@host`): they would reach logs,
    /model/info and every error that names the URL. Credentials go in `api_key`."""
    # The reasons name what is wrong, never the text: a mangled URL may hold a key.
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("api_base is not a valid URL") from None
    try:
        parts.port  # noqa: B018 -- reading it raises when the port is not a number
    except ValueError:
        raise ValueError(
            "api_base is not a valid URL (what follows the host's ':' is not a port "
            "from 0 to 65535)"
        ) from None
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
    path of each problem: every key that is not a setting at once, else the first wrong
    value.
    """
    snapshot = dict(os.environ if environ is None else environ)
    raw: Any = _read(source)
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping at the top level")
    # A section left empty (every line of it commented out) is a section of defaults.
    raw = {k: v for k, v in raw.items() if not (v is None and k in _SECTIONS_WITH_DEFAULTS)}
    snapshot.update(_environment_variables(raw.get("environment_variables")))
    raw = _resolve_env(raw, snapshot, path="")
    unused = _check_keys(raw)
    _gather_provider_params(raw)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        where, detail = plain_validation_error(exc)
        raise ConfigError(f"{where or '(top level)'}: {detail}") from None
    check_routing(config)
    check_backends(config)
    check_callback_settings(config, snapshot)
    check_metrics_access(config)
    model_list = [_priced(entry, f"model_list[{i}]") for i, entry in enumerate(config.model_list)]
    _say_stream_timeouts(model_list)
    return msgspec.structs.replace(
        config, model_list=model_list, environ=snapshot, unused_settings=unused
    )


_SECTIONS_WITH_DEFAULTS = frozenset(
    name for name in Config.__struct_fields__ if name not in ("environ", "unused_settings")
)


def _environment_variables(section: Any) -> dict[str, str]:
    """`environment_variables:`, names to plain values (a wrong shape is a ConfigError)."""
    if section is None:
        return {}
    # The values are API keys: an error names their type, never them.
    if not isinstance(section, dict):
        raise ConfigError(
            "environment_variables: Expected a mapping of names to values, got "
            f"{_type_name(section)}"
        )
    for name, value in section.items():
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(
                f"environment_variables.{name}: Expected a string, got {_type_name(value)}"
            )
    return {str(k): str(v) for k, v in section.items()}


def _type_name(value: Any) -> str:
    """A YAML value's type, as msgspec's errors name it (`object`, `array`, `null`)."""
    if value is None:
        return "null"
    names = {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}
    return names.get(type(value), type(value).__name__)


def _check_keys(raw: dict[str, Any]) -> tuple[str, ...]:
    """Every key of the file checked (config_keys.py): a ConfigError naming each mistake,
    and the LiteLLM settings prismgate does not act on unless the operator allows them.
    Those allowed are taken out of `litellm_params` (never sent to a provider); their
    paths are returned."""
    from prismgate.types import ImageEditRequest, ImageGenerationRequest
    from prismgate.types.chat import ChatCompletionRequest

    report = check_keys(
        raw,
        Config,
        sections={
            Config: "",
            GeneralSettings: "general_settings",
            RouterSettings: "router_settings",
            LiteLLMSettings: "litellm_settings",
            ModelInfo: "model_info",
        },
        params_type=LiteLLMParams,
        request_params=(
            *ImageGenerationRequest.__struct_fields__,
            *ImageEditRequest.__struct_fields__,
            *ChatCompletionRequest.__struct_fields__,
        ),
    )
    general = raw.get("general_settings")
    allowed = isinstance(general, dict) and general.get(ALLOW_UNUSED) is True
    problems = list(report.mistakes)
    if report.unused and not allowed:
        problems.append(refusal(report.unused))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))
    for entry in raw.get("model_list") or ():
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if isinstance(params, dict):
            for key in litellm_only("litellm_params") & params.keys():
                del params[key]
    return tuple(report.unused)


def _priced(entry: ModelEntry, where: str) -> ModelEntry:
    """`entry` with the prices its `litellm_params` give (LiteLLM's names) in its
    `model_info`, where costs and budgets read them. A price given in both, differently,
    is a ConfigError."""
    params = entry.litellm_params
    info = entry.model_info or ModelInfo()
    image = info.image or ImageCapabilities()
    pricing = image.pricing or ImagePricing()
    per_image = params.output_cost_per_image
    given = {
        "input_cost_per_token": (params.input_cost_per_token, info.input_cost_per_token),
        "output_cost_per_token": (params.output_cost_per_token, info.output_cost_per_token),
        "output_cost_per_image": (
            None if per_image is None else {"*": {"*": per_image}},
            pricing.per_image,
        ),
    }
    for name, (price, already) in given.items():
        if price is not None and already is not None and price != already:
            home = "image.pricing.per_image" if name == "output_cost_per_image" else name
            raise ConfigError(
                f"{where}.litellm_params.{name}: {where}.model_info.{home} gives another "
                "price; give it in one place"
            )
    if all(price is None for price, _ in given.values()):
        return entry
    if per_image is not None:
        pricing = msgspec.structs.replace(pricing, per_image={"*": {"*": per_image}})
        info = msgspec.structs.replace(info, image=msgspec.structs.replace(image, pricing=pricing))
    info = msgspec.structs.replace(
        info,
        input_cost_per_token=_first(params.input_cost_per_token, info.input_cost_per_token),
        output_cost_per_token=_first(params.output_cost_per_token, info.output_cost_per_token),
    )
    return msgspec.structs.replace(entry, model_info=info)


def _first(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


def _say_stream_timeouts(model_list: list[ModelEntry]) -> None:
    """A warning for each `stream_timeout`: accepted (LiteLLM's), not acted on."""
    for index, entry in enumerate(model_list):
        if entry.litellm_params.stream_timeout is not None:
            log.warning(
                "config: model_list[%d].litellm_params.stream_timeout is not acted on: "
                "prismgate bounds a streamed call by timeout, as any other",
                index,
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
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read config file {path}: it is not UTF-8 text (byte {exc.start})"
        ) from None
    try:
        loaded = yaml.load(text, Loader=_yaml_loader()) or {}  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: the config must be a mapping at the top level (model_list:, "
            f"general_settings:, ...), not a {type(loaded).__name__}"
        )
    return loaded


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader (libyaml's when present) that refuses a key written twice in
    one mapping: safe_load keeps the last silently, so half a section would vanish."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    merge = "tag:yaml.org,2002:merge"

    def mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == merge:
                continue
            if (key.tag, key.value) in seen:
                first = seen[key.tag, key.value]
                raise yaml.constructor.ConstructorError(
                    problem=f"{key.value!r} is written twice (first at line {first})",
                    problem_mark=key.start_mark,
                )
            seen[key.tag, key.value] = key.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    loader: Any = type("_UniqueKeyLoader", (base,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return loader


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
