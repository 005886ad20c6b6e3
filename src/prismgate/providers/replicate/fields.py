"""How OpenAI's image parameters reach a Replicate model's `input`, per model family.

A Replicate model's input is its own: the popular FLUX models take an aspect ratio, a
count (`num_outputs`, up to four) and `jpg` where OpenAI says `jpeg`; FLUX1.1 [pro] makes
one image per prediction; FLUX.1 Kontext also edits (its `input_image`); Ideogram v3
takes an exact `resolution` from its list. Models outside these families get the FLUX
table, and any other field a caller sends goes into `input` as given.
"""

from __future__ import annotations

from typing import Any

from prismgate.catalog import ImageCapabilities
from prismgate.providers.base import Field, FieldTable, ImageFamily
from prismgate.providers.image_rules import match_aspect_ratio

__all__ = [
    "FLUX_FIELDS",
    "FLUX_PRO_FIELDS",
    "IDEOGRAM_FIELDS",
    "KONTEXT_FIELDS",
    "REPLICATE_FAMILIES",
    "fields_for",
]

# The ratios the FLUX models on Replicate list, for models the catalog does not list.
FLUX_ASPECT_RATIOS = (
    "1:1",
    "16:9",
    "21:9",
    "3:2",
    "2:3",
    "4:5",
    "5:4",
    "3:4",
    "4:3",
    "9:16",
    "9:21",
)


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or FLUX_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


def _format(value: Any, _capabilities: ImageCapabilities | None) -> str:
    return "jpg" if value == "jpeg" else str(value)


_COMMON: FieldTable = {
    "prompt": Field("prompt"),
    "size": Field(
        "aspect_ratio",
        convert=_aspect_ratio,
        note="the aspect ratio of the size (a ratio within 2 % is reported as adjusted)",
    ),
    "output_format": Field("output_format", convert=_format, note="jpeg is sent as jpg"),
    "seed": Field("seed"),
}
FLUX_FIELDS: FieldTable = {
    **_COMMON,
    "n": Field("num_outputs"),
    "num_inference_steps": Field("num_inference_steps"),
    "go_fast": Field("go_fast"),
    "megapixels": Field("megapixels"),
    "disable_safety_checker": Field("disable_safety_checker"),
}
FLUX_PRO_FIELDS: FieldTable = {
    **_COMMON,
    "safety_tolerance": Field("safety_tolerance"),
    "prompt_upsampling": Field("prompt_upsampling"),
}
# Kontext: an edit without a size keeps the input image's aspect ratio (Replicate's own
# default, `match_input_image`).
KONTEXT_FIELDS: FieldTable = FLUX_PRO_FIELDS
# Ideogram v3 names its sizes itself; the catalog lists them, so only those reach here.
IDEOGRAM_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "size": Field("resolution"),
    "seed": Field("seed"),
    "style_type": Field("style_type"),
    "magic_prompt_option": Field("magic_prompt_option"),
}

REPLICATE_FAMILIES = (
    ImageFamily(
        "FLUX on Replicate",
        ("replicate/black-forest-labs/flux-schnell", "replicate/black-forest-labs/flux-dev"),
        FLUX_FIELDS,
    ),
    ImageFamily(
        "FLUX1.1 [pro] on Replicate", ("replicate/black-forest-labs/flux-1.1-pro",), FLUX_PRO_FIELDS
    ),
    ImageFamily(
        "FLUX.1 Kontext on Replicate",
        (
            "replicate/black-forest-labs/flux-kontext-pro",
            "replicate/black-forest-labs/flux-kontext-max",
        ),
        KONTEXT_FIELDS,
        operations=("edit",),
    ),
    ImageFamily(
        "Ideogram v3 on Replicate",
        (
            "replicate/ideogram-ai/ideogram-v3-turbo",
            "replicate/ideogram-ai/ideogram-v3-balanced",
            "replicate/ideogram-ai/ideogram-v3-quality",
        ),
        IDEOGRAM_FIELDS,
    ),
)


def fields_for(model: str) -> FieldTable:
    """The table for `model` (`owner/name`, maybe with `:version`)."""
    name = model.partition(":")[0]
    if name.startswith("ideogram-ai/ideogram-v3"):
        return IDEOGRAM_FIELDS
    if name.endswith(("/flux-1.1-pro", "/flux-pro")):
        return FLUX_PRO_FIELDS
    return KONTEXT_FIELDS if "/flux-kontext-" in name else FLUX_FIELDS
