"""The real proxy under uvicorn on a free loopback port, for real clients to talk to.

The `serve` fixture is registered for every test by tests/conftest.py."""

from __future__ import annotations

import resource
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from prismgate.config import load_config
from prismgate.proxy import create_app
from prismgate.proxy.server import ConnectionGuard, GuardedConfig

MASTER_KEY = "sk-master-test-0001"


class RunningProxy:
    """`create_app(config)` served as `prismgate serve` serves it (uvicorn, uvloop, the
    guarded httptools protocol) in a background thread, on a port the OS picked."""

    def __init__(self, raw_config: dict[str, Any], environ: dict[str, str] | None = None) -> None:
        # Each proxy gets its own data folder (its embedded database, and its image store)
        # unless the test names one: nothing is written where the tests run.
        self._data_dir = tempfile.TemporaryDirectory(prefix="prismgate-data-")
        general = dict(raw_config.get("general_settings") or {})
        general.setdefault("data_dir", self._data_dir.name)
        store = dict(general.get("image_store") or {})
        if store.get("type", "local") == "local":
            store.setdefault("path", f"{self._data_dir.name}/images")
            general["image_store"] = store
        raw_config = {**raw_config, "general_settings": general}
        self.config = load_config(raw_config, environ=environ or {})
        app = create_app(self.config)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The same server as `prismgate serve`: uvicorn with prismgate's guarded protocol.
        guard = ConnectionGuard(self.config.general_settings.server, open_file_limit())
        settings = GuardedConfig(
            app, guard=guard, lifespan="on", log_level="warning", loop="uvloop", ws="none"
        )
        self._server = uvicorn.Server(settings)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> RunningProxy:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        self._data_dir.cleanup()


def open_file_limit() -> int:
    """This process's open-file soft limit, left as it is (the tests share the process)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningProxy]]:
    """`serve(config_dict, environ=...)` starts a proxy; all are stopped after the test."""
    started: list[RunningProxy] = []

    def start(raw_config: dict[str, Any], environ: dict[str, str] | None = None) -> RunningProxy:
        proxy = RunningProxy(raw_config, environ).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def model(name: str, model_id: str, **params: Any) -> dict[str, Any]:
    """One model_list entry."""
    entry: dict[str, Any] = {"model_name": name, "litellm_params": {"model": model_id, **params}}
    if "model_info" in params:
        entry["model_info"] = entry["litellm_params"].pop("model_info")
    return entry
