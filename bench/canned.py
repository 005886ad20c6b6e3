"""Canned upstream answers and the request bodies the load sends.

Everything here is generated into bench/.work/ on each run (the PNGs are kept
between runs); nothing MB-sized is committed.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

from PIL import Image, ImageChops

PROMPT = "A cute baby sea otter"
REVISED_PROMPT = "A cute baby sea otter floating on its back in calm blue water."
CREATED = 1_700_000_000

# The large answer: a real 1024x1024 PNG of 1.5-2.5 MB, so its b64_json answer is 2-3 MB.
LARGE_PNG = {"size": 1024, "noise_bits": 4, "seed": 1024}
# The vision request: a real PNG whose base64 is about 500 KB.
VISION_PNG = {"size": 460, "noise_bits": 4, "seed": 460}
# What the small url answer points at (served by the same nginx, on loopback).
THUMB_PNG = {"size": 64, "noise_bits": 2, "seed": 64}


def make_png(size: int, noise_bits: int, seed: int) -> bytes:
    """A colour gradient with seeded random noise on top, so the PNG does not compress away."""
    r = Image.linear_gradient("L").resize((size, size))
    g = Image.radial_gradient("L").resize((size, size))
    b = r.transpose(Image.Transpose.ROTATE_90)
    base = Image.merge("RGB", (r, g, b))
    mask = (1 << noise_bits) - 1
    noise = random.Random(seed)  # noqa: S311 - image noise, not a secret
    noise_bytes = noise.randbytes(size * size * 3).translate(bytes(i & mask for i in range(256)))
    image = ImageChops.add(base, Image.frombytes("RGB", (size, size), noise_bytes))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _png(folder: Path, name: str, spec: dict[str, int]) -> bytes:
    """A PNG from `spec`, made once and kept in `folder` (a few seconds to make)."""
    path = folder / f"{name}-{spec['size']}-{spec['noise_bits']}-{spec['seed']}.png"
    if not path.exists():
        path.write_bytes(make_png(**spec))
    return path.read_bytes()


def _dump(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document, separators=(",", ":")))
    return path


def write_answers(folder: Path, nginx_port: int) -> dict[str, int]:
    """Write the canned answers nginx serves; return their sizes in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "files").mkdir(exist_ok=True)
    (folder / "files" / "otter.png").write_bytes(_png(folder, "thumb", THUMB_PNG))
    url = f"http://127.0.0.1:{nginx_port}/files/otter.png"
    small = {"created": CREATED, "data": [{"url": url, "revised_prompt": REVISED_PROMPT}]}
    large_png = _png(folder, "large", LARGE_PNG)
    large = {
        "created": CREATED,
        "data": [
            {"b64_json": base64.b64encode(large_png).decode(), "revised_prompt": REVISED_PROMPT}
        ],
    }
    chat = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "bench-vision",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A baby sea otter floating on its back in calm water.",
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 785, "completion_tokens": 13, "total_tokens": 798},
    }
    paths = {
        "small": _dump(folder / "small.json", small),
        "large": _dump(folder / "large.json", large),
        "chat": _dump(folder / "chat.json", chat),
        "slow": _dump(folder / "slow.json", small),
    }
    sizes = {name: path.stat().st_size for name, path in paths.items()}
    sizes["large_png"] = len(large_png)
    return sizes


def vision_data_url(folder: Path) -> str:
    """The data URL of the vision request's image (about 500 KB of base64)."""
    folder.mkdir(parents=True, exist_ok=True)
    return "data:image/png;base64," + base64.b64encode(_png(folder, "vision", VISION_PNG)).decode()


def image_request(model: str) -> dict[str, object]:
    """An image generation request, dall-e-3 style (one image, default size)."""
    return {"model": model, "prompt": PROMPT}


def vision_request(model: str, data_url: str) -> dict[str, object]:
    """A chat completion request with a text part and a data-URL image part."""
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def write_json(path: Path, document: object) -> Path:
    """Write `document` as compact JSON."""
    return _dump(path, document)
