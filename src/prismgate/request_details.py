"""What the console shows of one call: the request as received, each request sent
upstream, and the answer, with every image replaced by a short description
(`<png 1024x1024, 1.2 MB>`), and the images worth keeping picked out.

Everything here is plain CPU work on data the call already holds (JSON and multipart
bodies parsed, base64 decoded), run in a worker thread after the answer was sent
(call_records.py), never on the request path. What it writes is safe to show an admin:

- no image bytes and no base64: a data URL, a base64 string or raw bytes become their
  description (format and size read from the header, never decoded as an image);
- no credential: headers are never kept (only the body's content type); URLs, and every
  string of a body, pass through the call's `Redactor` (known secrets and anything shaped
  like one), and values under credential-like field names are replaced whole;
- no prompt when prompts are not kept (`store_prompts_in_spend_logs: false`): the prompt,
  the chat's texts, and any upstream string containing one of them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from prismgate.media.formats import sniff_image_type
from prismgate.media.headers import read_dimensions
from prismgate.media.links import FILES_PATH, is_image_name
from prismgate.observability.redaction import REDACTED, Redactor
from prismgate.providers import provider_settings
from prismgate.transport import UpstreamRequest
from prismgate.types import ImageResponse, InputImage
from prismgate.types.chat import ChatCompletion, ChatCompletionRequest

__all__ = [
    "MAX_SENT",
    "PROMPT_NOT_KEPT",
    "ImageToKeep",
    "Sent",
    "decoded_answer",
    "describe_answer",
    "describe_bytes",
    "describe_error",
    "describe_request",
    "describe_sent",
    "images_in",
]

PROMPT_NOT_KEPT = "<prompt not kept>"
_MAX_TEXT = 4000  # characters kept of any one string
_MAX_ITEMS = 100  # items kept of any one list
MAX_SENT = 20  # upstream requests noted and described per call
# A string this long made only of base64's alphabet is data, not text.
_BASE64_MIN = 256
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\r\n]+={0,2}")
# How images start in base64 (PNG, JPEG, GIF, WebP): small ones are data too.
_IMAGE_HEADS = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")
# Enough base64 to read any header's size (a JPEG's may follow 64 KB of EXIF), and enough
# for a PNG's, GIF's or WebP's (in their first 30 bytes).
_HEAD_CHARS = 96 * 1024
_SHORT_HEAD_CHARS = 64
# Base64 characters decoded at once (a multiple of 4): well under a millisecond.
_DECODE_CHUNK = 64 * 1024
# What of a long string is checked for base64's alphabet (a regex over megabytes would
# hold the GIL for tens of milliseconds).
_SAMPLE = 4096
# A form's boundary, quoted or not (RFC 2046: at most 70 characters).
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
# A form part's name and filename, quoted (with \" inside) or bare.
_PARAM = re.compile(r'\b(name|filename)=(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.IGNORECASE)
# A part's headers are a few short lines: past this before the blank line, not a form.
_MAX_PART_HEADERS = 8 * 1024
# Enough of an image file to read its size (a JPEG's may follow its EXIF).
_HEAD_BYTES = 128 * 1024
# Field names whose values are credentials, whatever they hold; with them, every setting
# a provider declares secret (`_is_secret_field`).
_CREDENTIAL_FIELDS = frozenset(
    (
        *("api_key", "api-key", "apikey", "x-api-key", "key", "authorization"),
        *("secret", "client_secret", "password", "private_key", "credentials"),
        *("token", "access_token", "refresh_token"),
    )
)


@functools.cache
def _secret_fields() -> frozenset[str]:
    # Made at first use: it imports every provider, which a gateway that keeps no
    # details never needs.
    declared = {name.lower() for name, setting in provider_settings().items() if setting.secret}
    return _CREDENTIAL_FIELDS | declared


def _is_secret_field(name: str) -> bool:
    return name.lower() in _secret_fields()


@dataclass(slots=True)
class Sent:
    """One request sent upstream during a call, as the recording transport saw it: the
    request itself (read only later, off the request path) and how it went."""

    attempt: str | None  # the target it was sent for (`<group>@model_list[0]`)
    request: UpstreamRequest
    redact: Redactor  # the call's: the config's secrets and the caller's own
    status: int | None = None
    error: str | None = None  # the failure's type, when no answer came
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ImageToKeep:
    """An image of the call worth keeping: its bytes, or the name it is stored under."""

    role: str  # output, input or mask
    index: int
    data: bytes | None = None
    media_type: str = "image/png"
    stored_name: str | None = None  # in the image store already (a `url` answer's link)


@dataclass(slots=True)
class _Cleaning:
    """How strings are cleaned: the call's redactor, and the prompts to leave out."""

    redact: Redactor
    prompts: tuple[str, ...] = ()


def describe_bytes(data: bytes, media_type: str | None = None) -> str:
    """`<png 1024x1024, 1.2 MB>`: an image's format and size from its header, and its
    length; other bytes by their type and length."""
    return _described(data, len(data), media_type)


def _described(head: bytes, length: int, media_type: str | None) -> str:
    """`length` bytes that begin with `head`, described as `describe_bytes` does."""
    found = read_dimensions(head)
    if found is not None:
        kind = found.media_type.rpartition("/")[2]
        return f"<{kind} {found.width}x{found.height}, {_amount(length)}>"
    kind = (sniff_image_type(head[:16]) or media_type or "bytes").rpartition("/")[2]
    return f"<{kind}, {_amount(length)}>"


def _describe_base64(text: str, media_type: str | None = None) -> str:
    # A PNG, GIF or WebP states its size in its first bytes; only a JPEG's may come after
    # its EXIF, so only then is more decoded.
    prefix = _decoded_head(text, _SHORT_HEAD_CHARS)
    found = read_dimensions(prefix)
    if found is None and prefix.startswith(b"\xff\xd8") and len(text) > _SHORT_HEAD_CHARS:
        prefix = _decoded_head(text, _HEAD_CHARS)
        found = read_dimensions(prefix)
    length = len(text) * 3 // 4 - text[-2:].count("=")
    if found is not None:
        kind = found.media_type.rpartition("/")[2]
        return f"<{kind} {found.width}x{found.height}, {_amount(length)}>"
    kind = (sniff_image_type(prefix[:16]) or media_type or "base64 data").rpartition("/")[2]
    return f"<{kind}, {_amount(length)}>"


def _decoded_head(text: str, chars: int) -> bytes:
    """The bytes the first `chars` characters of base64 `text` hold (b"" if not base64)."""
    head = text[:chars].replace("\n", "").replace("\r", "")
    head = head[: len(head) - len(head) % 4]
    try:
        urlsafe = "-" in head or "_" in head
        return base64.urlsafe_b64decode(head) if urlsafe else base64.b64decode(head)
    except (binascii.Error, ValueError):
        return b""


def _amount(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _prompts_of(request: msgspec.Struct) -> tuple[str, ...]:
    """The texts of a request that are prompts: `prompt`, `negative_prompt`, and a chat's
    text parts and text messages."""
    found = [getattr(request, "prompt", None), getattr(request, "negative_prompt", None)]
    if isinstance(request, ChatCompletionRequest):
        for message in request.messages:
            if isinstance(message.content, str):
                found.append(message.content)
            elif message.content is not None:
                found.extend(getattr(part, "text", None) for part in message.content)
    return tuple(text for text in found if isinstance(text, str) and text.strip())


def _clean(value: Any, cleaning: _Cleaning, depth: int = 0) -> Any:
    """`value` (JSON-like) with images described, secrets redacted, prompts withheld."""
    if depth > 32:
        return "<nested too deep>"
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, bytes):  # an InputImage, as msgspec.to_builtins left it
            return describe_bytes(data, value.get("media_type"))
        return {
            str(key): REDACTED
            if item and _is_secret_field(str(key))
            else _clean(item, cleaning, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        cleaned = [_clean(item, cleaning, depth + 1) for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            cleaned.append(f"<{len(value) - _MAX_ITEMS} more>")
        return cleaned
    if isinstance(value, bytes):
        return describe_bytes(value)
    if isinstance(value, str):
        return _clean_text(value, cleaning)
    return value


def _clean_text(text: str, cleaning: _Cleaning) -> str:
    if text.startswith("data:") and ";base64," in text[:100]:
        header, _, payload = text.partition(",")
        return _describe_base64(payload, header[5:].partition(";")[0] or None)
    looks_like_data = len(text) >= _BASE64_MIN or text.startswith(_IMAGE_HEADS)
    if looks_like_data and len(text) >= 16 and _BASE64.fullmatch(text[:_SAMPLE]):
        return _describe_base64(text)
    if any(prompt in text for prompt in cleaning.prompts):
        return PROMPT_NOT_KEPT
    text = cleaning.redact(text)
    if len(text) > _MAX_TEXT:
        return f"{text[:_MAX_TEXT]}… (+{len(text) - _MAX_TEXT} characters)"
    return text


def describe_request(request: msgspec.Struct, redact: Redactor, *, keep_prompts: bool) -> Any:
    """The request as it was decoded, images described."""
    cleaning = _Cleaning(redact, () if keep_prompts else _prompts_of(request))
    return _clean(msgspec.to_builtins(request, builtin_types=(bytes,)), cleaning)


def describe_error(
    message: str, request: msgspec.Struct, redact: Redactor, *, keep_prompts: bool
) -> str:
    """A failure's message as the caller was told it, cleaned like any other string (a
    provider's refusal may quote the prompt)."""
    cleaning = _Cleaning(redact, () if keep_prompts else _prompts_of(request))
    return _clean_text(message[:_MAX_TEXT], cleaning)


def describe_sent(
    sent: Sequence[Sent], request: msgspec.Struct, *, keep_prompts: bool
) -> list[dict[str, Any]]:
    """Each request sent upstream: its target, method, URL (redacted, without any
    `user:password@`), status, seconds, and its body parsed and cleaned. No header is
    kept but the body's content type."""
    prompts = () if keep_prompts else _prompts_of(request)
    described = []
    for item in sent[:MAX_SENT]:
        cleaning = _Cleaning(item.redact, prompts)
        upstream = item.request
        content_type = _content_type(upstream)
        described.append(
            {
                "attempt": item.attempt,
                "method": upstream.method,
                "url": item.redact(_without_userinfo(upstream.url)),
                "status": item.status,
                "error": item.error,
                "seconds": None if item.seconds is None else round(item.seconds, 4),
                "content_type": (content_type or "").partition(";")[0] or None,
                "body": _body(upstream.body, content_type, cleaning),
            }
        )
    return described


def _content_type(request: UpstreamRequest) -> str | None:
    for name, value in request.headers.items():
        if name.lower() == "content-type":
            return value
    return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _body(body: bytes | None, content_type: str | None, cleaning: _Cleaning) -> Any:
    if not body:
        return None
    kind = (content_type or "").lower()
    if "json" in kind:
        try:
            return _clean(msgspec.json.decode(body), cleaning)
        except msgspec.DecodeError:
            return f"<not JSON, {_amount(len(body))}>"
    if kind.startswith("multipart/form-data"):
        return _form(body, content_type or "", cleaning)
    return describe_bytes(body, kind or None)


def _form(body: bytes, content_type: str, cleaning: _Cleaning) -> Any:
    """A multipart body as its parts: text fields as values, files described from their
    first bytes. Only the delimiters and the parts' headers are looked for (`bytes.find`,
    in C): an edit's 12 MB image is never parsed, decoded or copied."""
    unreadable = f"<a form that could not be read, {_amount(len(body))}>"
    found = _BOUNDARY.search(content_type)
    if found is None:
        return unreadable
    delimiter = b"\r\n--" + (found[1] or found[2]).encode("latin-1")
    first = body.find(delimiter[2:])  # the first delimiter opens the body: no CRLF before
    if first < 0:
        return unreadable
    position = first + len(delimiter) - 2
    parts: list[dict[str, Any]] = []
    while not body.startswith(b"--", position):  # the closing delimiter ends with "--"
        if not body.startswith(b"\r\n", position):
            return unreadable
        head_end = body.find(b"\r\n\r\n", position, position + _MAX_PART_HEADERS)
        value_end = -1 if head_end < 0 else body.find(delimiter, head_end + 4)
        if value_end < 0:
            return unreadable
        if len(parts) < _MAX_ITEMS:
            headers = body[position + 2 : head_end]
            parts.append(_part(body, headers, head_end + 4, value_end, cleaning))
        position = value_end + len(delimiter)
    return {"form": parts}


def _part(body: bytes, headers: bytes, start: int, end: int, cleaning: _Cleaning) -> dict[str, Any]:
    """One part of a form, from its headers and where its value lies in `body`."""
    params: dict[str, str] = {}
    kind = "text/plain"
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        field, _, value = line.partition(":")
        field = field.strip().lower()
        if field == "content-disposition":
            params = {
                key.lower(): quoted.replace('\\"', '"') if quoted else bare
                for key, quoted, bare in _PARAM.findall(value)
            }
        elif field == "content-type":
            kind = value.partition(";")[0].strip().lower() or kind
    name = params.get("name")
    if "filename" in params or kind != "text/plain":
        head = body[start : min(end, start + _HEAD_BYTES)]
        described: Any = _described(head, end - start, kind)
    elif name is not None and end > start and _is_secret_field(name):
        described = REDACTED
    else:
        described = _clean_text(body[start:end].decode("utf-8", "replace"), cleaning)
    return {"name": name, "value": described}


def describe_answer(value: Any, *, keep_prompts: bool) -> Any:
    """The answer, images described: an image answer's images and revised prompts, or a
    chat's messages (their text only when prompts are kept)."""
    if isinstance(value, ImageResponse):
        answer = decoded_answer(value)
        return {
            "created": answer.created,
            "images": [
                {
                    "image": _image_answer(image.b64_json, image.url),
                    "revised_prompt": image.revised_prompt if keep_prompts else None,
                }
                for image in answer.data
            ],
            "size": answer.size,
            "quality": answer.quality,
            "output_format": answer.output_format,
            "filtered": len(value.filtered),
        }
    if isinstance(value, ChatCompletion):
        cleaning = _Cleaning(Redactor())
        return {
            "id": value.id,
            "model": value.model,
            "choices": [
                {
                    "content": _clean_text(choice.message.content or "", cleaning)
                    if keep_prompts
                    else PROMPT_NOT_KEPT,
                    "finish_reason": choice.finish_reason,
                }
                for choice in value.choices
            ],
        }
    return None if value is None else "<a streamed answer>"


def _image_answer(b64: str | None, url: str | None) -> str:
    if b64 is not None:
        return _describe_base64(b64)
    if url is None:
        return "<no image>"
    if url.startswith("data:"):
        return _clean_text(url, _Cleaning(Redactor()))
    if (name := _stored_name(url)) is not None:
        return f"<a link to the stored image {name}>"
    return "<the provider's link>"


def decoded_answer(value: ImageResponse) -> ImageResponse:
    """An image answer with its images: a relayed answer's are read from its body."""
    body = value.relayed_body
    if body is None:
        return value
    decoded = msgspec.json.decode(body, type=ImageResponse)
    decoded.filtered = value.filtered
    return decoded


def _stored_name(url: str) -> str | None:
    """The image store's name in one of the gateway's own signed links."""
    path = urlsplit(url).path
    if FILES_PATH not in path:
        return None
    name = path.rpartition(FILES_PATH)[2]
    return name if is_image_name(name) else None


def images_in(request: msgspec.Struct, value: Any) -> list[ImageToKeep]:
    """The images of a call worth keeping: the answer's (bytes, or the name a `url`
    answer's link names), an edit's or variation's inputs and mask, a chat's inline
    images. A provider's own link is not fetched: there is nothing of it to keep."""
    found: list[ImageToKeep] = []
    if isinstance(value, ImageResponse):
        for index, image in enumerate(decoded_answer(value).data):
            kept = _answered(index, image.b64_json, image.url)
            if kept is not None:
                found.append(kept)
    inputs = getattr(request, "image", None)
    for index, image in enumerate(inputs if isinstance(inputs, list) else [inputs]):
        if isinstance(image, InputImage):
            found.append(ImageToKeep("input", index, image.data, image.media_type))
    mask = getattr(request, "mask", None)
    if isinstance(mask, InputImage):
        found.append(ImageToKeep("mask", 0, mask.data, mask.media_type))
    if isinstance(request, ChatCompletionRequest):
        found.extend(_chat_images(request))
    return found


def _answered(index: int, b64: str | None, url: str | None) -> ImageToKeep | None:
    if b64 is not None:
        return _from_base64("output", index, b64)
    if url is None:
        return None
    if url.startswith("data:"):
        return _from_base64("output", index, url.partition(",")[2])
    name = _stored_name(url)
    return None if name is None else ImageToKeep("output", index, stored_name=name)


def _from_base64(role: str, index: int, b64: str) -> ImageToKeep | None:
    try:
        data = _decoded(b64)
    except (binascii.Error, ValueError):
        return None
    media_type = sniff_image_type(data[:16])
    return None if media_type is None else ImageToKeep(role, index, data, media_type)


def _decoded(b64: str) -> bytes:
    """Base64 decoded a slice at a time: decoding holds the GIL, and one 4 MB image at
    once would stall the event loop (measured: 26 ms) while this thread works."""
    if "\n" in b64[:_DECODE_CHUNK] or "\r" in b64[:_DECODE_CHUNK]:
        return base64.b64decode(b64)  # wrapped lines: slices would not fall on quads
    return b"".join(
        base64.b64decode(b64[start : start + _DECODE_CHUNK])
        for start in range(0, len(b64), _DECODE_CHUNK)
    )


def _chat_images(request: ChatCompletionRequest) -> list[ImageToKeep]:
    found: list[ImageToKeep] = []
    for message in request.messages:
        if not isinstance(message.content, list):
            continue
        for part in message.content:
            image_url = getattr(part, "image_url", None)
            url = getattr(image_url, "url", image_url)
            if isinstance(url, str) and url.startswith("data:"):
                kept = _from_base64("input", len(found), url.partition(",")[2])
                if kept is not None:
                    found.append(kept)
    return found
