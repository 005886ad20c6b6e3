"""Request ids: 32 hex digits, a UUIDv7 (RFC 9562), unique, and in the order they were
made (so the spend log, keyed by them, appends instead of writing all over its index)."""

from __future__ import annotations

import time
import uuid

from prismgate.request_ids import new_request_id


def test_a_request_id_is_a_uuid7_in_32_hex_digits() -> None:
    made = new_request_id()
    assert len(made) == 32 and made == made.lower() and int(made, 16) >= 0
    parsed = uuid.UUID(made)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    # Its first 48 bits are the time it was made, in milliseconds.
    assert abs(int(made[:12], 16) - time.time_ns() // 1_000_000) < 5_000


def test_request_ids_are_unique_and_sort_by_when_they_were_made() -> None:
    first = [new_request_id() for _ in range(5_000)]
    time.sleep(0.002)  # the next millisecond
    later = [new_request_id() for _ in range(5_000)]
    assert len(set(first + later)) == 10_000
    assert max(first) < min(later)
