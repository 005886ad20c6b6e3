"""Routing from the SDK: LiteLLM's `num_retries`, an idempotency key, and what the call
reports in `_hidden_params`."""

from __future__ import annotations

import prismgate
from tests.emulators import OpenAIEmulator


def where(emulator: OpenAIEmulator) -> dict[str, str]:
    return {"api_base": emulator.base_url + "/v1", "api_key": emulator.api_key}


async def test_num_retries_keyword(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("status", status=500)
    image = await prismgate.aimage_generation(
        prompt="an otter", model="openai/dall-e-2", size="256x256", num_retries=1,
        **where(openai_emulator),
    )  # fmt: skip
    assert image.data
    assert len(openai_emulator.requests) == 2
    meta = image._hidden_params
    assert meta is not None
    assert meta["retries"] == 1
    assert meta["attempts"] == ("openai/dall-e-2=500", "openai/dall-e-2=200")
    # No extra keyword reached the provider.
    assert "num_retries" not in (openai_emulator.requests[-1].json or {})


async def test_without_num_retries_a_direct_call_is_tried_once(
    openai_emulator: OpenAIEmulator,
) -> None:
    openai_emulator.fail_next("status", status=500)
    try:
        await prismgate.aimage_generation(
            prompt="an otter", model="openai/dall-e-2", size="256x256", **where(openai_emulator)
        )
    except prismgate.APIError as error:
        assert error.attempts == ("openai/dall-e-2=500",)
    else:
        raise AssertionError("the failure was not raised")
    assert len(openai_emulator.requests) == 1


async def test_idempotency_key_allows_a_retry_after_a_timeout(
    openai_emulator: OpenAIEmulator,
) -> None:
    openai_emulator.fail_next("delay", delay=2)
    image = await prismgate.aimage_generation(
        prompt="an otter", model="openai/dall-e-2", size="256x256", num_retries=1,
        timeout=0.5, idempotency_key="job-7", **where(openai_emulator),
    )  # fmt: skip
    assert image.data
    assert len(openai_emulator.requests) == 2
