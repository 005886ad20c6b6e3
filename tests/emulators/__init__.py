"""Provider emulators: real loopback HTTP servers that stand in for upstream APIs in tests."""

from .images import make_image
from .openai import DEFAULT_API_KEY, DEFAULT_DEPLOYMENTS, Fault, OpenAIEmulator, Received

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENTS",
    "Fault",
    "OpenAIEmulator",
    "Received",
    "make_image",
]
