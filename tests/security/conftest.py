"""The security suite: each rule of the security model (README, "Security model") tried
with hostile input against the real proxy. Probes that measure memory or event-loop
blocking use `served_process`: the real `prismgate serve` in its own process, whose peak
RSS is checked against the budget when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.process import MAX_PEAK_RSS_MB, ServedProcess


@pytest.fixture
def served_process(tmp_path: Path) -> Iterator[Callable[..., ServedProcess]]:
    """`served_process(config_dict, environ=..., args=...)` starts `prismgate serve`; when
    the test ends, each process's peak RSS must be within the suite's budget."""
    started: list[ServedProcess] = []

    def start(
        raw_config: dict[str, Any],
        environ: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> ServedProcess:
        process = ServedProcess(raw_config, tmp_path, environ, args)
        started.append(process)
        return process

    yield start
    peaks = {p.port: p.peak_rss_mb() for p in started if p.process.poll() is None}
    for process in started:
        process.stop()
    for port, peak in peaks.items():
        assert peak < MAX_PEAK_RSS_MB, f"serving process :{port} peaked at {peak:.0f} MB"
