"""The harness itself: a served process answers, and its memory and liveness are read."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.security.process import MASTER_KEY, LivenessProbe, ServedProcess


def test_served_process_reports_memory_and_liveness(
    served_process: Callable[..., ServedProcess],
) -> None:
    config = {
        "model_list": [{"model_name": "art", "litellm_params": {"model": "mock/art"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }
    proxy = served_process(config)
    with LivenessProbe(proxy.port) as probe:
        answer = httpx.post(
            f"{proxy.base_url}/v1/images/generations",
            json={"model": "art", "prompt": "an otter"},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    probe.assert_responsive()
    assert 20 < proxy.peak_rss_mb() < 300
