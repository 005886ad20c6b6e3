"""Which keys a config file may hold, and what a key that is not one of them means.

Every key of a config file is one of:

- a setting prismgate acts on: a field of the config's Structs (`config.py`), or, in
  `litellm_params`, a setting its provider declares (a region, a project, ...);
- a LiteLLM setting that prismgate does not act on (listed below, from LiteLLM's
  reference of `config.yaml`): refused, unless the operator sets
  `general_settings.allow_unused_litellm_settings: true`; then it is ignored, and said
  once when the gateway starts;
- in `litellm_params` only, any other key: a request parameter sent to the provider as it
  is (LiteLLM's rule), unless it is a near miss of a setting (`api_bse`), which is refused;
- a top-level key starting with `x-`: a home for YAML anchors, not a setting;
- anything else: a mistake, refused with a "did you mean" when a known key is close.

`check_keys` walks the raw mapping once, at load time; nothing here runs per request.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

__all__ = [
    "ALLOW_UNUSED",
    "CALL_TYPES",
    "EXTENSION_PREFIX",
    "LITELLM_ONLY",
    "KeyReport",
    "check_keys",
    "closest",
    "litellm_only",
    "litellm_transport",
    "refusal",
]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The setting that lets a config keep LiteLLM settings prismgate does not act on.
ALLOW_UNUSED = "allow_unused_litellm_settings"
# Top-level keys with this prefix hold YAML anchors for the rest of the file
# (`x-defaults: &defaults {...}`), as docker-compose's extension fields do: not settings.
EXTENSION_PREFIX = "x-"

# LiteLLM settings that prismgate accepts as LiteLLM's but does not act on, by section
# ("" is the top level). A name prismgate acts on is never listed here.
LITELLM_ONLY: Mapping[str, frozenset[str]] = {
    "": _names(
        """
        assistant_settings credential_list files_settings
        finetune_settings guardrails include mcp_servers prompts search_tools
        vector_store_registry
        """
    ),
    "general_settings": _names(
        """
        admin_only_routes alert_to_webhook_url alert_types alerting alerting_args
        alerting_threshold allow_client_side_credentials allow_requests_on_db_unavailable
        allow_user_auth allowed_ips allowed_routes background_health_checks completion_model
        custom_auth custom_key_generate custom_sso database_connection_pool_limit
        database_connection_timeout default_team_disabled
        disable_adding_master_key_hash_to_db disable_master_key_return
        disable_prisma_schema_update disable_reset_budget disable_responses_id_security
        disable_retry_on_max_parallel_request_limit_error disable_spend_updates
        embedding_model enable_jwt_auth enable_oauth2_auth enable_oauth2_proxy_auth
        enforce_user_param enforced_params forward_client_headers_to_llm_api
        forward_openai_org_id global_max_parallel_requests health_check_details
        health_check_interval image_generation_model infer_model_from_keys
        key_management_settings key_management_system litellm_jwtauth
        litellm_key_header_name litellm_license max_parallel_requests max_response_size_mb
        maximum_spend_logs_retention_interval maximum_spend_logs_retention_period
        moderation_model oauth2_config_mappings pass_through_endpoints
        proxy_batch_polling_interval proxy_batch_write_at proxy_budget_rescheduler_max_time
        proxy_budget_rescheduler_min_time public_routes reject_clientside_metadata_tags
        service_account_settings spend_report_frequency store_model_in_db
        supported_db_objects ui_access_mode use_azure_key_vault
        use_client_credentials_pass_through_routes use_google_kms use_x_forwarded_for
        user_api_key_cache_ttl user_mcp_management_mode
        """
    ),
    "router_settings": _names(
        """
        alerting_config allowed_fails_policy assistants_config cache_kwargs cache_responses
        caching_groups client_ttl context_window_fallbacks debug_level
        default_litellm_params default_max_parallel_requests default_priority
        deployment_affinity_ttl_seconds disable_cooldowns enable_pre_call_check
        enable_pre_call_checks enable_tag_filtering guardrail_list
        ignore_invalid_deployments max_fallbacks model_group_retry_policy
        optional_pre_call_checks polling_interval provider_budget_config redis_db
        retry_after retry_policy router_general_settings routing_strategy_args search_tools
        set_verbose stream_timeout tag_filtering_match_any
        """
    ),
    "litellm_settings": _names(
        """
        allowed_fails budget_duration content_policy_fallbacks
        context_window_fallbacks default_fallbacks default_internal_user_params
        default_key_generate_params default_team_settings
        disable_add_transform_inline_image_block disable_copilot_system_to_assistant
        disable_end_user_cost_tracking disable_end_user_cost_tracking_prometheus_only
        disable_hf_tokenizer_download enable_json_schema_validation
        enable_key_alias_format_validation enable_preview_features fallbacks force_ipv4
        internal_user_budget_duration key_generation_settings
        langfuse_default_tags max_budget max_end_user_budget max_internal_user_budget
        max_parallel_requests mcp_aliases modify_params public_model_groups
        public_model_groups_links redact_user_api_key_info return_response_headers
        service_callbacks set_verbose ssl_verify store_audit_logs telemetry
        turn_off_message_logging upperbound_key_generate_params
        use_chat_completions_url_for_anthropic_messages
        """
    ),
    # LiteLLM reads these itself and never sends them to the provider; sent as request
    # parameters they would reach the provider's body (a secret among them).
    "litellm_params": _names(
        """
        allowed_model_region allowed_openai_params assistant_continue_message base_model
        budget_duration configurable_clientside_auth_params cooldown_time
        ensure_alternating_roles extra_headers headers hf_model_name input_cost_per_image
        input_cost_per_pixel input_cost_per_second litellm_credential_name max_budget
        max_parallel_requests max_retries merge_reasoning_content_in_choices metadata
        mock_response mock_timeout num_retries output_cost_per_pixel output_cost_per_second
        region_name supports_system_message tags use_in_pass_through use_litellm_proxy
        user_continue_message
        """
    ),
    "model_info": _names(
        """
        access_groups access_via_team_ids cache_creation_input_token_cost
        cache_read_input_token_cost created_at created_by db_model description
        input_cost_per_audio_token input_cost_per_character input_cost_per_image
        input_cost_per_pixel input_cost_per_query input_cost_per_second
        input_cost_per_token_above_128k_tokens input_cost_per_token_above_200k_tokens
        input_cost_per_token_batches key litellm_provider max_tokens metadata
        output_cost_per_audio_token output_cost_per_character output_cost_per_image
        output_cost_per_pixel output_cost_per_reasoning_token output_cost_per_second
        output_cost_per_token_above_128k_tokens output_cost_per_token_above_200k_tokens
        output_cost_per_token_batches output_vector_size rpm supported_openai_params
        supports_assistant_prefill supports_audio_input supports_audio_output
        supports_computer_use supports_embedding_image_input supports_native_streaming
        supports_parallel_function_calling supports_pdf_input supports_prompt_caching
        supports_reasoning supports_response_schema supports_system_messages
        supports_tool_choice supports_url_context supports_web_search team_id
        team_public_model_name tier tpm updated_at updated_by use_in_pass_through
        """
    ),
    "cache_params": _names(
        """
        db default_in_memory_ttl default_in_redis_ttl disable_copilot_system_to_assistant
        gcp_service_account gcp_ssl_ca_certs gcs_bucket_name gcs_path
        gcs_path_service_account max_connections mode namespace qdrant_api_base
        qdrant_api_key qdrant_collection_name qdrant_quantization_config
        qdrant_semantic_cache_embedding_model qdrant_semantic_cache_vector_size
        redis_flush_size redis_semantic_cache_embedding_model
        redis_semantic_cache_index_name redis_startup_nodes s3_api_version
        s3_aws_access_key_id s3_aws_secret_access_key s3_aws_session_token s3_bucket_name
        s3_endpoint_url s3_path s3_region_name s3_use_ssl s3_verify sentinel_nodes
        sentinel_password service_name similarity_threshold ssl ssl_cert_reqs
        ssl_check_hostname username
        """
    ),
}

# Of LiteLLM's `litellm_params` above, those that say how and as whom a deployment is
# called: its retries, timeouts and headers, regions and endpoints by routes prismgate
# does not have (credential routes are each provider's `unsupported_settings`, added by
# `litellm_transport()`). prismgate does not act on them, yet they are the operator's
# like every deployment field: prismgate.authority refuses them from callers, so none
# reaches a provider as a request parameter.
_TRANSPORT = _names(
    """
    allowed_model_region extra_headers headers litellm_credential_name max_retries
    mock_timeout num_retries region_name use_litellm_proxy
    """
)


@functools.cache
def litellm_transport() -> frozenset[str]:
    """The names above, and every provider's `unsupported_settings` (LiteLLM's other ways
    to authenticate to it), which are `litellm_params` of LiteLLM's too."""
    # Imported when first asked: it loads every provider, which a config import need not.
    from prismgate.providers import unsupported_settings

    return _TRANSPORT | unsupported_settings()


def litellm_only(section: str) -> frozenset[str]:
    """LiteLLM's settings of `section` that prismgate does not act on."""
    names = LITELLM_ONLY.get(section, frozenset())
    return names | litellm_transport() if section == "litellm_params" else names


# What prismgate does instead, for LiteLLM settings whose purpose it serves another way.
_INSTEAD: Mapping[str, str] = {
    "general_settings.allow_client_side_credentials": "general_settings.allow_client_provider_keys",
    "general_settings.image_generation_model": "general_settings.default_image_model",
    "litellm_params.max_retries": "router_settings.num_retries",
    "litellm_params.num_retries": "router_settings.num_retries",
    "litellm_params.base_model": "model_info.base_model",
    "model_info.max_tokens": "model_info.max_output_tokens",
    "model_info.output_cost_per_image": "model_info.image.pricing.per_image",
    "router_settings.retry_after": "general_settings.retries",
    "router_settings.stream_timeout": "router_settings.timeout",
    "litellm_settings.fallbacks": "router_settings.fallbacks",
    "litellm_settings.default_fallbacks": "router_settings.default_fallbacks",
    "litellm_settings.content_policy_fallbacks": "router_settings.content_policy_fallbacks",
    "litellm_settings.allowed_fails": "router_settings.allowed_fails",
}

# The keys of `litellm_settings.cache_params` that prismgate acts on, and their types.
_CACHE_PARAMS: Mapping[str, Any] = {
    "type": str,
    "ttl": float,
    "supported_call_types": list[str],
    "host": str,
    "port": int,
    "password": str,
    "url": str,
    "redis_url": str,
}
# LiteLLM's names of calls (`cache_params.supported_call_types`) → the answers the
# response cache keeps for them. Those without an endpoint here (None: embeddings,
# speech, ...) are accepted and never happen.
CALL_TYPES: Mapping[str, Literal["images", "chat"] | None] = {
    **dict.fromkeys(
        ("image_generation", "aimage_generation", "image_edit", "aimage_edit"), "images"
    ),
    **dict.fromkeys(("completion", "acompletion"), "chat"),
    **dict.fromkeys(
        _names(
            """
            text_completion atext_completion embedding aembedding transcription
            atranscription speech aspeech rerank arerank moderation amoderation responses
            aresponses
            """
        )
    ),
}

# Fields of the Structs that are not read from the file.
_NOT_FROM_FILE = frozenset({"environ", "unused_settings", "settings", "provider_params"})


@dataclass(slots=True)
class KeyReport:
    """What a walk over a config found: mistakes (each `path: what is wrong`), and the
    paths of LiteLLM settings that prismgate does not act on."""

    mistakes: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def check_keys(
    raw: Mapping[str, Any],
    config_type: type[msgspec.Struct],
    *,
    sections: Mapping[type[msgspec.Struct], str],
    params_type: type[msgspec.Struct],
    request_params: Iterable[str],
) -> KeyReport:
    """Every key of `raw` (a config, env references resolved) checked against the Struct
    `config_type`. `sections` names the Structs that hold a LiteLLM section (the keys of
    LITELLM_ONLY); `params_type` is the Struct of `litellm_params`, whose other keys are
    request parameters; `request_params` are the OpenAI request fields."""
    from prismgate.providers import provider_settings

    walk = _Walk(
        report=KeyReport(),
        settings=frozenset(provider_settings()),
        request_params=frozenset(request_params),
        sections=sections,
        params_type=params_type,
        homes=_homes(config_type, tuple(sections.items())),
    )
    walk.node(raw, msgspec.inspect.type_info(config_type), "")
    return walk.report


def refusal(unused: Iterable[str]) -> str:
    """The problem of a config that keeps LiteLLM settings prismgate does not act on."""
    listed = ", ".join(_with_instead(path) for path in unused)
    return (
        f"LiteLLM settings that prismgate does not act on: {listed}. Remove them, or set "
        f"general_settings.{ALLOW_UNUSED}: true to start with them ignored"
    )


def _with_instead(path: str) -> str:
    instead = _INSTEAD.get(_generic(path))
    return f"{path} (prismgate reads {instead})" if instead else path


def _generic(path: str) -> str:
    """`model_list[2].litellm_params.tags` → `litellm_params.tags`, for the tables above."""
    return ".".join(path.split(".")[-2:])


def closest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The choice `word` is most likely a misspelling of, if any: the same key in another
    case or with dashes, a swap of two neighbouring letters, else difflib's closest."""
    options = sorted(set(choices))
    wanted = _normal(word)
    for option in options:
        if _normal(option) == wanted or _swapped(_normal(option), wanted):
            return option
    found = difflib.get_close_matches(wanted, options, n=1, cutoff=cutoff)
    return found[0] if found else None


def _normal(word: str) -> str:
    return word.lower().replace("-", "_").strip()


def _swapped(a: str, b: str) -> bool:
    """`a` is `b` with two neighbouring letters swapped (`rmp` for `rpm`)."""
    if len(a) != len(b) or a == b:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(differ) == 2
        and differ[1] == differ[0] + 1
        and a[differ[0]] == b[differ[1]]
        and a[differ[1]] == b[differ[0]]
    )


@functools.cache
def _homes(
    config_type: type[msgspec.Struct], sections: tuple[tuple[type[msgspec.Struct], str], ...]
) -> Mapping[str, str]:
    """Where each key of the top level and of the LiteLLM sections lives
    (`routing_strategy` → `router_settings.routing_strategy`), for keys written in the
    wrong place."""
    homes: dict[str, str] = {}
    for cls, section in sections:
        if cls is config_type or section == "model_info":
            continue
        for name in cls.__struct_fields__:
            homes.setdefault(name, f"{section}.{name}")
    for name in config_type.__struct_fields__:
        if name not in _NOT_FROM_FILE:
            homes[name] = name
    return homes


@dataclass(slots=True)
class _Walk:
    report: KeyReport
    settings: frozenset[str]
    request_params: frozenset[str]
    sections: Mapping[type[msgspec.Struct], str]
    params_type: type[msgspec.Struct]
    homes: Mapping[str, str]

    def node(self, value: Any, info: msgspec.inspect.Type, path: str) -> None:
        if isinstance(info, msgspec.inspect.UnionType):
            for option in info.types:
                self.node(value, option, path)
        elif isinstance(info, msgspec.inspect.StructType) and isinstance(value, dict):
            self.struct(value, info, path)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    self.node(item, info.item_type, f"{path}[{index}]")
        elif isinstance(info, msgspec.inspect.DictType) and isinstance(value, dict):
            for key, item in value.items():
                self.node(item, info.value_type, _join(path, key))

    def struct(self, value: dict[Any, Any], info: msgspec.inspect.StructType, path: str) -> None:
        fields = {f.encode_name: f.type for f in info.fields if f.name not in _NOT_FROM_FILE}
        if info.cls is self.params_type:
            self.params(value, fields, path)
            return
        section = self.sections.get(info.cls)
        not_acted_on = litellm_only(section) if section is not None else ()
        for key, item in value.items():
            where = _join(path, key)
            if section == "" and str(key).startswith(EXTENSION_PREFIX):
                continue
            if key in not_acted_on:
                self.report.unused.append(where)
            elif key == "cache_params" and section == "litellm_settings":
                self.cache_params(item, where)
            elif key in fields:
                self.node(item, fields[key], where)
            else:
                self.unknown(str(key), where, fields, not_acted_on)

    def unknown(
        self, key: str, where: str, fields: Mapping[str, Any], not_acted_on: Iterable[str]
    ) -> None:
        home = self.homes.get(key)
        parent, _, _ = where.rpartition(".")
        if "litellm_params" in fields and (
            key in self.params_type.__struct_fields__ or key in self.settings
        ):
            home = f"{parent}.litellm_params.{key}"
        if home is not None and home != where:
            self.report.mistakes.append(f"{where}: not a setting here; it belongs in {home}")
            return
        near = closest(key, [*fields, *not_acted_on])
        if near is not None:
            self.report.mistakes.append(f"{where}: not a setting; did you mean {near}?")
            return
        known = sorted(fields)
        if len(known) > 12:
            what = f"not a setting of {parent} (the README's Configuration section lists them)"
        else:
            what = f"not a setting; {parent or 'the top level'} takes {', '.join(known)}"
        self.report.mistakes.append(f"{where}: {what}")

    def params(self, value: dict[Any, Any], fields: Mapping[str, Any], path: str) -> None:
        """`litellm_params`: settings, LiteLLM's own keys, request parameters, and near
        misses of settings (a typo would otherwise reach the provider's body)."""
        not_acted_on = litellm_only("litellm_params")
        settings = {*fields, *self.settings} - not_acted_on
        for key, item in value.items():
            where = _join(path, key)
            if key in not_acted_on:
                self.report.unused.append(where)
            elif key in fields:
                self.node(item, fields[key], where)
            elif key in self.settings or key in self.request_params:
                continue
            elif key in ("model_info", "model_name"):
                entry = path.rsplit(".", 1)[0]
                self.report.mistakes.append(
                    f"{where}: {key} goes beside litellm_params, as {entry}.{key}"
                )
            elif (near := closest(str(key), [*settings, *not_acted_on], cutoff=0.8)) is not None:
                self.report.mistakes.append(
                    f"{where}: not a setting; did you mean {near}? (other keys are sent to "
                    "the provider as request parameters; this one looks like a misspelling)"
                )

    def cache_params(self, value: Any, path: str) -> None:
        """`litellm_settings.cache_params`: a plain mapping in the Struct, checked here."""
        if not isinstance(value, dict):
            return  # the Struct's own check names the type
        not_acted_on = LITELLM_ONLY["cache_params"]
        for key, item in value.items():
            where = _join(path, key)
            if key in not_acted_on:
                self.report.unused.append(where)
            elif key not in _CACHE_PARAMS:
                near = closest(str(key), [*_CACHE_PARAMS, *not_acted_on])
                hint = f"did you mean {near}?" if near else f"it takes {', '.join(_CACHE_PARAMS)}"
                self.report.mistakes.append(f"{where}: not a setting; {hint}")
            elif item is not None:
                self._cache_value(key, item, where)

    def _cache_value(self, key: str, item: Any, where: str) -> None:
        try:
            msgspec.convert(item, _CACHE_PARAMS[key], strict=False)
        except msgspec.ValidationError as exc:
            self.report.mistakes.append(f"{where}: {str(exc).split(' - at ')[0]}")
            return
        if key == "supported_call_types":
            for index, name in enumerate(item):
                if name not in CALL_TYPES:
                    near = closest(str(name), CALL_TYPES)
                    hint = f"; did you mean {near}?" if near else ""
                    self.report.mistakes.append(
                        f"{where}[{index}]: {name!r} is not a call type{hint}"
                    )


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
