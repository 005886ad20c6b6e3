"""The response cache: an identical request from the same caller to the same deployment
is answered from the cache, without an upstream call.

- **Key**: a keyed digest (HMAC-SHA256 with a per-gateway secret) of the normalised
  request (the decoded, typed request, so field order and spelling do not matter), the
  provider parameters, the resolved deployment and the caller's scope (a digest of their
  key). The deployment counts with the identity of its upstream credential: provider,
  model, api_key, api_base, api_version and every provider setting (account, region,
  project, cloud credentials). One caller never sees another's answers, and two accounts
  on one provider (two virtual keys) never see each other's. Being keyed, the digest
  tells nothing about those secrets to whoever reads the cache's keys.
- **What is stored**: complete answers only. Errors, and image answers the safety filter
  cut short, are never stored. Images are kept in the image store and the cache holds
  their names, so a hit returns fresh signed links (or the bytes, as first answered).
- **Where**: in-process LRU by default, Redis when configured (shared by every instance).
- **Turned on** by LiteLLM's `litellm_settings.cache: true` (`cache_params.ttl`,
  `cache_params.supported_call_types`) or per call by a Portkey config's `cache`.
  `x-portkey-cache-force-refresh: true` or `Cache-Control: no-cache` skip the lookup and
  store the fresh answer (REFRESH).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from prismgate.config import Config
from prismgate.config_keys import CALL_TYPES
from prismgate.errors import ImageStoreError
from prismgate.media import data_url, sniff_image_type
from prismgate.providers.base import Deployment
from prismgate.storage import CacheStore, ImageStore
from prismgate.types import CallMeta, ImageObject, ImageResponse, ImageUsage, Served
from prismgate.types.chat import ChatCompletion

__all__ = ["CacheChoice", "CachePolicy", "CallCache", "ResponseCache", "cache_policy"]

Kind = Literal["images", "chat"]
DEFAULT_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class CacheChoice:
    """A call's own cache setting (a Portkey config's `cache`): on or off, and the TTL
    in seconds (None: the gateway's default)."""

    enabled: bool
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The gateway's cache defaults, from LiteLLM's `litellm_settings.cache`."""

    enabled: bool = False
    ttl: float = DEFAULT_TTL
    kinds: frozenset[Kind] = frozenset({"images", "chat"})
    # The HMAC key of cache keys; random unless derived from the master key (which lets
    # every instance sharing a Redis find each other's entries).
    key_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


def cache_policy(config: Config) -> CachePolicy:
    """`litellm_settings.cache` / `cache_params` as a policy."""
    settings = config.litellm_settings
    params = settings.cache_params
    kinds: frozenset[Kind] = frozenset({"images", "chat"})
    if "supported_call_types" in params:
        kinds = frozenset(
            kind for name in params["supported_call_types"] if (kind := CALL_TYPES.get(name))
        )
    ttl = params.get("ttl")
    master_key = config.general_settings.master_key
    secret = (
        hmac.new(master_key.encode(), b"prismgate response cache keys", hashlib.sha256).digest()
        if master_key
        else secrets.token_bytes(32)
    )
    return CachePolicy(
        enabled=settings.cache,
        ttl=float(ttl) if ttl else DEFAULT_TTL,
        kinds=kinds,
        key_secret=secret,
    )


class _StoredImage(msgspec.Struct, frozen=True):
    name: str
    # How the image was first answered: a link or the bytes; a hit answers the same way.
    as_url: bool
    revised_prompt: str | None = None


class _ImagesEntry(msgspec.Struct, frozen=True):
    created: int
    images: list[_StoredImage]
    meta: CallMeta
    usage: ImageUsage | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None


class _ChatEntry(msgspec.Struct, frozen=True):
    completion: bytes  # the completion as JSON
    meta: CallMeta


E = TypeVar("E", "_ImagesEntry", "_ChatEntry")
log = logging.getLogger("prismgate.cache")

# Resolves a stored image's name to a signed link, or None when the caller has no base URL.
LinkStored = Callable[[str], str | None]
FetchImage = Callable[[str], Awaitable[bytes]]


class ResponseCache:
    """Built once per gateway; `for_call` gives one call its cache, or None when off."""

    def __init__(self, store: CacheStore, policy: CachePolicy) -> None:
        self._store = store
        self._policy = policy

    def for_call(
        self,
        kind: Kind,
        *,
        choice: CacheChoice | None,
        scope: str,
        refresh: bool,
        deployment: Deployment,
        request: msgspec.Struct,
        extra: Mapping[str, Any],
    ) -> CallCache | None:
        """This call's cache, or None when caching is off for it."""
        if choice is not None:
            if not choice.enabled:
                return None
            ttl = choice.ttl or self._policy.ttl
        elif self._policy.enabled and kind in self._policy.kinds:
            ttl = self._policy.ttl
        else:
            return None
        material = msgspec.msgpack.encode(
            [kind, scope, _upstream_identity(deployment), request, sorted(extra.items())]
        )
        digest = hmac.new(self._policy.key_secret, material, hashlib.sha256).hexdigest()
        key = f"cache:{kind}:{digest}"
        return CallCache(self._store, key, ttl, refresh)


class CallCache:
    """One call's view of the cache: look up before calling, store after."""

    def __init__(self, store: CacheStore, key: str, ttl: float, refresh: bool) -> None:
        self._store = store
        self.key = key
        self._ttl = ttl
        self._refresh = refresh
        self.status: Literal["HIT", "MISS", "REFRESH"] = "REFRESH" if refresh else "MISS"

    async def _entry(self, kind: type[E]) -> E | None:
        """The stored entry; None on a miss, a refresh, or an entry this version cannot
        read (written by another version: it is replaced by the fresh answer)."""
        raw = None if self._refresh else await self._store.get(self.key)
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=kind)
        except msgspec.DecodeError:
            log.warning("response cache: an unreadable entry is ignored")
            return None

    async def lookup_images(
        self, images: ImageStore, link: LinkStored
    ) -> Served[ImageResponse] | None:
        """The cached answer, with fresh links; None on a miss (or a refresh, or an image
        store that does not answer: the call is then made as if nothing were cached)."""
        entry = await self._entry(_ImagesEntry)
        if entry is None:
            return None
        try:
            data = await self._cached_images(entry, images, link)
        except ImageStoreError:
            return None
        if data is None:
            return None
        response = ImageResponse(
            created=entry.created,
            data=data,
            usage=entry.usage,
            background=entry.background,
            output_format=entry.output_format,
            quality=entry.quality,
            size=entry.size,
        )
        self.status = "HIT"
        return Served(response, _hit(entry.meta))

    async def _cached_images(
        self, entry: _ImagesEntry, images: ImageStore, link: LinkStored
    ) -> list[ImageObject] | None:
        """The entry's images with fresh links; None when the store lost one of them."""
        data: list[ImageObject] = []
        for image in entry.images:
            url = None
            if image.as_url and await images.exists(image.name):
                url = link(image.name)
            b64 = None
            if url is None:
                stored = await images.get(image.name)
                if stored is None:  # the image store lost it: a miss, stored again
                    return None
                b64 = base64.b64encode(stored.data).decode()
                url = data_url(b64) if image.as_url else None
            data.append(
                ImageObject(
                    b64_json=None if image.as_url else b64,
                    url=url,
                    revised_prompt=image.revised_prompt,
                )
            )
        return data

    async def store_images(
        self, served: Served[ImageResponse], images: ImageStore, fetch: FetchImage
    ) -> None:
        """Keep a complete answer: its images go to the image store."""
        response = served.value
        kept: list[_StoredImage] = []
        for image in response.data:
            if image.b64_json is not None:
                data = base64.b64decode(image.b64_json)
            elif image.url is not None:
                data = await fetch(image.url)
            else:
                return  # nothing to keep: never store a partial answer
            try:
                name = await images.put(data, sniff_image_type(data[:16]) or "image/png")
            except ImageStoreError:
                return  # a full store, or one down: the answer is delivered, only not cached
            kept.append(_StoredImage(name, image.url is not None, image.revised_prompt))
        entry = _ImagesEntry(
            created=response.created,
            images=kept,
            meta=served.meta,
            usage=response.usage,
            background=response.background,
            output_format=response.output_format,
            quality=response.quality,
            size=response.size,
        )
        await self._store.set(self.key, msgspec.msgpack.encode(entry), self._ttl)

    async def lookup_chat(self) -> Served[ChatCompletion] | None:
        """The cached completion; None on a miss (or a refresh)."""
        entry = await self._entry(_ChatEntry)
        if entry is None:
            return None
        completion = msgspec.json.decode(entry.completion, type=ChatCompletion)
        self.status = "HIT"
        return Served(completion, _hit(entry.meta))

    async def store_chat(self, served: Served[ChatCompletion]) -> None:
        """Keep a finished completion."""
        entry = _ChatEntry(completion=msgspec.json.encode(served.value), meta=served.meta)
        await self._store.set(self.key, msgspec.msgpack.encode(entry), self._ttl)


def _upstream_identity(deployment: Deployment) -> list[Any]:
    """What selects the upstream model and the account it is billed to. Only ever hashed
    with the gateway's secret: it holds the credentials themselves."""
    settings = sorted((name, repr(value)) for name, value in deployment.settings.items())
    return [
        deployment.provider,
        deployment.model,
        deployment.api_key,
        deployment.api_base,
        deployment.api_version,
        settings,
    ]


def _hit(meta: CallMeta) -> CallMeta:
    # A hit made no upstream call and cost nothing.
    return msgspec.structs.replace(
        meta, response_cost=0.0, upstream_calls=0, cache_status="HIT", attempts=(), retries=0
    )
