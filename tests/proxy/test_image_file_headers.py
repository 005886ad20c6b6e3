"""The headers a stored image is served with: a browser must take it as the image type
the store recorded, never sniff it into something else (a page, a script)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model


def test_a_linked_image_is_served_as_its_type_only(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(
        {
            "model_list": [model("gpt-image-1", "mock/painter")],
            "general_settings": {"master_key": MASTER_KEY, "image_store": {"path": str(tmp_path)}},
        }
    )
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1", max_retries=0)
    answer = client.images.generate(
        prompt="an otter", model="gpt-image-1", size="64x64", response_format="url"
    )
    assert answer.data is not None and answer.data[0].url is not None
    fetched = httpx.get(answer.data[0].url)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert fetched.headers["cache-control"] == "private, max-age=3600"
