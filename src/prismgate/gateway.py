"""The Gateway: one async core behind the SDK and the proxy.

Built once from a `Config`, it holds everything a call needs (catalog, deployments, the
router and its shared state, the HTTP pool, the response cache, the secret redactor) and
no global state. A call goes: model name → the router's plan (a model group's strategy,
retries, cooldowns and fallbacks, or a Portkey config) → for each attempt, one
deployment: the model's rules checked, the cache consulted, provider call(s), fanned out
when the model makes fewer images per call than asked → the answer normalised
(response_format, cost) and cached.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import msgspec

from prismgate.accounting import FirstBounds, candidates, within_budget
from prismgate.authority import CallerAuthority
from prismgate.call_options import CallOptions
from prismgate.call_records import CallRecord
from prismgate.call_reporting import CallReporting
from prismgate.catalog import Catalog, ModelInfo, builtin_catalog
from prismgate.chat_images import image_delivery
from prismgate.config import Config, load_config
from prismgate.config_secrets import config_secrets
from prismgate.cost import chat_cost, image_cost
from prismgate.errors import APIError, BadRequestError, PermissionDeniedError
from prismgate.identity.budgets import Budgets
from prismgate.identity.limits import Limiter, images_asked
from prismgate.image_calls import fan_out, image_operation, run_all, withheld_or_empty
from prismgate.image_delivery import ImageDelivery
from prismgate.image_streams import image_events
from prismgate.media import HostAllowlist
from prismgate.media.decoding import DecodePool
from prismgate.media.fetch import FetchedImage, SafeFetcher
from prismgate.media.inputs import check_input_pixels
from prismgate.media.links import SignedLinks
from prismgate.media.vision import ImageWork, prepare_images
from prismgate.observability.redaction import Redactor
from prismgate.observability.tracing import Tracing
from prismgate.observers import Observer
from prismgate.providers import get_provider
from prismgate.providers.base import (
    ChatCall,
    ChatCompletions,
    Deployment,
    ImageCall,
    Provider,
    ProviderCache,
)
from prismgate.providers.chat_rules import drop_or_refuse
from prismgate.providers.image_rules import accepts, check_image_request
from prismgate.response_cache import ResponseCache, cache_policy
from prismgate.routing.deployments import CallerOverrides, DeploymentResolver
from prismgate.routing.plans import PlanRunner, RunContext, VirtualKeys, with_overrides
from prismgate.routing.router import Router, Target, router_policy
from prismgate.routing.shutdowns import refuse_shut_down
from prismgate.storage import KeyStore, Stores, open_stores
from prismgate.streaming import RelayedStream
from prismgate.transport import HttpTransport, Transport
from prismgate.types import (
    CallMeta,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageRequest,
    ImageResponse,
    ImageStreamEvent,
    ImageVariationRequest,
    Served,
)
from prismgate.types.chat import ChatCompletion, ChatCompletionRequest

if TYPE_CHECKING:
    from prismgate.identity.sealing import Sealer
    from prismgate.identity.virtual_keys import StoredVirtualKeys

__all__ = ["CallOptions", "Gateway"]

DEFAULT_IMAGE_TIMEOUT = 600.0
R = TypeVar("R", ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)
A = TypeVar("A")


class Gateway:
    """Serves OpenAI-shaped calls from any configured provider.

    Use it as an async context manager (or call `aclose()`) to release the HTTP pool.
    `stores` are where it keeps state (routing, cache, images, keys, spend); without them
    it opens the ones the config names and closes them with itself. `direct_models=False`
    serves only the config's model groups (what the proxy does). Each call, served or
    failed, is reported once to every one of `observers`, and to the config's webhook
    callbacks (call_reporting.py). `tracing` replaces the config's (`"otel"` among its
    callbacks): each call is then a span, and each attempt a child span.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        stores: Stores | None = None,
        transport: Transport | None = None,
        catalog: Catalog | None = None,
        direct_models: bool = True,
        observers: Sequence[Observer] = (),
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        self.catalog = catalog if catalog is not None else builtin_catalog()
        self._direct_models = direct_models
        self.deployments = DeploymentResolver(
            self.config, self.catalog, direct_models=direct_models
        )
        # The gateway closes only the pools it made; a transport passed in is the caller's.
        self._own_http: HttpTransport | None = None
        self._guard_pool: HttpTransport | None = None
        if transport is None:
            self._own_http = HttpTransport()
            transport = self._own_http
        self._http: Transport = transport
        self.authority = CallerAuthority.from_providers()
        self._redact = Redactor(config_secrets(self.config))
        self.fetcher = SafeFetcher(self.config.general_settings.media)
        # Image decoding and resizing run here, off the event loop, within a pixel budget.
        self.image_pool = DecodePool(self.config.general_settings.media.max_image_pixels)
        # The gateway closes only the stores it opened; stores passed in are the caller's.
        self._own_stores = stores is None
        self.stores = stores if stores is not None else open_stores(self.config)
        self.image_store = self.stores.images
        self.delivery = ImageDelivery(
            public_base_url=self.config.general_settings.image_store.public_base_url,
            store=self.image_store,
            links=lambda: self.stores.answer_links or self.image_links,
            fetcher=self.fetcher,
        )
        # Observers, webhooks, traces and the console's records of calls.
        self.reporting = CallReporting(
            self.config, self.image_store, self._redact, observers=observers, tracing=tracing
        )
        self.tracing = self.reporting.tracing
        # Each upstream request carries the trace context of its attempt's span.
        self._upstream = self.reporting.upstream(transport)
        self.provider_cache = ProviderCache()
        # Calls by generated keys hold their price against the keys' budgets first.
        self.budgets = Budgets(self.stores.keys) if self.stores.keys is not None else None
        # Image calls' first price bounds, kept by model name and shape (accounting.py).
        self._first_bounds = FirstBounds()
        # Callers' rpm, tpm, ipm and parallel limits, shared through the limit store.
        self.limiter = Limiter(self.stores.limits)
        self.router = Router(
            self.deployments.candidates, router_policy(self.config), self.stores.routing
        )
        self.response_cache = ResponseCache(self.stores.cache, cache_policy(self.config))
        self.plans = PlanRunner(
            self.router, self.deployments, VirtualKeys(self.config), self.authority
        )

    async def __aenter__(self) -> Self:
        return self

    def reconfigured(self, config: Config) -> Gateway:
        """A gateway serving `config`'s model list, routing and cache settings and virtual
        keys, sharing everything else with this one: stores, HTTP pools, observers,
        budgets, limits, the image pool and the redactor (which learns the new keys).

        Calls already running go on with this gateway, so each call sees one config
        whole. `config` may differ only where `restart_only_changes` allows; the caller
        (the proxy) attaches the stored virtual keys again."""
        _ = self.guarded_transport  # made once, shared: no generation leaves a pool open
        new = copy.copy(self)
        new.config = config
        new.deployments = DeploymentResolver(
            config, self.catalog, direct_models=self._direct_models
        )
        new.router = Router(new.deployments.candidates, router_policy(config), self.stores.routing)
        new.response_cache = ResponseCache(self.stores.cache, cache_policy(config))
        new.plans = PlanRunner(new.router, new.deployments, VirtualKeys(config), self.authority)
        self._redact.learn(config_secrets(config))
        return new

    @property
    def observers(self) -> tuple[Observer, ...]:
        """Who is told about every call; set it to add some (a spend recorder among them
        makes the console keep its records, when its config keeps any)."""
        return self.reporting.observers

    @observers.setter
    def observers(self, observers: Sequence[Observer]) -> None:
        self.reporting.observers = observers

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def use_key_store(self, keys: KeyStore) -> None:
        """Hold calls by generated keys against their budgets in `keys` (a store opened
        after this gateway, as the proxy's database is); `release_key_store()` before
        closing it."""
        if self.budgets is not None:
            raise RuntimeError("this gateway holds budgets in a key store already")
        self.budgets = Budgets(keys)

    def use_stored_virtual_keys(self, keys: KeyStore, sealer: Sealer | None) -> StoredVirtualKeys:
        """Resolve the virtual keys an admin stored in `keys` (sealed with `sealer`; a
        store opened after this gateway, as the proxy's database is) after the config's
        own; the service that manages them, for `/v1/virtual-keys`."""
        # Imported on first use: sealing needs cryptography, which `import prismgate` does not.
        from prismgate.identity.virtual_keys import StoredVirtualKeys

        stored = StoredVirtualKeys(keys, sealer, self.plans.virtual_keys)
        self.plans.virtual_keys.attach(stored)
        return stored

    async def release_key_store(self) -> None:
        """Settle every budget hold with the key store, and stop using it."""
        budgets, self.budgets = self.budgets, None
        if budgets is not None:
            await budgets.aclose()

    async def aclose(self) -> None:
        """Release the HTTP pools and stores this gateway made, and the image fetcher's;
        send what the webhook callbacks and the tracing hold."""
        await self.release_key_store()
        await self.reporting.aclose()
        await self.fetcher.aclose()
        self.image_pool.close()
        if self._own_stores:
            await self.stores.aclose()
        if self._guard_pool is not None:
            await self._guard_pool.aclose()
        if self._own_http is not None:
            await self._own_http.aclose()

    @functools.cached_property
    def image_links(self) -> SignedLinks:
        """Signs and checks links to stored images (the key is made on first use)."""
        settings = self.config.general_settings
        key = self.image_store.signing_key(settings.master_key)
        return SignedLinks(key, settings.image_store.url_ttl_seconds)

    @property
    def transport(self) -> Transport:
        """The HTTP pool this gateway sends with."""
        return self._http

    @property
    def redactor(self) -> Redactor:
        """Removes every secret this gateway knows of, and anything shaped like one."""
        return self._redact

    def redact(self, text: str) -> str:
        """`text` without any secret this gateway knows of, or anything shaped like one."""
        return self._redact(text)

    def model_info(self, model: str, custom_llm_provider: str | None = None) -> ModelInfo | None:
        """What is known about `model` as this gateway serves it (catalog + model_info)."""
        overrides = CallerOverrides(custom_llm_provider=custom_llm_provider)
        return self.deployments.resolve(model, overrides).info

    async def image_generation(
        self, request: ImageGenerationRequest, options: CallOptions | None = None
    ) -> Served[ImageResponse]:
        """Generate images. Raises a `PrismgateError` for anything that goes wrong."""
        return await self._images("image_generation", request, options or CallOptions())

    async def image_edit(
        self, request: ImageEditRequest, options: CallOptions | None = None
    ) -> Served[ImageResponse]:
        """Edit images (input images, an optional mask, a prompt), as OpenAI's
        `/v1/images/edits`. Raises a `PrismgateError` for anything that goes wrong."""
        return await self._images("image_edit", request, options or CallOptions())

    def image_stream(
        self,
        request: ImageGenerationRequest | ImageEditRequest,
        options: CallOptions | None = None,
        *,
        partial_images: int = 0,
    ) -> AsyncGenerator[ImageStreamEvent, None]:
        """A generation or an edit as OpenAI's stream events: up to `partial_images`
        previews an image where the provider makes them, then one completed event an
        image (base64, whatever the provider answered with). The same call as
        `image_generation` / `image_edit` in every other respect."""
        operation = "image_edit" if isinstance(request, ImageEditRequest) else "image_generation"
        as_base64 = msgspec.structs.replace(request, response_format="b64_json")
        called = options or CallOptions()

        async def run(streamed: CallOptions) -> Served[ImageResponse]:
            return await self._images(operation, as_base64, streamed)

        async def image_bytes(url: str) -> bytes:
            return await self.delivery.image_bytes(url, called)

        return image_events(
            operation, run, called, partial_images=partial_images, image_bytes=image_bytes
        )

    async def image_variation(
        self, request: ImageVariationRequest, options: CallOptions | None = None
    ) -> Served[ImageResponse]:
        """Variations of one image, as OpenAI's `/v1/images/variations`."""
        return await self._images("image_variation", request, options or CallOptions())

    async def _images(
        self, operation: str, request: ImageRequest, options: CallOptions
    ) -> Served[ImageResponse]:
        """One path for generations, edits and variations: routed (retries, fallbacks),
        each attempt checked against its model's rules, fanned out, delivered in the
        asked format, priced, and cached when caching is on."""
        name = request.model or self.config.general_settings.default_image_model
        record = self.reporting.record_for(options)

        async def attempt(target: Target) -> Served[ImageResponse]:
            with self.reporting.attempt_span(target):
                return await self._image_attempt(request, options, target, name, record)

        async def work() -> Served[ImageResponse]:
            check_input_pixels(request, self.config.general_settings.media.max_image_pixels)
            # Only generations bill for work that may have been done before a lost answer.
            accepted_risk = isinstance(request, ImageGenerationRequest)
            return await self._serve(
                name, request, options, attempt, tokens=_image_tokens, accepted_risk=accepted_risk
            )

        return await self.reporting.run(operation, name, request, options, work=work, record=record)

    async def _serve(
        self,
        name: str,
        request: msgspec.Struct,
        options: CallOptions,
        attempt: Callable[[Target], Awaitable[Served[A]]],
        *,
        tokens: Callable[[A], int],
        accepted_risk: bool = False,
    ) -> Served[A]:
        """Run `attempt` on the targets this call may use: a Portkey config's plan, the
        model group (strategy, retries, cooldowns, fallbacks), or one direct target."""
        principal = options.principal
        if not principal.may_call(name):
            raise PermissionDeniedError(
                f"the key {principal.key_alias} may not call model {name!r}; its models: "
                f"{', '.join(principal.key.models if principal.key else ())}",
                param="model",
                code="key_model_access_denied",
            )
        # The caller's rate limits first: a refusal is a 429 before anything is held.
        async with self.limiter.admit(principal, images=images_asked(request)) as admission:

            def route(attempt: Callable[[Target], Awaitable[Served[A]]]) -> Awaitable[Served[A]]:
                return self._route(
                    name, request, options, attempt, tokens=tokens, accepted_risk=accepted_risk
                )

            served = await within_budget(
                self.budgets,
                principal,
                name,
                request,
                candidates=lambda: candidates(self.deployments, name, options.overrides),
                attempt=attempt,
                route=route,
                # Overrides may name other deployments: their bounds are not kept.
                first_bounds=self._first_bounds if options.overrides is None else None,
            )
            return admission.served(served, tokens)

    async def _route(
        self,
        name: str,
        request: msgspec.Struct,
        options: CallOptions,
        attempt: Callable[[Target], Awaitable[Served[A]]],
        *,
        tokens: Callable[[A], int],
        accepted_risk: bool,
    ) -> Served[A]:
        """`attempt` on the targets this call may use, with retries and fallbacks."""
        idempotent = options.idempotency_key is not None or not accepted_risk
        if options.plan is not None:
            context = RunContext(
                model=name,
                metadata=options.metadata or {},
                params={**msgspec.structs.asdict(request), **options.extra},
                trusted=options.plan.trusted,
                allow_provider_keys=options.plan.allow_provider_keys,
                idempotent=idempotent,
            )
            outcome = await self.plans.run(options.plan.node, attempt, context)
        elif not options.direct and self.router.serves(self.deployments.group_of(name)):
            group = self.deployments.group_of(name)
            outcome = await self.router.run(
                group,
                attempt,
                tokens=lambda served: tokens(served.value),
                idempotent=idempotent,
                num_retries=options.num_retries,
            )
        else:
            target = self._direct_target(name, options)
            retries = _first_set(options.num_retries, self.config.litellm_settings.num_retries, 0)
            outcome = await self.router.run_target(
                target, attempt, retries=retries, idempotent=idempotent
            )
        served = outcome.value
        meta = msgspec.structs.replace(
            served.meta, attempts=outcome.attempts, retries=outcome.retries, path=outcome.path
        )
        return Served(served.value, meta)

    def _direct_target(self, name: str, options: CallOptions) -> Target:
        """A call that names a provider's model itself (SDK), or Portkey's direct mode."""
        if options.direct:
            deployment = self.deployments.direct(name, options.overrides)
        else:
            deployment = self.deployments.resolve(name, options.overrides)
        return Target(
            deployment=deployment,
            label=f"{deployment.provider}/{deployment.model}",
            group=name,
            direct=options.direct,
            guarded=options.guarded,
            described_by_call=True,
        )

    async def _image_attempt(
        self,
        request: ImageRequest,
        options: CallOptions,
        target: Target,
        name: str,
        record: CallRecord | None,
    ) -> Served[ImageResponse]:
        """One try on one deployment."""
        deployment, provider, environ = self._resolved(target, options)
        request, extra_overrides = with_overrides(request, target.override_params)
        info = deployment.info
        capabilities = info.image if info else None
        operation = image_operation(provider, request, info, name)
        drop_params = _first_set(
            options.drop_params,
            deployment.drop_params,
            self.config.litellm_settings.drop_params,
        )
        checked = check_image_request(request, capabilities, model=name, drop_params=drop_params)
        extra, settings = self._split_extra(provider, deployment, options, target, extra_overrides)
        cache = self.response_cache.for_call(
            "images",
            choice=target.cache,
            scope=options.scope,
            refresh=options.cache_refresh,
            deployment=deployment,
            request=checked.request,
            extra=extra,
        )
        if cache is not None and (
            hit := await cache.lookup_images(self.image_store, self.delivery.stored_link(options))
        ):
            hit = Served(hit.value, _for_this_call(hit.meta, options))
            return await self.delivery.delivered(request, hit, capabilities, options)
        converting = request.response_format is not None and not accepts(
            capabilities, "response_format"
        )
        call: ImageCall[Any] = ImageCall(
            request=checked.request,
            deployment=deployment,
            credentials=provider.credentials.resolve(provider.name, deployment, environ),
            capabilities=capabilities,
            extra=extra,
            settings=provider.typed_settings(settings),
            timeout=self._timeout(options, target),
            connect_timeout=self._connect_timeout(deployment),
            redact=self._call_redactor(options, deployment),
            # A cached answer is kept decoded; otherwise the proxy may relay it as it came.
            relay=options.relay and not converting and cache is None,
            caller_credentials_only=target.direct,
            on_progress=options.on_progress,
            on_partial=options.on_partial,
            partial_images=options.partial_images,
            cache=self.provider_cache,
            environ=environ,
        )
        calls = fan_out(call, capabilities)
        response = await run_all(operation, calls, self._sending(target, record, call.redact))
        if not response.data:
            raise withheld_or_empty(provider.name, response.filtered)
        meta = CallMeta(
            provider=provider.name,
            model=deployment.model,
            model_group=name,
            api_base=call.credentials.api_base,
            response_cost=image_cost(capabilities, checked.request, response),
            upstream_calls=len(calls),
            dropped_params=checked.dropped,
            adjusted=checked.adjusted,
            filtered=len(response.filtered),
            trace_id=options.trace_id,
            metadata=dict(options.metadata) if options.metadata else None,
            cache_status=cache.status if cache else None,
        )
        served = Served(response, meta)
        if cache is not None and not response.filtered:
            # Kept as the provider answered; a hit is delivered like a fresh answer.

            async def image_bytes(url: str) -> bytes:
                return await self.delivery.image_bytes(url, options)

            await cache.store_images(served, self.image_store, image_bytes)
        return await self.delivery.delivered(request, served, capabilities, options)

    async def chat_completion(
        self, request: ChatCompletionRequest, options: CallOptions | None = None
    ) -> Served[ChatCompletion]:
        """One whole chat completion. Raises a `PrismgateError` for anything that goes wrong.
        Images the model made are in `message.images`: data URLs, or signed links to the
        image store when the request's `image_response_format` is `url`."""
        options, linked = image_delivery(options or CallOptions(), streamed=False)
        record = self.reporting.record_for(options)

        async def attempt(target: Target) -> Served[ChatCompletion]:
            with self.reporting.attempt_span(target):
                chat, call, provider = await self._chat_call(request, options, target)
                cache = self.response_cache.for_call(
                    "chat",
                    choice=target.cache,
                    scope=options.scope,
                    refresh=options.cache_refresh,
                    deployment=call.deployment,
                    request=call.request,
                    extra=call.extra,
                )
                if cache is not None and (hit := await cache.lookup_chat()):
                    return Served(hit.value, _for_this_call(hit.meta, options))
                completion = await chat.complete(call, self._sending(target, record, call.redact))
                meta = CallMeta(
                    provider=provider.name,
                    model=call.deployment.model,
                    model_group=request.model,
                    api_base=call.credentials.api_base,
                    response_cost=chat_cost(call.deployment.info, completion.usage),
                    dropped_params=call.dropped,
                    trace_id=options.trace_id,
                    metadata=dict(options.metadata) if options.metadata else None,
                    cache_status=cache.status if cache else None,
                )
                served = Served(completion, meta)
                if cache is not None:
                    await cache.store_chat(served)
                return served

        async def work() -> Served[ChatCompletion]:
            served = await self._serve(
                request.model, request, options, attempt, tokens=_chat_tokens
            )
            return await self.delivery.chat_images_linked(served, options) if linked else served

        return await self.reporting.run(
            "chat_completion", request.model, request, options, work=work, record=record
        )

    async def chat_completion_stream(
        self, request: ChatCompletionRequest, options: CallOptions | None = None
    ) -> Served[RelayedStream]:
        """A streamed chat completion as OpenAI server-sent events, ending with
        `data: [DONE]`; close it (`aclose()`) when done with it, read or not. Failures
        before the first event raise (the caller can still answer with an error status,
        and the router can still retry); later ones become an error event that ends the
        stream. Images the model made come as data URLs in the deltas' `images`."""
        options, _ = image_delivery(options or CallOptions(), streamed=True)
        record = self.reporting.record_for(options)

        async def attempt(target: Target) -> Served[RelayedStream]:
            with self.reporting.attempt_span(target):
                chat, call, provider = await self._chat_call(request, options, target)
                info = call.deployment.info
                events = chat.stream(call, self._sending(target, record, call.redact))
                try:
                    first = await anext(events)
                except StopAsyncIteration:
                    raise APIError(
                        f"{call.deployment.provider} ended the stream without an answer"
                    ) from None
                meta = CallMeta(
                    provider=provider.name,
                    model=call.deployment.model,
                    model_group=request.model,
                    api_base=call.credentials.api_base,
                    dropped_params=call.dropped,
                    trace_id=options.trace_id,
                    metadata=dict(options.metadata) if options.metadata else None,
                )
                stream = RelayedStream(
                    first,
                    events,
                    redact=self._call_redactor(options, call.deployment),
                    cost_of=lambda usage: chat_cost(info, usage),
                )
                return Served(stream, meta)

        async def work() -> Served[RelayedStream]:
            return await self._serve(request.model, request, options, attempt, tokens=_no_tokens)

        return await self.reporting.run(
            "chat_completion", request.model, request, options, work=work, record=record
        )

    async def _chat_call(
        self, request: ChatCompletionRequest, options: CallOptions, target: Target
    ) -> tuple[ChatCompletions, ChatCall, Provider]:
        deployment, provider, environ = self._resolved(target, options)
        request, extra_overrides = with_overrides(request, target.override_params)
        if provider.chat is None:
            raise BadRequestError(
                f"{request.model} cannot chat (its provider {provider.name} has no chat API)",
                param="model",
                code="model_not_supported",
            )
        info = deployment.info
        if request.has_images() and info is not None and info.supports_vision is False:
            raise BadRequestError(
                f"{request.model} does not accept images (supports_vision: false); use a "
                "vision model, or set model_info.supports_vision: true if it can see",
                param="messages",
                code="model_not_vision_capable",
            )
        request, dropped = drop_or_refuse(
            request,
            provider.chat_unsupported,
            model=request.model,
            drop=_first_set(
                options.drop_params,
                deployment.drop_params,
                self.config.litellm_settings.drop_params,
            ),
        )
        limits = provider.image_limits

        async def fetch(url: str, param: str) -> FetchedImage:
            return await self.fetcher.fetch(url, scope=options.scope, param=param)

        media = self.config.general_settings.media
        work = ImageWork(self.image_pool, media.max_image_pixels, media.oversize)
        prepared = await prepare_images(request, limits, fetch, work)
        extra, settings = self._split_extra(provider, deployment, options, target, extra_overrides)
        call = ChatCall(
            request=prepared,
            deployment=deployment,
            credentials=provider.credentials.resolve(provider.name, deployment, environ),
            extra=extra,
            settings=provider.typed_settings(settings),
            timeout=self._timeout(options, target),
            connect_timeout=self._connect_timeout(deployment),
            redact=self._call_redactor(options, deployment),
            relay=options.relay,
            cache=self.provider_cache,
            caller_credentials_only=target.direct,
            environ=environ,
            dropped=dropped,
        )
        return provider.chat, call, provider

    def _timeout(self, options: CallOptions, target: Target) -> float:
        """Seconds for the whole upstream call: the caller's, the Portkey target's, the
        deployment's, then the config's defaults. A proxy client may shorten the
        operator's timeout, never lengthen it."""
        operators: float = _first_set(
            target.deployment.timeout,
            self.config.router_settings.timeout,
            self.config.litellm_settings.request_timeout,
            DEFAULT_IMAGE_TIMEOUT,
        )
        asked: float | None = _first_set(options.timeout, target.timeout)
        if asked is None:
            return operators
        return min(asked, operators) if options.remote else asked

    def _connect_timeout(self, deployment: Deployment) -> float:
        connect: float = _first_set(
            deployment.connect_timeout, self.config.general_settings.connect_timeout
        )
        return connect

    def _sending(self, target: Target, record: CallRecord | None, redact: Redactor) -> Transport:
        """The transport for `target`, noting what it sends in the call's `record`."""
        return self.reporting.sending(self._transport_for(target), target, record, redact)

    def _transport_for(self, target: Target) -> Transport:
        """The plain pool, or, for a caller-chosen host, the one that checks each address
        it dials against the safe fetcher's rules."""
        return self.guarded_transport if target.guarded else self._upstream

    @functools.cached_property
    def guarded_transport(self) -> Transport:
        """Sends to caller-chosen hosts: private addresses only where allowlisted."""
        self._guard_pool = HttpTransport()
        allowlist = HostAllowlist(self.config.general_settings.media.allowed_hosts)
        return self.reporting.upstream(self._guard_pool.guarded(allowlist))

    def _call_redactor(self, options: CallOptions, deployment: Deployment) -> Redactor:
        # The config's keys are known already; a caller's own key, and the secrets the
        # deployment brings (a virtual key stored over the API), are added for this call.
        caller_key = options.overrides.api_key if options.overrides else None
        return self._redact.including(caller_key, *deployment.secrets)

    def _resolved(
        self, target: Target, options: CallOptions
    ) -> tuple[Deployment, Provider, Mapping[str, str]]:
        """The target's deployment with the SDK caller's overrides, its provider, and
        where credentials may come from: direct-provider calls use only the caller's own
        (never the environment)."""
        deployment = target.deployment
        overrides = options.overrides
        if overrides is not None and not target.described_by_call:
            # A config's deployment: the caller may say what the model can do, never
            # where it is or with which key.
            names = ("api_key", "api_base", "api_version", "settings")
            given = [name for name in names if getattr(overrides, name)]
            if given:
                raise BadRequestError(
                    f"{given[0]} cannot be given for model group {target.group!r}: its "
                    "deployments are set by the gateway's config; call provider/model "
                    "directly to use your own",
                    param=given[0],
                    code="setting_not_allowed",
                )
            deployment = self.deployments.with_overrides(deployment, overrides)
        environ = {} if target.direct else self.config.environ
        provider = get_provider(deployment.provider)
        refuse_shut_down(deployment, provider.credentials, environ)  # before any upstream call
        return deployment, provider, environ

    def _split_extra(
        self,
        provider: Provider,
        deployment: Deployment,
        options: CallOptions,
        target: Target,
        overrides: Mapping[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(body extras, settings): config defaults first, then the caller's keywords, then a
        Portkey target's `override_params`. A keyword naming a provider setting (a
        project, a region) configures the call instead of entering the body, where the
        caller may configure it: only an SDK call's own `provider/model` deployment. A
        caller's config had its `override_params` checked before it ran."""
        if options.extra and (options.remote or not target.described_by_call):
            where = "the request body" if options.remote else "this call's keywords"
            self.authority.check(options.extra, where=where)
        setting_names = provider.setting_names
        extra = dict(deployment.params)
        settings = dict(deployment.settings)
        for source in (options.extra, overrides):
            for key, value in source.items():
                (settings if key in setting_names else extra)[key] = value
        return extra, settings


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _for_this_call(meta: CallMeta, options: CallOptions) -> CallMeta:
    """Call metadata (perhaps a cached answer's) with this call's trace id and metadata."""
    return msgspec.structs.replace(
        meta,
        trace_id=options.trace_id,
        metadata=dict(options.metadata) if options.metadata else None,
    )


def _image_tokens(response: ImageResponse) -> int:
    return response.usage.total_tokens if response.usage else 0


def _no_tokens(_: object) -> int:
    return 0


def _chat_tokens(completion: ChatCompletion) -> int:
    return completion.usage.total_tokens if completion.usage else 0
