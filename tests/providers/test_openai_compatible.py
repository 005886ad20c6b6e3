"""Self-hosted OpenAI-compatible servers (`openai/<name>` + api_base, `xinference/`)."""

from __future__ import annotations

import pytest

from prismgate import image_generation
from tests.emulators import OpenAIEmulator
from tests.golden import assert_golden
from tests.images import image_bytes, opened


def test_seed_example_openai_compatible(compatible_emulator: OpenAIEmulator) -> None:
    # The seed's call, with the emulator in place of a local model server.
    response = image_generation(
        model="openai/llava-hf/llava-v1.6-vicuna-7b-hf",
        api_base=compatible_emulator.base_url + "/v1",
        api_key="my-bad-key",
        prompt="A cute baby sea otter",
    )
    assert response.data[0].url
    sent = compatible_emulator.requests[-1]
    assert sent.json == {
        "model": "llava-hf/llava-v1.6-vicuna-7b-hf",
        "prompt": "A cute baby sea otter",
    }
    assert sent.headers["authorization"] == "Bearer my-bad-key"


def test_provider_specific_keywords_reach_the_body(compatible_emulator: OpenAIEmulator) -> None:
    response = image_generation(
        model="openai/stable-diffusion-xl",
        api_base=compatible_emulator.base_url + "/v1",
        prompt="an otter",
        size="512x512",
        response_format="b64_json",
        seed=42,
        negative_prompt="blurry",
        extra_body={"num_inference_steps": 20},
    )
    assert_golden("openai_compatible_provider_params", compatible_emulator.requests[-1])
    assert compatible_emulator.requests[-1].json["seed"] == 42
    assert opened(image_bytes(response.data[0])).size == (512, 512)


def test_keyless_self_hosted_server(compatible_emulator: OpenAIEmulator) -> None:
    image_generation(
        model="xinference/stabilityai/stable-diffusion-3.5-large",
        prompt="an otter",
        api_base=compatible_emulator.base_url + "/v1",
    )
    sent = compatible_emulator.requests[-1]
    assert "authorization" not in sent.headers
    assert sent.json["model"] == "stabilityai/stable-diffusion-3.5-large"


def test_unknown_self_hosted_models_are_not_second_guessed(
    compatible_emulator: OpenAIEmulator,
) -> None:
    # No catalog entry: any value goes to the server, which is the judge.
    image_generation(
        model="openai/my-model",
        prompt="an otter",
        api_base=compatible_emulator.base_url + "/v1",
        size="640x480",
        style="watercolour",
        quality="draft",
    )
    sent = compatible_emulator.requests[-1].json
    assert (sent["size"], sent["style"], sent["quality"]) == ("640x480", "watercolour", "draft")


@pytest.mark.parametrize("n", [1, 7])
def test_n_is_sent_in_one_call_when_the_model_limit_is_unknown(
    compatible_emulator: OpenAIEmulator, n: int
) -> None:
    response = image_generation(
        model="openai/my-model", prompt="x", n=n, api_base=compatible_emulator.base_url + "/v1"
    )
    assert len(response.data) == n
    assert len(compatible_emulator.requests) == 1
