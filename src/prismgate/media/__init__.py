"""Image inputs and outputs: format sniffing, data URLs, safe fetching, limits."""

from prismgate.media.addresses import HostAllowlist, host_address, is_public_address
from prismgate.media.fetch import FetchedImage, SafeFetcher
from prismgate.media.formats import data_url, sniff_image_type

__all__ = [
    "FetchedImage",
    "HostAllowlist",
    "SafeFetcher",
    "data_url",
    "host_address",
    "is_public_address",
    "sniff_image_type",
]
