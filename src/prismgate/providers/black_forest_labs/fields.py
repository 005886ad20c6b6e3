"""How OpenAI's image parameters reach Black Forest Labs' body, per model family.

FLUX.2 and FLUX1.1 [pro] take a width and a height; FLUX.1 Kontext and FLUX1.1 [pro]
Ultra take an aspect ratio instead (Kontext draws about one megapixel in any ratio from
21:9 to 9:21). None of them has `n`, a quality or a negative prompt: the gateway fans
`n` out, and refuses the other two before any call.
"""

from __future__ import annotations

from typing import Any

from prismgate.catalog import ImageCapabilities
from prismgate.providers.base import Field, FieldTable, ImageFamily
from prismgate.providers.image_rules import match_aspect_ratio, parse_size

__all__ = [
    "BFL_ASPECT_RATIOS",
    "BFL_FAMILIES",
    "FLUX2_FIELDS",
    "KONTEXT_FIELDS",
    "PRO_FIELDS",
    "ULTRA_FIELDS",
    "fields_for",
    "max_input_images",
]

# The ratios the catalog lists for Kontext and Ultra, for models it does not list.
BFL_ASPECT_RATIOS = (
    "21:9",
    "16:9",
    "3:2",
    "4:3",
    "5:4",
    "1:1",
    "4:5",
    "3:4",
    "2:3",
    "9:16",
    "9:21",
)


def _width_height(size: Any, _capabilities: ImageCapabilities | None) -> dict[str, int]:
    width, height = parse_size(str(size))
    return {"width": width, "height": height}


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or BFL_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


_SIZE = Field(convert=_width_height, note="split into width and height")
_RATIO = Field(
    "aspect_ratio",
    convert=_aspect_ratio,
    note="the aspect ratio of the size (a ratio within 2 % is reported as adjusted)",
)
_COMMON: FieldTable = {
    "prompt": Field("prompt"),
    "output_format": Field("output_format"),
    "seed": Field("seed"),
    "safety_tolerance": Field("safety_tolerance"),
}
FLUX2_FIELDS: FieldTable = {**_COMMON, "size": _SIZE}
KONTEXT_FIELDS: FieldTable = {
    **_COMMON,
    "size": _RATIO,
    "prompt_upsampling": Field("prompt_upsampling"),
}
PRO_FIELDS: FieldTable = {
    **_COMMON,
    "size": _SIZE,
    "prompt_upsampling": Field("prompt_upsampling"),
}
ULTRA_FIELDS: FieldTable = {
    **_COMMON,
    "size": _RATIO,
    "prompt_upsampling": Field("prompt_upsampling"),
    "raw": Field("raw"),
}

BFL_FAMILIES = (
    ImageFamily(
        "FLUX.2",
        ("black_forest_labs/flux-2-pro", "black_forest_labs/flux-2-max"),
        FLUX2_FIELDS,
        operations=("edit",),
    ),
    ImageFamily(
        "FLUX.1 Kontext",
        ("black_forest_labs/flux-kontext-pro", "black_forest_labs/flux-kontext-max"),
        KONTEXT_FIELDS,
        operations=("edit",),
    ),
    ImageFamily("FLUX1.1 [pro]", ("black_forest_labs/flux-pro-1.1",), PRO_FIELDS),
    ImageFamily("FLUX1.1 [pro] Ultra", ("black_forest_labs/flux-pro-1.1-ultra",), ULTRA_FIELDS),
)


def fields_for(model: str) -> FieldTable:
    """The table for `model` (BFL's endpoint name); other names get FLUX1.1 [pro]'s."""
    if model.startswith("flux-2"):
        return FLUX2_FIELDS
    if model.startswith("flux-kontext"):
        return KONTEXT_FIELDS
    if model.startswith("flux-pro-1.1-ultra"):
        return ULTRA_FIELDS
    return PRO_FIELDS


def max_input_images(model: str) -> int:
    """How many input images an edit may send: FLUX.2 takes eight, Kontext four, and
    the FLUX1.1 models none."""
    if model.startswith("flux-2"):
        return 8
    if model.startswith("flux-kontext"):
        return 4
    return 0
