"""Reloading the config without a restart: SIGHUP, or `POST /config/reload` (admin).

The new file is loaded and checked whole first; a config that does not load, or that
changes a setting only a restart applies (`restart_only_changes`), is refused and the
old one stays. Otherwise the gateway and the proxy state are made again for it, sharing
stores, pools, keys and telemetry with the old ones, and swapped in at once: a request
reads the state once, so it runs on one config whole, and calls in flight finish on the
config they started with.

With `serve --workers N` the supervisor passes SIGHUP on to every worker, and the route
asks the supervisor (after checking the file itself), so every worker reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from starlette.datastructures import State

from prismgate.config import SUPERVISOR_PID_VARIABLE, Config, load_config, restart_only_changes
from prismgate.errors import BadRequestError, ConfigError, PrismgateError
from prismgate.gateway import Gateway
from prismgate.proxy.state import ProxyState

__all__ = ["ConfigReload"]

log = logging.getLogger("prismgate.proxy")


class ConfigReload:
    """Reloads `path` into the app whose state is `app_state` (its `proxy`); `on_gateway`
    is told of each new gateway (the telemetry's labels and cooldowns follow it)."""

    def __init__(
        self, app_state: State, path: str | None, on_gateway: Callable[[Gateway], None]
    ) -> None:
        self._app_state = app_state
        self._path = path
        self._on_gateway = on_gateway
        self._lock = asyncio.Lock()
        # A SIGHUP's reload, held while it runs (a task nobody holds may be collected).
        self._pending: asyncio.Task[None] | None = None

    @property
    def supervised(self) -> bool:
        """Whether this worker is one of several under `serve --workers N`."""
        return bool(os.environ.get(SUPERVISOR_PID_VARIABLE))

    async def reload(self) -> list[str]:
        """Load, check and swap in the config file again; its model groups. A
        `BadRequestError` says why a config was refused (the old one stays)."""
        async with self._lock:
            state: ProxyState = self._app_state.proxy
            config, gateway = await self._prepared(state)
            new = state.reconfigured(config, gateway)
            self._on_gateway(gateway)
            self._app_state.proxy = new
        log.warning("config reloaded from %s: model groups %s", self._path, ", ".join(new.groups))
        return new.groups

    async def check(self) -> Config:
        """The config file, loaded and checked as `reload` would, without using it."""
        config, _ = await self._prepared(self._app_state.proxy)
        return config

    def ask_supervisor(self) -> None:
        """SIGHUP to the supervisor, which passes it on to every worker."""
        os.kill(int(os.environ[SUPERVISOR_PID_VARIABLE]), signal.SIGHUP)

    def install(self) -> None:
        """Reload on SIGHUP (a serving worker's main thread only)."""
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_signal)

    def uninstall(self) -> None:
        """Stop reloading on SIGHUP."""
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _on_signal(self) -> None:
        async def reload_and_say() -> None:
            try:
                await self.reload()
            except PrismgateError as refused:
                log.error("SIGHUP: %s", refused.message)

        self._pending = asyncio.get_running_loop().create_task(reload_and_say())

    async def _prepared(self, state: ProxyState) -> tuple[Config, Gateway]:
        """The config file loaded, checked against the running one, and its gateway."""
        if self._path is None:
            raise BadRequestError(
                "this gateway was not started from a config file (prismgate serve --config), "
                "so there is nothing to reload",
                code="no_config_file",
            )
        try:
            config = await asyncio.to_thread(load_config, self._path)
        except ConfigError as error:
            raise _refused(self._path, str(error)) from None
        if changes := restart_only_changes(state.config, config):
            raise BadRequestError(
                f"the config in {self._path} changes {', '.join(changes)}, which take effect "
                "only on a restart; nothing was reloaded, the running config stays",
                code="restart_required",
            )
        try:  # every deployment resolved: what the gateway itself would refuse
            return config, state.gateway.reconfigured(config)
        except ConfigError as error:
            raise _refused(self._path, str(error)) from None


def _refused(path: str, why: str) -> BadRequestError:
    return BadRequestError(
        f"the config in {path} was refused, the running one stays: {why}",
        code="invalid_config",
    )
