"""The shared image rules, with hypothesis properties over sizes, ratios and values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismgate.catalog import ImageCapabilities, builtin_catalog
from prismgate.errors import BadRequestError, UnsupportedParamsError
from prismgate.providers.image_rules import (
    MAX_IMAGES_PER_REQUEST,
    check_image_request,
    match_aspect_ratio,
    parse_size,
)
from prismgate.types import ImageGenerationRequest


def caps(model: str) -> ImageCapabilities:
    info = builtin_catalog().lookup(model)
    assert info is not None and info.image is not None
    return info.image


DALLE3 = caps("openai/dall-e-3")
GPT_IMAGE = caps("openai/gpt-image-1")
XAI_IMAGE = caps("xai/grok-2-image-1212")


def check(caps_: ImageCapabilities, drop: bool = False, **fields: object):  # type: ignore[no-untyped-def]
    request = ImageGenerationRequest(prompt=str(fields.pop("prompt", "an otter")), **fields)  # type: ignore[arg-type]
    return check_image_request(request, caps_, model="the-model", drop_params=drop)


@given(st.sampled_from(DALLE3.sizes or ()), st.sampled_from(DALLE3.qualities or ()),
       st.sampled_from(DALLE3.styles or ()))  # fmt: skip
def test_every_value_the_model_lists_passes_unchanged(size: str, quality: str, style: str) -> None:
    checked = check(DALLE3, size=size, quality=quality, style=style)
    assert (checked.request.size, checked.request.quality, checked.request.style) == (
        size,
        quality,
        style,
    )
    assert checked.dropped == () and checked.adjusted == ()


@given(st.integers(1, 4096), st.integers(1, 4096))
def test_unlisted_sizes_fail_listing_what_the_model_accepts(width: int, height: int) -> None:
    size = f"{width}x{height}"
    if size in (DALLE3.sizes or ()):
        return
    with pytest.raises(BadRequestError) as caught:
        check(DALLE3, size=size)
    assert caught.value.param == "size"
    assert "1024x1024, 1792x1024, 1024x1792" in caught.value.message


@given(st.text(max_size=12).filter(lambda s: not s.replace("x", "").isdigit() or "x" not in s))
def test_malformed_sizes_are_a_clear_400(size: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_size(size)
    assert caught.value.param == "size"
    assert "WIDTHxHEIGHT" in caught.value.message


@given(st.integers(16, 8192), st.integers(16, 8192))
def test_aspect_ratio_matches_are_exact_or_within_two_percent(width: int, height: int) -> None:
    ratios = XAI_IMAGE.aspect_ratios or ()
    try:
        ratio, exact = match_aspect_ratio(f"{width}x{height}", ratios)
    except BadRequestError as error:
        assert error.param == "size"
        wanted = width / height
        assert all(abs(_value(r) - wanted) / _value(r) > 0.02 for r in ratios)
        return
    error = abs(_value(ratio) - width / height) / _value(ratio)
    assert error <= 0.02
    assert exact == (error < 1e-9)


def _value(ratio: str) -> float:
    a, _, b = ratio.partition(":")
    return float(a) / float(b)


def test_a_near_ratio_is_reported_as_adjusted() -> None:
    checked = check(XAI_IMAGE, size="1800x1024")  # 1.758 vs 16:9 = 1.778, 1.1 % off
    assert checked.adjusted == ("size=1800x1024->aspect_ratio=16:9",)


@given(st.integers(-5, 30))
def test_n_range(n: int) -> None:
    if 1 <= n <= MAX_IMAGES_PER_REQUEST:
        assert check(DALLE3, n=n).request.n == n  # fanned out later, not refused
    else:
        with pytest.raises(BadRequestError, match="n must be between 1 and 10") as caught:
            check(DALLE3, n=n)
        assert caught.value.param == "n"


def test_unsupported_param_is_refused_then_dropped_on_request() -> None:
    with pytest.raises(UnsupportedParamsError) as caught:
        check(GPT_IMAGE, style="vivid")
    assert caught.value.param == "style"
    assert "does not support 'style'" in caught.value.message
    assert "drop_params=True" in caught.value.message
    checked = check(GPT_IMAGE, drop=True, style="vivid")
    assert checked.request.style is None
    assert checked.dropped == ("style",)


def test_auto_means_the_provider_default() -> None:
    checked = check(DALLE3, size="auto", quality="auto")
    assert checked.request.size is None and checked.request.quality is None
    kept = check(GPT_IMAGE, size="auto", quality="auto")
    assert kept.request.size == "auto" and kept.request.quality == "auto"


def test_prompt_limits() -> None:
    check(DALLE3, prompt="x" * 4000)
    with pytest.raises(BadRequestError) as caught:
        check(DALLE3, prompt="x" * 4001)
    assert caught.value.message == "prompt is 4001 characters; the-model accepts at most 4000"
    with pytest.raises(BadRequestError, match="prompt must not be empty"):
        check(DALLE3, prompt="  ")


def test_value_lists_name_the_field() -> None:
    with pytest.raises(BadRequestError) as caught:
        check(GPT_IMAGE, output_format="gif")
    assert caught.value.param == "output_format"
    assert caught.value.message == (
        "output_format 'gif' is not available for the-model; it accepts png, jpeg, webp"
    )
    with pytest.raises(BadRequestError, match="output_compression must be between 0 and 100"):
        check(GPT_IMAGE, output_compression=101)


def test_unknown_models_are_left_to_the_provider() -> None:
    request = ImageGenerationRequest(prompt="p", size="3x5", style="anything")
    checked = check_image_request(request, None, model="self-hosted", drop_params=False)
    assert checked.request is request


NOVA = caps("bedrock/amazon.nova-canvas-v1:0")


@given(st.sampled_from(("hd", "high", "standard", "low", "medium", "premium")) | st.text())
def test_a_quality_in_openais_words_is_mapped_or_refused_never_sent_as_is(quality: str) -> None:
    # Nova takes standard / premium; OpenAI's words are mapped onto them and reported.
    try:
        checked = check(NOVA, quality=quality)
    except BadRequestError as refused:
        assert refused.param == "quality" and "standard, premium" in refused.message
        assert quality not in ("hd", "high", "standard", "low", "medium", "premium", "auto")
        return
    sent = checked.request.quality
    if quality == "auto":
        assert sent is None  # the provider's default
    else:
        assert sent in ("standard", "premium")
        assert sent == ("premium" if quality in ("hd", "high", "premium") else "standard")
        assert checked.adjusted == (() if sent == quality else (f"quality={quality}->{sent}",))


# gpt-image-2 takes free sizes within rules (the catalog's `size_rules`), and `auto`.
GPT_IMAGE_2 = caps("openai/gpt-image-2")
GPT_IMAGE_2_ACCEPTS = (
    "gpt-image-2 accepts sizes whose sides are multiples of 16, at most 3840 px, with an "
    "aspect ratio from 1:3 to 3:1 and 655,360 to 8,294,400 pixels, or auto"
)


def check_gpt_image_2(size: str):  # type: ignore[no-untyped-def]
    request = ImageGenerationRequest(prompt="an otter", size=size)
    return check_image_request(request, GPT_IMAGE_2, model="gpt-image-2", drop_params=False)


@pytest.mark.parametrize(
    "size",
    [
        "auto",
        "1024x1024",
        "1536x1024",
        "1024x1536",
        "2048x2048",
        "2048x1152",
        "3840x2160",
        "2160x3840",
        "1024x640",
        "2400x800",
        "1280x3840",
    ],
)
def test_gpt_image_2_takes_any_size_within_its_rules(size: str) -> None:
    checked = check_gpt_image_2(size)
    assert checked.request.size == size  # sent as asked, `auto` included
    assert checked.adjusted == ()


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ("1000x1000", "its sides are not both multiples of 16"),
        ("1024x1030", "its sides are not both multiples of 16"),
        ("4096x1536", "its longer side is 4096 px"),
        ("3840x1008", "its aspect ratio is 3.81:1"),
        ("800x800", "it has 640,000 pixels"),
        ("3840x2176", "it has 8,355,840 pixels"),
        ("3200x3200", "it has 10,240,000 pixels"),
    ],
)
def test_gpt_image_2_refuses_sizes_outside_its_rules_and_states_them(
    size: str, problem: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        check_gpt_image_2(size)
    error = caught.value
    assert error.param == "size" and error.code == "invalid_value" and error.status_code == 400
    assert error.message == (
        f"size {size!r} is not available for gpt-image-2 ({problem}); {GPT_IMAGE_2_ACCEPTS}"
    )


@given(st.integers(1, 320).map(lambda k: k * 16), st.integers(1, 320).map(lambda k: k * 16))
def test_gpt_image_2_rules_hold_for_every_multiple_of_16(width: int, height: int) -> None:
    long, short = max(width, height), min(width, height)
    fits = long <= 3840 and long <= 3 * short and 655_360 <= width * height <= 8_294_400
    try:
        check_gpt_image_2(f"{width}x{height}")
    except BadRequestError:
        assert not fits
    else:
        assert fits


def test_size_rules_words_name_only_the_bounds_a_model_has() -> None:
    from prismgate.catalog import SizeRules
    from prismgate.providers.image_rules import describe_size_rules

    assert describe_size_rules(SizeRules(max_edge=2048)) == "sizes whose sides are at most 2048 px"
    assert describe_size_rules(SizeRules(min_pixels=4096), ("auto",)) == (
        "sizes WIDTHxHEIGHT, with at least 4,096 pixels, or auto"
    )
