"""`CallOptions`: what a call carries besides its OpenAI request (who calls, how it is
routed, what the caller may change), the same for the SDK and the proxy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from prismgate.identity.principal import SDK_CALLER, Principal
from prismgate.providers.jobs import ProgressCallback
from prismgate.routing.deployments import CallerOverrides
from prismgate.routing.plans import Plan
from prismgate.types import PartialImage

__all__ = ["CallOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call settings that are not part of the OpenAI request."""

    overrides: CallerOverrides | None = None
    timeout: float | None = None
    drop_params: bool | None = None
    # Provider-specific parameters, sent in the provider body as given.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Portkey's direct-provider mode: `model` is the provider's own model and only the
    # caller's credentials are used (never the config's, never the environment's).
    direct: bool = False
    # The caller sends the provider's answer on as it is when no change is needed (the
    # proxy); SDK callers always get decoded images.
    relay: bool = False
    # Who is calling: the code holding the gateway, or the proxy's authenticated caller.
    principal: Principal = SDK_CALLER
    # The proxy's request id (observers record it); SDK calls get a fresh one.
    request_id: str | None = None
    # Where this caller reaches the gateway: base64-only images asked for as `url` become
    # signed links under it (the proxy sets it; SDK callers get data URLs).
    image_base_url: str | None = None
    # Recorded with the call (Portkey's x-portkey-trace-id and x-portkey-metadata).
    trace_id: str | None = None
    metadata: Mapping[str, str] | None = None
    # The caller accepts that a call which may have been served is sent again (an
    # `Idempotency-Key`): image generations are then retried after timeouts too.
    idempotency_key: str | None = None
    # Retries for this call, over the config's `num_retries`.
    num_retries: int | None = None
    # A Portkey config: the routing plan for this call (fallback, loadbalance, ...).
    plan: Plan | None = None
    # Refresh the cached answer (x-portkey-cache-force-refresh, Cache-Control: no-cache).
    cache_refresh: bool = False
    # The provider address was chosen by the caller: it is checked when dialled.
    guarded: bool = False
    # A proxy client, not the code holding the gateway: its parameters pass the
    # caller-authority rule and its timeouts are capped by the operator's.
    remote: bool = False
    # The proxy caller's W3C trace context (its `traceparent` header): with tracing on,
    # the caller's span is the call's parent.
    traceparent: str | None = None
    # Told each time a provider's remote job moves (queued, running, progress): the CLI
    # and the console show it. Called on the event loop; it must not block.
    on_progress: ProgressCallback | None = None
    # A streamed image call (prismgate.image_streams): previews are handed to `on_partial`
    # as the provider sends them, up to `partial_images` an image.
    on_partial: Callable[[PartialImage], None] | None = None
    partial_images: int = 0

    @property
    def scope(self) -> str:
        """Who is calling, for caches that must never be shared across callers."""
        return self.principal.scope
