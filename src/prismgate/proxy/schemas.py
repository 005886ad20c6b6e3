"""Response shapes of the proxy's own endpoints (the OpenAPI schema is built from these)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ConfigReloaded",
    "GroupInfo",
    "GroupInfoList",
    "HealthReport",
    "ModelCard",
    "ModelInfoEntry",
    "ModelInfoList",
    "ModelList",
    "Readiness",
]


class ModelCard(msgspec.Struct, kw_only=True):
    """One entry of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "prismgate"


class ModelList(msgspec.Struct, kw_only=True):
    """`GET /v1/models`: the model groups this proxy serves."""

    data: list[ModelCard]
    object: Literal["list"] = "list"


class ModelInfoEntry(msgspec.Struct, kw_only=True):
    """One deployment in `GET /model/info` (no secret is ever included)."""

    model_name: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any]


class ModelInfoList(msgspec.Struct, kw_only=True):
    """`GET /model/info`."""

    data: list[ModelInfoEntry]


class GroupInfo(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One model group in `GET /model_group/info`, with LiteLLM's keys plus image fields."""

    model_group: str
    providers: list[str]
    mode: str | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    supports_vision: bool = False
    supports_function_calling: bool = False
    tpm: int | None = None
    rpm: int | None = None
    image_sizes: tuple[str, ...] | None = None
    image_aspect_ratios: tuple[str, ...] | None = None
    image_max_n: int | None = None
    image_qualities: tuple[str, ...] | None = None
    image_styles: tuple[str, ...] | None = None
    image_output_formats: tuple[str, ...] | None = None
    image_response_formats: tuple[str, ...] | None = None


class GroupInfoList(msgspec.Struct, kw_only=True):
    """`GET /model_group/info`."""

    data: list[GroupInfo]


class EndpointHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The health of one deployment."""

    model: str
    provider: str
    api_base: str | None = None
    checks: dict[str, str]
    error: str | None = None


class HealthReport(msgspec.Struct, kw_only=True):
    """`GET /health`: every deployment checked without a paid call."""

    healthy_endpoints: list[EndpointHealth]
    unhealthy_endpoints: list[EndpointHealth]
    healthy_count: int
    unhealthy_count: int


class ConfigReloaded(msgspec.Struct, kw_only=True):
    """`POST /config/reload`: the config file was reloaded (`reloaded`), or, with several
    workers, checked here and being reloaded by every worker (`reloading`)."""

    status: Literal["reloaded", "reloading"]
    models: list[str]


class Readiness(msgspec.Struct, kw_only=True):
    """`GET /health/readiness`: the worker takes calls; what it depends on, each
    `connected` or why not (`degraded`: one is not, and the gateway serves on without it:
    keys cached, spend spooled, Redis state in process, `b64_json` answers)."""

    status: Literal["healthy", "degraded"] = "healthy"
    version: str
    models: list[str]
    # The key and spend database; None without one (a gateway without a database).
    db: str | None = None
    # Redis for routing state, limits and the response cache; None: this process's own.
    cache: str | None = None
    # The image store behind `url` answers.
    image_store: str
