"""Prometheus metrics of the proxy, served at `GET /metrics` (prometheus-client).

    prismgate_requests_total{route, model_group, provider, status}     answered requests
    prismgate_request_duration_seconds{route, model_group}            arrival to end of answer
    prismgate_upstream_duration_seconds{model_group, provider}        waiting on providers
    prismgate_added_duration_seconds{route}                           a call's total minus upstream
    prismgate_images_total{model_group, size, quality}                images answered
    prismgate_spend_usd_total{model_group, provider}                  cost of the calls
    prismgate_cache_lookups_total{model_group, result}                HIT, MISS, REFRESH
    prismgate_retries_total{model_group}                              tries after a failure
    prismgate_fallbacks_total{model_group}                            moves to another target
    prismgate_refusals_total{model_group, reason}                     budget, limits, cooldowns
    prismgate_requests_in_flight                                      being answered now
    prismgate_deployments_cooling_down{model_group}                   read at each scrape

Updating a prometheus-client value costs 0.5 to 3.5 µs (more with several workers, where
values live in shared files); a request touches up to ten. So `add` only counts in plain
Python (one dict lookup, a few additions, histogram samples appended to lists), and
`push` moves the sums into prometheus-client values, sorting each histogram's samples
into its buckets in one go: every `PUSH_INTERVAL` seconds (the proxy's telemetry task),
and right before this worker answers a scrape. With `prismgate serve --workers N`, every
worker writes its values to files in one folder (prometheus-client's multiprocess mode)
and a scrape sums them, so it sees the other workers' numbers as they were at most
`PUSH_INTERVAL` ago.

Every label is bounded: routes come from the route table (`unmatched` for any other
path); model groups, sizes and qualities the caller chose pass `LabelGuard`s, which also
remove secrets from them (model groups as they are counted, sizes and qualities at the
push: what waits for a push is one interval's worth); statuses and providers are ours.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from prismgate.observability.request_record import RequestRecord
from prismgate.observability.safe_text import LabelGuard, SafeText

__all__ = ["PUSH_INTERVAL", "UNMATCHED", "GatewayMetrics"]

PUSH_INTERVAL = 1.0
# The route label of a path no route serves.
UNMATCHED = "unmatched"

_INF = float("inf")
# Whole calls: from a cached answer in milliseconds to image generations of minutes.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# What the gateway adds: a fraction of a millisecond when all is well.
_ADDED_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_STATUS = tuple(str(code) for code in range(600))


# Bounds as `bisect` reads them: prometheus-client adds +Inf to a histogram's own.
_DURATION_BOUNDS = (*_DURATION_BUCKETS, _INF)
_ADDED_BOUNDS = (*_ADDED_BUCKETS, _INF)


class _Tally(msgspec.Struct):
    """What the requests of one kind did since the last push: the kind is (route, model
    group, provider, status), and for calls (size, quality, cache result, refusal), so that
    a request costs one dict lookup and a few additions. Histograms keep their samples
    until the push, which sorts them into buckets in one go (in C, not per request)."""

    requests: int = 0
    durations: list[float] = msgspec.field(default_factory=list)
    upstreams: list[float] = msgspec.field(default_factory=list)
    added: list[float] = msgspec.field(default_factory=list)
    images: int = 0
    spend: float = 0.0
    retries: int = 0
    fallbacks: int = 0


def _observe_many(child: Histogram, samples: list[float], bounds: tuple[float, ...]) -> None:
    """Add a batch of observations to one histogram child. prometheus-client observes one
    value at a time; a batch changes the same values `observe` does (one counter per
    bucket, the first whose bound is at least the value; the sum), through the attributes
    it uses for them."""
    samples.sort()
    buckets = child._buckets
    counted = 0
    for index, bound in enumerate(bounds):
        upto = bisect_right(samples, bound)
        if upto > counted:
            buckets[index].inc(upto - counted)
            counted = upto
    child._sum.inc(math.fsum(samples))


class GatewayMetrics:
    """The proxy's metrics, owned by one app (one per worker). `groups`: the configured
    model group names and aliases (always their own label); `routes`: the route
    templates; `folder`: prometheus-client's multiprocess folder, when several workers
    share one scrape (None: this process alone)."""

    def __init__(
        self,
        safe: SafeText,
        *,
        groups: Iterable[str],
        folder: str | None = None,
        label_limit: int = 100,
    ) -> None:
        self._folder = folder
        # Several workers: values live in files and a scrape reads all of them; one
        # process: the metrics are this registry's.
        self._registry = CollectorRegistry(auto_describe=True)
        registry = None if folder is not None else self._registry
        self._groups = LabelGuard(safe, groups, limit=label_limit)
        self._sizes = LabelGuard(safe, limit=label_limit // 2)
        self._qualities = LabelGuard(safe, limit=label_limit // 2)
        self.in_flight = 0

        self._pending: dict[tuple[str | None, ...], _Tally] = {}

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: Sequence[str], bounds: Sequence[float]
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=bounds)

        self._requests = counter(
            "prismgate_requests",
            "Requests answered, by route, model group, provider and status.",
            ("route", "model_group", "provider", "status"),
        )
        self._duration = histogram(
            "prismgate_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ("route", "model_group"),
            _DURATION_BUCKETS,
        )
        self._upstream = histogram(
            "prismgate_upstream_duration_seconds",
            "Time a call waited on providers (parallel upstream requests counted once).",
            ("model_group", "provider"),
            _DURATION_BUCKETS,
        )
        self._added = histogram(
            "prismgate_added_duration_seconds",
            "Time the gateway added to a call: its whole time minus the time upstream.",
            ("route",),
            _ADDED_BUCKETS,
        )
        self._images = counter(
            "prismgate_images",
            "Images answered, by model group, size and quality.",
            ("model_group", "size", "quality"),
        )
        self._spend = counter(
            "prismgate_spend_usd", "Cost of the calls, in US dollars.", ("model_group", "provider")
        )
        self._cache = counter(
            "prismgate_cache_lookups",
            "Response-cache lookups, by result (HIT, MISS, REFRESH).",
            ("model_group", "result"),
        )
        self._retries = counter(
            "prismgate_retries", "Tries after a failed attempt.", ("model_group",)
        )
        self._fallbacks = counter(
            "prismgate_fallbacks",
            "Moves to another model group or Portkey target after a failure.",
            ("model_group",),
        )
        self._refusals = counter(
            "prismgate_refusals",
            "Calls the gateway refused itself: budget, a caller's requests, tokens, images "
            "or parallel_requests limit, deployment_limit (rpm/tpm), cooldown.",
            ("model_group", "reason"),
        )
        self._in_flight = Gauge(
            "prismgate_requests_in_flight",
            "Requests being answered.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._cooling = Gauge(
            "prismgate_deployments_cooling_down",
            "Deployments of a model group cooling down after failures (read at the scrape).",
            ("model_group",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )

    def learn_groups(self, groups: Iterable[str]) -> None:
        """Count `groups` (a reloaded config's) under their own names too."""
        self._groups.learn(groups)

    def add(self, record: RequestRecord) -> None:
        """Count one answered request (plain Python, no prometheus-client call)."""
        route = record.route or UNMATCHED
        group = record.model_group
        try:
            status = _STATUS[record.status]
        except IndexError:  # not an HTTP status: never from uvicorn
            status = str(record.status)
        kind: tuple[str | None, ...]
        if group is None:
            kind = (route, "", "", status)
        else:
            # The guard's own table first: its call is for names it has not seen.
            label = self._groups.labels.get(group) or self._groups(group)
            kind = (
                route, label, record.provider or "", status,
                record.size, record.quality, record.cache, record.refusal,
            )  # fmt: skip
        tally = self._pending.get(kind)
        if tally is None:
            tally = self._pending[kind] = _Tally()
        tally.requests += 1
        seconds = record.seconds
        tally.durations.append(seconds)
        if group is None:
            return  # no call
        upstream = record.upstream
        if upstream is None:
            tally.added.append(seconds)
        else:
            tally.upstreams.append(upstream)
            added = seconds - upstream
            tally.added.append(added if added > 0.0 else 0.0)
        tally.images += record.images
        if record.cost:
            tally.spend += record.cost
        tally.retries += record.retries
        tally.fallbacks += record.fallbacks

    def push(self) -> None:
        """Move what was counted since the last push into prometheus-client's values."""
        pending, self._pending = self._pending, {}
        durations: dict[tuple[str, ...], list[float]] = {}
        upstreams: dict[tuple[str, ...], list[float]] = {}
        added: dict[tuple[str, ...], list[float]] = {}
        for kind, tally in pending.items():
            route, group, provider, status = cast(tuple[str, str, str, str], kind[:4])
            self._requests.labels(route, group, provider, status).inc(tally.requests)
            durations.setdefault((route, group), []).extend(tally.durations)
            if len(kind) == 4:
                continue  # no call
            size, quality, cache, refusal = kind[4:]
            if tally.upstreams:
                upstreams.setdefault((group, provider), []).extend(tally.upstreams)
            added.setdefault((route,), []).extend(tally.added)
            if tally.images:
                size_label = self._sizes(size or "auto")
                quality_label = self._qualities(quality or "auto")
                self._images.labels(group, size_label, quality_label).inc(tally.images)
            if tally.spend:
                self._spend.labels(group, provider).inc(tally.spend)
            if cache is not None:
                self._cache.labels(group, cache).inc(tally.requests)
            if tally.retries:
                self._retries.labels(group).inc(tally.retries)
            if tally.fallbacks:
                self._fallbacks.labels(group).inc(tally.fallbacks)
            if refusal is not None:
                self._refusals.labels(group, refusal).inc(tally.requests)
        for histogram, rows, bounds in (
            (self._duration, durations, _DURATION_BOUNDS),
            (self._upstream, upstreams, _DURATION_BOUNDS),
            (self._added, added, _ADDED_BOUNDS),
        ):
            for labels, samples in rows.items():
                _observe_many(histogram.labels(*labels), samples, bounds)
        self._in_flight.set(self.in_flight)

    def set_cooling_down(self, counts: Mapping[str, int]) -> None:
        """How many deployments of each model group are cooling down now."""
        for group, count in counts.items():
            self._cooling.labels(self._groups(group)).set(count)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (every worker's, with several); blocking
        (it reads the workers' files): call it off the event loop, after `push`."""
        if self._folder is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        # prometheus-client leaves these two unannotated.
        MultiProcessCollector(registry, path=self._folder)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """Push what is left; with several workers, drop this worker's live gauges (its
        counters stay in the sums)."""
        self.in_flight = 0
        self.push()
        if self._folder is not None:
            mark_process_dead(os.getpid(), self._folder)  # type: ignore[no-untyped-call]
