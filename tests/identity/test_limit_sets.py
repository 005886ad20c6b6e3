"""What a caller's limits ask of every call, worked out once per principal and image count
(`Principal.limits`), and the rate-limit statuses an admitted call reports: one per
unit, the tightest when a key and its team (or user) both limit it."""

from __future__ import annotations

from prismgate.identity import Principal
from prismgate.identity.limits import Limiter
from prismgate.storage import MemoryLimitState
from prismgate.storage.records import KeyRecord, Limits, TeamRecord
from prismgate.types import CallMeta, Served
from prismgate.types.meta import RateLimitStatus


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def caller(key: Limits, team: Limits | None = None) -> Principal:
    return Principal(
        role="key",
        scope="key-digest",
        key=KeyRecord(token="key-digest", key_name="sk-...wxyz", key_alias="ci", limits=key),
        team=None if team is None else TeamRecord(team_id="t-1", team_alias="ink", limits=team),
    )


def levels(statuses: tuple[RateLimitStatus, ...]) -> list[tuple[str, int, int, float]]:
    return [(s.unit, s.limit, s.remaining, round(s.reset, 3)) for s in statuses]


def test_a_principals_limits_are_worked_out_once_per_image_count() -> None:
    principal = caller(
        Limits(rpm_limit=10, ipm_limit=4, max_parallel_requests=2), team=Limits(tpm_limit=100)
    )
    two = principal.limits(2)
    assert principal.limits(2) is two and principal.limits(1) is not two
    assert [(c.holder.kind, c.kind, c.cost) for c in two.checks] == [
        ("key", "requests", 1),
        ("key", "images", 2),
        ("key", "parallel", 1),
        ("team", "tokens", 0),
    ]
    assert [c.kind for c in two.parallel] == ["parallel"] and two.counts_tokens
    assert two.per_unit == (0, 1, 3)  # one check per unit: the headers need no choosing
    # A call that makes no images takes nothing from an images limit.
    assert [c.kind for c in principal.limits(0).checks] == ["requests", "parallel", "tokens"]
    assert caller(Limits(ipm_limit=4)).limits(0).checks == ()
    # Two holders limiting one unit: the statuses pick the tightest.
    assert caller(Limits(rpm_limit=10), team=Limits(rpm_limit=3)).limits(1).per_unit is None


async def test_an_admitted_call_reports_the_tightest_limit_of_each_unit() -> None:
    limiter = Limiter(MemoryLimitState(clock=FakeClock()))
    meta = CallMeta(provider="mock", model="m", model_group="m")
    both = caller(Limits(rpm_limit=10, ipm_limit=8), team=Limits(rpm_limit=3))
    async with limiter.admit(both, images=2) as admission:
        answer = admission.served(Served("answer", meta), lambda _: 0)
    # The team's 3 a minute is tighter than the key's 10; images only the key limits.
    assert levels(answer.meta.rate_limits) == [("requests", 3, 2, 20.0), ("images", 8, 6, 15.0)]
    async with limiter.admit(caller(Limits(rpm_limit=10, ipm_limit=8)), images=2) as admission:
        alone = admission.served(Served("answer", meta), lambda _: 0)
    # The key's own counters: this is its second call (the first counted them too).
    assert levels(alone.meta.rate_limits) == [("requests", 10, 8, 12.0), ("images", 8, 4, 30.0)]
