"""Golden request fixtures: the exact upstream request a provider builds for a call.

Set PRISMGATE_UPDATE_GOLDEN=1 to rewrite them after a deliberate change, then review the
diff: these files are what each provider is promised to receive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "requests"
# Headers that say something about the provider contract (not the client library).
CONTRACT_HEADERS = ("authorization", "api-key", "content-type")


def upstream_request(received: Any) -> dict[str, Any]:
    """The contract part of a request an emulator recorded."""
    return {
        "method": received.method,
        "path": received.path,
        "query": dict(sorted(received.query.items())),
        "headers": {k: received.headers[k] for k in CONTRACT_HEADERS if k in received.headers},
        "json": received.json,
    }


def assert_golden(name: str, received: Any) -> None:
    """`received` must be exactly the request stored as fixtures/requests/<name>.json."""
    actual = upstream_request(received)
    path = FIXTURES / f"{name}.json"
    if os.environ.get("PRISMGATE_UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"missing golden fixture {path.name}")
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(path.read_text()), f"upstream request differs from {path.name}"
