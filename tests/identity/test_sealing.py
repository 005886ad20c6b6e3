"""Sealing provider keys at rest: what opens, what does not, and why it says so."""

from __future__ import annotations

import pytest

from prismgate.config import load_config
from prismgate.errors import ConfigError
from prismgate.identity.sealing import Sealer, SealError, sealer_from_config

SECRET = "first-encryption-key-0001"
OTHER = "second-encryption-key-0002"
PLAIN = b'{"fields": {"api_key": "sk-provider-secret-0001"}}'


def test_a_sealed_blob_opens_for_its_own_name_and_provider_only() -> None:
    sealer = Sealer([SECRET])
    sealed = sealer.seal(PLAIN, name="openai-prod", provider="openai")
    assert PLAIN not in sealed and b"sk-provider-secret" not in sealed
    assert sealed[0] == 1  # the format's version comes first
    opened = sealer.open(sealed, name="openai-prod", provider="openai")
    assert opened.plaintext == PLAIN and opened.current
    # Sealed twice, never the same bytes (a fresh nonce each time).
    assert sealer.seal(PLAIN, name="openai-prod", provider="openai") != sealed
    for name, provider in (("openai-dev", "openai"), ("openai-prod", "azure")):
        with pytest.raises(SealError, match="altered, or copied from another name"):
            sealer.open(sealed, name=name, provider=provider)


def test_a_changed_byte_or_an_unknown_format_does_not_open() -> None:
    sealer = Sealer([SECRET])
    sealed = bytearray(sealer.seal(PLAIN, name="vk", provider="openai"))
    sealed[-1] ^= 1
    with pytest.raises(SealError, match="altered"):
        sealer.open(bytes(sealed), name="vk", provider="openai")
    with pytest.raises(SealError, match="version 2"):
        sealer.open(b"\x02" + bytes(sealed[1:]), name="vk", provider="openai")
    with pytest.raises(SealError, match="format"):
        sealer.open(b"", name="vk", provider="openai")


def test_older_secrets_open_and_the_first_seals() -> None:
    old = Sealer([SECRET]).seal(PLAIN, name="vk", provider="openai")
    rotated = Sealer([OTHER, SECRET])
    opened = rotated.open(old, name="vk", provider="openai")
    assert opened.plaintext == PLAIN and not opened.current
    resealed = rotated.seal(PLAIN, name="vk", provider="openai")
    assert rotated.open(resealed, name="vk", provider="openai").current
    with pytest.raises(SealError, match=r"general_settings\.encryption_key") as refused:
        Sealer([OTHER]).open(old, name="vk", provider="openai")
    assert SECRET not in str(refused.value) and OTHER not in str(refused.value)


def test_the_secret_comes_from_the_setting_then_the_environment() -> None:
    assert sealer_from_config(load_config({}, environ={})) is None
    sealed = Sealer([SECRET]).seal(PLAIN, name="vk", provider="openai")
    for environ in ({"PRISMGATE_ENCRYPTION_KEY": SECRET}, {"LITELLM_SALT_KEY": SECRET}):
        sealer = sealer_from_config(load_config({}, environ=environ))
        assert sealer is not None
        assert sealer.open(sealed, name="vk", provider="openai").current
    # The setting wins over the environment; `os.environ/NAME` works as for every secret.
    raw = {"general_settings": {"encryption_key": "os.environ/MY_VK_SECRET"}}
    environ = {"MY_VK_SECRET": SECRET, "LITELLM_SALT_KEY": OTHER}
    sealer = sealer_from_config(load_config(raw, environ=environ))
    assert sealer is not None and sealer.open(sealed, name="vk", provider="openai").current
    listed = {"general_settings": {"encryption_key": [OTHER, SECRET]}}
    sealer = sealer_from_config(load_config(listed, environ={}))
    assert sealer is not None
    assert not sealer.open(sealed, name="vk", provider="openai").current


def test_a_short_secret_is_refused_at_startup_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=r"general_settings.encryption_key\[1\]") as refused:
        sealer_from_config(
            load_config({"general_settings": {"encryption_key": [SECRET, "short"]}}, environ={})
        )
    assert "short" not in str(refused.value)
    with pytest.raises(ConfigError, match="LITELLM_SALT_KEY"):
        sealer_from_config(load_config({}, environ={"LITELLM_SALT_KEY": "sk-1234"}))
