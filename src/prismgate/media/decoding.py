"""Where image decoding, resizing and transcoding run: never on the event loop, and never
more of it at once than one budget of pixels.

Pillow releases the GIL while it decodes and resizes, so a thread keeps the loop free.
The pool is small (decoding is CPU work: more threads than cores only adds memory), and a
weight gate counts the pixels being decoded: an image of the full budget runs alone,
small ones run side by side. Three large images sent at once queue; they do not add up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DecodePool"]

T = TypeVar("T")


class _PixelGate:
    """At most `capacity` pixels admitted at once. Threads wait here (not the loop), so it
    works whichever event loop the work came from."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._in_use = 0
        self._changed = threading.Condition()

    def run(self, pixels: int, work: Callable[[], T]) -> T:
        weight = max(1, min(pixels, self._capacity))  # one over-budget image still runs alone
        with self._changed:
            self._changed.wait_for(lambda: self._in_use + weight <= self._capacity)
            self._in_use += weight
        try:
            return work()
        finally:
            with self._changed:
                self._in_use -= weight
                self._changed.notify_all()


class DecodePool:
    """A few threads for image work, owned by one gateway, bounded by `max_pixels` of images
    in flight. `close()` stops it; it starts again on the next call."""

    def __init__(self, max_pixels: int, *, threads: int = 2) -> None:
        self._gate = _PixelGate(max_pixels)
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, pixels: int, work: Callable[[], T]) -> T:
        """`work()` on a pool thread once `pixels` fit in the budget; its result or error."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="images")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._gate.run, pixels, work)

    def close(self) -> None:
        """Stop the threads once their current image is done; queued work is dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
