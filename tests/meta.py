"""Tests that hold a Gateway read its answers as SDK callers do, `_hidden_params` included."""

from __future__ import annotations

from typing import TypeVar

from prismgate.types import ImageResponse, Served
from prismgate.types.chat import ChatCompletion

A = TypeVar("A", ImageResponse, ChatCompletion)


def with_meta(served: Served[A]) -> A:
    """The answer with its envelope's meta as `_hidden_params`."""
    served.value._hidden_params = served.meta
    return served.value
