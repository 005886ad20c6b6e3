"""What the console keeps of a call's bodies (request_details.py): images described and
never kept as bytes, credentials never kept, prompts left out when asked, and the images
worth keeping found wherever the call held them."""

from __future__ import annotations

import base64
import io
import json

import msgspec
from PIL import Image

from prismgate.observability.redaction import Redactor
from prismgate.request_details import (
    PROMPT_NOT_KEPT,
    Sent,
    describe_answer,
    describe_bytes,
    describe_request,
    describe_sent,
    images_in,
)
from prismgate.transport import UpstreamRequest, multipart_body
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageObject,
    ImageResponse,
    InputImage,
)
from prismgate.types.chat import ChatCompletionRequest

SECRET = "sk-config-secret-000111"


def picture(width: int, height: int, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 200)).save(out, kind)
    return out.getvalue()


def sent(body: bytes | None, content_type: str, url: str = "https://api.example.com/v1/x") -> Sent:
    request = UpstreamRequest(
        method="POST",
        url=url,
        provider="openai",
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": content_type},
        body=body,
    )
    return Sent("g@model_list[0]", request, Redactor([SECRET]), status=200, seconds=0.25)


def test_bytes_are_described_by_their_header_never_kept() -> None:
    assert describe_bytes(picture(1024, 768)).startswith("<png 1024x768, ")
    assert describe_bytes(picture(40, 20, "JPEG")).startswith("<jpeg 40x20, ")
    assert describe_bytes(b"\x00" * 3000, "application/pdf") == "<pdf, 2.9 KB>"
    # As base64 too: a JPEG states its size after its tables, past a PNG's short header.
    for data, kind in ((picture(640, 480), "png"), (picture(40, 20, "JPEG"), "jpeg")):
        answer = ImageResponse(
            created=1, data=[ImageObject(b64_json=base64.b64encode(data).decode())]
        )
        described = describe_answer(answer, keep_prompts=True)["images"][0]["image"]
        width, height = (640, 480) if kind == "png" else (40, 20)
        assert described.startswith(f"<{kind} {width}x{height}, "), described


def test_upstream_json_bodies_lose_images_secrets_and_headers() -> None:
    png = picture(64, 32)
    body = {
        "prompt": f"a card that reads {SECRET}",
        "image": base64.b64encode(png).decode(),
        "init": "data:image/png;base64," + base64.b64encode(png).decode(),
        "api_key": "anything at all",
        "nested": {"credentials": {"private_key": "x"}, "note": "an otter. " * 500},
        "many": list(range(150)),
        # Settings the providers declare secret (Bedrock's, Vertex AI's): by their names.
        "aws_session_token": "a token the redactor has never seen",
        "vertex_credentials": {"type": "service_account"},
    }
    url = f"https://user:pass@generativelanguage.example.com/v1/m:gen?key={SECRET}&alt=json"
    [item] = describe_sent(
        [sent(msgspec.json.encode(body), "application/json", url)],
        ImageGenerationRequest(prompt="p"),
        keep_prompts=True,
    )
    text = json.dumps(item)
    assert SECRET not in text and "Bearer" not in text and "pass@" not in text
    assert item["url"] == "https://generativelanguage.example.com/v1/m:gen?key=[REDACTED]&alt=json"
    assert item["content_type"] == "application/json" and item["status"] == 200
    described = item["body"]
    assert described["prompt"] == "a card that reads [REDACTED]"
    assert described["image"].startswith("<png 64x32, ")
    assert described["init"].startswith("<png 64x32, ")
    assert described["api_key"] == "[REDACTED]" and described["nested"]["credentials"] == (
        "[REDACTED]"
    )
    assert described["aws_session_token"] == described["vertex_credentials"] == "[REDACTED]"
    assert described["nested"]["note"].endswith("(+1000 characters)")
    assert len(described["many"]) == 101 and described["many"][-1] == "<50 more>"


def test_multipart_bodies_are_parts_with_files_described() -> None:
    boundary = "b0undary"
    png = picture(48, 48)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nadd a hat\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    [item] = describe_sent(
        [sent(body, f"multipart/form-data; boundary={boundary}")],
        ImageGenerationRequest(prompt="add a hat"),
        keep_prompts=True,
    )
    parts = {part["name"]: part["value"] for part in item["body"]["form"]}
    assert parts["prompt"] == "add a hat"
    assert parts["image"] == describe_bytes(png)
    [broken] = describe_sent(
        [sent(b"not a form", "multipart/form-data; boundary=zz")],
        ImageGenerationRequest(prompt="p"),
        keep_prompts=True,
    )
    assert broken["body"] == "<a form that could not be read, 10 bytes>"


async def test_a_form_as_the_gateway_sends_it_is_read_from_its_headers_only() -> None:
    png, jpeg = picture(640, 480), picture(30, 20, "JPEG")
    body, content_type = await multipart_body(
        [
            ("model", "gpt-image-1"),
            ("prompt", "add a hat --and a scarf"),
            ("image[]", InputImage(data=png, media_type="image/png")),
            ("image[]", InputImage(data=jpeg, media_type="image/jpeg", filename='my "cat".jpg')),
            ("api_key", "a key the redactor has never seen"),
        ]
    )
    [item] = describe_sent(
        [sent(body, content_type)], ImageGenerationRequest(prompt="p"), keep_prompts=True
    )
    assert item["body"]["form"] == [
        {"name": "model", "value": "gpt-image-1"},
        {"name": "prompt", "value": "add a hat --and a scarf"},
        {"name": "image[]", "value": describe_bytes(png)},
        {"name": "image[]", "value": describe_bytes(jpeg)},
        {"name": "api_key", "value": "[REDACTED]"},
    ]
    # Without the prompt kept, a text part that holds it is withheld.
    [quiet] = describe_sent(
        [sent(body, content_type)],
        ImageGenerationRequest(prompt="add a hat --and a scarf"),
        keep_prompts=False,
    )
    assert quiet["body"]["form"][1]["value"] == PROMPT_NOT_KEPT


def test_forms_written_by_hand_and_broken_forms() -> None:
    png = picture(8, 8)
    quoted = (
        b"preamble\r\n--a:b\r\ncontent-disposition: form-data; name=size\r\n\r\n"
        b'1024x1024\r\n--a:b\r\nContent-Disposition: form-data; name="mask"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--a:b--\r\n"
    )
    [item] = describe_sent(
        [sent(quoted, 'multipart/form-data; boundary="a:b"')],
        ImageGenerationRequest(prompt="p"),
        keep_prompts=True,
    )
    assert item["body"]["form"] == [
        {"name": "size", "value": "1024x1024"},
        {"name": "mask", "value": describe_bytes(png)},
    ]
    broken = {
        "no closing delimiter": b"--zz\r\nContent-Disposition: form-data; name=a\r\n\r\nx",
        "headers that never end": b"--zz\r\n" + b"X-Pad: y\r\n" * 2000 + b"\r\n\r\nx\r\n--zz--",
        "no delimiter at all": b"not a form",
    }
    for why, body in broken.items():
        [item] = describe_sent(
            [sent(body, "multipart/form-data; boundary=zz")],
            ImageGenerationRequest(prompt="p"),
            keep_prompts=True,
        )
        assert item["body"].startswith("<a form that could not be read, "), why
    [unbounded] = describe_sent(
        [sent(b"--zz--", "multipart/form-data")],  # no boundary named
        ImageGenerationRequest(prompt="p"),
        keep_prompts=True,
    )
    assert unbounded["body"] == "<a form that could not be read, 6 bytes>"


def test_prompts_are_left_out_when_they_are_not_kept() -> None:
    request = msgspec.convert(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "my secret plan"}]}],
        },
        ChatCompletionRequest,
    )
    body = msgspec.json.encode({"messages": [{"content": "my secret plan, please"}]})
    described = describe_request(request, Redactor(), keep_prompts=False)
    [item] = describe_sent([sent(body, "application/json")], request, keep_prompts=False)
    assert "secret plan" not in json.dumps([described, item])
    assert described["messages"][0]["content"][0]["text"] == PROMPT_NOT_KEPT
    answer = ImageResponse(created=1, data=[ImageObject(b64_json="AAAA", revised_prompt="x")])
    assert describe_answer(answer, keep_prompts=False)["images"][0]["revised_prompt"] is None


def test_the_images_worth_keeping_are_found_wherever_the_call_held_them() -> None:
    png, jpeg = picture(16, 16), picture(20, 10, "JPEG")
    answer = ImageResponse(
        created=1,
        data=[
            ImageObject(b64_json=base64.b64encode(png).decode()),
            ImageObject(url="data:image/jpeg;base64," + base64.b64encode(jpeg).decode()),
            ImageObject(url="http://gw/v1/images/files/" + "a" * 64 + ".png?expires=1&signature=s"),
            ImageObject(url="https://provider.example.com/img/1.png?sig=abc"),
        ],
    )
    edit = ImageEditRequest(
        prompt="p",
        image=[InputImage(data=jpeg, media_type="image/jpeg")],
        mask=InputImage(data=png, media_type="image/png"),
    )
    found = images_in(edit, answer)
    assert [(i.role, i.index, i.media_type) for i in found] == [
        ("output", 0, "image/png"),
        ("output", 1, "image/jpeg"),
        ("output", 2, "image/png"),
        ("input", 0, "image/jpeg"),
        ("mask", 0, "image/png"),
    ]
    assert found[0].data == png and found[2].stored_name == "a" * 64 + ".png"
    assert found[2].data is None  # stored already: kept by name, not read again
    # A relayed answer holds its images in its body only.
    relayed = ImageResponse(created=1, data=[ImageObject()])
    relayed.relayed_body = msgspec.json.encode(
        {"created": 1, "data": [{"b64_json": base64.b64encode(png).decode()}]}
    )
    [kept] = images_in(ImageGenerationRequest(prompt="p"), relayed)
    assert kept.data == png
    inline = "data:image/png;base64," + base64.b64encode(png).decode()
    chat = msgspec.convert(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                        {"type": "image_url", "image_url": inline},
                    ],
                }
            ],
        },
        ChatCompletionRequest,
    )
    assert [(i.role, i.data) for i in images_in(chat, None)] == [("input", png)]
