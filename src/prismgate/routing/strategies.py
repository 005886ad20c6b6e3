"""How a model group picks one of its deployments (`router_settings.routing_strategy`).

- `simple-shuffle` (the default): at random, in proportion to `weight`, else to `rpm`,
  else to `tpm`, else evenly.
- `least-busy`: the deployment with the fewest calls in flight from this process.
- `latency-based-routing`: the deployment with the lowest recent latency (an average
  over this process's successful calls; a deployment not yet measured goes first).
- `usage-based-routing` (and `-v2`): the deployment that used the fewest tokens, then
  requests, in the current minute (shared through Redis when configured).

Every strategy honours per-deployment `rpm` / `tpm` limits and skips deployments that
are cooling down; the router enforces both.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from prismgate.errors import ConfigError
from prismgate.providers.base import Deployment

if TYPE_CHECKING:
    from prismgate.storage import Usage


__all__ = ["STRATEGIES", "Candidate", "LocalLoad", "choose", "strategy_name"]

Strategy = Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing"]
STRATEGIES: Mapping[str, Strategy] = {
    "simple-shuffle": "simple-shuffle",
    "least-busy": "least-busy",
    "latency-based-routing": "latency-based-routing",
    "usage-based-routing": "usage-based-routing",
    "usage-based-routing-v2": "usage-based-routing",
}
# Weight of the newest sample in the latency average.
_LATENCY_SMOOTHING = 0.3


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model group, as the router sees it."""

    # Stable across instances with the same config: cooldowns and usage are shared by it.
    id: str
    # Where it sits in the config, for people: `model_list[3]`.
    label: str
    group: str
    deployment: Deployment
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    safe_to_retry: bool = False

    @property
    def limited(self) -> bool:
        """Whether requests to it must be counted against a limit."""
        return self.rpm is not None or self.tpm is not None


@dataclass(slots=True)
class LocalLoad:
    """What this process knows of each deployment: calls in flight, recent latency."""

    in_flight: dict[str, int] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)

    def started(self, candidate_id: str) -> None:
        self.in_flight[candidate_id] = self.in_flight.get(candidate_id, 0) + 1

    def finished(self, candidate_id: str, seconds: float | None) -> None:
        """A call ended; `seconds` is its latency when it succeeded."""
        self.in_flight[candidate_id] = max(0, self.in_flight.get(candidate_id, 1) - 1)
        if seconds is not None:
            old = self.latency.get(candidate_id)
            self.latency[candidate_id] = (
                seconds if old is None else old + _LATENCY_SMOOTHING * (seconds - old)
            )


def strategy_name(configured: str) -> Strategy:
    """The strategy a config names; a ConfigError listing the known ones otherwise."""
    try:
        return STRATEGIES[configured]
    except KeyError:
        raise ConfigError(
            f"router_settings.routing_strategy: unknown strategy {configured!r}; "
            f"use one of {', '.join(STRATEGIES)}"
        ) from None


def choose(
    strategy: Strategy,
    candidates: Sequence[Candidate],
    *,
    load: LocalLoad,
    usage: Mapping[str, Usage],
    rng: random.Random,
) -> list[Candidate]:
    """The candidates in the order the strategy prefers them (the router takes the first
    one that is under its limits)."""
    if len(candidates) == 1:
        return list(candidates)
    if strategy == "simple-shuffle":
        return _weighted_order(candidates, rng)
    shuffled = list(candidates)
    rng.shuffle(shuffled)  # ties are broken at random
    if strategy == "least-busy":
        return sorted(shuffled, key=lambda c: load.in_flight.get(c.id, 0))
    if strategy == "latency-based-routing":
        return sorted(shuffled, key=lambda c: load.latency.get(c.id, 0.0))
    return sorted(
        shuffled,
        key=lambda c: (usage[c.id].tokens, usage[c.id].requests) if c.id in usage else (0, 0),
    )


def _weighted_order(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """A weighted random order: the first pick by weight, then the rest by weight."""
    weights = _weights(candidates)
    remaining = list(zip(candidates, weights, strict=True))
    order: list[Candidate] = []
    while remaining:
        total = sum(weight for _, weight in remaining)
        if total <= 0:
            order += [candidate for candidate, _ in remaining]
            break
        point = rng.uniform(0, total)
        picked = len(remaining) - 1  # where rounding leaves the point at the very end
        for index, (_, weight) in enumerate(remaining):
            if point < weight:
                picked = index
                break
            point -= weight
        order.append(remaining.pop(picked)[0])
    return order


def _weights(candidates: Sequence[Candidate]) -> list[float]:
    for attribute in ("weight", "rpm", "tpm"):
        values = [getattr(c, attribute) for c in candidates]
        if any(value is not None for value in values):
            return [float(value or 0) for value in values]
    return [1.0] * len(candidates)
