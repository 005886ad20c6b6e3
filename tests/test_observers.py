"""The one observer point: every call reported once, served or failed, with its caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.errors import BadRequestError, RateLimitError
from prismgate.gateway import CallOptions
from prismgate.identity import Principal
from prismgate.observers import CallReport
from prismgate.types.chat import ChatCompletionRequest
from prismgate.types.validation import convert_request
from tests.emulators import OpenAIEmulator


class Recorder:
    def __init__(self) -> None:
        self.reports: list[CallReport] = []

    def observe(self, report: CallReport) -> None:
        self.reports.append(report)


class Broken:
    def observe(self, report: CallReport) -> None:
        raise RuntimeError("this observer is broken")


def gateway_for(emulator: OpenAIEmulator, *observers: Any) -> Gateway:
    config = load_config(
        {
            "model_list": [
                {
                    "model_name": "sdxl",
                    "litellm_params": {
                        "model": "openai/sdxl",
                        "api_base": emulator.base_url + "/v1",
                        "api_key": "sk-upstream",
                    },
                },
                {"model_name": "otters", "litellm_params": {"model": "mock/otters"}},
            ],
            "router_settings": {"num_retries": 2},
            "general_settings": {"retries": {"base_delay": 0.01, "max_delay": 0.02}},
        },
        environ={},
    )
    return Gateway(config, observers=observers)


async def test_a_served_call_is_reported_once_with_its_caller_and_metadata(
    compatible_emulator: OpenAIEmulator,
) -> None:
    recorder = Recorder()
    caller = Principal(role="open", scope="caller-1")
    compatible_emulator.fail_next("status", status=429)  # one retry: still one report
    async with gateway_for(compatible_emulator, Broken(), recorder) as gateway:
        served = await gateway.image_generation(
            ImageGenerationRequest(prompt="an otter", model="sdxl", n=1),
            CallOptions(principal=caller, request_id="req-1", trace_id="trace-1"),
        )
    [report] = recorder.reports
    assert report.request_id == "req-1"
    assert report.operation == "image_generation"
    assert report.principal is caller
    assert report.status == 200
    assert report.meta == served.meta
    assert report.value is served.value
    assert report.trace_id == "trace-1"
    assert [entry.rpartition("=")[2] for entry in report.attempts] == ["429", "200"]
    assert report.latency > 0


async def test_a_failed_call_is_reported_with_its_status_and_attempts(
    compatible_emulator: OpenAIEmulator,
) -> None:
    recorder = Recorder()
    compatible_emulator.fail_next("status", status=429, times=3)
    async with gateway_for(compatible_emulator, recorder) as gateway:
        with pytest.raises(RateLimitError):
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
        with pytest.raises(BadRequestError):
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="otters", n=99))
    failed, refused = recorder.reports
    assert failed.status == 429 and failed.meta is None and failed.value is None
    assert len(failed.attempts) == 3
    assert refused.status == 400 and refused.attempts  # refused by the model's rules
    assert [r.request_id for r in recorder.reports] == list(
        dict.fromkeys(r.request_id for r in recorder.reports)
    )


async def test_a_call_whose_caller_left_is_reported_as_499(
    compatible_emulator: OpenAIEmulator,
) -> None:
    recorder = Recorder()
    compatible_emulator.fail_next("delay", delay=5)
    async with gateway_for(compatible_emulator, recorder) as gateway:
        call = asyncio.ensure_future(
            gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
        )
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    [report] = recorder.reports
    assert report.status == 499


async def test_chat_calls_are_reported_too(compatible_emulator: OpenAIEmulator) -> None:
    recorder = Recorder()
    request = convert_request(
        {"model": "otters", "messages": [{"role": "user", "content": "hello"}]},
        ChatCompletionRequest,
    )
    async with gateway_for(compatible_emulator, recorder) as gateway:
        served = await gateway.chat_completion(request)
    [report] = recorder.reports
    assert report.operation == "chat_completion" and report.meta == served.meta
