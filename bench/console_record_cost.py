"""What the console's records (general_settings.console, on by default) cost per call:
a microbenchmark.

    .venv/bin/python bench/console_record_cost.py

Runs image generations through the SDK gateway and a spend recorder, in one process,
against a canned OpenAI answer (a different 64x64 PNG each call, ~12 KB, as base64: a
small image answer) with the console keeping everything, then keeping nothing. Each run
makes CALLS calls one after another and then closes the recorder, which waits for every
record to be finished (images decoded and written to a temporary image store, details
described). Calls run back to back (the keeper's threads then contend with the event
loop for the GIL), then PAUSE apart (the records are finished between calls, as at any
rate short of a burst). Prints, for the fastest of RUNS runs, the CPU per call of the
whole process (the event loop and the keeper's threads) and the wall time each call took
as the caller saw it (the record's work is done after the answer), and the difference
between on and off. The spend log discards its rows: only the console's share is
measured. Most of the CPU is the kept image's file being written: the file system's cost,
which varies widely between machines.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
from PIL import Image

from prismgate.config import load_config
from prismgate.gateway import CallOptions, Gateway
from prismgate.spend import SpendRecorder
from prismgate.storage import SpendGrouping, SpendQuery, SpendTotal
from prismgate.storage.records import SpendRow
from prismgate.transport import UpstreamRequest, UpstreamResponse, UpstreamStream
from prismgate.types import ImageGenerationRequest

CALLS = 400
RUNS = 3
PAUSE = 0.02  # seconds between calls in the paced runs: a record is finished by then
PACED_CALLS = 100


def noise_png() -> bytes:
    image = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class CannedOpenAI:
    """Answers every request as OpenAI's images API does, a new image each time."""

    def __init__(self, images: Sequence[bytes]) -> None:
        self._bodies = [
            msgspec.json.encode(
                {"created": 1, "data": [{"b64_json": base64.b64encode(i).decode()}]}
            )
            for i in images
        ]
        self._next = 0

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        body = self._bodies[self._next % len(self._bodies)]
        self._next += 1
        return UpstreamResponse(200, {"content-type": "application/json"}, body)

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        raise NotImplementedError


class DiscardedSpendLog:
    """A spend log that drops what it is given (the database is not what is measured)."""

    async def write(self, rows: Sequence[SpendRow]) -> None:
        return None

    async def rows(self, query: SpendQuery) -> list[SpendRow]:
        return []

    async def totals(self, query: SpendQuery, by: SpendGrouping) -> list[SpendTotal]:
        return []

    async def aclose(self) -> None:
        return None


async def one_run(
    keep: bool, images: Sequence[bytes], pause: float, calls: int
) -> tuple[float, float]:
    """(CPU µs per call, wall µs per call as the caller waits), `calls` calls `pause` s
    apart."""
    with tempfile.TemporaryDirectory() as folder:
        config: dict[str, Any] = {
            "model_list": [
                {
                    "model_name": "art",
                    "litellm_params": {"model": "openai/gpt-image-1", "api_key": "sk-bench"},
                }
            ],
            "general_settings": {
                "image_store": {"path": folder},
                "console": {"keep_images": keep, "keep_request_details": keep},
            },
        }
        # Every record finished, however many wait: their whole cost is what is measured.
        recorder = SpendRecorder(
            DiscardedSpendLog(),
            interval=60,
            batch=100_000,
            max_finishing=len(images),
        )
        gateway = Gateway(
            load_config(config, environ={}),
            transport=CannedOpenAI(images),
            observers=(recorder,),
        )
        request = ImageGenerationRequest(prompt="an otter", model="art", size="1024x1024")
        await gateway.image_generation(request)  # warm: imports, first thread
        waited = 0.0
        cpu = time.process_time()
        for n in range(calls):
            began = time.perf_counter()
            await gateway.image_generation(request, CallOptions(request_id=f"r{n}"))
            waited += time.perf_counter() - began
            if pause:
                await asyncio.sleep(pause)  # the record is finished meanwhile
        await recorder.aclose()  # every record finished
        cpu = time.process_time() - cpu
        await gateway.aclose()
    return cpu / calls * 1e6, waited / calls * 1e6


def main() -> None:
    images = [noise_png() for _ in range(CALLS + 1)]
    print(  # noqa: T201
        f"answer: a {len(images[0]) / 1024:.1f} KB PNG, base64 in JSON; {CALLS} calls a run"
    )
    paced = f"{PAUSE * 1000:g} ms apart"
    for pause, calls, how in ((0.0, CALLS, "back to back"), (PAUSE, PACED_CALLS, paced)):
        results: dict[bool, tuple[float, float]] = {}
        for keep in (False, True, False, True):  # interleaved: the machine's drift hits both
            best = min(asyncio.run(one_run(keep, images, pause, calls)) for _ in range(RUNS))
            results[keep] = min(results.get(keep, best), best)
        for keep, (cpu, wall) in results.items():
            label = "on " if keep else "off"
            print(  # noqa: T201
                f"{how}, console {label}: {cpu:7.1f} µs CPU per call (process), "
                f"{wall:7.1f} µs waited per call"
            )
        cpu = results[True][0] - results[False][0]
        wall = results[True][1] - results[False][1]
        print(  # noqa: T201
            f"{how}, console's cost: {cpu:+.1f} µs CPU per call, {wall:+.1f} µs waited"
        )


if __name__ == "__main__":
    main()
