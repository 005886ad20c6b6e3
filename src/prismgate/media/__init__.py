"""Image inputs and outputs: format sniffing, data URLs (later: safe fetching, limits, store)."""

from prismgate.media.formats import data_url, sniff_image_type

__all__ = ["data_url", "sniff_image_type"]
