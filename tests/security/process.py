"""The real `prismgate serve` in its own process, so that the security suite can measure
what a probe costs the serving process: its peak resident memory (the kernel's VmHWM)
and how long a liveness check waits while the probe runs."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from tests import processes

MASTER_KEY = "sk-master-security-0001"
# The budgets: every probe of the suite stays within them.
MAX_PEAK_RSS_MB = 300.0
MAX_LIVENESS_WAIT_MS = 100.0


def free_port() -> int:
    """A loopback port for a server started next (each xdist worker its own: see
    tests.processes.free_port)."""
    return processes.free_port()


class ServedProcess:
    """`prismgate serve --config <file>` on a free loopback port, as an operator runs it."""

    def __init__(
        self,
        raw_config: dict[str, Any],
        workdir: Path,
        environ: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / f"config-{self.port}.yaml"
        config_path.write_text(yaml.safe_dump(raw_config))
        self.log_path = workdir / f"serve-{self.port}.log"
        command = [
            str(Path(sys.executable).with_name("prismgate")), "serve", "--config",
            str(config_path), "--port", str(self.port), *args,
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), **(environ or {})}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prismgate serve exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"prismgate serve did not start: {self.log()}")

    def log(self) -> str:
        """What the serving process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        """The serving process's peak resident set size since it started (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(row for row in status.splitlines() if row.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def rss_mb(self) -> float:
        """The serving process's resident set size now (VmRSS)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(row for row in status.splitlines() if row.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class LivenessProbe:
    """Asks `/health/liveliness` every few milliseconds on its own connection while a
    probe runs, and keeps the longest wait: what a load balancer's health check would see."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        self._port = port
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.waits_ms: list[float] = []
        self.failures: list[str] = []

    @property
    def worst_ms(self) -> float:
        return max(self.waits_ms, default=0.0)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection.request("GET", "/health/liveliness")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
            self.waits_ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(self._interval)
        connection.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=40)

    def assert_responsive(self) -> None:
        """No liveness check failed or waited longer than the budget."""
        assert not self.failures, self.failures[:5]
        assert self.waits_ms, "the liveness probe never ran"
        assert self.worst_ms <= MAX_LIVENESS_WAIT_MS, (
            f"a liveness check waited {self.worst_ms:.0f} ms (budget {MAX_LIVENESS_WAIT_MS} ms)"
        )
