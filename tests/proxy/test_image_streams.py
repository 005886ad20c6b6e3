"""Streamed image generations and edits (`stream: true`, `partial_images`), through the
real proxy with the openai client, and through the SDK: previews relayed from OpenAI as
they arrive, and a completed event for every provider."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

import prismgate
from prismgate import Gateway, load_config
from prismgate.types import ImageCompletedEvent, ImagePartialEvent
from tests.emulators import OpenAIEmulator
from tests.emulators.bedrock import BedrockEmulator
from tests.emulators.google import GoogleEmulator
from tests.serving import MASTER_KEY, RunningProxy, model

REGION = "eu-west-1"


def emulated_gpt_image(emulator: OpenAIEmulator) -> dict[str, Any]:
    settings = {"api_base": emulator.base_url + "/v1", "api_key": emulator.api_key}
    return {
        "model_list": [model("painter", "openai/gpt-image-2", **settings)],
        "general_settings": {"master_key": MASTER_KEY},
    }


def size_of(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.size


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")


def test_openai_previews_are_relayed_through_the_openai_clients_stream(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    events = list(
        client(proxy).images.generate(
            model="painter", prompt="a kite", size="1536x1024", stream=True, partial_images=2
        )
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partial, completed = events[1], events[2]
    assert partial.partial_image_index == 1  # type: ignore[union-attr]
    assert size_of(completed.b64_json) == (1536, 1024)
    assert completed.usage is not None and completed.usage.output_tokens > 0  # type: ignore[union-attr]
    # Upstream, the gateway asked OpenAI for the stream itself.
    sent = openai_emulator.requests[-1].json
    assert (sent["stream"], sent["partial_images"]) == (True, 2)


def test_previews_reach_the_client_before_the_image_is_finished(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    # The emulator sends the previews, then holds the finished image until told.
    openai_emulator.hold_completed = threading.Event()
    stream = iter(
        client(proxy).images.generate(model="painter", prompt="a kite", stream=True,
                                      partial_images=2)
    )  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(next, stream).result(timeout=20)  # not buffered to the end
    assert first.type == "image_generation.partial_image"
    openai_emulator.hold_completed.set()
    assert [event.type for event in stream] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]


def test_a_failure_after_the_first_event_ends_the_stream_with_an_error_event(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    openai_emulator.fail_next("stream_error", message="the GPU caught fire")
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="the GPU caught fire"):
        for event in client(proxy).images.generate(
            model="painter", prompt="a kite", stream=True, partial_images=2
        ):
            seen.append(event.type)
    assert seen == ["image_generation.partial_image"]
    # A preview had been relayed: the call was not made again behind the caller's back.
    assert len([r for r in openai_emulator.requests if r.path.endswith("/generations")]) == 1


def test_azure_previews_are_relayed_too(
    serve: Callable[..., RunningProxy], azure_emulator: OpenAIEmulator
) -> None:
    settings = {"api_base": azure_emulator.base_url, "api_key": azure_emulator.api_key}
    proxy = serve(
        {
            "model_list": [model("painter", "azure/gpt-image-1", **settings)],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )
    events = list(
        client(proxy).images.generate(model="painter", prompt="a kite", stream=True,
                                      partial_images=1)
    )  # fmt: skip
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    sent = azure_emulator.requests[-1]
    assert sent.path.startswith("/openai/deployments/gpt-image-1/")
    assert (sent.json["stream"], sent.json["partial_images"]) == (True, 1)


def test_an_edit_streams_image_edit_events(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(picture, format="PNG")
    events = list(
        client(proxy).images.edit(
            model="painter",
            image=("in.png", picture.getvalue(), "image/png"),
            prompt="add a moon",
            stream=True,
            partial_images=1,
        )
    )
    assert [event.type for event in events] == ["image_edit.partial_image", "image_edit.completed"]


def test_a_stream_without_previews_is_one_completed_event_an_image(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    events = list(client(proxy).images.generate(model="painter", prompt="x", n=2, stream=True))
    assert [event.type for event in events] == ["image_generation.completed"] * 2
    # No previews asked for: one plain call upstream, no stream.
    assert "stream" not in openai_emulator.requests[-1].json
    # The call's usage once, on its last image.
    assert events[0].usage is None and events[1].usage is not None  # type: ignore[union-attr]


def test_a_provider_without_streams_still_streams_its_images(
    serve: Callable[..., RunningProxy],
) -> None:
    proxy = serve({"model_list": [model("sketch", "mock/dall-e-3")],
                   "general_settings": {"master_key": MASTER_KEY}})  # fmt: skip
    events = list(
        client(proxy).images.generate(
            model="sketch", prompt="a boat", response_format="url", stream=True, partial_images=3
        )
    )
    assert [event.type for event in events] == ["image_generation.completed"]
    assert size_of(events[0].b64_json) == (1024, 1024)  # base64 in a stream, always


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(region=REGION) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emulator:
        yield emulator


def test_bedrock_and_vertex_stream_their_completed_images(
    serve: Callable[..., RunningProxy], bedrock: BedrockEmulator, google: GoogleEmulator
) -> None:
    aws = {
        "api_base": bedrock.base_url,
        "aws_access_key_id": bedrock.credentials.access_key_id,
        "aws_secret_access_key": bedrock.credentials.secret_access_key,
        "aws_region_name": REGION,
    }
    vertex = {
        "vertex_project": google.project,
        "vertex_location": "europe-west4",
        "vertex_credentials": json.dumps(google.service_account_info()),
        "api_base": google.base_url,
    }
    proxy = serve(
        {
            "model_list": [
                model("nova", "bedrock/amazon.nova-canvas-v1:0", **aws),
                model("imagen", "vertex_ai/gemini-2.5-flash-image", **vertex),
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )
    for group in ("nova", "imagen"):
        events = list(
            client(proxy).images.generate(model=group, prompt="a lighthouse", stream=True)
        )
        assert [event.type for event in events] == ["image_generation.completed"], group
        assert size_of(events[0].b64_json)[0] > 0


def test_a_call_that_fails_at_once_is_a_plain_error(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_gpt_image(openai_emulator))
    base = {"model": "painter", "prompt": "x", "stream": True}
    cases = [
        ({"size": "100x100"}, "size"),  # refused by the model's rules, before any call
        ({"partial_images": 4}, "partial_images"),
        ({"stream": "yes"}, "stream"),
    ]
    for change, param in cases:
        answer = httpx.post(
            proxy.base_url + "/v1/images/generations",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={**base, **change},
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"]["param"] == param
    # partial_images without a stream is a mistake worth naming.
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "painter", "prompt": "x", "partial_images": 1},
    )
    assert answer.status_code == 400 and "needs stream: true" in answer.json()["error"]["message"]


def test_the_sdk_streams_typed_events_sync_and_async(openai_emulator: OpenAIEmulator) -> None:
    keys = {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key}
    events = list(
        prismgate.image_generation(  # type: ignore[call-overload]
            prompt="a kite", model="openai/gpt-image-2", stream=True, partial_images=1, **keys
        )
    )
    assert [type(event) for event in events] == [ImagePartialEvent, ImageCompletedEvent]
    assert events[1]["type"] == "image_generation.completed"  # LiteLLM-style item access

    async def streamed() -> list[str]:
        seen: list[str] = []
        config = load_config({}, environ={})
        async with Gateway(config) as gateway:
            answer = await prismgate.aimage_generation(
                prompt="a kite", model="openai/gpt-image-2", stream=True, gateway=gateway, **keys
            )
            assert not isinstance(answer, prismgate.ImageResponse)
            async for event in answer:
                seen.append(event.type)
        return seen

    import asyncio

    assert asyncio.run(streamed()) == ["image_generation.completed"]
