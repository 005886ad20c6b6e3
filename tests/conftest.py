"""Shared fixtures: provider emulators (real HTTP servers on loopback) and a clean env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.emulators import OpenAIEmulator
from tests.serving import serve  # noqa: F401  (the fixture, for every test)

# Properties are about correctness; time is measured by bench/, not by a per-example
# deadline that a busy two-core machine can miss.
settings.register_profile("prismgate", deadline=None)
settings.load_profile("prismgate")

PROVIDER_ENV = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE",
    "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT",
    "AZURE_API_VERSION", "OPENAI_API_VERSION", "XAI_API_KEY", "XAI_API_BASE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real provider keys."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


def _emulator(flavor: str) -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(flavor=flavor) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[OpenAIEmulator]:
    yield from _emulator("openai")


@pytest.fixture(scope="session")
def _azure_server() -> Iterator[OpenAIEmulator]:
    yield from _emulator("azure")


@pytest.fixture(scope="session")
def _xai_server() -> Iterator[OpenAIEmulator]:
    yield from _emulator("xai")


@pytest.fixture(scope="session")
def _compatible_server() -> Iterator[OpenAIEmulator]:
    yield from _emulator("compatible")


# Each test gets a started emulator with no recorded requests and no pending faults.
@pytest.fixture
def openai_emulator(_openai_server: OpenAIEmulator) -> OpenAIEmulator:
    _openai_server.reset()
    return _openai_server


@pytest.fixture
def azure_emulator(_azure_server: OpenAIEmulator) -> OpenAIEmulator:
    _azure_server.reset()
    return _azure_server


@pytest.fixture
def xai_emulator(_xai_server: OpenAIEmulator) -> OpenAIEmulator:
    _xai_server.reset()
    return _xai_server


@pytest.fixture
def compatible_emulator(_compatible_server: OpenAIEmulator) -> OpenAIEmulator:
    _compatible_server.reset()
    return _compatible_server


# Two OpenAI-shaped upstreams for routing tests (two regions of one model group).
@pytest.fixture(scope="module")
def _pair() -> Iterator[tuple[OpenAIEmulator, OpenAIEmulator]]:
    with OpenAIEmulator() as first, OpenAIEmulator() as second:
        yield first, second


@pytest.fixture
def east(_pair: tuple[OpenAIEmulator, OpenAIEmulator]) -> OpenAIEmulator:
    _pair[0].reset()
    return _pair[0]


@pytest.fixture
def west(_pair: tuple[OpenAIEmulator, OpenAIEmulator]) -> OpenAIEmulator:
    _pair[1].reset()
    return _pair[1]
