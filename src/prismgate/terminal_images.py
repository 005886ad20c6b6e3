"""Images shown inside a terminal, for `prismgate generate --inline`.

Two protocols cover the terminals that show images:

- kitty's graphics protocol (kitty, Ghostty, WezTerm, Konsole): PNG bytes in base64, sent
  in chunks of at most 4096 characters, `ESC _G a=T,f=100,m=1;<chunk> ESC \\`, the last
  chunk with `m=0` (https://sw.kovidgoyal.net/kitty/graphics-protocol/);
- iTerm2's inline images (iTerm2, WezTerm, mintty):
  `ESC ]1337;File=inline=1;size=<bytes>;name=<base64 name>:<base64 bytes> BEL`
  (https://iterm2.com/documentation-images.html).

The terminal is told from its environment: `KITTY_WINDOW_ID` or `TERM=xterm-kitty` (or
`TERM_PROGRAM=ghostty`) for kitty's, `TERM_PROGRAM` iTerm.app / WezTerm or
`LC_TERMINAL=iTerm2` for iTerm2's. Anything else shows no images unless asked to. Inside
tmux (`TMUX` set) none is known: tmux passes neither protocol through, and the outer
terminal's variables (`KITTY_WINDOW_ID`, `LC_TERMINAL`) are inherited by its panes, where
they no longer describe the terminal.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Literal

__all__ = ["Protocol", "detect_protocol", "inline_image"]

Protocol = Literal["kitty", "iterm"]

# kitty's limit for one escape sequence's payload.
_KITTY_CHUNK = 4096
_ITERM_PROGRAMS = frozenset({"iTerm.app", "WezTerm", "mintty"})


def detect_protocol(environ: Mapping[str, str]) -> Protocol | None:
    """The image protocol of the terminal `environ` describes, or None (inside tmux too)."""
    if environ.get("TMUX"):
        return None
    if (
        environ.get("KITTY_WINDOW_ID")
        or environ.get("TERM") == "xterm-kitty"
        or environ.get("TERM_PROGRAM") == "ghostty"
    ):
        return "kitty"
    if environ.get("TERM_PROGRAM") in _ITERM_PROGRAMS or environ.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    return None


def inline_image(data: bytes, protocol: Protocol, *, name: str = "image") -> str:
    """The escape sequence that shows the image `data` (PNG, JPEG, WebP, GIF) in a terminal
    speaking `protocol`, followed by a new line."""
    if protocol == "kitty":
        return _kitty(_as_png(data))
    encoded_name = base64.b64encode(name.encode()).decode()
    payload = base64.b64encode(data).decode()
    return (
        f"\x1b]1337;File=inline=1;size={len(data)};name={encoded_name};"
        f"preserveAspectRatio=1:{payload}\x07\n"
    )


def _kitty(png: bytes) -> str:
    payload = base64.b64encode(png).decode()
    chunks = [payload[i : i + _KITTY_CHUNK] for i in range(0, len(payload), _KITTY_CHUNK)]
    parts = []
    for index, chunk in enumerate(chunks):
        more = 1 if index < len(chunks) - 1 else 0
        keys = f"a=T,f=100,m={more}" if index == 0 else f"m={more}"
        parts.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(parts) + "\n"


def _as_png(data: bytes) -> bytes:
    """kitty takes PNG (or raw pixels): other formats are converted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
