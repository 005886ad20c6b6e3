"""Routing and shared state that tell the truth (issue 11, §3 and §5).

- A Redis that stops answering costs a call at most one short deadline, once: a circuit
  breaker answers from in-process state, says so in the log once, and goes back to Redis
  (saying so once) when it answers again. Tried against a real "black hole" (a loopback
  server that accepts and reads but never answers) and the real Redis behind a relay
  that stops passing its answers.
- A group of one deployment is never cooled down: a caller (the openai client, with its
  own retries) sees the upstream's own error every time. When every deployment of a larger
  group is cooling down, the answer is a 503 with Retry-After and the upstream error.
- The response cache is keyed by the upstream credential too: two virtual keys on one
  provider never share an answer; the key is an HMAC, never the secret or a plain hash.
- `x-portkey-retry-attempt-count` is -1 when every retry was used and the call failed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prismgate.config import load_config
from prismgate.providers.base import Deployment
from prismgate.response_cache import CachePolicy, ResponseCache, cache_policy
from prismgate.storage import (
    MemoryCacheStore,
    RedisCacheStore,
    RedisRoutingState,
    open_shared_state,
)
from prismgate.storage.redis import connect_redis
from prismgate.types import ImageGenerationRequest
from tests.emulators import OpenAIEmulator
from tests.serving import MASTER_KEY, RunningProxy, model

REDIS = ("127.0.0.1", 6379)
DEADLINE = 0.05  # the Redis deadline these tests configure
FAST_RETRIES = {"base_delay": 0.01, "max_delay": 0.05}
BODY = {"model": "art", "prompt": "an otter", "size": "256x256", "response_format": "url"}
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


# ---- real servers that misbehave ----


class BlackHole:
    """A TCP server on loopback that accepts every connection and reads what is sent, and
    never answers: what a wedged Redis (or a firewall that drops replies) looks like."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._open.append(connection)
            threading.Thread(target=self._swallow, args=(connection,), daemon=True).start()

    @staticmethod
    def _swallow(connection: socket.socket) -> None:
        try:
            while connection.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
        for connection in self._open:
            connection.close()


class FreezableRelay:
    """A loopback relay to the real Redis that can stop passing Redis's answers (the
    server keeps its connections and reads requests: it just never answers) and resume."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.frozen = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, answers: bool):
            try:
                while data := await source.read(65536):
                    if answers and self.frozen.is_set():
                        continue  # swallowed: the client waits for an answer that never comes
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def storage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "prismgate.storage"]


# ---- 1. Redis: a short deadline, a breaker, one log line each way ----

# Every operation of both stores, as (name, call on (routing, cache)).
Operation = Callable[[RedisRoutingState, RedisCacheStore], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "cooled_down": lambda r, c: r.cooled_down(["a", "b"]),
    "cooldowns": lambda r, c: r.cooldowns(["a", "b"]),
    "cool_down": lambda r, c: r.cool_down("a", 5, "upstream 500"),
    "record_failure": lambda r, c: r.record_failure(
        "b", allowed_fails=0, window=10, cooldown=5, reason="upstream 503"
    ),
    "usage": lambda r, c: r.usage(["a"]),
    "take_request": lambda r, c: r.take_request("a", 100),
    "add_tokens": lambda r, c: r.add_tokens("a", 10),
    "cache_get": lambda r, c: c.get("k"),
    "cache_set": lambda r, c: c.set("k", b"v", 10),
    "cache_delete": lambda r, c: c.delete("k"),
}


def _stores(port: int, retry_interval: float = 60.0) -> tuple[RedisRoutingState, RedisCacheStore]:
    routing, cache = open_shared_state(
        redis_url=f"redis://:hunter2-secret@127.0.0.1:{port}/0",
        prefix=f"truth-{uuid.uuid4().hex}:",
        timeout=DEADLINE,
        retry_interval=retry_interval,
    )
    assert isinstance(routing, RedisRoutingState) and isinstance(cache, RedisCacheStore)
    return routing, cache


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(st.sampled_from(sorted(OPERATIONS)), min_size=1, max_size=25))
def test_a_black_hole_redis_costs_one_deadline_once_and_one_log_line(
    black_hole: BlackHole, caplog: pytest.LogCaptureFixture, operations: list[str]
) -> None:
    caplog.clear()

    async def run() -> list[float]:
        routing, cache = _stores(black_hole.port)
        took = []
        try:
            for name in operations:
                started = time.perf_counter()
                await OPERATIONS[name](routing, cache)
                took.append(time.perf_counter() - started)
        finally:
            await routing.aclose()
            await cache.aclose()
        return took

    with caplog.at_level(logging.WARNING, logger="prismgate.storage"):
        took = asyncio.run(run())
    # The first operation waits out the deadline (one retry of a dead connection at most);
    # every later one is answered in-process at once.
    assert took[0] < 2 * DEADLINE + 0.1, took
    assert all(t < 0.01 for t in took[1:]), took
    warnings = storage_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "Redis is not answering" in warnings[0]
    assert "hunter2" not in warnings[0]


async def test_the_fallback_keeps_the_rules_in_process(black_hole: BlackHole) -> None:
    routing, cache = _stores(black_hole.port)
    try:
        # A cooldown, an rpm limit and a cache entry set during the outage all hold.
        await routing.cool_down("a", 30, "upstream 500")
        assert await routing.cooled_down(["a", "b"]) == {"a"}
        assert (await routing.cooldowns(["a"]))["a"].reason == "upstream 500"
        assert [await routing.take_request("d", 2) for _ in range(3)] == [True, True, False]
        await cache.set("k", b"image", 30)
        assert await cache.get("k") == b"image"
    finally:
        await routing.aclose()
        await cache.aclose()


async def test_the_real_redis_stops_answering_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = FreezableRelay(REDIS)
    routing, cache = _stores(relay.port, retry_interval=0.2)
    breaker = routing.breaker
    assert breaker is cache.breaker  # one client, one breaker, one log line
    direct = connect_redis(f"redis://{REDIS[0]}:{REDIS[1]}/0")
    try:
        with caplog.at_level(logging.WARNING, logger="prismgate.storage"):
            await cache.set("shared", b"1", 30)
            assert await direct.exists(cache._prefix + "shared") == 1  # really in Redis
            relay.frozen.set()
            took = []
            for _ in range(30):
                started = time.perf_counter()
                await routing.take_request("d", None)
                await cache.get("shared")
                took.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            assert breaker.is_open
            assert max(took) < 2 * DEADLINE + 0.1 and statistics.median(took) < 0.005, took
            assert len(storage_warnings(caplog)) == 1  # the probes that fail stay quiet
            relay.frozen.clear()
            for _ in range(100):
                await cache.get("shared")  # a call after the interval sends the probe
                if not breaker.is_open:
                    break
                await asyncio.sleep(0.02)
            assert not breaker.is_open
            await cache.set("after", b"2", 30)
            assert await direct.exists(cache._prefix + "after") == 1  # shared again
        warnings = storage_warnings(caplog)
        assert len(warnings) == 2, warnings
        assert "Redis is not answering" in warnings[0]
        assert "Redis answers again" in warnings[1]
    finally:
        await direct.delete(cache._prefix + "shared", cache._prefix + "after")
        await direct.aclose()
        await routing.aclose()
        await cache.aclose()
        relay.close()


def test_the_proxy_stays_fast_with_a_black_hole_redis(
    serve: Callable[..., RunningProxy],
    black_hole: BlackHole,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with OpenAIEmulator() as east, OpenAIEmulator() as west:
        entries = [
            model("art", "openai/dall-e-2", api_base=e.base_url + "/v1", api_key=e.api_key)
            for e in (east, west)
        ]

        def raw(redis_port: int | None) -> dict[str, Any]:
            router: dict[str, Any] = {"num_retries": 0}
            if redis_port is not None:
                router["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
            return {
                "model_list": entries,
                "router_settings": router,
                "litellm_settings": {"cache": True},
                "general_settings": {"master_key": MASTER_KEY, "redis_timeout": DEADLINE},
            }

        def timed(proxy: RunningProxy, count: int) -> list[float]:
            took = []
            with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as client:
                for i in range(count):
                    # Cache misses; b64 answers, so the cache keeps them without fetching.
                    prompt = f"an otter {i} {uuid.uuid4().hex}"
                    body = {**BODY, "prompt": prompt, "response_format": "b64_json"}
                    started = time.perf_counter()
                    answer = client.post("/v1/images/generations", json=body)
                    took.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
            return took

        baseline = timed(serve(raw(None)), 15)
        with caplog.at_level(logging.WARNING, logger="prismgate.storage"):
            holed = timed(serve(raw(black_hole.port)), 15)
    added = statistics.median(holed) - statistics.median(baseline)
    first_ms, base_ms = holed[0] * 1000, baseline[0] * 1000
    print(
        f"added median latency {added * 1000:.1f} ms; first call {first_ms:.0f} ms vs {base_ms:.0f}"
    )
    assert holed[0] < baseline[0] + 2 * DEADLINE + 0.2  # one deadline, once
    assert added < 0.02
    assert black_hole.connections >= 1  # Redis was really asked
    warnings = storage_warnings(caplog)
    assert len(warnings) == 1, warnings


# ---- 2. cooldowns that tell the truth ----


def deployment(emulator: OpenAIEmulator, api_key: str | None = None) -> dict[str, Any]:
    return model(
        "art",
        "openai/dall-e-2",
        api_base=emulator.base_url + "/v1",
        api_key=api_key or emulator.api_key,
    )


def routed(*entries: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {
        "model_list": list(entries),
        "router_settings": {"num_retries": 0, "allowed_fails": 0, **router},
        "general_settings": {"master_key": MASTER_KEY, "retries": FAST_RETRIES},
    }


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_a_group_of_one_answers_the_upstream_error_to_an_openai_client_every_time(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, status: int, error: type[Exception]
) -> None:
    proxy = serve(routed(deployment(east), cooldown_time=60))
    message = f"upstream broke {uuid.uuid4().hex[:8]}"
    east.fail_next("status", status=status, message=message, times=100)
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")  # max_retries=2
    for _ in range(2):
        with pytest.raises(error) as raised:
            client.images.generate(**BODY)  # type: ignore[arg-type]
        assert isinstance(raised.value, openai.APIStatusError)
        assert raised.value.status_code == status
        assert message in str(raised.value.message)
    assert len(east.requests) == 6  # the client's 3 tries each reached the upstream


@pytest.mark.parametrize("wrong_key", ["sk-wrong-0001", "sk-revoked-0002"])
def test_a_group_of_one_answers_a_401_as_it_is(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, wrong_key: str
) -> None:
    proxy = serve(routed(deployment(east, api_key=wrong_key), cooldown_time=60))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    for _ in range(3):
        with pytest.raises(openai.AuthenticationError) as raised:
            client.images.generate(**BODY)  # type: ignore[arg-type]
        assert "cooling" not in str(raised.value.message)
    assert len(east.requests) == 3


@pytest.mark.parametrize("cooldown_time", [3, 20])
def test_every_deployment_cooling_is_a_503_with_retry_after_and_the_upstream_error(
    serve: Callable[..., RunningProxy],
    east: OpenAIEmulator,
    west: OpenAIEmulator,
    cooldown_time: int,
) -> None:
    proxy = serve(routed(deployment(east), deployment(west), cooldown_time=cooldown_time))
    message = f"the GPU caught fire {uuid.uuid4().hex[:8]}"
    east.fail_next("status", status=500, message=message)
    west.fail_next("status", status=500, message=message)
    with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as client:
        first = [client.post("/v1/images/generations", json=BODY) for _ in range(2)]
        assert [a.status_code for a in first] == [500, 500]  # each upstream's own answer
        storm = [client.post("/v1/images/generations", json=BODY) for _ in range(4)]
    for answer in storm:
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["type"] == "service_unavailable"
        assert "cooling down" in error["message"] and message in error["message"]
        assert 1 <= int(answer.headers["retry-after"]) <= cooldown_time
    assert (len(east.requests), len(west.requests)) == (1, 1)


# ---- 3. the cache key holds the upstream credential ----

IDENTITY = st.fixed_dictionaries(
    {
        "api_key": st.one_of(st.none(), st.text(min_size=1, max_size=20)),
        "api_base": st.sampled_from([None, "https://a.example/v1", "https://b.example/v1"]),
        "api_version": st.sampled_from([None, "2024-02-01"]),
        "settings": st.dictionaries(
            st.sampled_from(["organization", "aws_region_name", "vertex_project"]),
            st.text(min_size=1, max_size=10),
            max_size=2,
        ),
    }
)


def _key(cache: ResponseCache, identity: dict[str, Any]) -> str:
    call = cache.for_call(
        "images",
        choice=None,
        scope="caller",
        refresh=False,
        deployment=Deployment(provider="openai", model="dall-e-2", **identity),
        request=ImageGenerationRequest(prompt="an otter", model="art"),
        extra={},
    )
    assert call is not None
    return call.key


@given(first=IDENTITY, second=IDENTITY)
def test_cache_keys_differ_exactly_when_the_upstream_credential_differs(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    cache = ResponseCache(MemoryCacheStore(), CachePolicy(enabled=True, key_secret=b"s" * 32))
    assert (_key(cache, first) == _key(cache, second)) == (first == second)
    key = _key(cache, first)
    assert key == _key(cache, dict(first))  # stable
    for secret in (first["api_key"], *first["settings"].values()):
        if secret and len(secret) >= 4:
            assert secret not in key
    # Keyed: another gateway's secret gives another key (no plain hash to brute-force).
    other = ResponseCache(MemoryCacheStore(), CachePolicy(enabled=True, key_secret=b"t" * 32))
    assert _key(other, first) != key


def test_cache_key_secret_comes_from_the_master_key_so_instances_share_entries() -> None:
    def policy(master_key: str | None) -> CachePolicy:
        raw = {"general_settings": {"master_key": master_key}} if master_key else {}
        return cache_policy(load_config(raw, environ={}))

    assert policy("sk-a").key_secret == policy("sk-a").key_secret
    assert policy("sk-a").key_secret != policy("sk-b").key_secret
    assert b"sk-a" not in policy("sk-a").key_secret
    assert policy(None).key_secret != policy(None).key_secret  # random without one


def test_two_virtual_keys_on_one_provider_never_share_cached_answers(
    serve: Callable[..., RunningProxy],
) -> None:
    with OpenAIEmulator(require_key=False) as shared:
        raw = {
            "model_list": [deployment(shared)],
            "litellm_settings": {"cache": True},
            "general_settings": {"master_key": MASTER_KEY},
            "virtual_keys": {
                name: {"provider": "openai", "api_key": key, "api_base": shared.base_url + "/v1"}
                for name, key in (("team-a", "sk-account-a-0001"), ("team-b", "sk-account-b-0002"))
            },
        }
        proxy = serve(raw)
        with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as client:

            def generate(virtual_key: str) -> httpx.Response:
                headers = {"x-portkey-virtual-key": virtual_key}
                body = {**BODY, "model": "dall-e-2", "response_format": "b64_json"}
                return client.post("/v1/images/generations", json=body, headers=headers)

            names = ("team-a", "team-b", "team-a", "team-b")
            statuses = [generate(name).headers.get("x-portkey-cache-status") for name in names]
        keys = [r.headers.get("authorization") for r in shared.requests]
    assert statuses == ["MISS", "MISS", "HIT", "HIT"]
    assert keys == ["Bearer sk-account-a-0001", "Bearer sk-account-b-0002"]


# ---- 4. retries that ran out: -1 ----


@pytest.mark.parametrize(
    ("num_retries", "failures", "status", "count"),
    [
        (2, 3, 500, "-1"),  # every retry used, still failing
        (1, 2, 503, "-1"),
        (2, 1, 500, "1"),  # served on the first retry
        (2, 2, 500, "2"),
        (0, 1, 500, "0"),  # no retries configured
        (2, 1, 400, "0"),  # not retryable: nothing was used up
    ],
)
def test_retry_attempt_count_is_minus_one_when_retries_ran_out(
    serve: Callable[..., RunningProxy],
    east: OpenAIEmulator,
    num_retries: int,
    failures: int,
    status: int,
    count: str,
) -> None:
    proxy = serve(routed(deployment(east), num_retries=num_retries))
    east.fail_next("status", status=status, times=failures)
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=BODY, headers=AUTH)
    assert answer.headers["x-portkey-retry-attempt-count"] == count


def test_a_portkey_retry_that_runs_out_is_minus_one(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator
) -> None:
    raw = routed(deployment(east))
    raw["virtual_keys"] = {
        "east": {"provider": "openai", "api_key": east.api_key, "api_base": east.base_url + "/v1"}
    }
    proxy = serve(raw)
    east.fail_next("status", status=502, times=10)
    config = '{"retry": {"attempts": 2}, "virtual_key": "east"}'
    headers = {**AUTH, "x-portkey-config": config}
    body = {**BODY, "model": "dall-e-2"}
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=body, headers=headers)
    assert answer.status_code == 502
    assert answer.headers["x-portkey-retry-attempt-count"] == "-1"
    assert len(east.requests) == 3
