"""Gateways as separate `prismgate serve` processes (several instances on one database),
and fresh databases for them: a SQLite file, or a new database on the real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port() -> int:
    """A loopback port nothing listens on now, for a server started next.

    Between this check and the server's own bind, another pytest-xdist worker could be
    handed the same port for its server: each worker takes only its own share of ports,
    so two workers never share one. (Shares by `port // 2`: Linux hands out odd ports to
    `bind(0)` first, so the port's own parity would leave a worker waiting.)"""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    for _ in range(1000):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if (port // 2) % workers == worker % workers:
            return port
    return port  # never seen: the share is about half of the ports handed out


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in `folder`, or a database made on the
    PostgreSQL at 127.0.0.1:5432 and dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'prismgate.db'}"
        return
    name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class GatewayProcess:
    """`prismgate serve` for `config` in its own process, on a free loopback port, from
    `folder`: a config written there (with a data folder of its own), or a config file
    served as it is (its data folder is then `folder`'s `prismgate-data`, the default)."""

    def __init__(
        self,
        config: dict[str, Any] | Path,
        folder: Path,
        *,
        name: str = "gateway",
        args: tuple[str, ...] = (),
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(config, Path):
            path = config
        else:
            general = config.setdefault("general_settings", {})
            general.setdefault("data_dir", str(folder / f"{name}-data"))
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        command = [sys.executable, "-c", "from prismgate.cli import main; main()", "serve",
                   "--config", str(path), "--port", str(self.port), *args]  # fmt: skip
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                command, cwd=folder, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 30) -> GatewayProcess:
        """Return once the gateway answers its liveness probe."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.base_url + "/health/liveliness", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text()
                    raise RuntimeError(f"the gateway did not start:\n{log}") from None
                time.sleep(0.05)

    def terminate(self) -> None:
        """Send SIGTERM, without waiting."""
        self._process.terminate()

    def signal(self, number: int) -> None:
        """Send the signal `number` (SIGHUP: reload the config)."""
        self._process.send_signal(number)

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has ended (TimeoutExpired after `timeout`)."""
        return self._process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown: queues are flushed), then wait for the exit."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
