from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismgate.errors import AuthenticationError, BadRequestError
from prismgate.providers.base import CredentialSpec, Deployment, Field, build_body

SPEC = CredentialSpec(
    api_key_env=("A_KEY", "B_KEY"),
    api_base_env=("A_BASE",),
    default_api_base="https://api.example.com/v1/",
)


def test_build_body_maps_renames_and_nests() -> None:
    table = {
        "prompt": Field("textToImageParams.text"),
        "n": Field("imageGenerationConfig.numberOfImages"),
        "size": Field(
            convert=lambda v, _c: dict(
                zip(("imageGenerationConfig.width", "imageGenerationConfig.height"),
                    map(int, v.split("x")), strict=True)
            )
        ),
    }  # fmt: skip
    body = build_body(table, {"prompt": "otter", "n": 2, "size": "512x768", "style": "x"}, None)
    assert body == {
        "textToImageParams": {"text": "otter"},
        "imageGenerationConfig": {"numberOfImages": 2, "width": 512, "height": 768},
    }


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.none() | st.integers()))
def test_build_body_never_sends_unset_or_unmapped_values(values: dict[str, int | None]) -> None:
    body = build_body({"a": Field("x.a"), "b": Field("b")}, values, None)
    expected_a = values.get("a")
    assert body.get("x", {}).get("a") == expected_a
    assert ("x" in body) == (expected_a is not None)
    assert "c" not in body


def test_credentials_prefer_deployment_then_environment_then_default() -> None:
    deployment = Deployment(provider="p", model="m")
    env = {"B_KEY": "from-env-b", "A_BASE": "https://env.example/v1/"}
    resolved = SPEC.resolve("p", deployment, env)
    assert (resolved.api_key, resolved.api_base) == ("from-env-b", "https://env.example/v1")
    explicit = Deployment(provider="p", model="m", api_key="k", api_base="https://x/")
    assert SPEC.resolve("p", explicit, env).api_key == "k"
    assert SPEC.resolve("p", explicit, env).api_base == "https://x"
    assert SPEC.resolve("p", deployment, {"A_KEY": "a"}).api_base == "https://api.example.com/v1"


def test_missing_key_names_the_variables() -> None:
    with pytest.raises(AuthenticationError) as caught:
        SPEC.resolve("p", Deployment(provider="p", model="m"), {})
    assert caught.value.message == "no API key for p: pass api_key or set A_KEY or B_KEY"
    assert caught.value.status_code == 401


def test_missing_base_names_the_variables() -> None:
    spec = CredentialSpec(api_key_env=("K",), api_base_env=("SOME_BASE",))
    with pytest.raises(
        BadRequestError, match="p needs an api_base: pass api_base or set SOME_BASE"
    ):
        spec.resolve("p", Deployment(provider="p", model="m"), {"K": "k"})


def test_self_hosted_servers_need_no_key() -> None:
    spec = CredentialSpec(
        api_key_env=("K",),
        default_api_base="https://api.example.com",
        key_optional_with_custom_base=True,
    )
    custom = Deployment(provider="p", model="m", api_base="http://127.0.0.1:8000/v1")
    assert spec.resolve("p", custom, {}).api_key is None
    with pytest.raises(AuthenticationError):
        spec.resolve("p", Deployment(provider="p", model="m"), {})
