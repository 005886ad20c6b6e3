"""The LiteLLM-style SDK functions: thin wrappers over one `Gateway`.

Without `gateway=`, each call builds a gateway from the environment (`OPENAI_API_KEY`,
...) and closes it afterwards; pass a long-lived `Gateway` to reuse its connection pool
and its config. The sync functions run the async ones; there is one implementation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import msgspec

from prismgate.catalog import ModelInfo, builtin_catalog
from prismgate.config import load_config
from prismgate.errors import BadRequestError, NotFoundError, PrismgateError
from prismgate.gateway import CallOptions, Gateway
from prismgate.image_streams import stream_fields
from prismgate.media.inputs import input_image, input_images
from prismgate.routing.deployments import CallerOverrides, DeploymentResolver
from prismgate.streaming import chunks_from_events, iterate_in_thread
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageRequest,
    ImageResponse,
    ImageStreamEvent,
    ImageVariationRequest,
    Served,
)
from prismgate.types.chat import ChatChunk, ChatCompletion, ChatCompletionRequest, ChatMessage
from prismgate.types.validation import convert_request

__all__ = [
    "acompletion",
    "aimage_edit",
    "aimage_generation",
    "aimage_variation",
    "completion",
    "get_model_info",
    "image_edit",
    "image_generation",
    "image_variation",
    "supports_vision",
]

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A", ImageResponse, ChatCompletion)

# OpenAI request fields that arrive as keyword arguments rather than named parameters.
_REQUEST_KEYWORDS = frozenset(ImageGenerationRequest.__struct_fields__)
_EDIT_KEYWORDS = frozenset(ImageEditRequest.__struct_fields__)
_VARIATION_KEYWORDS = frozenset(ImageVariationRequest.__struct_fields__)


def _call_options(
    overrides: CallerOverrides,
    timeout: float | None,
    drop_params: bool | None,
    extra: dict[str, Any],
) -> CallOptions:
    # An SDK caller may point a call anywhere and configure its provider (trusted).
    # LiteLLM's `num_retries` keyword, and an idempotency key that lets the router retry
    # an image generation that may have been served.
    num_retries = extra.pop("num_retries", None)
    idempotency_key = extra.pop("idempotency_key", None)
    on_progress = extra.pop("on_progress", None)
    if on_progress is not None and not callable(on_progress):
        raise TypeError("on_progress must be a function taking a JobProgress")
    return CallOptions(
        on_progress=on_progress,
        overrides=overrides,
        timeout=timeout,
        drop_params=drop_params,
        extra=extra,
        num_retries=int(num_retries) if num_retries is not None else None,
        idempotency_key=str(idempotency_key) if idempotency_key is not None else None,
    )


def _inside_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    if not _inside_event_loop():
        return asyncio.run(coroutine)
    # Called from inside an event loop (a notebook, say): run on a private loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _synchronous(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The blocking twin of an async SDK function, with the same signature."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return _run(function(*args, **kwargs))

    run.__name__ = run.__qualname__ = function.__name__.removeprefix("a")
    run.__doc__ = f"Blocking form of `{function.__name__}`; same arguments, same result."
    return run


def _image_events(
    request: ImageGenerationRequest | ImageEditRequest,
    options: CallOptions,
    gateway: Gateway | None,
    stream: bool,
    partial_images: int | None,
) -> AsyncIterator[ImageStreamEvent]:
    """A streamed image call's events, on the caller's gateway or on one made for it."""
    _, partial = stream_fields({"stream": stream, "partial_images": partial_images})

    async def events() -> AsyncIterator[ImageStreamEvent]:
        serving = gateway if gateway is not None else Gateway()
        try:
            streamed = serving.image_stream(request, options, partial_images=partial)
            try:
                async for event in streamed:
                    yield event
            finally:
                await streamed.aclose()
        finally:
            if gateway is None:  # this call made it, this call closes it
                await serving.aclose()

    return events()


def _synchronous_images(
    function: Callable[P, Coroutine[Any, Any, ImageResponse | AsyncIterator[ImageStreamEvent]]],
) -> Callable[P, ImageResponse | Iterator[ImageStreamEvent]]:
    """The blocking twin of an async image function: a stream becomes a blocking
    iterator of its events."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> ImageResponse | Iterator[ImageStreamEvent]:
        arguments = signature.bind(*args, **kwargs).arguments
        if not arguments.get("stream") and not arguments.get("partial_images"):
            result = _run(function(*args, **kwargs))
            assert isinstance(result, ImageResponse)
            return result

        async def events() -> AsyncIterator[ImageStreamEvent]:
            streamed = await function(*args, **kwargs)
            assert not isinstance(streamed, ImageResponse)
            async for event in streamed:
                yield event

        return iterate_in_thread(events)

    run.__name__ = run.__qualname__ = function.__name__.removeprefix("a")
    run.__doc__ = f"Blocking form of `{function.__name__}`; with `stream=True`, an iterator."
    return run


async def aimage_generation(
    prompt: str,
    model: str | None = None,
    n: int | None = None,
    quality: str | None = None,
    response_format: str | None = None,
    size: str | None = None,
    style: str | None = None,
    user: str | None = None,
    timeout: float | None = 600,
    api_key: str | None = None,
    api_base: str | None = None,
    api_version: str | None = None,
    custom_llm_provider: str | None = None,
    *,
    drop_params: bool | None = None,
    gateway: Gateway | None = None,
    stream: bool = False,
    partial_images: int | None = None,
    **provider_params: Any,
) -> ImageResponse | AsyncIterator[ImageStreamEvent]:
    """Generate images with any provider, in the OpenAI shape.

    `model` is `provider/model` (`openai/dall-e-3`, `azure/<deployment>`, `mock/any`) or a
    catalogued name (`dall-e-3`); it defaults to `general_settings.default_image_model`
    (`gpt-image-2`). OpenAI's gpt-image fields (`background`, `output_format`,
    `output_compression`, `moderation`) may be passed as keywords; any other keyword is a
    provider-specific parameter and is sent in the provider's body as given
    (`extra_body={...}` too). A parameter the model cannot honour raises
    `UnsupportedParamsError`, unless `drop_params=True`.

    The response reads like the openai client's `ImagesResponse`: attributes or items
    (`response["data"][0]["url"]`), `model_dump()`, `to_dict()`, `json()` (LiteLLM's).
    Its `_hidden_params` tells which provider served it and its cost. Failures raise a
    `PrismgateError` with openai's `status_code`, `body` (a dict) and `response`.

    With `stream=True` it returns an async iterator of OpenAI's stream events: up to
    `partial_images` (0 to 3) `ImagePartialEvent` previews an image where the provider
    makes them, then one `ImageCompletedEvent` an image (base64), for every provider.
    """
    fields: dict[str, Any] = {
        "prompt": prompt,
        "model": model,
        "n": n,
        "quality": quality,
        "response_format": response_format,
        "size": size,
        "style": style,
        "user": user,
    }
    extra, model_info = _keywords(provider_params, fields, _REQUEST_KEYWORDS)
    request = convert_request(
        {k: v for k, v in fields.items() if v is not None}, ImageGenerationRequest
    )
    options = _call_options(
        CallerOverrides(
            api_key=api_key,
            api_base=api_base,
            api_version=api_version,
            custom_llm_provider=custom_llm_provider,
            model_info=model_info,
        ),
        timeout,
        drop_params,
        extra,
    )
    if stream or partial_images:
        return _image_events(request, options, gateway, stream, partial_images)
    return await _serve_images(request, options, gateway)


image_generation = _synchronous_images(aimage_generation)


async def aimage_edit(
    image: Any,
    prompt: str,
    model: str | None = None,
    mask: Any = None,
    n: int | None = None,
    quality: str | None = None,
    response_format: str | None = None,
    size: str | None = None,
    user: str | None = None,
    timeout: float | None = 600,
    api_key: str | None = None,
    api_base: str | None = None,
    api_version: str | None = None,
    custom_llm_provider: str | None = None,
    *,
    drop_params: bool | None = None,
    gateway: Gateway | None = None,
    stream: bool = False,
    partial_images: int | None = None,
    **provider_params: Any,
) -> ImageResponse | AsyncIterator[ImageStreamEvent]:
    """Edit images with any provider that can, in the OpenAI shape (`/v1/images/edits`).

    `image` is one image or a list (bytes, a path, a binary file, or a `(filename, bytes)`
    tuple, as the openai client takes them); `mask` is one image whose fully transparent
    pixels mark where the first image may change. Other arguments are as for
    `aimage_generation`; `background`, `output_format`, `output_compression`,
    `input_fidelity` and `negative_prompt` may be passed as keywords; `stream` and
    `partial_images` as for `aimage_generation` (`image_edit.*` events).
    """
    fields: dict[str, Any] = {
        "prompt": prompt, "model": model, "n": n, "quality": quality,
        "response_format": response_format, "size": size, "user": user,
    }  # fmt: skip
    extra, model_info = _keywords(provider_params, fields, _EDIT_KEYWORDS)
    fields["image"] = input_images(image)
    fields["mask"] = None if mask is None else input_image(mask, param="mask")
    request = convert_request({k: v for k, v in fields.items() if v is not None}, ImageEditRequest)
    overrides = CallerOverrides(
        api_key=api_key, api_base=api_base, api_version=api_version,
        custom_llm_provider=custom_llm_provider, model_info=model_info,
    )  # fmt: skip
    options = _call_options(overrides, timeout, drop_params, extra)
    if stream or partial_images:
        return _image_events(request, options, gateway, stream, partial_images)
    return await _serve_images(request, options, gateway)


image_edit = _synchronous_images(aimage_edit)


async def aimage_variation(
    image: Any,
    model: str | None = None,
    n: int | None = None,
    response_format: str | None = None,
    size: str | None = None,
    user: str | None = None,
    timeout: float | None = 600,
    api_key: str | None = None,
    api_base: str | None = None,
    api_version: str | None = None,
    custom_llm_provider: str | None = None,
    *,
    drop_params: bool | None = None,
    gateway: Gateway | None = None,
    **provider_params: Any,
) -> ImageResponse:
    """Variations of one image (`/v1/images/variations`): `image` as for `aimage_edit`;
    `model` defaults to `dall-e-2`, the model OpenAI serves them with."""
    fields: dict[str, Any] = {
        "model": model or "dall-e-2", "n": n, "response_format": response_format,
        "size": size, "user": user,
    }  # fmt: skip
    extra, model_info = _keywords(provider_params, fields, _VARIATION_KEYWORDS)
    fields["image"] = input_image(image)
    request = convert_request(
        {k: v for k, v in fields.items() if v is not None}, ImageVariationRequest
    )
    overrides = CallerOverrides(
        api_key=api_key, api_base=api_base, api_version=api_version,
        custom_llm_provider=custom_llm_provider, model_info=model_info,
    )  # fmt: skip
    options = _call_options(overrides, timeout, drop_params, extra)
    return await _serve_images(request, options, gateway)


image_variation = _synchronous(aimage_variation)


async def _serve_images(
    request: ImageRequest, options: CallOptions, gateway: Gateway | None
) -> ImageResponse:
    """One image call on the caller's gateway, or on one made (and closed) for it."""
    if gateway is not None:
        return await _dispatch(gateway, request, options)
    async with Gateway() as own:
        return await _dispatch(own, request, options)


async def _dispatch(gateway: Gateway, request: ImageRequest, options: CallOptions) -> ImageResponse:
    if isinstance(request, ImageEditRequest):
        served = await gateway.image_edit(request, options)
    elif isinstance(request, ImageVariationRequest):
        served = await gateway.image_variation(request, options)
    else:
        served = await gateway.image_generation(request, options)
    return _with_hidden_params(served)


def _with_hidden_params(served: Served[A]) -> A:
    """The answer, showing its call metadata as `_hidden_params` (LiteLLM's view)."""
    served.value._hidden_params = served.meta
    return served.value


_CHAT_KEYWORDS = frozenset(ChatCompletionRequest.__struct_fields__)


def _keywords(
    provider_params: Mapping[str, Any], fields: dict[str, Any], request_fields: frozenset[str]
) -> tuple[dict[str, Any], ModelInfo | None]:
    """Sort an SDK call's extra keywords: OpenAI request fields go into `fields`,
    `model_info` describes the model, `extra_body` and the rest are provider parameters."""
    extra = dict(provider_params)
    extra.update(extra.pop("extra_body", None) or {})
    model_info = _model_info(extra.pop("model_info", None))
    for name in request_fields & extra.keys():
        fields[name] = extra.pop(name)
    return extra, model_info


def _model_info(value: object) -> ModelInfo | None:
    """LiteLLM's `model_info=` keyword: capabilities for this call, not a body field."""
    if value is None or isinstance(value, ModelInfo):
        return value
    if not isinstance(value, dict):
        raise BadRequestError("model_info must be a mapping of capabilities", param="model_info")
    return convert_request(value, ModelInfo)


def _chat_request(
    model: str, messages: Sequence[Mapping[str, Any] | ChatMessage], fields: dict[str, Any]
) -> tuple[ChatCompletionRequest, dict[str, Any], ModelInfo | None]:
    extra, model_info = _keywords(fields.pop("provider_params"), fields, _CHAT_KEYWORDS)
    plain = [m if isinstance(m, Mapping) else msgspec.to_builtins(m) for m in messages]
    data = {"model": model, "messages": plain, **{k: v for k, v in fields.items() if v is not None}}
    return convert_request(data, ChatCompletionRequest), extra, model_info


async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any] | ChatMessage],
    stream: bool | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    user: str | None = None,
    timeout: float | None = 600,
    api_key: str | None = None,
    api_base: str | None = None,
    api_version: str | None = None,
    custom_llm_provider: str | None = None,
    *,
    drop_params: bool | None = None,
    gateway: Gateway | None = None,
    **provider_params: Any,
) -> ChatCompletion | AsyncIterator[ChatChunk]:
    """A chat completion from any provider, images in messages included.

    `messages` are OpenAI's (`image_url` parts with an https, http, data or gs:// URL,
    `detail`, and LiteLLM's `format`). With `stream=True` the result is an async iterator
    of `ChatChunk`; otherwise a `ChatCompletion`, which reads like the openai client's
    (attributes, items, `model_dump()`, `to_dict()`). Other OpenAI fields and provider
    parameters are keywords, as in `aimage_generation`.
    """
    request, extra, model_info = _chat_request(
        model,
        messages,
        {
            "stream": stream, "max_tokens": max_tokens, "temperature": temperature,
            "top_p": top_p, "stop": stop, "user": user, "provider_params": provider_params,
        },
    )  # fmt: skip
    options = _call_options(
        CallerOverrides(
            api_key=api_key,
            api_base=api_base,
            api_version=api_version,
            custom_llm_provider=custom_llm_provider,
            model_info=model_info,
        ),
        timeout,
        drop_params,
        extra,
    )
    if stream:
        return _stream(request, options, gateway)
    if gateway is not None:
        return _with_hidden_params(await gateway.chat_completion(request, options))
    async with Gateway() as own:
        return _with_hidden_params(await own.chat_completion(request, options))


async def _stream(
    request: ChatCompletionRequest, options: CallOptions, gateway: Gateway | None
) -> AsyncIterator[ChatChunk]:
    serving = gateway if gateway is not None else Gateway()
    try:
        served = await serving.chat_completion_stream(request, options)
        try:
            async for chunk in chunks_from_events(served.value):
                yield chunk
        finally:
            await served.value.aclose()
    finally:
        if gateway is None:  # this call made it, this call closes it
            await serving.aclose()


def _synchronous_chat(
    function: Callable[P, Coroutine[Any, Any, ChatCompletion | AsyncIterator[ChatChunk]]],
) -> Callable[P, ChatCompletion | Iterator[ChatChunk]]:
    """The blocking twin of `acompletion`: a streamed answer becomes a blocking iterator."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> ChatCompletion | Iterator[ChatChunk]:
        if not signature.bind(*args, **kwargs).arguments.get("stream"):
            result = _run(function(*args, **kwargs))
            assert isinstance(result, ChatCompletion)
            return result

        async def chunks() -> AsyncIterator[ChatChunk]:
            streamed = await function(*args, **kwargs)
            assert not isinstance(streamed, ChatCompletion)
            async for chunk in streamed:
                yield chunk

        return iterate_in_thread(chunks)

    run.__name__ = run.__qualname__ = "completion"
    run.__doc__ = "Blocking form of `acompletion`; with `stream=True`, a blocking iterator."
    return run


completion = _synchronous_chat(acompletion)


def _static_model_info(model: str, custom_llm_provider: str | None) -> ModelInfo | None:
    resolver = DeploymentResolver(load_config(environ={}), builtin_catalog())
    overrides = CallerOverrides(custom_llm_provider=custom_llm_provider)
    try:
        return resolver.resolve(model, overrides).info
    except PrismgateError:
        return None


def supports_vision(model: str, custom_llm_provider: str | None = None) -> bool:
    """Whether `model` (`provider/model` or a catalogued name) accepts images in chat.

    Unknown models are False; describe a self-hosted one with `model_info` in the config.
    """
    info = _static_model_info(model, custom_llm_provider)
    return bool(info and info.supports_vision)


def get_model_info(model: str, custom_llm_provider: str | None = None) -> ModelInfo:
    """The catalog's entry for `model`: mode, limits, capabilities and prices.

    Raises NotFoundError for a model the catalog does not know.
    """
    info = _static_model_info(model, custom_llm_provider)
    if info is None:
        raise NotFoundError(
            f"{model} is not in prismgate's model catalog; describe it with model_info "
            "in the config",
            param="model",
            code="model_not_found",
        )
    return info
