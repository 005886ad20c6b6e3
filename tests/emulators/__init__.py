"""Provider emulators: real loopback HTTP servers that stand in for upstream APIs in tests."""

from .anthropic import ANTHROPIC_MODELS, DEFAULT_ANTHROPIC_KEY, AnthropicEmulator
from .bedrock import (
    BEDROCK_MODELS,
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    BedrockEmulator,
)
from .fireworks import DEFAULT_FIREWORKS_KEY, FireworksEmulator
from .google import CLOUD_PLATFORM, DEFAULT_GOOGLE_API_KEY, DEFAULT_PROJECT, GoogleEmulator
from .images import make_image
from .openai import DEFAULT_API_KEY, DEFAULT_DEPLOYMENTS, OpenAIEmulator
from .server import EmulatorServer, Fault, FaultKind, Received
from .stability import DEFAULT_STABILITY_KEY, FormFile, StabilityEmulator
from .together import DEFAULT_TOGETHER_KEY, TogetherEmulator
from .vision import SeenImage

__all__ = [
    "ANTHROPIC_MODELS",
    "BEDROCK_MODELS",
    "CLOUD_PLATFORM",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ANTHROPIC_KEY",
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENTS",
    "DEFAULT_FIREWORKS_KEY",
    "DEFAULT_GOOGLE_API_KEY",
    "DEFAULT_PROJECT",
    "DEFAULT_SECRET_ACCESS_KEY",
    "DEFAULT_STABILITY_KEY",
    "DEFAULT_TOGETHER_KEY",
    "AnthropicEmulator",
    "BedrockEmulator",
    "EmulatorServer",
    "Fault",
    "FaultKind",
    "FireworksEmulator",
    "FormFile",
    "GoogleEmulator",
    "OpenAIEmulator",
    "Received",
    "SeenImage",
    "StabilityEmulator",
    "TogetherEmulator",
    "make_image",
]
