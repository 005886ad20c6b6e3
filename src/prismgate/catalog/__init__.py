"""The model catalog: capabilities, limits and prices, from `models/<provider>.json`
plus config overrides."""

from prismgate.catalog.catalog import Catalog, builtin_catalog
from prismgate.catalog.model_info import (
    ImageCapabilities,
    ImagePricing,
    MegapixelPrice,
    ModelInfo,
    SizeRules,
    merge_model_info,
)

__all__ = [
    "Catalog",
    "ImageCapabilities",
    "ImagePricing",
    "MegapixelPrice",
    "ModelInfo",
    "SizeRules",
    "builtin_catalog",
    "merge_model_info",
]
