"""The router on its own: strategies, retries, the retry budget, cooldowns and fallbacks,
driven by attempt functions that fail as told (the proxy tests drive it with emulators)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from prismgate.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentPolicyViolationError,
    PrismgateError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from prismgate.providers.base import Deployment
from prismgate.routing.retries import RetryBudget, RetrySettings, backoff_delay
from prismgate.routing.router import Router, RouterPolicy, Target
from prismgate.routing.strategies import Candidate, LocalLoad, choose
from prismgate.storage import MemoryRoutingState, Usage


def candidate(group: str, index: int, **limits: float | int | bool | None) -> Candidate:
    return Candidate(
        id=f"{group}|{index}",
        label=f"model_list[{index}]",
        group=group,
        deployment=Deployment(provider="mock", model=f"m{index}"),
        **limits,  # type: ignore[arg-type]
    )


async def no_sleep(_: float) -> None:
    return None


def router(
    groups: dict[str, list[Candidate]], state: MemoryRoutingState | None = None, **policy: object
) -> Router:
    settings = RouterPolicy(**{"num_retries": 2, **policy})  # type: ignore[arg-type]
    return Router(
        groups, settings, state or MemoryRoutingState(), rng=random.Random(7), sleep=no_sleep
    )


def scripted(
    *failures: PrismgateError | None,
) -> tuple[Callable[[Target], Awaitable[str]], list[str]]:
    """An attempt that fails with each error in turn (None: succeeds), recording targets."""
    seen: list[str] = []
    queue = list(failures)

    async def attempt(target: Target) -> str:
        seen.append(target.label)
        outcome = queue.pop(0) if queue else None
        if outcome is not None:
            raise outcome
        return target.label

    return attempt, seen


def upstream(cls: type[PrismgateError], status: int, **extra: object) -> PrismgateError:
    return cls(f"upstream {status}", provider="mock", upstream_status=status, **extra)  # type: ignore[arg-type]


async def test_retries_then_succeeds() -> None:
    attempt, seen = scripted(upstream(APIError, 500), upstream(APIError, 502))
    outcome = await router({"g": [candidate("g", 0)]}).run("g", attempt)
    assert seen == ["g@model_list[0]"] * 3
    assert outcome.retries == 2
    assert outcome.attempts == ("g@model_list[0]=500", "g@model_list[0]=502", "g@model_list[0]=200")


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("bad size", param="size"),
        upstream(BadRequestError, 400),
        upstream(ContentPolicyViolationError, 400),
        upstream(AuthenticationError, 401),
    ],
)
async def test_no_retry_for_errors_a_retry_cannot_fix(error: PrismgateError) -> None:
    attempt, seen = scripted(error)
    with pytest.raises(type(error)) as raised:
        await router({"g": [candidate("g", 0)]}).run("g", attempt)
    assert len(seen) == 1
    assert raised.value.attempts == (f"g@model_list[0]={error.status_code}",)


async def test_a_timeout_after_sending_ends_the_call_unless_idempotent() -> None:
    sent = Timeout("slow", provider="mock", request_sent=True)
    routes = router({"g": [candidate("g", 0)], "h": [candidate("h", 1)]}, fallbacks={"g": ("h",)})
    attempt, seen = scripted(sent)
    with pytest.raises(Timeout):
        await routes.run("g", attempt)
    assert seen == ["g@model_list[0]"]  # no retry, no fallback
    attempt, seen = scripted(sent)
    assert (await routes.run("g", attempt, idempotent=True)).value == "g@model_list[0]"
    assert len(seen) == 2


async def test_a_connect_failure_is_always_retried() -> None:
    never_sent = APIConnectionError("refused", provider="mock", request_sent=False)
    attempt, seen = scripted(never_sent)
    await router({"g": [candidate("g", 0)]}).run("g", attempt)
    assert len(seen) == 2


async def test_safe_to_retry_deployment_is_retried_after_a_timeout() -> None:
    attempt, seen = scripted(Timeout("slow", provider="mock", request_sent=True))
    await router({"g": [candidate("g", 0, safe_to_retry=True)]}).run("g", attempt)
    assert len(seen) == 2


async def test_the_retry_budget_stops_a_storm() -> None:
    always = [upstream(APIError, 500)] * 1000
    routes = router({"g": [candidate("g", 0)]}, allowed_fails=10_000)
    attempt, seen = scripted(*always)
    for _ in range(100):
        with pytest.raises(APIError):
            await routes.run("g", attempt)
    # 100 requests, 2 retries each wanted; the budget allows 10 + 20% of 100.
    assert len(seen) == 100 + 10 + 20


def test_budget_refills_with_time() -> None:
    now = [0.0]
    budget = RetryBudget(RetrySettings(budget_floor=1, budget_ratio=0.0), clock=lambda: now[0])
    assert budget.try_spend()
    assert not budget.try_spend()
    now[0] = 11.0
    assert budget.try_spend()


def test_backoff_is_jittered_and_capped() -> None:
    settings = RetrySettings(base_delay=0.5, max_delay=4)
    rng = random.Random(1)
    waits = [backoff_delay(retry, None, settings, rng) for retry in range(10) for _ in range(50)]
    assert max(waits) <= 4 and min(waits) >= 0
    assert len(set(waits)) > 400  # jittered, not fixed steps
    assert backoff_delay(0, 7.0, settings, rng) == 7.0  # Retry-After wins


async def test_cooldown_after_allowed_fails_skips_the_deployment() -> None:
    state = MemoryRoutingState()
    group = [candidate("g", 0, weight=1), candidate("g", 1, weight=0)]
    routes = router({"g": group}, state, num_retries=0, allowed_fails=1, cooldown_time=60)
    for _ in range(2):
        attempt, _ = scripted(upstream(APIError, 500))
        with pytest.raises(APIError):
            await routes.run("g", attempt)
    assert await state.cooled_down(["g|0", "g|1"]) == frozenset({"g|0"})
    attempt, seen = scripted()
    await routes.run("g", attempt)
    assert seen == ["g@model_list[1]"]


async def test_a_429_cools_down_for_its_retry_after() -> None:
    state = MemoryRoutingState()
    group = [candidate("g", 0, weight=1), candidate("g", 1, weight=0)]
    routes = router({"g": group}, state, num_retries=0)
    attempt, _ = scripted(upstream(RateLimitError, 429, retry_after=42))
    with pytest.raises(RateLimitError):
        await routes.run("g", attempt)
    cooling = await state.cooldowns(["g|0", "g|1"])
    assert list(cooling) == ["g|0"] and 41 < cooling["g|0"].left <= 42
    attempt, seen = scripted()
    await routes.run("g", attempt)
    assert seen == ["g@model_list[1]"]


async def test_a_group_of_one_is_never_cooled_down() -> None:
    state = MemoryRoutingState()
    routes = router({"g": [candidate("g", 0)]}, state, num_retries=0, allowed_fails=0)
    for status, kind in ((429, RateLimitError), (500, APIError), (401, AuthenticationError)):
        attempt, seen = scripted(upstream(kind, status, retry_after=42))
        with pytest.raises(kind):
            await routes.run("g", attempt)
        assert seen == ["g@model_list[0]"]
    assert await state.cooldowns(["g|0"]) == {}


async def test_every_deployment_cooling_is_a_503_with_the_last_upstream_error() -> None:
    state = MemoryRoutingState()
    group = [candidate("g", 0), candidate("g", 1)]
    routes = router({"g": group}, state, num_retries=1)
    attempt, _ = scripted(
        upstream(RateLimitError, 429, retry_after=20), upstream(RateLimitError, 429, retry_after=9)
    )
    with pytest.raises(RateLimitError):
        await routes.run("g", attempt)
    attempt, seen = scripted()
    with pytest.raises(ServiceUnavailableError, match="cooling down") as raised:
        await routes.run("g", attempt)
    assert seen == []
    assert raised.value.provider is None  # the gateway's answer: nothing was called
    assert raised.value.status_code == 503
    assert raised.value.retry_after is not None and 8 < raised.value.retry_after <= 9
    assert "The last upstream error: upstream 429 (status 429)" in raised.value.message
    # Another instance, sharing the state, quotes the cooldown's own reason.
    other = router({"g": group}, state, num_retries=1)
    with pytest.raises(ServiceUnavailableError, match="upstream 429"):
        await other.run("g", scripted()[0])


async def test_fallback_chain_and_its_attempts() -> None:
    routes = router(
        {"a": [candidate("a", 0)], "b": [candidate("b", 1)], "c": [candidate("c", 2)]},
        num_retries=0,
        fallbacks={"a": ("b", "c")},
    )
    attempt, _ = scripted(upstream(APIError, 503), upstream(RateLimitError, 429))
    outcome = await routes.run("a", attempt)
    assert outcome.value == "c@model_list[2]"
    assert outcome.attempts == ("a@model_list[0]=503", "b@model_list[1]=429", "c@model_list[2]=200")


async def test_content_policy_fallbacks_are_separate() -> None:
    groups = {"a": [candidate("a", 0)], "b": [candidate("b", 1)], "safe": [candidate("s", 2)]}
    routes = router(groups, fallbacks={"a": ("b",)}, content_policy_fallbacks={"a": ("safe",)})
    attempt, seen = scripted(upstream(ContentPolicyViolationError, 400))
    outcome = await routes.run("a", attempt)
    assert seen == ["a@model_list[0]", "s@model_list[2]"]
    assert outcome.value == "s@model_list[2]"


def test_fallbacks_must_name_model_groups() -> None:
    with pytest.raises(ConfigError, match=r"router_settings\.fallbacks: 'nope'"):
        router({"a": [candidate("a", 0)]}, fallbacks={"a": ("nope",)})


async def test_rpm_limits_are_exact() -> None:
    routes = router(
        {"g": [candidate("g", 0, rpm=2), candidate("g", 1, rpm=1)]},
        strategy="usage-based-routing",
    )
    served = Counter()
    for _ in range(3):
        attempt, seen = scripted()
        await routes.run("g", attempt)
        served.update(seen)
    assert served == {"g@model_list[0]": 2, "g@model_list[1]": 1}
    attempt, seen = scripted()
    with pytest.raises(RateLimitError, match="rpm/tpm limit"):
        await routes.run("g", attempt)
    assert seen == []


async def test_tpm_limits_count_tokens() -> None:
    routes = router({"g": [candidate("g", 0, tpm=100)]})

    async def attempt(target: Target) -> int:
        return 150

    await routes.run("g", attempt, tokens=lambda used: used)
    with pytest.raises(RateLimitError):
        await routes.run("g", attempt, tokens=lambda used: used)


def test_simple_shuffle_follows_weights_then_rpm() -> None:
    rng = random.Random(3)
    weighted = [candidate("g", 0, weight=3), candidate("g", 1, weight=1)]
    firsts = Counter(
        choose("simple-shuffle", weighted, load=LocalLoad(), usage={}, rng=rng)[0].id
        for _ in range(10_000)
    )
    assert abs(firsts["g|0"] / 10_000 - 0.75) < 0.02
    by_rpm = [candidate("g", 0, rpm=100), candidate("g", 1, rpm=900)]
    firsts = Counter(
        choose("simple-shuffle", by_rpm, load=LocalLoad(), usage={}, rng=rng)[0].id
        for _ in range(10_000)
    )
    assert abs(firsts["g|1"] / 10_000 - 0.9) < 0.02
    never = [candidate("g", 0, weight=0), candidate("g", 1, weight=1)]
    assert {
        choose("simple-shuffle", never, load=LocalLoad(), usage={}, rng=rng)[0].id
        for _ in range(1000)
    } == {"g|1"}


def test_least_busy_latency_and_usage_orders() -> None:
    group = [candidate("g", 0), candidate("g", 1)]
    load = LocalLoad()
    load.started("g|0")
    rng = random.Random(1)
    assert choose("least-busy", group, load=load, usage={}, rng=rng)[0].id == "g|1"
    load.finished("g|0", 2.0)
    load.started("g|1")
    load.finished("g|1", 0.5)
    assert choose("latency-based-routing", group, load=load, usage={}, rng=rng)[0].id == "g|1"
    usage = {"g|0": Usage(requests=1, tokens=10), "g|1": Usage(requests=0, tokens=500)}
    assert choose("usage-based-routing", group, load=load, usage=usage, rng=rng)[0].id == "g|0"
