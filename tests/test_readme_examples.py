"""The README's quickstart vision example works as pasted, against the quickstart's mock."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import openai
import yaml

from prismgate import ChatCompletion, completion

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def vision_example() -> str:
    """The quickstart's vision block: the one that asks `llava-hf` about an image."""
    blocks = [b for b in PYTHON_BLOCK.findall(README.read_text()) if 'model="llava-hf"' in b]
    assert len(blocks) == 1, "the README has one vision example for llava-hf"
    return blocks[0]


def printed_in_comment(code: str) -> str:
    """What the example says it prints: its last line, a comment."""
    last = code.rstrip().splitlines()[-1]
    assert last.startswith("# "), last
    return last.removeprefix("# ")


def test_vision_example_runs_against_the_quickstart(serve: Any) -> None:
    proxy = serve(yaml.safe_load(QUICKSTART.read_text()))
    client = openai.OpenAI(api_key="sk-1234", base_url=proxy.base_url, max_retries=0)
    code = vision_example()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"client": client})
    assert out.getvalue().strip() == printed_in_comment(code)


def test_vision_example_image_works_in_the_sdk() -> None:
    namespace: dict[str, Any] = {}
    code = vision_example()
    exec(code.split("answer =")[0], namespace)  # only the IMAGE constant
    answer = completion(
        model="mock/llava-hf",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in this image?"},
                    {"type": "image_url", "image_url": {"url": namespace["IMAGE"]}},
                ],
            }
        ],
    )
    assert isinstance(answer, ChatCompletion)
    assert answer.choices[0].message.content == printed_in_comment(code)
