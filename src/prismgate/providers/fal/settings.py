"""How a fal deployment is reached: its queue host, or the synchronous one."""

from __future__ import annotations

from typing import Annotated

from prismgate.providers.base import ProviderSettings, Setting

__all__ = ["QUEUE_BASE", "SYNC_BASE", "FalSettings"]

# fal's queue (submit, then poll) and its synchronous host (one call that waits).
QUEUE_BASE = "https://queue.fal.run"
SYNC_BASE = "https://fal.run"


class FalSettings(ProviderSettings, frozen=True, kw_only=True):
    """`fal_sync: true` sends each call to fal's synchronous host in one request (for
    fast models such as FLUX.1 [schnell]): no queue, no polling, nothing to cancel. An
    `api_base` of https://fal.run (LiteLLM's default) means the same."""

    fal_sync: Annotated[bool | None, Setting(shown=True)] = None
