"""Proxy tests use the real server from tests/serving.py (the `serve` fixture is global)."""

from tests.serving import MASTER_KEY, RunningProxy, model

__all__ = ["MASTER_KEY", "RunningProxy", "model"]
