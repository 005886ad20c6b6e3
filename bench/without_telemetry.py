"""prismgate built without its access log and metrics: bench only, to measure what they
and the traces cost (issue 13). The proxy has no such switch.

    .venv/bin/python bench/without_telemetry.py serve --config bench/.work/prismgate.yaml ...

runs `prismgate` (the same CLI, the same arguments) with `create_app` making the app
without the access log and metrics: the outer middleware (`RequestContext`) given no
telemetry (so no request track either: the HTTP client times nothing), no
`CallCollector` observer. bench's `prismgate-quiet` is served so; `callgrind/harness.py
--telemetry off` builds its app so too.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["drop_collector", "without_telemetry"]


def without_telemetry() -> None:
    """Make `create_app` (and the `serve` workers' `create_app_from_environment`) build
    the app without the access log and metrics, in this process."""
    from prismgate.proxy import app

    bare = app.RequestContext
    app.RequestContext = lambda inner, _telemetry: bare(inner)  # type: ignore[assignment,misc]
    app.CallCollector = _Dropped  # type: ignore[assignment,misc]
    made_from_environment = app.create_app_from_environment

    def create_app_from_environment() -> Any:
        made = made_from_environment()
        drop_collector(made)
        return made

    app.create_app_from_environment = create_app_from_environment


class _Dropped:
    """In the CallCollector's place, taken out of the observers once the app is made."""

    def observe(self, _report: object) -> None:
        raise AssertionError("dropped")


def drop_collector(app: Any) -> None:
    """Take the `_Dropped` observer out of the app's gateway (`create_app` adds it)."""
    while not hasattr(app, "state"):  # the middleware, down to Starlette
        app = app.app
    gateway = app.state.proxy.gateway
    gateway.observers = tuple(o for o in gateway.observers if not isinstance(o, _Dropped))


if __name__ == "__main__":
    without_telemetry()
    from prismgate.cli import main

    sys.exit(main())
