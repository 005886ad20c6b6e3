"""The fleet: three `prismgate serve` processes on one PostgreSQL database, one Redis (a
key prefix of this module's own, deleted at the end) and one S3 server (moto, a bucket of
this module's own), with the same master key, behind nginx on loopback. Made once per
test module; everything it starts is stopped at the end, whatever happened.

Upstream, OpenAI emulators: `painter` (dall-e-3, one deployment) and `east` / `west` (the
two deployments of `art`, east first by weight); `otters` is a `mock/` model."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests.emulators import OpenAIEmulator
from tests.fleet.balancer import UPSTREAM_HEADER, Nginx
from tests.processes import GatewayProcess, free_port, fresh_database
from tests.s3_server import S3Server
from tests.serving import model

MASTER_KEY = "sk-master-fleet-0001"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
REDIS_URL = "redis://127.0.0.1:6379/0"
PRICE = 0.04  # dall-e-3, standard, 1024x1024: the catalog's price


@dataclass
class Fleet:
    """The running fleet and what the tests look at behind it."""

    url: str  # nginx: the one address clients use
    gateways: list[GatewayProcess]
    database_url: str
    s3: S3Server
    bucket: str
    painter: OpenAIEmulator
    east: OpenAIEmulator
    west: OpenAIEmulator
    redis_prefix: str
    folder: Path
    addresses: list[str] = field(default_factory=list)  # host:port of each, as nginx names them

    def __post_init__(self) -> None:
        self.addresses = [gateway.base_url.removeprefix("http://") for gateway in self.gateways]

    @property
    def instances(self) -> list[str]:
        """Each instance's own base URL."""
        return [gateway.base_url for gateway in self.gateways]

    def new_key(self, via: str | None = None, **fields: Any) -> str:
        """A key made through `via` (an instance, else nginx)."""
        made = httpx.post((via or self.url) + "/key/generate", json=fields, headers=ADMIN)
        assert made.status_code == 200, made.text
        key: str = made.json()["key"]
        return key

    def spend_rows(self, *, key: str) -> list[dict[str, Any]]:
        """The rows of PostgreSQL's `spend_logs` for calls made with `key`."""
        token = hashlib.sha256(key.encode()).hexdigest()

        async def fetch() -> list[dict[str, Any]]:
            connection = await asyncpg.connect(self.database_url)
            try:
                rows = await connection.fetch(
                    "SELECT request_id, status_code, spend FROM spend_logs WHERE token = $1",
                    token,
                )
            finally:
                await connection.close()
            return [dict(row) for row in rows]

        return asyncio.run(fetch())


def served_by(answer: httpx.Response) -> str:
    """The instance (host:port) nginx sent `answer`'s request to."""
    return answer.headers[UPSTREAM_HEADER]


def fleet_config(
    *, database_url: str, redis_prefix: str, store: dict[str, Any], emulators: dict[str, Any]
) -> dict[str, Any]:
    painter, east, west = (emulators[name] for name in ("painter", "east", "west"))

    def openai(name: str, emulator: OpenAIEmulator, model_id: str, **params: Any) -> Any:
        base = emulator.base_url + "/v1"
        return model(name, model_id, api_base=base, api_key=emulator.api_key, **params)

    return {
        "model_list": [
            openai("painter", painter, "openai/dall-e-3"),
            openai("art", east, "openai/dall-e-2", weight=1),
            openai("art", west, "openai/dall-e-2", weight=0.000001),
            model("otters", "mock/otters"),
        ],
        "router_settings": {"redis_url": REDIS_URL, "num_retries": 1},
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "redis", "host": "127.0.0.1", "port": 6379},
        },
        "general_settings": {
            "master_key": MASTER_KEY,
            "database_url": database_url,
            "redis_prefix": redis_prefix,
            # A loaded two-core machine must not trip the breaker to in-process state:
            # that fallback is not what these tests are about.
            "redis_timeout": 2.0,
            "retries": {"base_delay": 0.01, "max_delay": 0.05},
            "image_store": store,
        },
    }


def _delete_redis_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    with contextlib.ExitStack() as stack:
        emulators = {
            name: stack.enter_context(OpenAIEmulator(flavor="openai"))
            for name in ("painter", "east", "west")
        }
        s3 = S3Server().start()
        stack.callback(s3.stop)
        bucket = s3.make_bucket(f"fleet-{uuid.uuid4().hex[:12]}")
        redis_prefix = f"prismgate-test:fleet-{uuid.uuid4().hex}:"
        stack.callback(_delete_redis_keys, redis_prefix)
        database_url = stack.enter_context(fresh_database("postgres", folder))
        balancer_port = free_port()
        store = s3.store_settings(
            bucket,
            prefix="links/",
            links="gateway",
            public_base_url=f"http://127.0.0.1:{balancer_port}",
        )
        config = fleet_config(
            database_url=database_url, redis_prefix=redis_prefix, store=store, emulators=emulators
        )
        gateways: list[GatewayProcess] = []
        for name in ("a", "b", "c"):
            # A copy each: GatewayProcess gives each config its own data folder.
            gateway = GatewayProcess(copy.deepcopy(config), folder, name=name)
            stack.callback(gateway.stop)
            gateways.append(gateway)
        for gateway in gateways:
            gateway.wait_ready(timeout=60)
        addresses = [gateway.base_url.removeprefix("http://") for gateway in gateways]
        balancer = Nginx(addresses, folder / "nginx", port=balancer_port)
        stack.callback(balancer.stop)
        balancer.wait_ready()
        yield Fleet(
            url=balancer.base_url,
            gateways=gateways,
            database_url=database_url,
            s3=s3,
            bucket=bucket,
            painter=emulators["painter"],
            east=emulators["east"],
            west=emulators["west"],
            redis_prefix=redis_prefix,
            folder=folder,
        )


@pytest.fixture
def fresh(fleet: Fleet) -> Fleet:
    """The fleet, with its emulators' records and pending faults cleared."""
    for emulator in (fleet.painter, fleet.east, fleet.west):
        emulator.reset()
    return fleet
