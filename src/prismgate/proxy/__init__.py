"""The HTTP face: an OpenAI-compatible proxy over the same Gateway the SDK uses."""

from prismgate.proxy.app import create_app

__all__ = ["create_app"]
