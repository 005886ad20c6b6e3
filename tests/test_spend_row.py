"""The spend log's row of a call, field by field (`spend_row` makes it positionally)."""

from __future__ import annotations

import msgspec

from prismgate.errors import RateLimitError
from prismgate.identity import Principal
from prismgate.observers import CallReport
from prismgate.spend import PROMPT_CHARS, spend_row
from prismgate.storage.records import KeyRecord, SpendRow, TeamRecord
from prismgate.types import ImageGenerationRequest, ImageResponse
from prismgate.types.images import ImageObject, ImageUsage
from prismgate.types.meta import CallMeta

KEY = KeyRecord(token="d" * 64, key_name="sk-...wxyz", key_alias="otters", user_id="u-1")
TEAM = TeamRecord(team_id="t-1")
CALLER = Principal(role="key", scope="d" * 64, key=KEY, team=TEAM)
REQUEST = ImageGenerationRequest(
    prompt="an otter " * 40, model="otters", size="1024x1536", quality="high", user="end-7"
)


def test_a_served_call_fills_every_field_of_its_row() -> None:
    meta = CallMeta(
        provider="openai",
        model="gpt-image-1",
        model_group="otters",
        api_base="https://api.openai.com/v1",
        response_cost=0.25,
        adjusted=("size",),
        attempts=("otters@model_list[0]=429", "otters@model_list[1]=200"),
        cache_status="MISS",
    )
    value = ImageResponse(
        created=1,
        data=[ImageObject(url="https://x/1.png"), ImageObject(url="https://x/2.png")],
        usage=ImageUsage(input_tokens=11, output_tokens=22, total_tokens=33),
    )
    report = CallReport(
        request_id="req-1",
        operation="image_generation",
        model="otters",
        request=REQUEST,
        principal=CALLER,
        started_at=1_000.0,
        latency=2.5,
        value=value,
        meta=meta,
        failure=None,
        trace_id="trace-1",
        metadata={"run": "7"},
    )

    row = msgspec.structs.asdict(spend_row(report))

    assert (
        row
        == {
            **msgspec.structs.asdict(SpendRow("", 0.0, 0.0, "", 0)),  # the defaults, then:
            "request_id": "req-1",
            "started_at": 1_000.0,
            "ended_at": 1_002.5,
            "call_type": "image_generation",
            "status_code": 200,
            "token": "d" * 64,
            "key_alias": "otters",
            "team_id": "t-1",
            "user_id": "u-1",
            "end_user": "end-7",
            "model": "otters",
            "model_group": "otters",
            "deployment": "openai/gpt-image-1",
            "provider": "openai",
            "api_base": "https://api.openai.com/v1",
            "images": 2,
            "image_size": "1024x1536",
            "image_quality": "high",
            "prompt_tokens": 11,
            "completion_tokens": 22,
            "total_tokens": 33,
            "spend": 250_000_000,
            "cache_status": "MISS",
            "latency_ms": 2_500.0,
            "upstream_ms": 0.0,  # no proxy request around it
            "attempts": ("otters@model_list[0]=429", "otters@model_list[1]=200"),
            "adjustments": ("size",),
            "trace_id": "trace-1",
            "metadata": {"run": "7"},
            "prompt": REQUEST.prompt[:PROMPT_CHARS],
            "error": None,
        }
    )


def test_a_failed_call_keeps_its_error_and_no_prompt_when_prompts_are_off() -> None:
    failure = RateLimitError("slow down", provider="openai")
    failure.attempts = ("otters@model_list[0]=429",)
    report = CallReport(
        request_id="req-2",
        operation="image_generation",
        model="otters",
        request=REQUEST,
        principal=Principal(role="open", scope="anonymous"),
        started_at=5.0,
        latency=0.5,
        value=None,
        meta=None,
        failure=failure,
    )

    row = spend_row(report, keep_prompt=False)

    assert (row.status_code, row.error, row.attempts) == (
        429,
        failure.code or "RateLimitError",
        ("otters@model_list[0]=429",),
    )
    assert (row.token, row.key_alias, row.team_id, row.user_id) == (None, None, None, None)
    assert (row.model, row.model_group, row.deployment, row.spend) == ("otters", None, None, 0)
    assert (row.end_user, row.image_size, row.image_quality) == ("end-7", "1024x1536", "high")
    assert row.prompt is None
    assert row.ended_at == 5.5
