from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prismgate.observability.redaction import REDACTED, Redactor

secrets = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=40
)


@given(st.text(max_size=50), secrets, st.text(max_size=50))
def test_known_secrets_never_survive(before: str, secret: str, after: str) -> None:
    assert secret not in Redactor([secret])(before + secret + after)


def test_credential_shapes_are_removed_whoever_owns_them() -> None:
    redact = Redactor()
    text = (
        "Incorrect API key provided: sk-proj-abcdefghijklmnop. "
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig "
        "aws AKIAABCDEFGHIJKLMNOP google AIzaSyA-1234567890abcdefghijklmnopqrstu "
        "url https://x.example/v1?key=topsecret&x=1"
    )
    out = redact(text)
    for leaked in ("sk-proj-abcdefghijklmnop", "eyJhbGciOiJIUzI1NiJ9", "AKIAABCDEFGHIJKLMNOP",
                   "AIzaSyA-1234567890", "topsecret"):  # fmt: skip
        assert leaked not in out
    assert "Bearer " + REDACTED in out
    assert "?key=" + REDACTED in out


def test_ordinary_text_is_untouched() -> None:
    text = "size '512x512' is not available for dall-e-3; it accepts 1024x1024"
    assert Redactor(["sk-secret-1"])(text) == text


def test_including_adds_a_caller_key() -> None:
    assert "caller-key-123" not in Redactor().including("caller-key-123")("bad caller-key-123")
