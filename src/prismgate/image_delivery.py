"""Answered images in the form the caller asked for: `response_format` honoured for
models that could not be asked for it, base64 images stored and linked by signed URLs,
links fetched (safely) and encoded, and a chat answer's images linked."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from prismgate.call_options import CallOptions
from prismgate.catalog import ImageCapabilities
from prismgate.chat_images import linked_images
from prismgate.media import data_url, sniff_image_type
from prismgate.media.fetch import SafeFetcher
from prismgate.media.links import SignedLinks
from prismgate.providers.image_rules import accepts
from prismgate.storage import ImageStore
from prismgate.types import ImageObject, ImageRequest, ImageResponse, Served
from prismgate.types.chat import ChatCompletion

__all__ = ["ImageDelivery"]


@dataclass(frozen=True, slots=True)
class ImageDelivery:
    """Delivers answered images for one gateway: where they are stored, how links to
    them are signed (made on first use), and the safe fetcher for links."""

    public_base_url: str | None
    store: ImageStore
    links: Callable[[], SignedLinks]
    fetcher: SafeFetcher

    def base_for(self, options: CallOptions) -> str | None:
        """Where this caller reaches stored images: the configured public URL, else the
        proxy's own address; None for an SDK call without one (data URLs then)."""
        return self.public_base_url or options.image_base_url

    async def delivered(
        self,
        request: ImageRequest,
        served: Served[ImageResponse],
        capabilities: ImageCapabilities | None,
        options: CallOptions,
    ) -> Served[ImageResponse]:
        """The answer in the format the caller asked for."""
        wanted = request.response_format
        delivered = await self._deliver_as(wanted, served.value, capabilities, options)
        return served if delivered is served.value else Served(delivered, served.meta)

    async def chat_images_linked(
        self, served: Served[ChatCompletion], options: CallOptions
    ) -> Served[ChatCompletion]:
        """A chat answer's images stored, and linked by signed URLs (the proxy; an SDK
        call without a public base URL keeps data URLs, as images answers do)."""
        base = self.base_for(options)
        if base is None:
            return served

        async def stored(url: str) -> str:
            data = await self.image_bytes(url, options)
            name = await self.store.put(data, sniff_image_type(data[:16]) or "image/png")
            return self.links().link(base, name)

        return Served(await linked_images(served.value, stored), served.meta)

    def stored_link(self, options: CallOptions) -> Callable[[str], str | None]:
        """Signs links to stored images for this caller; None without a base URL."""
        base = self.base_for(options)

        def link(name: str) -> str | None:
            return None if base is None else self.links().link(base, name)

        return link

    async def image_bytes(self, url: str, options: CallOptions) -> bytes:
        """An answered image's bytes: a data URL decoded, a link fetched safely."""
        if url.startswith("data:"):
            return base64.b64decode(url.partition(",")[2])
        return (await self.fetcher.fetch(url, scope=options.scope)).data

    async def _deliver_as(
        self,
        wanted: str | None,
        response: ImageResponse,
        capabilities: ImageCapabilities | None,
        options: CallOptions,
    ) -> ImageResponse:
        """Honour `response_format` for models that could not be asked for it: base64
        answers become links, URL answers are fetched (safely) and encoded."""
        if wanted is None or accepts(capabilities, "response_format"):
            return response
        if wanted == "url":
            linked = [await self._as_url(image, options) for image in response.data]
            return msgspec.structs.replace(response, data=linked)
        encoded = []
        for image in response.data:
            if image.b64_json is None and image.url is not None:
                fetched = await self.fetcher.fetch(image.url, scope=options.scope)
                b64 = base64.b64encode(fetched.data).decode()
                encoded.append(msgspec.structs.replace(image, b64_json=b64, url=None))
            else:
                encoded.append(image)
        return msgspec.structs.replace(response, data=encoded)

    async def _as_url(self, image: ImageObject, options: CallOptions) -> ImageObject:
        """A base64 image as a link: signed and stored when the caller has a base URL
        (the proxy), a data URL otherwise."""
        if image.b64_json is None or image.url is not None:
            return image
        base = self.base_for(options)
        if base is None:
            return msgspec.structs.replace(image, url=data_url(image.b64_json), b64_json=None)
        data = base64.b64decode(image.b64_json)
        name = await self.store.put(data, sniff_image_type(data[:16]) or "image/png")
        return msgspec.structs.replace(image, url=self.links().link(base, name), b64_json=None)
