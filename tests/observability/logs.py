"""Reading the access log: of a proxy in this process (its handler on a string buffer), and
of `prismgate serve` in its own process (its stdout in a file)."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from prismgate.observability.access_log import AccessLogHandler
from tests.processes import free_port

ACCESS = logging.getLogger("prismgate.access")


class CapturedLines:
    """The access log of the proxies created while it is installed (see `captured`)."""

    def __init__(self, stream: io.StringIO, *, json_lines: bool) -> None:
        self._stream = stream
        self._json = json_lines

    def text(self) -> str:
        return self._stream.getvalue()

    def raw(self, count: int, timeout: float = 5.0) -> list[str]:
        """At least `count` lines, waiting for the access log's batch to be written."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.text().splitlines()
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def json(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        assert self._json
        return [json.loads(line) for line in self.raw(count, timeout)]


@contextmanager
def captured(*, json_lines: bool = True, level: int = logging.INFO) -> Iterator[CapturedLines]:
    """The access log's handler, as `prismgate serve` installs it, writing to a buffer."""
    stream = io.StringIO()
    handler = AccessLogHandler(stream, json=json_lines)
    saved = ACCESS.level, ACCESS.propagate
    ACCESS.addHandler(handler)
    ACCESS.setLevel(level)
    ACCESS.propagate = False
    try:
        yield CapturedLines(stream, json_lines=json_lines)
    finally:
        ACCESS.removeHandler(handler)
        ACCESS.setLevel(saved[0])
        ACCESS.propagate = saved[1]


class ServeProcess:
    """`prismgate serve --config <config> <args>` on a free loopback port; its stdout (the
    access log) and stderr in files."""

    def __init__(self, config: dict[str, Any], folder: Path, *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config.setdefault("general_settings", {}).setdefault("data_dir", str(folder / "data"))
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stdout = folder / "stdout.log"
        self.stderr = folder / "stderr.log"
        command = [sys.executable, "-c", "from prismgate.cli import main; main()", "serve",
                   "--config", str(path), "--port", str(self.port), *args]  # fmt: skip
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self._process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=err)

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        """Return once it answers and has said so (`listening on`: with several workers,
        a SIGTERM before that is a failed start)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.base_url + "/health/liveliness", timeout=1).raise_for_status()
                if "listening on" in self.stdout.read_text():
                    return self
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{self.stderr.read_text()}")
            time.sleep(0.05)

    def stop(self) -> bool:
        """SIGTERM, then whether it shut down gracefully: uvicorn raises the signal again
        once it has, so the exit status is SIGTERM's (or 0)."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode in (0, -signal.SIGTERM)

    def access_lines(self) -> list[dict[str, Any]]:
        """The JSON access-log lines written so far (`--log-format json`)."""
        lines = self.stdout.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for_lines(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(lines := self.access_lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines
