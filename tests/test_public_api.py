"""The public names are pinned, and `import prismgate` stays fast and offline."""

from __future__ import annotations

import subprocess
import sys

import prismgate

PUBLIC = {
    "APIConnectionError", "APIError", "AuthenticationError", "BadRequestError", "CallMeta",
    "CallOptions", "Config", "ConfigError", "ContentPolicyViolationError", "Gateway",
    "ImageGenerationRequest", "ImageObject", "ImageResponse", "ModelInfo", "NotFoundError",
    "PermissionDeniedError", "PrismgateError", "RateLimitError", "RequestTooLargeError",
    "ServiceUnavailableError", "Timeout", "UnsupportedParamsError", "__version__",
    "aimage_generation", "get_model_info", "image_generation", "load_config", "supports_vision",
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    assert set(prismgate.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(prismgate, name) is not None


def test_sync_and_async_share_one_signature() -> None:
    import inspect

    assert inspect.signature(prismgate.image_generation) == inspect.signature(
        prismgate.aimage_generation
    )
    assert prismgate.image_generation.__name__ == "image_generation"


def _import_time_us(statement: str) -> int:
    """Cumulative microseconds of the top-level imports `statement` performs."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        # Top-level modules are the ones whose name has no leading indentation.
        if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
            try:
                total += int(parts[1])
            except ValueError:
                continue
    return total


def test_import_is_fast_and_lazy() -> None:
    statement = "import prismgate, sys; assert 'aiohttp' not in sys.modules, 'aiohttp loaded'"
    assert _import_time_us(statement) < 150_000
    sdk = "from prismgate import image_generation; import sys; assert 'aiohttp' not in sys.modules"
    assert _import_time_us(sdk) < 150_000


def test_import_makes_no_network_call() -> None:
    guard = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network used at import')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import prismgate\n"
        "from prismgate import image_generation, supports_vision, get_model_info\n"
        "assert supports_vision('openai/gpt-4o')\n"
    )
    subprocess.run([sys.executable, "-c", guard], check=True)
