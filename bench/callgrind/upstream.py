"""The instant upstream of the callgrind harness: every POST gets the bench's small canned
image answer (an OpenAI `url` answer of ~160 bytes), over keep-alive HTTP/1.1.

It runs in its own process, outside valgrind: its instructions are not counted.

    python bench/callgrind/upstream.py PORT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from canned import CREATED, REVISED_PROMPT  # type: ignore[import-not-found]  # by path


def small_answer(port: int) -> bytes:
    """The small `url` answer, as bench/canned.py writes it for nginx."""
    url = f"http://127.0.0.1:{port}/files/otter.png"
    answer = {"created": CREATED, "data": [{"url": url, "revised_prompt": REVISED_PROMPT}]}
    return json.dumps(answer, separators=(",", ":")).encode()


def main() -> None:
    """Serve the canned answer on 127.0.0.1:PORT until killed."""
    port = int(sys.argv[1])
    body = small_answer(port)

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
