"""`POST /config/reload` (admin): the config file loaded again without a restart."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.proxy.auth import require_admin
from prismgate.proxy.reload import ConfigReload
from prismgate.proxy.responses import json_response
from prismgate.proxy.schemas import ConfigReloaded

__all__ = ["reload_config"]


async def reload_config(request: Request) -> Response:
    """Reload the config file (see proxy/reload.py). With several workers the file is
    checked here, then every worker reloads it (202)."""
    require_admin(request)
    reload: ConfigReload = request.app.state.reload
    if reload.supervised:
        config = await reload.check()
        reload.ask_supervisor()
        groups = list(dict.fromkeys(entry.model_name for entry in config.model_list))
        return json_response(ConfigReloaded(status="reloading", models=groups), status=202)
    return json_response(ConfigReloaded(status="reloaded", models=await reload.reload()))
