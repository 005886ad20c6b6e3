"""Portkey configs → plans: parsing, validation messages, inheritance, conditions, weights."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from prismgate.errors import BadRequestError, ConfigError
from prismgate.routing.portkey_config import (
    DEFAULT_RETRY_STATUS_CODES,
    CacheSettings,
    InlineConfigs,
    PlanBranch,
    PlanLeaf,
    PlanNode,
    RetrySettings,
    SavedConfigs,
    choose_conditional,
    parse_portkey_config,
    pick_weighted,
)


def parse(config: Any, **saved: Any) -> PlanNode:
    raw = config if isinstance(config, str) else json.dumps(config)
    return parse_portkey_config(raw, saved=saved)


def branch(config: Any) -> PlanBranch:
    node = parse(config)
    assert isinstance(node, PlanBranch)
    return node


def leaf(node: PlanNode) -> PlanLeaf:
    assert isinstance(node, PlanLeaf)
    return node


def refused(config: Any, **saved: Any) -> str:
    with pytest.raises(BadRequestError) as caught:
        parse(config, **saved)
    assert caught.value.param == "x-portkey-config"
    assert caught.value.status_code == 400
    return caught.value.message


def lb(*targets: Any, **strategy: Any) -> dict[str, Any]:
    return {"strategy": {"mode": "loadbalance", **strategy}, "targets": list(targets)}


def conditional(conditions: list[Any], *names: str, default: str | None = None) -> dict[str, Any]:
    strategy: dict[str, Any] = {"mode": "conditional", "conditions": conditions}
    if default is not None:
        strategy["default"] = default
    return {"strategy": strategy, "targets": [{"name": n, "virtual_key": n} for n in names]}


# --- the input forms ---------------------------------------------------------------------


def test_a_top_level_leaf_is_a_single_target_with_its_settings() -> None:
    node = leaf(parse({"virtual_key": "openai-prod", "retry": {"attempts": 3}}))
    assert node.path == "config"
    assert node.virtual_key == "openai-prod"
    assert node.provider is None and node.api_key is None and node.name is None
    assert node.weight == 1.0
    assert node.retry == RetrySettings(3, DEFAULT_RETRY_STATUS_CODES, False)
    assert node.cache is None and node.request_timeout is None and node.custom_host is None
    assert dict(node.override_params) == {} and dict(node.provider_options) == {}


def test_a_leaf_without_provider_or_virtual_key_routes_by_model() -> None:
    node = leaf(parse({"override_params": {"model": "dall-e-3"}}))
    assert node.provider is None and node.virtual_key is None
    assert node.override_params["model"] == "dall-e-3"


def test_a_parsed_mapping_and_whitespace_around_json_are_accepted() -> None:
    config = {"provider": "openai", "api_key": "sk-1"}
    from_mapping = parse_portkey_config(config, saved={})
    from_text = parse_portkey_config("  " + json.dumps(config) + "\n", saved={})
    assert from_mapping == from_text
    assert leaf(from_text).provider == "openai" and leaf(from_text).api_key == "sk-1"


def test_the_same_inline_text_is_parsed_once_per_gateway() -> None:
    text = json.dumps(lb({"virtual_key": "a"}, {"virtual_key": "b"}))
    mine, theirs = InlineConfigs(), InlineConfigs()
    assert mine.parse(text) is mine.parse(text)
    assert theirs.parse(text) is not mine.parse(text)  # nothing shared across gateways
    assert parse_portkey_config(text, saved={}) is not parse_portkey_config(text, saved={})


def test_an_inline_config_holding_a_key_is_never_kept() -> None:
    configs = InlineConfigs()
    with_key = json.dumps({"provider": "openai", "api_key": "sk-caller-secret"})
    with_credential = json.dumps(
        {"provider": "bedrock", "api_key": "k", "aws_secret_access_key": "aws-secret"}
    )
    for text in (with_key, with_credential):
        assert configs.parse(text) is not configs.parse(text)
    assert "sk-caller-secret" not in repr(vars(configs)) + repr(configs._plans)


def test_the_inline_cache_is_bounded() -> None:
    configs = InlineConfigs(size=4)
    first = json.dumps({"virtual_key": "k0"})
    kept = configs.parse(first)
    for i in range(1, 6):
        configs.parse(json.dumps({"virtual_key": f"k{i}"}))
    assert len(configs._plans) == 4
    assert configs.parse(first) is not kept


def test_a_saved_id_comes_from_the_saved_configs() -> None:
    saved = {"pc-one": {"virtual_key": "a"}, "pc-two": lb({"virtual_key": "b"})}
    assert leaf(parse_portkey_config("pc-one", saved=saved)).virtual_key == "a"
    startup = SavedConfigs(saved)
    node = parse_portkey_config(" pc-two ", saved=startup)
    assert isinstance(node, PlanBranch) and node.mode == "loadbalance"
    assert node is startup.get("pc-two")


@pytest.mark.parametrize("saved", [{"pc-b": {}, "pc-a": {}}, {}])
def test_an_unknown_id_never_lists_the_operators_ids(saved: Any) -> None:
    expected = (
        "x-portkey-config: unknown config id 'pc-x'; use a config id this gateway's "
        "operator gave you, or send the config itself as JSON"
    )
    assert refused("pc-x", **saved) == expected
    with pytest.raises(BadRequestError) as caught:
        SavedConfigs(saved).get("pc-x")
    assert caught.value.message == expected
    assert "pc-a" not in caught.value.message


def test_the_parameter_name_is_the_callers_choice() -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_portkey_config('{"weight": -1}', saved={}, param="config")
    assert caught.value.param == "config"
    assert caught.value.message == "config: weight must be a number >= 0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "x-portkey-config: is empty; send a JSON config or a config id"),
        ("   ", "x-portkey-config: is empty; send a JSON config or a config id"),
        ('{"retry": ', "x-portkey-config: is not valid JSON (Expecting value at character 9)"),
        ('{"weight": NaN}', "x-portkey-config: is not valid JSON"),
        ('{"weight": Infinity}', "x-portkey-config: is not valid JSON"),
        (
            "[" * 100_000,
            "x-portkey-config nests arrays and objects more than 64 levels deep; "
            "send a flatter JSON document",
        ),
        ("[1, 2]", "x-portkey-config: must be a config object (got list)"),
    ],
)
def test_text_that_is_not_a_config_object(raw: str, message: str) -> None:
    assert refused(raw) == message


def test_a_saved_config_that_is_bad_names_its_path_at_request_time() -> None:
    message = refused("pc-bad", **{"pc-bad": lb({"virtual_key": "a", "weight": "x"})})
    assert (
        message
        == "x-portkey-config: portkey_configs.pc-bad.targets[0].weight must be a number >= 0"
    )


# --- modes -------------------------------------------------------------------------------


def test_single_mode_keeps_every_target_and_the_executor_uses_the_first() -> None:
    node = branch(
        {"strategy": {"mode": "single"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}]}
    )
    assert node.mode == "single"
    assert [leaf(t).virtual_key for t in node.targets] == ["a", "b"]
    assert node.on_status_codes is None and node.conditions == () and node.default is None


def test_fallback_mode_with_and_without_status_codes() -> None:
    any_failure = branch({"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "a"}]})
    assert any_failure.mode == "fallback" and any_failure.on_status_codes is None
    some = branch(
        {
            "strategy": {"mode": "fallback", "onStatusCodes": [429, 503]},
            "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}],
        }
    )
    assert some.on_status_codes == (429, 503)
    assert [t.path for t in some.targets] == ["config.targets[0]", "config.targets[1]"]


def test_loadbalance_weights_default_to_one_and_may_be_zero() -> None:
    node = branch(lb({"virtual_key": "a"}, {"virtual_key": "b", "weight": 0}, {"weight": 2.5}))
    assert [t.weight for t in node.targets] == [1.0, 0.0, 2.5]


def test_conditional_mode_keeps_conditions_in_order_and_the_default() -> None:
    node = branch(
        conditional(
            [
                {"query": {"metadata.plan": "paid"}, "then": "b"},
                {"query": {"params.n": 2}, "then": "a"},
            ],
            "a",
            "b",
            default="a",
        )
    )
    assert [c.then for c in node.conditions] == ["b", "a"]
    assert node.default == "a"
    assert [t.name for t in node.targets] == ["a", "b"]


def test_branches_nest_and_every_node_knows_its_path() -> None:
    node = branch(
        lb(
            {"virtual_key": "a"},
            {
                "strategy": {"mode": "fallback"},
                "targets": [{"virtual_key": "b"}, lb({"virtual_key": "c"})],
            },
        )
    )
    inner = node.targets[1]
    assert isinstance(inner, PlanBranch) and inner.path == "config.targets[1]"
    deepest = inner.targets[1]
    assert isinstance(deepest, PlanBranch)
    assert leaf(deepest.targets[0]).path == "config.targets[1].targets[1].targets[0]"


# --- inheritance -------------------------------------------------------------------------


def three_levels() -> PlanBranch:
    return branch(
        {
            "strategy": {"mode": "fallback"},
            "retry": {"attempts": 3, "on_status_codes": [429]},
            "cache": {"mode": "simple", "max_age": 60},
            "request_timeout": 10000,
            "custom_host": "https://top.example/v1",
            "override_params": {"model": "top-model", "quality": "hd", "style": "vivid"},
            "aws_region": "us-east-1",
            "aws_access_key_id": "AKIA-TOP",
            "targets": [
                {
                    "strategy": {"mode": "loadbalance"},
                    "request_timeout": 5000,
                    "override_params": {"quality": "standard", "size": "512x512"},
                    "aws_region": "eu-west-1",
                    "targets": [
                        {"provider": "bedrock", "override_params": {"size": "1024x1024"}},
                        {
                            "virtual_key": "vk",
                            "retry": {"attempts": 1},
                            "cache": {"mode": "simple"},
                            "request_timeout": 2000,
                            "customHost": "https://leaf.example/v1",
                            "overrideParams": {"model": "leaf-model"},
                            "awsRegion": "ap-south-1",
                        },
                    ],
                },
                {"virtual_key": "plain"},
            ],
        }
    )


def test_three_levels_inherit_with_the_childs_own_values_winning() -> None:
    top = three_levels()
    middle = top.targets[0]
    assert isinstance(middle, PlanBranch)
    first, second, plain = leaf(middle.targets[0]), leaf(middle.targets[1]), leaf(top.targets[1])

    # From the top, through the middle: nested targets keep the fallback settings.
    assert first.retry == RetrySettings(3, (429,), False)
    assert first.cache == CacheSettings("simple", 60.0)
    assert first.custom_host == "https://top.example/v1"
    assert first.request_timeout == 5.0  # the middle's 5000 ms
    assert dict(first.override_params) == {
        "model": "top-model",
        "quality": "standard",
        "style": "vivid",
        "size": "1024x1024",
    }
    assert dict(first.provider_options) == {
        "aws_region": "eu-west-1",
        "aws_access_key_id": "AKIA-TOP",
    }

    # The leaf's own values win; a leaf's retry replaces its parent's whole (as Portkey does).
    assert second.retry == RetrySettings(1, DEFAULT_RETRY_STATUS_CODES, False)
    assert second.cache == CacheSettings("simple", None)
    assert second.request_timeout == 2.0
    assert second.custom_host == "https://leaf.example/v1"
    assert dict(second.override_params) == {
        "model": "leaf-model",
        "quality": "standard",
        "style": "vivid",
        "size": "512x512",
    }
    assert second.provider_options["aws_region"] == "ap-south-1"

    # A sibling of the middle branch sees only the top.
    assert plain.request_timeout == 10.0
    assert dict(plain.override_params) == {"model": "top-model", "quality": "hd", "style": "vivid"}
    assert dict(plain.provider_options) == {
        "aws_region": "us-east-1",
        "aws_access_key_id": "AKIA-TOP",
    }

    # Branches carry their effective values too.
    assert middle.retry == top.retry == RetrySettings(3, (429,), False)
    assert middle.request_timeout == 5.0 and top.request_timeout == 10.0
    assert middle.cache == CacheSettings("simple", 60.0)


def test_inheritance_does_not_leak_between_siblings_or_into_parents() -> None:
    top = three_levels()
    assert dict(leaf(top.targets[1]).override_params) == {
        "model": "top-model",
        "quality": "hd",
        "style": "vivid",
    }
    assert top.targets[0].request_timeout == 5.0
    assert leaf(top.targets[1]).retry == RetrySettings(3, (429,), False)


def test_zero_retry_attempts_on_a_child_turns_the_inherited_retry_off() -> None:
    node = branch(
        {
            "strategy": {"mode": "fallback"},
            "retry": {"attempts": 4},
            "targets": [{"virtual_key": "a", "retry": {"attempts": 0}}],
        }
    )
    assert leaf(node.targets[0]).retry == RetrySettings(0, DEFAULT_RETRY_STATUS_CODES, False)


def test_plans_are_read_only() -> None:
    node = leaf(parse({"override_params": {"model": "m"}, "aws_region": "us-east-1"}))
    with pytest.raises(TypeError):
        node.override_params["model"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        node.provider_options["aws_region"] = "x"  # type: ignore[index]


# --- field names and values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("snake", "camel"),
    [
        ({"virtual_key": "v"}, {"virtualKey": "v"}),
        ({"provider": "openai", "api_key": "k"}, {"provider": "openai", "apiKey": "k"}),
        ({"override_params": {"model": "m"}}, {"overrideParams": {"model": "m"}}),
        ({"request_timeout": 1500}, {"requestTimeout": 1500}),
        ({"custom_host": "http://h:1"}, {"customHost": "http://h:1"}),
        ({"cache": {"mode": "simple", "max_age": 5}}, {"cache": {"mode": "simple", "maxAge": 5}}),
        ({"aws_secret_access_key": "s"}, {"awsSecretAccessKey": "s"}),
        ({"vertex_project_id": "p"}, {"vertexProjectId": "p"}),
        ({"openai_organization": "o"}, {"openaiOrganization": "o"}),
        ({"vertex_service_account_json": {"a": 1}}, {"vertexServiceAccountJson": {"a": 1}}),
        (
            {"retry": {"attempts": 2, "on_status_codes": [500], "use_retry_after_header": True}},
            {"retry": {"attempts": 2, "onStatusCodes": [500], "useRetryAfterHeader": True}},
        ),
        (
            {"retry": {"attempts": 2, "use_retry_after_headers": True}},
            {"retry": {"attempts": 2, "useRetryAfterHeaders": True}},
        ),
    ],
)
def test_camel_case_names_mean_the_same(snake: dict[str, Any], camel: dict[str, Any]) -> None:
    assert parse(snake) == parse(camel)


def test_retry_after_header_both_spellings_and_the_defaults() -> None:
    assert leaf(
        parse({"retry": {"attempts": 2, "use_retry_after_headers": True}})
    ).retry == RetrySettings(2, DEFAULT_RETRY_STATUS_CODES, True)
    assert leaf(
        parse({"retry": {"attempts": 2, "use_retry_after_header": True}})
    ).retry == RetrySettings(2, DEFAULT_RETRY_STATUS_CODES, True)
    assert DEFAULT_RETRY_STATUS_CODES == (429, 500, 502, 503, 504)
    assert leaf(parse({"retry": {"attempts": 5, "on_status_codes": []}})).retry == RetrySettings(
        5, (), False
    )


def test_units_milliseconds_in_seconds_out() -> None:
    node = leaf(parse({"request_timeout": 2500, "cache": {"mode": "simple", "max_age": 0.5}}))
    assert node.request_timeout == 2.5
    assert node.cache == CacheSettings("simple", 0.5)


def test_provider_options_keep_portkeys_names() -> None:
    node = leaf(
        parse(
            {
                "provider": "vertex-ai",
                "api_key": "k",
                "vertex_region": "us-central1",
                "vertexProjectId": "proj",
                "vertex_service_account_json": {"type": "service_account"},
                "azure_api_version": "v1",
                "aws_session_token": "tok",
                "strict_open_ai_compliance": False,
            }
        )
    )
    assert dict(node.provider_options) == {
        "vertex_region": "us-central1",
        "vertex_project_id": "proj",
        "vertex_service_account_json": {"type": "service_account"},
        "azure_api_version": "v1",
        "aws_session_token": "tok",
    }


@pytest.mark.parametrize(
    "option",
    ["azure_resource_name", "azure_deployment_id", "openai_project", "aws_role_arn",
     "aws_auth_type", "vertex_storage_bucket_name", "anthropic_beta", "stability_client_id",
     "azureAdToken", "api_version"],
)  # fmt: skip
def test_a_provider_option_no_provider_honours_is_refused_by_name(option: str) -> None:
    message = refused({"provider": "openai", "api_key": "k", option: "x"})
    assert message == f"x-portkey-config: {option} is not supported by this gateway"


NOT_A_KEY = "is not a query key: use metadata.<key>, params.<name>, url.pathname, $and or $or"
NOT_AN_OP = (
    "is not a supported operator; use one of "
    "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $regex, $length"
)
MODES = "single, fallback, loadbalance, conditional"
COSTLY = "is too costly to test on every request:"
TIMEOUT = "must be a whole number of milliseconds, 1 to 86400000"
ID = "cannot be a config id (a non-empty name that does not start with '{' or '[')"

BAD = [
    ({"weight": -1}, "weight must be a number >= 0"),
    ({"weight": True}, "weight must be a number >= 0"),
    ({"name": ""}, "name must be a non-empty string"),
    (
        lb({"virtual_key": "a"}, {"virtual_key": "b", "weight": "2"}),
        "targets[1].weight must be a number >= 0",
    ),
    (
        {"strategy": {"mode": "roundrobin"}, "targets": [{}]},
        f"strategy.mode must be one of {MODES} (got 'roundrobin')",
    ),
    (
        {"strategy": {}, "targets": [{}]},
        f"strategy.mode must be one of {MODES} (missing)",
    ),
    (
        {"targets": [{}]},
        f"strategy.mode is required with targets (one of {MODES})",
    ),
    ({"strategy": {"mode": "fallback"}}, "targets must be a non-empty list of targets"),
    (
        {"strategy": {"mode": "fallback"}, "targets": []},
        "targets must be a non-empty list of targets",
    ),
    ({"strategy": "fallback", "targets": [{}]}, "strategy must be a config object (got str)"),
    (
        {"strategy": {"mode": "fallback"}, "targets": [{}, "vk"]},
        "targets[1] must be a config object (got str)",
    ),
    (
        {"strategy": {"mode": "single", "sticky_session": {}}, "targets": [{}]},
        "strategy.sticky_session is not supported by this gateway",
    ),
    (
        lb({"virtual_key": "a", "weight": 0}, {"virtual_key": "b", "weight": 0}),
        "targets all have weight 0; give one a weight > 0",
    ),
    (
        {"strategy": {"mode": "loadbalance", "on_status_codes": [429]}, "targets": [{}]},
        "strategy.on_status_codes applies only to mode fallback",
    ),
    (
        {"strategy": {"mode": "fallback", "default": "a"}, "targets": [{}]},
        "strategy.default applies only to mode conditional",
    ),
    (
        {"strategy": {"mode": "fallback", "conditions": []}, "targets": [{}]},
        "strategy.conditions applies only to mode conditional",
    ),
    (
        {"strategy": {"mode": "fallback", "on_status_codes": [429, 600]}, "targets": [{}]},
        "strategy.on_status_codes[1] must be an HTTP status code (100 to 599)",
    ),
    (
        {"strategy": {"mode": "fallback", "on_status_codes": 429}, "targets": [{}]},
        "strategy.on_status_codes must be a list of HTTP status codes",
    ),
    (
        {"provider": "openai", "virtual_key": "v"},
        "virtual_key cannot be given with provider; use one",
    ),
    ({"api_key": "sk"}, "api_key needs provider (the key is for that provider)"),
    (
        {"virtual_key": "v", "api_key": "sk"},
        "api_key needs provider (the key is for that provider)",
    ),
    ({"provider": ""}, "provider must be a non-empty string"),
    ({"provider": 3}, "provider must be a non-empty string"),
    (
        {"provider": "openai", "strategy": {"mode": "fallback"}, "targets": [{}]},
        "provider applies only to a target without targets; set it on each",
    ),
    (
        {"virtual_key": "v", "strategy": {"mode": "fallback"}, "targets": [{}]},
        "virtual_key applies only to a target without targets; set it on each",
    ),
    ({"virtual_key": "a", "virtualKey": "b"}, "virtualKey repeats virtual_key; give only one"),
    (
        {"targets": [{"input_guardrails": []}], "strategy": {"mode": "single"}},
        "targets[0].input_guardrails is not supported by this gateway",
    ),
    (
        {"forward_headers": ["x-a"]},
        "forward_headers is not supported by this gateway; "
        "this gateway never forwards client headers to providers",
    ),
    (
        {"on_status_codes": [429]},
        "on_status_codes is not supported by this gateway; put it in strategy.on_status_codes",
    ),
    ({"cb_config": {}}, "cb_config is not supported by this gateway"),
    ({"strict_open_ai_compliance": "no"}, "strict_open_ai_compliance must be true or false"),
    ({"override_params": ["model"]}, "override_params must be an object"),
    ({"retry": 3}, "retry must be a config object (got int)"),
    ({"retry": {}}, "retry.attempts must be an integer from 0 to 5 (missing)"),
    ({"retry": {"attempts": 6}}, "retry.attempts must be an integer from 0 to 5 (got 6)"),
    ({"retry": {"attempts": -1}}, "retry.attempts must be an integer from 0 to 5 (got -1)"),
    ({"retry": {"attempts": 2.5}}, "retry.attempts must be an integer from 0 to 5 (got 2.5)"),
    (
        {"retry": {"attempts": 1, "on_status_codes": ["429"]}},
        "retry.on_status_codes[0] must be an HTTP status code (100 to 599)",
    ),
    (
        {"retry": {"attempts": 1, "use_retry_after_header": "yes"}},
        "retry.use_retry_after_header must be true or false",
    ),
    ({"retry": {"attempts": 1, "backoff": 2}}, "retry.backoff is not supported by this gateway"),
    ({"cache": {"mode": "semantic"}}, "cache.mode 'semantic' is not supported, use simple"),
    ({"cache": {"mode": "exact"}}, "cache.mode must be simple (got 'exact')"),
    ({"cache": {"max_age": 60}}, "cache.mode must be simple (missing)"),
    ({"cache": {"mode": "simple", "max_age": 0}}, "cache.max_age must be a number of seconds > 0"),
    ({"request_timeout": 0}, f"request_timeout {TIMEOUT}"),
    ({"request_timeout": 1.5}, f"request_timeout {TIMEOUT}"),
    ({"request_timeout": 10**400}, f"request_timeout {TIMEOUT}"),
    ({"custom_host": "ftp://x"}, "custom_host must be an http:// or https:// URL"),
    ({"aws_region": 5}, "aws_region must be a non-empty string"),
    ({"aws_region": None}, "aws_region must be a non-empty string"),
    ({"vertex_service_account_json": "{}"}, "vertex_service_account_json must be an object"),
    (
        {
            "strategy": {"mode": "fallback"},
            "targets": [{"strategy": {"mode": "single"}, "targets": [{"weight": -2}]}],
        },
        "targets[0].targets[0].weight must be a number >= 0",
    ),
]


@pytest.mark.parametrize(("config", "problem"), BAD, ids=[p for _, p in BAD])
def test_every_validation_error_names_the_field(config: Any, problem: str) -> None:
    assert refused(config) == f"x-portkey-config: {problem}"


CONDITIONAL_BAD = [
    (
        conditional([{"query": {"metadata.a": 1}, "then": "x"}], "a"),
        "strategy.conditions[0].then names no target: 'x' (targets: a)",
    ),
    (conditional([], "a", default="nope"), "strategy.default names no target: 'nope' (targets: a)"),
    (
        {"strategy": {"mode": "conditional", "conditions": []}, "targets": [{"name": "a"}, {}]},
        "targets[1].name is required in conditional mode (conditions route by name)",
    ),
    (conditional([], "a", "b", "a"), "targets[2].name 'a' repeats targets[0]; names must differ"),
    (
        {"strategy": {"mode": "conditional"}, "targets": [{"name": "a"}]},
        "strategy.conditions must be a list of {query, then} objects",
    ),
    (conditional(["x"], "a"), "strategy.conditions[0] must be an object with query and then"),
    (
        conditional([{"query": {"metadata.a": 1}}], "a"),
        "strategy.conditions[0] needs both query and then",
    ),
    (
        conditional([{"query": {"metadata.a": 1}, "then": "a", "else": "a"}], "a"),
        "strategy.conditions[0].else is not supported by this gateway",
    ),
    (
        conditional([{"query": {}, "then": "a"}], "a"),
        'strategy.conditions[0].query must be a non-empty object, e.g. {"metadata.plan": "paid"}',
    ),
    (
        conditional([{"query": {"metadata.plan": {"$like": "p%"}}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.metadata.plan.$like {NOT_AN_OP}",
    ),
    (
        conditional(
            [{"query": {"$or": [{"metadata.a": 1}, {"params.b": {"$exists": True}}]}, "then": "a"}],
            "a",
        ),
        f"strategy.conditions[0].query.$or[1].params.b.$exists {NOT_AN_OP}",
    ),
    (
        conditional([{"query": {"$and": []}, "then": "a"}], "a"),
        "strategy.conditions[0].query.$and must be a non-empty list of queries",
    ),
    (
        conditional([{"query": {"user.plan": "x"}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.user.plan {NOT_A_KEY}",
    ),
    (
        conditional([{"query": {"metadata": "x"}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.metadata {NOT_A_KEY}",
    ),
    (
        conditional([{"query": {"params.a..b": "x"}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.params.a..b {NOT_A_KEY}",
    ),
    (
        conditional([{"query": {"url.host": "x"}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.url.host {NOT_A_KEY}",
    ),
    (
        conditional([{"query": {"params.n": {}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n must name at least one operator, "
        'e.g. {"$eq": "paid"}',
    ),
    (
        conditional([{"query": {"params.n": {"$gt": "many"}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$gt must be a number",
    ),
    (
        conditional([{"query": {"params.n": {"$in": "abc"}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$in must be a list of values",
    ),
    (
        conditional([{"query": {"params.n": {"$length": -1}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$length must be an integer >= 0 "
        "or an object of comparison operators ($eq ... $nin)",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": 5}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$regex must be a string (a regular expression)",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": "(unclosed"}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$regex is not a valid regular expression "
        "(missing ), unterminated subpattern at position 0)",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": "(a+)+$"}}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.params.n.$regex {COSTLY} "
        "a repetition inside a repetition (like (a+)+) is not allowed",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": r"(a)\1"}}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.params.n.$regex {COSTLY} backreferences are not allowed",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": ".*a.*b"}}, "then": "a"}], "a"),
        f"strategy.conditions[0].query.params.n.$regex {COSTLY} "
        "use at most one unbounded repetition (*, +, {n,}); split it with $and",
    ),
    (
        conditional([{"query": {"params.n": {"$regex": "a" * 257}}, "then": "a"}], "a"),
        "strategy.conditions[0].query.params.n.$regex is longer than 256 characters",
    ),
]


@pytest.mark.parametrize(
    ("config", "problem"), CONDITIONAL_BAD, ids=[p for _, p in CONDITIONAL_BAD]
)
def test_every_conditional_error_names_the_field(config: Any, problem: str) -> None:
    assert refused(config) == f"x-portkey-config: {problem}"


def test_a_conditional_error_deep_in_the_tree_names_the_whole_path() -> None:
    inner = conditional([{"query": {"metadata.a": {"$like": 1}}, "then": "a"}], "a")
    message = refused(lb({"virtual_key": "x"}, inner))
    assert message.startswith(
        "x-portkey-config: targets[1].strategy.conditions[0].query.metadata.a.$like "
    )


# --- size limits -------------------------------------------------------------------------


def nested(levels: int) -> dict[str, Any]:
    config: dict[str, Any] = {"virtual_key": "bottom"}
    for _ in range(levels - 1):
        config = {"strategy": {"mode": "single"}, "targets": [config]}
    return config


def test_eight_levels_deep_is_fine_nine_is_refused() -> None:
    node: PlanNode = parse(nested(8))
    while isinstance(node, PlanBranch):
        node = node.targets[0]
    assert node.path == "config" + ".targets[0]" * 7
    path = ".".join(["targets[0]"] * 8)
    assert refused(nested(9)) == f"x-portkey-config: {path} is nested more than 8 levels deep"


def test_a_hundred_nodes_are_fine_more_are_refused() -> None:
    assert len(branch(lb(*[{"virtual_key": f"k{i}"} for i in range(99)])).targets) == 99
    too_many = lb(*[{"virtual_key": f"k{i}"} for i in range(100)])
    assert refused(too_many) == "x-portkey-config: has more than 100 targets in all; split it"


# --- saved configs -----------------------------------------------------------------------


def test_saved_configs_are_parsed_at_startup() -> None:
    saved = SavedConfigs({"pc-a": {"virtual_key": "a"}, "pc-b": lb({"virtual_key": "b"})})
    assert saved.ids == ["pc-a", "pc-b"]
    assert "pc-a" in saved and "pc-z" not in saved and len(saved) == 2
    assert leaf(saved.get("pc-a")).virtual_key == "a"


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        (
            {"pc-a": lb({"virtual_key": "a", "weight": -1})},
            "portkey_configs.pc-a.targets[0].weight must be a number >= 0",
        ),
        (
            {"pc-a": {"cache": {"mode": "semantic"}}},
            "portkey_configs.pc-a.cache.mode 'semantic' is not supported, use simple",
        ),
        (
            {
                "pc-a": {
                    "strategy": {"mode": "conditional", "conditions": [], "default": "z"},
                    "targets": [{"name": "a"}],
                }
            },
            "portkey_configs.pc-a.strategy.default names no target: 'z' (targets: a)",
        ),
        ({"pc-a": ["virtual_key"]}, "portkey_configs.pc-a must be a config object (got list)"),
        (
            {"pc-a": {"virtual_key": "a"}, "pc-b": {"mode": "fallback"}},
            "portkey_configs.pc-b.mode is not supported by this gateway",
        ),
        ({"{pc": {}}, f"portkey_configs: '{{pc' {ID}"),
        ({"": {}}, f"portkey_configs: '' {ID}"),
    ],
)
def test_a_bad_saved_config_is_a_config_error_naming_its_path(saved: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SavedConfigs(saved)
    assert str(caught.value) == message


# --- conditions --------------------------------------------------------------------------


def route(
    query: Any, *, metadata: Any = None, params: Any = None, url_path: str | None = None
) -> bool:
    """Whether `query` sends the request to "hit" rather than to the default "miss"."""
    node = branch(conditional([{"query": query, "then": "hit"}], "hit", "miss", default="miss"))
    chosen = choose_conditional(
        node, metadata=metadata or {}, params=params or {}, url_path=url_path
    )
    assert chosen.name in ("hit", "miss")
    return chosen.name == "hit"


OPERATORS = [
    # bare value and $eq
    ({"metadata.plan": "paid"}, {"plan": "paid"}, {}, True),
    ({"metadata.plan": "paid"}, {"plan": "free"}, {}, False),
    ({"metadata.plan": {"$eq": "paid"}}, {"plan": "paid"}, {}, True),
    ({"params.model": {"$eq": "fastest"}}, {}, {"model": "fastest"}, True),
    # numbers: a metadata string that reads as a number compares as one
    ({"metadata.tier": 3}, {"tier": "3"}, {}, True),
    ({"metadata.tier": {"$eq": 3}}, {"tier": "3.0"}, {}, True),
    ({"metadata.tier": "3"}, {"tier": "3.0"}, {}, False),  # two strings compare as strings
    ({"params.n": "2"}, {}, {"n": 2}, True),
    ({"metadata.tier": {"$gt": 2}}, {"tier": "3"}, {}, True),
    ({"metadata.tier": {"$gt": 2}}, {"tier": "2"}, {}, False),
    ({"metadata.tier": {"$gt": 2}}, {"tier": "10"}, {}, True),  # not "10" < "2" as text
    ({"metadata.tier": {"$gte": "2"}}, {"tier": "2"}, {}, True),
    ({"metadata.tier": {"$lt": 2}}, {"tier": "1.5"}, {}, True),
    ({"metadata.tier": {"$lt": 2}}, {"tier": "2"}, {}, False),
    ({"metadata.tier": {"$lte": 2}}, {"tier": "2"}, {}, True),
    ({"metadata.tier": {"$lte": 2}}, {"tier": "2.01"}, {}, False),
    ({"params.temperature": {"$gt": 0.7}}, {}, {"temperature": 0.9}, True),
    ({"params.temperature": {"$gt": 0.7}}, {}, {"temperature": 0.5}, False),
    ({"params.temperature": {"$gt": 0.7, "$lt": 1}}, {}, {"temperature": 1.5}, False),
    ({"metadata.tier": {"$gt": 2}}, {"tier": "gold"}, {}, False),  # incompatible: false
    ({"params.n": {"$gt": 0}}, {}, {"n": True}, False),  # a boolean is not a number
    ({"params.n": {"$gt": 0}}, {}, {"n": [1]}, False),
    # booleans: "true" reads as true; true is not 1
    ({"metadata.beta": True}, {"beta": "true"}, {}, True),
    ({"metadata.beta": False}, {"beta": "true"}, {}, False),
    ({"params.stream": True}, {}, {"stream": True}, True),
    ({"params.stream": True}, {}, {"stream": 1}, False),
    ({"params.n": 1}, {}, {"n": True}, False),
    # $ne
    ({"metadata.plan": {"$ne": "free"}}, {"plan": "paid"}, {}, True),
    ({"metadata.plan": {"$ne": "free"}}, {"plan": "free"}, {}, False),
    ({"metadata.plan": {"$ne": "free"}}, {}, {}, False),  # missing: false, as Portkey documents
    # $in / $nin
    ({"metadata.region": {"$in": ["eu", "uk"]}}, {"region": "uk"}, {}, True),
    ({"metadata.region": {"$in": ["eu", "uk"]}}, {"region": "us"}, {}, False),
    ({"metadata.tier": {"$in": [1, 2]}}, {"tier": "2"}, {}, True),
    ({"metadata.region": {"$nin": ["eu", "uk"]}}, {"region": "us"}, {}, True),
    ({"metadata.region": {"$nin": ["eu", "uk"]}}, {"region": "eu"}, {}, False),
    ({"metadata.region": {"$nin": ["eu"]}}, {}, {}, False),
    # $regex: search, case-sensitive, strings only
    ({"metadata.app": {"$regex": "my_app"}}, {"app": "prod-my_app-2"}, {}, True),
    ({"metadata.app": {"$regex": "^my_app$"}}, {"app": "prod-my_app"}, {}, False),
    ({"metadata.app": {"$regex": "MY_APP"}}, {"app": "my_app"}, {}, False),
    ({"metadata.app": {"$regex": "(?i)MY_APP"}}, {"app": "my_app"}, {}, True),
    ({"params.model": {"$regex": "^gpt-image-.*"}}, {}, {"model": "gpt-image-1"}, True),
    ({"params.n": {"$regex": "2"}}, {}, {"n": 2}, False),
    ({"params.prompt": {"$regex": "x$"}}, {}, {"prompt": "a" * 1000 + "x"}, False),  # too long
    ({"params.prompt": {"$regex": "x$"}}, {}, {"prompt": "a" * 999 + "x"}, True),
    # $length
    ({"params.stop": {"$length": 2}}, {}, {"stop": ["a", "b"]}, True),
    ({"params.stop": {"$length": 2}}, {}, {"stop": ["a"]}, False),
    ({"params.stop": {"$length": {"$gte": 2, "$lt": 4}}}, {}, {"stop": ["a", "b", "c"]}, True),
    ({"params.stop": {"$length": {"$gt": 3}}}, {}, {"stop": ["a"]}, False),
    ({"params.stop": {"$length": 3}}, {}, {"stop": "abc"}, False),  # arrays only
    # paths
    (
        {"params.response_format.type": "json_object"},
        {},
        {"response_format": {"type": "json_object"}},
        True,
    ),
    (
        {"params.messages.1.role": "user"},
        {},
        {"messages": [{"role": "system"}, {"role": "user"}]},
        True,
    ),
    ({"params.messages.5.role": "user"}, {}, {"messages": [{"role": "user"}]}, False),
    ({"params.size.width": 5}, {}, {"size": "1024x1024"}, False),
    ({"metadata.a.b": "x"}, {"a.b": "x"}, {}, True),  # metadata keys are flat, dots and all
    ({"params.missing": {"$eq": None}}, {}, {}, False),
    ({"params.present": None}, {}, {"present": None}, True),
    # several keys in one query: all must hold
    ({"metadata.plan": "paid", "params.n": 2}, {"plan": "paid"}, {"n": 2}, True),
    ({"metadata.plan": "paid", "params.n": 2}, {"plan": "paid"}, {"n": 3}, False),
]


@pytest.mark.parametrize(("query", "metadata", "params", "expected"), OPERATORS)
def test_each_operator(query: Any, metadata: Any, params: Any, expected: bool) -> None:
    assert route(query, metadata=metadata, params=params) is expected


def test_url_pathname() -> None:
    query = {"url.pathname": {"$regex": "/images/edits$"}}
    assert route(query, url_path="/v1/images/edits") is True
    assert route(query, url_path="/v1/images/generations") is False
    assert route(query) is False  # no path known: missing


NESTED = {
    "$or": [
        {
            "$and": [
                {"metadata.user_type": "pro"},
                {"params.model": {"$in": ["gpt-4o", "gpt-image-1"]}},
            ]
        },
        {"params.max_tokens": {"$gt": 1000}},
    ],
}


@pytest.mark.parametrize(
    ("metadata", "params", "expected"),
    [
        ({"user_type": "pro"}, {"model": "gpt-image-1"}, True),
        ({"user_type": "pro"}, {"model": "dall-e-3"}, False),
        ({"user_type": "free"}, {"model": "gpt-4o"}, False),
        ({"user_type": "free"}, {"model": "gpt-4o", "max_tokens": 2000}, True),
        ({}, {"max_tokens": "1001"}, True),
        ({}, {}, False),
    ],
)
def test_nested_and_or(metadata: Any, params: Any, expected: bool) -> None:
    assert route(NESTED, metadata=metadata, params=params) is expected


def test_or_beside_other_keys_needs_them_too() -> None:
    query = {"$or": [{"metadata.a": "1"}, {"metadata.b": "1"}], "params.n": 1}
    assert route(query, metadata={"a": "1"}, params={"n": 1}) is True
    assert route(query, metadata={"a": "1"}, params={"n": 2}) is False


def test_conditions_are_tried_in_order_then_the_default() -> None:
    node = branch(
        conditional(
            [
                {"query": {"metadata.tier": {"$gte": 2}}, "then": "gold"},
                {"query": {"metadata.tier": {"$gte": 1}}, "then": "silver"},
            ],
            "gold",
            "silver",
            "bronze",
            default="bronze",
        )
    )

    def pick(tier: str) -> str | None:
        return choose_conditional(node, metadata={"tier": tier}, params={}).name

    assert [pick("3"), pick("2"), pick("1"), pick("0")] == ["gold", "gold", "silver", "bronze"]


def test_the_chosen_target_is_the_parsed_node_itself() -> None:
    node = branch(conditional([{"query": {"metadata.a": "1"}, "then": "b"}], "a", "b"))
    assert choose_conditional(node, metadata={"a": "1"}, params={}) is node.targets[1]


def test_no_match_and_no_default_is_a_bad_request() -> None:
    node = branch(
        lb({"virtual_key": "x"}, conditional([{"query": {"metadata.a": "1"}, "then": "a"}], "a"))
    )
    inner = node.targets[1]
    assert isinstance(inner, PlanBranch)
    assert choose_conditional(inner, metadata={"a": "1"}, params={}).name == "a"
    with pytest.raises(BadRequestError) as caught:
        choose_conditional(inner, metadata={"a": "2"}, params={})
    assert caught.value.param == "x-portkey-config"
    assert caught.value.message == (
        "x-portkey-config: no condition in targets[1].strategy.conditions matched this request "
        "and there is no strategy.default"
    )
    top = branch(conditional([{"query": {"metadata.a": "1"}, "then": "a"}], "a"))
    with pytest.raises(BadRequestError, match=r"no condition in strategy\.conditions matched"):
        choose_conditional(top, metadata={}, params={})


def test_choose_conditional_wants_a_conditional_branch() -> None:
    with pytest.raises(ValueError, match="config is a loadbalance branch, not conditional"):
        choose_conditional(branch(lb({"virtual_key": "a"})), metadata={}, params={})


# --- weighted picks ----------------------------------------------------------------------


def test_weighted_picks_follow_the_weights() -> None:
    node = branch(
        lb(
            {"name": "a", "weight": 5},
            {"name": "b", "weight": 3},
            {"name": "c", "weight": 1},
            {"name": "never", "weight": 0},
            {"name": "d", "weight": 1},
        )
    )
    rng = random.Random(1729)
    counts = Counter(pick_weighted(node.targets, rng).name for _ in range(10_000))
    assert counts["never"] == 0
    for name, share in {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.1}.items():
        assert abs(counts[name] / 10_000 - share) <= 0.02, (name, counts)


def test_fractional_weights_and_a_single_live_target() -> None:
    node = branch(lb({"name": "a", "weight": 0.7}, {"name": "b", "weight": 0.3}))
    rng = random.Random(7)
    share = sum(pick_weighted(node.targets, rng).name == "a" for _ in range(10_000)) / 10_000
    assert abs(share - 0.7) <= 0.02
    only = branch(lb({"name": "z", "weight": 0}, {"name": "live", "weight": 2}))
    assert {pick_weighted(only.targets, rng).name for _ in range(200)} == {"live"}


def test_weighted_pick_with_nothing_live_is_an_error() -> None:
    node = branch({"strategy": {"mode": "fallback"}, "targets": [{"weight": 0}]})
    with pytest.raises(ValueError, match="no target has a weight above 0"):
        pick_weighted(node.targets, random.Random(0))
