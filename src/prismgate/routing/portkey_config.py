"""Portkey gateway configs (`x-portkey-config`) → a validated, inheritance-resolved plan.

A config object with `targets` is a branch (`strategy.mode`: single, fallback, loadbalance,
conditional); one without is a leaf that names where to send the call. Field names are
Portkey's, in snake_case or Portkey's camelCase (`virtual_key` / `virtualKey`).

Inheritance, resolved here so that every leaf carries its effective settings (Portkey's
own gateway lost fallback settings in nested targets):

* `override_params` and the provider options merge key by key, the child's keys winning;
* `retry`, `cache`, `request_timeout`, `custom_host` pass down whole unless the child sets
  its own (a child's `retry` replaces the parent's, as in Portkey);
* `provider`, `api_key` and `virtual_key` do not pass down: they belong on the leaves.

Units: `request_timeout` is milliseconds in the config and seconds in the plan;
`cache.max_age` is seconds (Portkey's hosted docs). Executing the plan is the router's job.
"""

from __future__ import annotations

import hmac
import json
import math
import random
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeGuard, cast

from prismgate.errors import BadRequestError, ConfigError
from prismgate.providers import provider_settings
from prismgate.routing.portkey_conditions import (
    Condition,
    InvalidConfig,
    RequestFacts,
    compile_conditions,
    first_match,
)
from prismgate.types.validation import check_json_depth

__all__ = [
    "DEFAULT_RETRY_STATUS_CODES",
    "PROVIDER_OPTIONS",
    "CacheSettings",
    "Condition",
    "InlineConfigs",
    "PlanBranch",
    "PlanLeaf",
    "PlanNode",
    "RetrySettings",
    "SavedConfigs",
    "choose_conditional",
    "parse_portkey_config",
    "pick_weighted",
]

Mode: TypeAlias = Literal["single", "fallback", "loadbalance", "conditional"]
MODES: tuple[Mode, ...] = ("single", "fallback", "loadbalance", "conditional")
DEFAULT_RETRY_STATUS_CODES = (429, 500, 502, 503, 504)  # Portkey's documented default
MAX_RETRY_ATTEMPTS = 5  # Portkey's maximum
MAX_DEPTH = 8
MAX_NODES = 100
MAX_TIMEOUT_MS = 86_400_000  # a day; more is a typo for seconds or worse
PARAM = "x-portkey-config"

# Portkey's target options that a provider honours: its declared settings' Portkey names,
# mapped to ours. Any other Portkey option is refused by name, never accepted and ignored.
_DECLARED = provider_settings()
PROVIDER_OPTIONS: Mapping[str, str] = MappingProxyType(
    {s.portkey: s.name for s in _DECLARED.values() if s.portkey}
)
_OBJECT_OPTIONS = frozenset(s.portkey for s in _DECLARED.values() if s.portkey and s.structured)

# `strict_open_ai_compliance` is the one field read and dropped: it only lets Portkey add
# non-OpenAI fields to answers, and ours are OpenAI-shaped either way. Everything else we
# do not implement (guardrails, hooks, forward_headers, cb_config, default_params, ...) is
# refused, because ignoring it would silently change what the caller asked for.
_IGNORED = "strict_open_ai_compliance"
_HINTS = {
    "on_status_codes": "; put it in strategy.on_status_codes",
    "forward_headers": "; this gateway never forwards client headers to providers",
}


def _aliases(*names: str, extra: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """Each snake_case name and its camelCase spelling → the snake_case name."""
    table = dict(extra or {})
    for name in names:
        head, *rest = name.split("_")
        table[name] = table[head + "".join(w.capitalize() for w in rest)] = name
    return MappingProxyType(table)


_NODE_KEYS = _aliases(
    "strategy", "targets", "name", "weight", "provider", "api_key", "virtual_key",
    "override_params", "retry", "cache", "request_timeout", "custom_host", _IGNORED,
    *sorted(PROVIDER_OPTIONS),
)  # fmt: skip
_STRATEGY_KEYS = _aliases("mode", "on_status_codes", "conditions", "default")
# The gateway's code reads `use_retry_after_header`; the docs write `..._headers`.
_RETRY_KEYS = _aliases(
    "attempts", "on_status_codes", "use_retry_after_header",
    extra={"use_retry_after_headers": "use_retry_after_header",
           "useRetryAfterHeaders": "use_retry_after_header"},
)  # fmt: skip
_CACHE_KEYS = _aliases("mode", "max_age")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """`retry`: how often to retry one target, on which statuses."""

    attempts: int
    on_status_codes: tuple[int, ...] = DEFAULT_RETRY_STATUS_CODES
    use_retry_after_header: bool = False


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """`cache`: only "simple" (exact match) is supported; `max_age` in seconds."""

    mode: str
    max_age: float | None


@dataclass(frozen=True, slots=True)
class PlanLeaf:
    """One target to call, with every inherited setting already applied."""

    path: str  # "config" for a top-level leaf, else "config.targets[1].targets[0]"
    weight: float
    name: str | None
    provider: str | None  # as written (canonicalising is the executor's job)
    api_key: str | None
    virtual_key: str | None
    custom_host: str | None
    override_params: Mapping[str, Any]
    provider_options: Mapping[str, Any]
    retry: RetrySettings | None
    cache: CacheSettings | None
    request_timeout: float | None  # seconds (converted from Portkey's milliseconds)


@dataclass(frozen=True, slots=True)
class PlanBranch:
    """A strategy over targets; `retry`/`cache`/`request_timeout` are its effective values."""

    path: str
    weight: float
    name: str | None
    mode: Mode
    on_status_codes: tuple[int, ...] | None  # fallback: which statuses move on (None: any)
    targets: tuple[PlanNode, ...]
    conditions: tuple[Condition, ...]
    default: str | None
    retry: RetrySettings | None
    cache: CacheSettings | None
    request_timeout: float | None


PlanNode: TypeAlias = "PlanLeaf | PlanBranch"


@dataclass(frozen=True, slots=True)
class _Inherited:
    """The settings a node passes down to its targets."""

    retry: RetrySettings | None
    cache: CacheSettings | None
    request_timeout: float | None
    custom_host: str | None
    override_params: Mapping[str, Any]
    provider_options: Mapping[str, Any]


_NOTHING_INHERITED = _Inherited(None, None, None, None, _EMPTY, _EMPTY)


# --- the public entry points -------------------------------------------------------------


def parse_portkey_config(
    raw: str | Mapping[str, Any],
    *,
    saved: Mapping[str, Mapping[str, Any]] | SavedConfigs,
    param: str = PARAM,
) -> PlanNode:
    """The plan for an `x-portkey-config` value: JSON object text, a parsed object, or the
    id of a saved config (`portkey_configs` in our config file; `SavedConfigs` parses those
    once at startup). Raises BadRequestError(param=param) naming the exact field path."""
    if isinstance(raw, Mapping):
        return _checked(raw, param, "")
    text = raw.strip()
    if not text:
        raise BadRequestError(f"{param}: is empty; send a JSON config or a config id", param=param)
    if text[0] in "{[":
        return _parse_text(text, param)
    if isinstance(saved, SavedConfigs):
        return saved.get(text, param=param)
    if text in saved:
        return _checked(saved[text], param, f"portkey_configs.{text}")
    raise _unknown_id(text, param)


class SavedConfigs:
    """The config file's `portkey_configs`, parsed once at startup: id → plan.

    A bad saved config is a ConfigError naming `portkey_configs.<id>.<field path>`."""

    def __init__(self, saved: Mapping[str, Any]) -> None:
        plans: dict[str, PlanNode] = {}
        for config_id, raw in saved.items():
            if not isinstance(config_id, str) or not config_id.strip() or config_id[0] in "{[":
                raise ConfigError(
                    f"portkey_configs: {config_id!r} cannot be a config id "
                    "(a non-empty name that does not start with '{' or '[')"
                )
            try:
                plans[config_id.strip()] = _build(raw)
            except InvalidConfig as exc:
                where = ".".join(p for p in (f"portkey_configs.{config_id}", exc.path) if p)
                raise ConfigError(f"{where} {exc.problem}") from None
        self._plans = plans

    @property
    def ids(self) -> list[str]:
        """The saved config ids, sorted."""
        return sorted(self._plans)

    def __contains__(self, config_id: object) -> bool:
        return config_id in self._plans

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, config_id: str, *, param: str = PARAM) -> PlanNode:
        """The plan saved as `config_id`, or a 400 listing the ids this gateway knows."""
        plan = self._plans.get(config_id.strip())
        if plan is None:
            raise _unknown_id(config_id.strip(), param)
        return plan


def _unknown_id(config_id: str, param: str) -> BadRequestError:
    # The saved ids are the operator's: a caller is not shown the list.
    shown = config_id if len(config_id) <= 80 else config_id[:80] + "..."
    return BadRequestError(
        f"{param}: unknown config id {shown!r}; use a config id this gateway's operator "
        "gave you, or send the config itself as JSON",
        param=param,
    )


def choose_conditional(
    branch: PlanBranch,
    *,
    metadata: Mapping[str, Any],
    params: Mapping[str, Any],
    url_path: str | None = None,
) -> PlanNode:
    """The target a conditional branch routes this request to: the first condition that
    matches, in order, else `strategy.default`.

    Metadata values arrive as strings (JSON text when they were not strings), so a string
    that reads as a number or a boolean compares as one: `{"metadata.tier": {"$gt": 2}}`
    matches "3", and `{"metadata.beta": true}` matches "true". A missing key matches
    nothing, `$ne` and `$nin` included; comparing incompatible types is simply false.
    """
    if branch.mode != "conditional":
        raise ValueError(f"{branch.path} is a {branch.mode} branch, not conditional")
    facts = RequestFacts(metadata=metadata, params=params, url_path=url_path)
    name = first_match(branch.conditions, facts) or branch.default
    if name is None:
        where = branch.path.removeprefix("config").lstrip(".")
        raise BadRequestError(
            f"{PARAM}: no condition in {where + '.' if where else ''}strategy.conditions "
            "matched this request and there is no strategy.default",
            param=PARAM,
        )
    return next(t for t in branch.targets if t.name == name)


def pick_weighted(targets: Sequence[PlanNode], rng: random.Random) -> PlanNode:
    """A target chosen with probability weight / total; a weight of 0 is never chosen."""
    live = [t for t in targets if t.weight > 0]
    if not live:
        raise ValueError("no target has a weight above 0")
    point = rng.random() * sum(t.weight for t in live)
    for target in live:
        if point < target.weight:
            return target
        point -= target.weight
    return live[-1]  # rounding left a sliver past the last weight


# --- parsing -----------------------------------------------------------------------------


class InlineConfigs:
    """Callers' inline configs for one gateway. The same text comes request after
    request, so each is parsed once and kept, keyed by a keyed digest of the text (never
    the text, which can hold provider keys); a plan that holds a provider key or
    credential is not kept at all, so no caller's secret outlives its request."""

    def __init__(self, size: int = 256) -> None:
        self._key = secrets.token_bytes(32)
        self._size = size
        self._plans: OrderedDict[bytes, PlanNode] = OrderedDict()

    def parse(self, text: str, *, param: str = PARAM) -> PlanNode:
        """The plan for inline JSON `text` (a 400 naming the field when it is wrong)."""
        digest = hmac.digest(self._key, text.encode(), "sha256")
        plan = self._plans.get(digest)
        if plan is not None:
            self._plans.move_to_end(digest)
            return plan
        plan = _parse_text(text.strip(), param)
        if not _holds_secrets(plan):
            self._plans[digest] = plan
            if len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return plan


def _holds_secrets(node: PlanNode) -> bool:
    if isinstance(node, PlanLeaf):
        return node.api_key is not None or any(
            _DECLARED[PROVIDER_OPTIONS[option]].secret for option in node.provider_options
        )
    return any(_holds_secrets(target) for target in node.targets)


def _parse_text(text: str, param: str) -> PlanNode:
    check_json_depth(text, what=param, param=param)
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        detail = (
            f" ({exc.msg} at character {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        )
        raise BadRequestError(f"{param}: is not valid JSON{detail}", param=param) from None
    return _checked(raw, param, "")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _checked(raw: Any, param: str, prefix: str) -> PlanNode:
    try:
        return _build(raw)
    except InvalidConfig as exc:
        where = ".".join(p for p in (prefix, exc.path) if p)
        message = f"{where} {exc.problem}" if where else exc.problem
        raise BadRequestError(f"{param}: {message}", param=param) from None


def _build(raw: Any) -> PlanNode:
    return _Walk().node(raw, "", 1, _NOTHING_INHERITED)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fields(raw: Any, path: str, keys: Mapping[str, str]) -> dict[str, Any]:
    """The object's fields under their snake_case names; unknown or doubled keys refused."""
    if not isinstance(raw, Mapping):
        raise InvalidConfig(path, f"must be a config object (got {type(raw).__name__})")
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in raw.items():
        name = keys.get(key) if isinstance(key, str) else None
        if name is None:
            hint = _HINTS.get(key, "") if keys is _NODE_KEYS else ""
            raise InvalidConfig(_at(path, str(key)), f"is not supported by this gateway{hint}")
        if name in out:
            raise InvalidConfig(_at(path, key), f"repeats {written[name]}; give only one")
        out[name], written[name] = value, key
    return out


class _Walk:
    """One parse: counts nodes so that a huge config is refused cheaply."""

    def __init__(self) -> None:
        self.nodes = 0

    def node(self, raw: Any, path: str, depth: int, parent: _Inherited) -> PlanNode:
        if depth > MAX_DEPTH:
            raise InvalidConfig(path, f"is nested more than {MAX_DEPTH} levels deep")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidConfig("", f"has more than {MAX_NODES} targets in all; split it")
        f = _fields(raw, path, _NODE_KEYS)
        if _IGNORED in f and not isinstance(f[_IGNORED], bool):
            raise InvalidConfig(_at(path, _IGNORED), "must be true or false")
        own_options = {
            k: _option(k, v, _at(path, k)) for k, v in f.items() if k in PROVIDER_OPTIONS
        }
        own_params = f.get("override_params", _EMPTY)
        if not isinstance(own_params, Mapping):
            raise InvalidConfig(_at(path, "override_params"), "must be an object")
        here = _Inherited(
            retry=_retry(f["retry"], _at(path, "retry")) if "retry" in f else parent.retry,
            cache=_cache(f["cache"], _at(path, "cache")) if "cache" in f else parent.cache,
            request_timeout=_timeout(f["request_timeout"], _at(path, "request_timeout"))
            if "request_timeout" in f
            else parent.request_timeout,
            custom_host=_host(f["custom_host"], _at(path, "custom_host"))
            if "custom_host" in f
            else parent.custom_host,
            override_params=_merge(parent.override_params, own_params),
            provider_options=_merge(parent.provider_options, own_options),
        )
        weight = _weight(f.get("weight", 1), _at(path, "weight"))
        name = _string(f.get("name"), _at(path, "name"))
        if "targets" in f or "strategy" in f:
            return self.branch(f, path, depth, here, weight=weight, name=name)
        return _leaf(f, path, here, weight, name)

    def branch(
        self, f: dict[str, Any], path: str, depth: int, here: _Inherited, *, weight: float,
        name: str | None,
    ) -> PlanBranch:  # fmt: skip
        for key in ("provider", "api_key", "virtual_key"):
            if key in f:
                raise InvalidConfig(
                    _at(path, key), "applies only to a target without targets; set it on each"
                )
        if "strategy" not in f:
            raise InvalidConfig(
                _at(path, "strategy.mode"), f"is required with targets (one of {', '.join(MODES)})"
            )
        raw_targets = f.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise InvalidConfig(_at(path, "targets"), "must be a non-empty list of targets")
        spath = _at(path, "strategy")
        s = _fields(f["strategy"], spath, _STRATEGY_KEYS)
        mode = s.get("mode")
        if mode not in MODES:
            got = "missing" if mode is None else f"got {mode!r}"
            raise InvalidConfig(_at(spath, "mode"), f"must be one of {', '.join(MODES)} ({got})")
        for key, needs in (("on_status_codes", "fallback"), ("conditions", "conditional"),
                           ("default", "conditional")):  # fmt: skip
            if key in s and mode != needs:
                raise InvalidConfig(_at(spath, key), f"applies only to mode {needs}")
        codes = s.get("on_status_codes")
        targets = tuple(
            self.node(t, _at(path, f"targets[{i}]"), depth + 1, here)
            for i, t in enumerate(raw_targets)
        )
        if mode == "loadbalance" and not any(t.weight > 0 for t in targets):
            raise InvalidConfig(_at(path, "targets"), "all have weight 0; give one a weight > 0")
        conditions: tuple[Condition, ...] = ()
        if mode == "conditional":
            names = [t.name for t in targets]
            conditions = compile_conditions(
                s.get("conditions"), s.get("default"), names, spath, path
            )
        return PlanBranch(
            path=_plan_path(path), weight=weight, name=name, mode=cast(Mode, mode),
            on_status_codes=None if codes is None else _codes(codes, _at(spath, "on_status_codes")),
            targets=targets, conditions=conditions, default=s.get("default"),
            retry=here.retry, cache=here.cache, request_timeout=here.request_timeout,
        )  # fmt: skip


def _leaf(
    f: dict[str, Any], path: str, here: _Inherited, weight: float, name: str | None
) -> PlanLeaf:
    provider, api_key, virtual_key = (
        _string(f.get(k), _at(path, k)) for k in ("provider", "api_key", "virtual_key")
    )
    if provider is not None and virtual_key is not None:
        raise InvalidConfig(_at(path, "virtual_key"), "cannot be given with provider; use one")
    if api_key is not None and provider is None:
        raise InvalidConfig(_at(path, "api_key"), "needs provider (the key is for that provider)")
    return PlanLeaf(
        path=_plan_path(path), weight=weight, name=name, provider=provider, api_key=api_key,
        virtual_key=virtual_key, custom_host=here.custom_host,
        override_params=here.override_params, provider_options=here.provider_options,
        retry=here.retry, cache=here.cache, request_timeout=here.request_timeout,
    )  # fmt: skip


def _plan_path(path: str) -> str:
    return f"config.{path}" if path else "config"


def _merge(parent: Mapping[str, Any], own: Mapping[str, Any]) -> Mapping[str, Any]:
    if not own:
        return parent
    return MappingProxyType({**parent, **own})


def _retry(raw: Any, path: str) -> RetrySettings:
    r = _fields(raw, path, _RETRY_KEYS)
    attempts = r.get("attempts")
    if not _is_int(attempts) or not 0 <= attempts <= MAX_RETRY_ATTEMPTS:
        got = "missing" if attempts is None else f"got {attempts!r}"
        raise InvalidConfig(
            _at(path, "attempts"), f"must be an integer from 0 to {MAX_RETRY_ATTEMPTS} ({got})"
        )
    after = r.get("use_retry_after_header", False)
    if not isinstance(after, bool):
        raise InvalidConfig(_at(path, "use_retry_after_header"), "must be true or false")
    codes = r.get("on_status_codes")
    return RetrySettings(
        attempts=attempts,
        on_status_codes=DEFAULT_RETRY_STATUS_CODES
        if codes is None
        else _codes(codes, _at(path, "on_status_codes")),
        use_retry_after_header=after,
    )


def _cache(raw: Any, path: str) -> CacheSettings:
    c = _fields(raw, path, _CACHE_KEYS)
    mode = c.get("mode")
    if mode == "semantic":
        raise InvalidConfig(_at(path, "mode"), "'semantic' is not supported, use simple")
    if mode != "simple":
        got = "missing" if mode is None else f"got {mode!r}"
        raise InvalidConfig(_at(path, "mode"), f"must be simple ({got})")
    max_age = c.get("max_age")
    if max_age is not None and not (_is_number(max_age) and max_age > 0):
        raise InvalidConfig(_at(path, "max_age"), "must be a number of seconds > 0")
    return CacheSettings(mode="simple", max_age=None if max_age is None else float(max_age))


def _codes(raw: Any, path: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise InvalidConfig(path, "must be a list of HTTP status codes")
    for i, code in enumerate(raw):
        if not _is_int(code) or not 100 <= code <= 599:
            raise InvalidConfig(f"{path}[{i}]", "must be an HTTP status code (100 to 599)")
    return tuple(raw)


def _timeout(ms: Any, path: str) -> float:
    if not _is_int(ms) or not 0 < ms <= MAX_TIMEOUT_MS:
        raise InvalidConfig(path, f"must be a whole number of milliseconds, 1 to {MAX_TIMEOUT_MS}")
    return ms / 1000


def _host(host: Any, path: str) -> str:
    if not isinstance(host, str) or not host.startswith(("http://", "https://")):
        raise InvalidConfig(path, "must be an http:// or https:// URL")
    return host


def _weight(raw: Any, path: str) -> float:
    if not _is_number(raw) or raw < 0:
        raise InvalidConfig(path, "must be a number >= 0")
    return float(raw)


def _string(raw: Any, path: str) -> str | None:
    if raw is not None and (not isinstance(raw, str) or not raw.strip()):
        raise InvalidConfig(path, "must be a non-empty string")
    return raw


def _option(key: str, value: Any, path: str) -> Any:
    if key in _OBJECT_OPTIONS:
        if not isinstance(value, Mapping):
            raise InvalidConfig(path, "must be an object")
        return value
    if value is None:
        raise InvalidConfig(path, "must be a non-empty string")
    return _string(value, path)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number a float can hold (not a boolean, not NaN or infinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False
