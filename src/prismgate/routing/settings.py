"""Where shared state lives, as LiteLLM users write it."""

from __future__ import annotations

from prismgate.config import Config

__all__ = ["redis_url_of"]


def redis_url_of(config: Config) -> str | None:
    """The Redis that cooldowns, usage counters and the response cache share:
    `router_settings.redis_url` or `redis_host`/`redis_port`/`redis_password`, else the
    Redis of `litellm_settings.cache_params` (`type: redis`). None: in-process state."""
    from prismgate.storage import redis_url_from

    router = config.router_settings
    found = redis_url_from(
        url=router.redis_url,
        host=router.redis_host,
        port=router.redis_port,
        password=router.redis_password,
    )
    params = config.litellm_settings.cache_params
    if found is None and params.get("type") == "redis":
        found = redis_url_from(
            url=params.get("url") or params.get("redis_url"),
            host=params.get("host"),
            port=int(params["port"]) if params.get("port") else None,
            password=params.get("password"),
        )
    return found
