"""What describing an edit's multipart body costs the console (request_details.py).

    .venv/bin/python bench/multipart_details_cost.py

Builds the body the gateway sends for an edit with a 12 MB PNG (a 2000x2000 image of
noise, stored without compression) and times `describe_sent` on it: CPU, the median and
the fastest of 5 runs. The parts are found by scanning for the form's delimiters; the
image is described from its first bytes, never parsed.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import time

from PIL import Image

from prismgate.observability.redaction import Redactor
from prismgate.request_details import Sent, describe_sent
from prismgate.transport import UpstreamRequest, multipart_body
from prismgate.types import ImageEditRequest, InputImage


def main() -> None:
    noise = Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG", compress_level=0)
    image = InputImage(data=out.getvalue(), media_type="image/png")
    fields = [("model", "gpt-image-1"), ("prompt", "add a hat"), ("image[]", image)]
    body, content_type = asyncio.run(multipart_body(fields))
    upstream = UpstreamRequest(
        method="POST",
        url="https://api.openai.com/v1/images/edits",
        provider="openai",
        headers={"Content-Type": content_type},
        body=body,
    )
    sent = Sent("edits@model_list[0]", upstream, Redactor())
    request = ImageEditRequest(prompt="add a hat", image=[image])
    times = []
    for _ in range(5):
        began = time.process_time()
        [described] = describe_sent([sent], request, keep_prompts=True)
        times.append(time.process_time() - began)
    print(f"a {len(body) / 1e6:.1f} MB edit: {described['body']}")  # noqa: T201
    print(  # noqa: T201
        f"describe_sent: {statistics.median(times) * 1000:.2f} ms CPU (median), "
        f"{min(times) * 1000:.2f} ms (fastest)"
    )


if __name__ == "__main__":
    main()
