"""schemathesis against the proxy's own `/openapi.json`: every route, with the gateway key
and without it, generated from the schema with a fixed seed and a bounded number of
examples. No answer is a server error, and every answer matches the schema (status,
content type, body).

The proxy is the real one (uvicorn on loopback) serving the offline mock provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from prismgate.proxy.openapi import openapi_document
from tests.serving import MASTER_KEY, RunningProxy, model

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CONFIG: dict[str, Any] = {
    "model_list": [model("painter", "mock/painter"), model("gpt-image-1", "mock/gpt-image-1")],
    "general_settings": {"master_key": MASTER_KEY},
}
# Bounded, and the same examples on every run (CI and laptops alike). Without the key
# every operation answers 401 before reading the body: a few examples each are enough.
EXAMPLES = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
}
WITH_KEY = settings(max_examples=15, **EXAMPLES)
WITHOUT_KEY = settings(max_examples=3, **EXAMPLES)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    # A database and an encryption key (virtual keys), so that the management routes are
    # fuzzed past their first check.
    database = tmp_path_factory.mktemp("schemathesis") / "gateway.db"
    general = {
        **CONFIG["general_settings"],
        "database_url": f"sqlite:///{database}",
        "encryption_key": "schemathesis-key-0001",
    }
    config = {**CONFIG, "general_settings": general}
    running = RunningProxy(config).start()
    yield running
    running.stop()


# The document the proxy serves, built by the same function (checked below), so that the
# tests can be generated before the proxy starts.
schema = schemathesis.openapi.from_dict(msgspec.json.decode(openapi_document()))


def test_the_served_document_is_the_one_tested(proxy: RunningProxy) -> None:
    answer = httpx.get(
        f"{proxy.base_url}/openapi.json", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    assert answer.status_code == 200
    assert answer.json() == msgspec.json.decode(openapi_document())


@schema.parametrize()
@WITH_KEY
def test_with_the_gateway_key(case: Any, proxy: RunningProxy) -> None:
    case.call_and_validate(
        base_url=proxy.base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        checks=CHECKS,
        timeout=30,
    )


@schema.parametrize()
@WITHOUT_KEY
def test_without_a_key(case: Any, proxy: RunningProxy) -> None:
    case.call_and_validate(base_url=proxy.base_url, checks=CHECKS, timeout=30)
