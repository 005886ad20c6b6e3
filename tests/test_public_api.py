"""The public names are pinned, and `import prismgate` stays fast and offline."""

from __future__ import annotations

import subprocess
import sys

import prismgate

PUBLIC = {
    "APIConnectionError", "APIError", "AuthenticationError", "BadRequestError", "CallMeta",
    "CallOptions", "ChatChunk", "ChatCompletion", "Config", "ConfigError",
    "ContentPolicyViolationError", "Gateway", "ImageGenerationRequest", "ImageObject",
    "ImageResponse", "ModelInfo", "NotFoundError", "PermissionDeniedError", "PrismgateError",
    "RateLimitError", "RequestTooLargeError", "ServiceUnavailableError", "Timeout",
    "UnsupportedParamsError", "__version__", "acompletion", "aimage_generation", "completion",
    "get_model_info", "image_generation", "load_config", "supports_vision",
    "ImageEditRequest", "ImageVariationRequest", "InputImage", "image_edit", "aimage_edit",
    "image_variation", "aimage_variation", "AnswerTooLargeError", "InsufficientStorageError",
    "RequestTimeoutError", "UnreadableAnswerError", "ImageStoreError",
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
    for name in ("image_edit", "image_variation"):
        sync, async_ = getattr(prismgate, name), getattr(prismgate, "a" + name)
        assert inspect.signature(sync) == inspect.signature(async_)
        assert sync.__name__ == name


# Loaded on first use only; `import prismgate` stays fast (its time is measured by
# `python -X importtime`, reported with the benchmarks, not asserted in a test).
HEAVY = ("aiohttp", "PIL", "yaml", "starlette", "uvicorn", "typer", "rich", "botocore")


def _loaded_after(statement: str) -> set[str]:
    probe = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_import_is_lazy() -> None:
    assert not set(HEAVY) & _loaded_after("import prismgate")
    sdk = _loaded_after("from prismgate import image_generation, supports_vision")
    assert not {"aiohttp", "PIL", "yaml", "starlette", "uvicorn", "typer"} & sdk


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
