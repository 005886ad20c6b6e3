"""OpenAI image generation through the SDK, against the OpenAI emulator."""

from __future__ import annotations

import msgspec
import pytest

import prismgate
from prismgate import image_generation
from tests.emulators import OpenAIEmulator
from tests.golden import assert_golden
from tests.images import image_bytes, opened

PROMPT = "A cute baby sea otter"


def call(emulator: OpenAIEmulator, **kwargs: object) -> prismgate.ImageResponse:
    return image_generation(
        prompt=str(kwargs.pop("prompt", PROMPT)),
        api_base=emulator.base_url + "/v1",
        api_key=emulator.api_key,
        **kwargs,  # type: ignore[arg-type]
    )


def test_seed_example_reads_openai_api_key(
    openai_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed document's call, unchanged but for the import; the environment points it
    # at the emulator instead of api.openai.com.
    monkeypatch.setenv("OPENAI_API_KEY", openai_emulator.api_key)
    monkeypatch.setenv("OPENAI_API_BASE", openai_emulator.base_url + "/v1")
    response = image_generation(prompt="A cute baby sea otter", model="dall-e-3")
    assert len(response.data) == 1
    assert response.data[0].url and response.data[0].url.startswith(openai_emulator.base_url)
    assert response.data[0].revised_prompt
    assert_golden("openai_dall_e_3_seed", openai_emulator.requests[-1])


def test_dall_e_3_every_parameter(openai_emulator: OpenAIEmulator) -> None:
    response = call(
        openai_emulator, model="dall-e-3", size="1792x1024", quality="hd", style="natural",
        response_format="b64_json", user="user-7",
    )  # fmt: skip
    assert_golden("openai_dall_e_3_all_params", openai_emulator.requests[-1])
    image = opened(image_bytes(response.data[0]))
    assert image.size == (1792, 1024)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(0.12)
    assert response._hidden_params["provider"] == "openai"


def test_dall_e_3_n_is_fanned_out(openai_emulator: OpenAIEmulator) -> None:
    response = call(openai_emulator, model="dall-e-3", n=3, response_format="b64_json")
    assert len(response.data) == 3
    assert [r.json["n"] for r in openai_emulator.requests] == [1, 1, 1]
    assert response._hidden_params is not None
    assert response._hidden_params.upstream_calls == 3
    assert response._hidden_params.response_cost == pytest.approx(0.12)


def test_dall_e_2_urls(openai_emulator: OpenAIEmulator) -> None:
    response = call(openai_emulator, model="dall-e-2", n=4, size="256x256")
    assert_golden("openai_dall_e_2_n4", openai_emulator.requests[-1])
    assert len(response.data) == 4
    assert all(item.url and item.b64_json is None for item in response.data)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(4 * 0.016)


def test_gpt_image_fields_are_sent(openai_emulator: OpenAIEmulator) -> None:
    response = call(
        openai_emulator, model="gpt-image-1", size="1536x1024", quality="high",
        background="transparent", output_format="webp", output_compression=80, moderation="low",
    )  # fmt: skip
    assert_golden("openai_gpt_image_1_all_params", openai_emulator.requests[-1])
    image = opened(image_bytes(response.data[0]))
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert response.usage is not None and response.usage.output_tokens > 0
    assert (response.output_format, response.size, response.background) == (
        "webp", "1536x1024", "transparent",
    )  # fmt: skip
    meta = response._hidden_params
    assert meta is not None and meta.response_cost is not None
    usage = response.usage
    details = usage.input_tokens_details
    text_in = details.text_tokens if details and details.text_tokens is not None else 0
    image_in = details.image_tokens if details and details.image_tokens else 0
    assert meta.response_cost == pytest.approx(
        text_in * 5e-6 + image_in * 10e-6 + usage.output_tokens * 40e-6
    )


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"])
def test_gpt_image_url_is_delivered_although_the_model_returns_base64(
    openai_emulator: OpenAIEmulator, model: str
) -> None:
    response = call(openai_emulator, model=model, response_format="url", size="1024x1024")
    sent = openai_emulator.requests[-1].json
    assert "response_format" not in sent  # gpt-image refuses it; the gateway converts
    item = response.data[0]
    assert item.url is not None and item.url.startswith("data:image/png;base64,")
    assert item.b64_json is None
    assert opened(image_bytes(item)).size == (1024, 1024)


def test_unsupported_param_fails_before_any_upstream_call(openai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.UnsupportedParamsError) as caught:
        call(openai_emulator, model="gpt-image-1", style="vivid")
    assert caught.value.param == "style"
    assert openai_emulator.requests == []
    response = call(openai_emulator, model="gpt-image-1", style="vivid", drop_params=True)
    assert "style" not in openai_emulator.requests[-1].json
    assert response._hidden_params is not None
    assert response._hidden_params.dropped_params == ("style",)


@pytest.mark.parametrize(
    ("kwargs", "param", "message"),
    [
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt",
         "prompt is 1001 characters; dall-e-2 accepts at most 1000"),
        ({"model": "dall-e-3", "n": 11}, "n", "n must be between 1 and 10; got 11"),
        ({"model": "dall-e-3", "size": "512x512"}, "size",
         "size '512x512' is not available for dall-e-3; it accepts 1024x1024, 1792x1024, "
         "1024x1792"),
        ({"model": "dall-e-3", "quality": "ultra"}, "quality",
         "quality 'ultra' is not available for dall-e-3; it accepts standard, hd"),
        ({"model": "dall-e-3", "style": "retro"}, "style",
         "style 'retro' is not available for dall-e-3; it accepts vivid, natural"),
        ({"model": "gpt-image-1", "size": "1792x1024"}, "size",
         "size '1792x1024' is not available for gpt-image-1; it accepts auto, 1024x1024, "
         "1536x1024, 1024x1536"),
        ({"model": "dall-e-3", "n": "three"}, "n", "n: Expected `int | null`, got `str`"),
        ({"model": "dall-e-3", "response_format": "png"}, "response_format",
         "response_format: Invalid enum value 'png'; expected one of b64_json, url"),
    ],
)  # fmt: skip
def test_checked_before_any_upstream_call(
    openai_emulator: OpenAIEmulator, kwargs: dict[str, object], param: str, message: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        call(openai_emulator, **kwargs)
    assert (caught.value.param, caught.value.message) == (param, message)
    assert caught.value.status_code == 400
    assert openai_emulator.requests == []


def test_missing_key_names_the_variable(openai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.AuthenticationError, match="set OPENAI_API_KEY"):
        image_generation(prompt=PROMPT, model="gpt-image-2")  # dall-e-3 is shut down


def test_wrong_key_is_an_authentication_error_without_the_key(
    openai_emulator: OpenAIEmulator,
) -> None:
    key = "sk-wrong-key-that-must-not-leak"
    with pytest.raises(prismgate.AuthenticationError) as caught:
        image_generation(
            prompt=PROMPT, model="dall-e-3", api_base=openai_emulator.base_url + "/v1", api_key=key
        )
    assert caught.value.upstream_status == 401
    assert key not in caught.value.message
    assert key not in msgspec.json.encode(caught.value.wire_body()).decode()


def test_content_policy_violation(openai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        call(openai_emulator, model="dall-e-3", prompt="something forbidden")
    assert caught.value.code == "content_policy_violation"
    assert caught.value.status_code == 400
    assert "safety system" in caught.value.message
    with pytest.raises(prismgate.ContentPolicyViolationError) as blocked:
        call(openai_emulator, model="gpt-image-1", prompt="something forbidden")
    assert blocked.value.code == "moderation_blocked"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, prismgate.RateLimitError),
        (500, prismgate.APIError),
        (502, prismgate.APIError),
        (503, prismgate.ServiceUnavailableError),
    ],
)
def test_upstream_failures_keep_their_status(
    openai_emulator: OpenAIEmulator, status: int, expected: type[prismgate.PrismgateError]
) -> None:
    openai_emulator.fail_next("status", status=status, retry_after=3 if status == 429 else None)
    with pytest.raises(expected) as caught:
        call(openai_emulator, model="dall-e-3")
    assert caught.value.upstream_status == status
    assert caught.value.status_code == status
    assert caught.value.provider == "openai"
    assert caught.value.message.startswith(f"openai returned {status}: ")
    if status == 429:
        assert caught.value.retry_after == 3


def test_connection_reset_is_a_connection_error(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("reset")
    with pytest.raises(prismgate.APIConnectionError) as caught:
        call(openai_emulator, model="dall-e-3")
    assert caught.value.status_code == 502
    # The provider is named; its host:port only in the debug log (issue 11).
    assert caught.value.message.startswith("the call to openai failed")
    assert "127.0.0.1" not in caught.value.message


def test_truncated_body_is_a_connection_error(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("truncate")
    with pytest.raises(prismgate.APIConnectionError, match="broke before the answer"):
        call(openai_emulator, model="dall-e-3")


def test_slow_answer_times_out(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("delay", delay=3)
    with pytest.raises(prismgate.Timeout) as caught:
        call(openai_emulator, model="dall-e-3", timeout=0.5)
    assert caught.value.status_code == 504
    assert caught.value.message == "openai did not answer within 0.5 s"


def test_connection_refused_is_a_connection_error() -> None:
    with pytest.raises(prismgate.APIConnectionError, match="could not connect to openai"):
        image_generation(
            prompt=PROMPT, model="dall-e-3", api_base="http://127.0.0.1:9/v1", api_key="sk-x"
        )
