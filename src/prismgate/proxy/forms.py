"""Image edit and variation requests, as multipart forms (OpenAI's SDKs) or as JSON
(`images: [{image_url}]`, OpenAI's newer form of edits).

A form is parsed as it arrives, and refused (413) as soon as more bytes came than the
gateway accepts: a large upload is never held whole before it is measured.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from prismgate.errors import BadRequestError
from prismgate.media.images import image_bytes_from_b64, parse_data_url
from prismgate.media.inputs import input_image
from prismgate.proxy.body import decode_json_object, read_body, too_large
from prismgate.types import InputImage

__all__ = ["ImageForm", "read_image_form"]

# Enough for OpenAI's 16 input images and a mask; more is not an image edit.
MAX_FILES = 20
MAX_FIELDS = 50

ImageFetcher = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class ImageForm:
    """The fields of an edit or variation request: text fields as given, images checked."""

    fields: dict[str, Any]
    images: list[InputImage]
    mask: InputImage | None
    # Form fields are text: numbers arrive as "2" and are read as numbers.
    textual: bool


async def read_image_form(request: Request, limit: int, fetch: ImageFetcher) -> ImageForm:
    """The request's fields and images, from a multipart form or a JSON body.

    `fetch` downloads an `image_url` that is a link (through the safe fetcher).
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _multipart(request, limit)
    if content_type.startswith("application/json") or not content_type:
        return await _json(decode_json_object(await read_body(request, limit)), fetch)
    raise BadRequestError(
        f"send the images as multipart/form-data (or JSON with images[].image_url); "
        f"got Content-Type {content_type.split(';')[0]!r}",
        param="image",
    )


async def _multipart(request: Request, limit: int) -> ImageForm:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parser = MultiPartParser(
        request.headers, _capped(request.stream(), limit), max_files=MAX_FILES,
        max_fields=MAX_FIELDS,
    )  # fmt: skip
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequestError(f"the multipart form is not valid: {exc.message}") from None
    fields: dict[str, Any] = {}
    images: list[InputImage] = []
    mask = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                if name in ("image", "image[]"):
                    images.append(input_image(data, param="image", filename=value.filename))
                elif name == "mask":
                    mask = input_image(data, param="mask", filename=value.filename)
                else:
                    raise BadRequestError(
                        f"unexpected file field {name!r}; send images as 'image' (or "
                        "'image[]') and the mask as 'mask'",
                        param=name,
                    )
            else:
                fields[name] = value
    finally:
        await form.close()
    return ImageForm(fields, images, mask, textual=True)


async def _capped(chunks: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, ending in a 413 the moment more than `limit` bytes arrived."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


async def _json(data: dict[str, Any], fetch: ImageFetcher) -> ImageForm:
    references = data.pop("images", None)
    if references is None and "image" in data:
        references = data.pop("image")
        references = references if isinstance(references, list) else [references]
    if not isinstance(references, list) or not references:
        raise BadRequestError(
            "images must be a list of {image_url} objects, at least one", param="images"
        )
    images = [await _referenced(item, "images", fetch) for item in references]
    mask = data.pop("mask", None)
    mask_image = None if mask is None else await _referenced(mask, "mask", fetch)
    return ImageForm(data, images, mask_image, textual=False)


async def _referenced(item: Any, param: str, fetch: ImageFetcher) -> InputImage:
    """`{image_url}` (a data URL or a link) as an image; `file_id` is not something a
    gateway holds."""
    if isinstance(item, str):
        item = {"image_url": item}
    if not isinstance(item, dict) or ("image_url" in item) == ("file_id" in item):
        raise BadRequestError(
            f"each {param} entry needs exactly one of image_url or file_id", param=param
        )
    if "file_id" in item:
        raise BadRequestError(
            f"{param}: file_id refers to OpenAI's file storage, which this gateway does not "
            "hold; send the image as image_url (a data URL or an https link)",
            param=param,
        )
    url = item["image_url"]
    if not isinstance(url, str):
        raise BadRequestError(f"{param}: image_url must be a string", param=param)
    parsed = parse_data_url(url, param=param)
    data = image_bytes_from_b64(parsed[1], param=param) if parsed else await fetch(url)
    # Its pixel budget is checked by the gateway, for the SDK and the proxy alike.
    return input_image(data, param=param)
