"""The stale cache behind gateway keys and stored virtual keys: what a change made on this
instance (`forget`) does to a read that was already under way. The reader is a plain
function over a dict, held at a gate, so each interleaving is exact."""

from __future__ import annotations

import asyncio

import pytest

from prismgate.errors import ServiceUnavailableError
from prismgate.identity.stale_cache import StaleCache


class Store:
    """What the cache reads: `values`, one read at a time held until `go` is set."""

    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}
        self.reads = 0
        self.down = False
        self.go = asyncio.Event()
        self.go.set()
        self.reading = asyncio.Event()

    async def read(self, name: str) -> str | None:
        self.reads += 1
        value = self.values.get(name)  # read now; answered when the gate opens
        self.reading.set()
        await self.go.wait()
        if self.down:
            raise ConnectionError("the store went away")
        return value

    def hold(self) -> None:
        self.go.clear()
        self.reading.clear()


def cache(store: Store) -> StaleCache[str, str | None]:
    return StaleCache(store.read, what="a value", clock=lambda: 1000.0)


async def test_a_read_under_way_when_this_instance_changes_a_name_is_never_kept() -> None:
    store = Store()
    values = cache(store)
    store.values["k"] = "live"
    store.hold()
    before = asyncio.create_task(values.get("k"))
    await store.reading.wait()  # "live" is read; the answer is still on its way
    store.values["k"] = "blocked"
    values.forget("k")
    # A lookup after the change does not join the read that began before it.
    after = asyncio.create_task(values.get("k"))
    await asyncio.sleep(0)
    store.go.set()
    assert await before == "live"  # begun before the change: answered as it was read
    assert await after == "blocked"
    assert store.reads == 2
    # And what stays cached is what the read after the change found.
    assert await values.get("k") == "blocked"
    assert store.reads == 2


async def test_the_value_forgotten_is_not_served_through_an_outage() -> None:
    store = Store()
    values = StaleCache(store.read, what="a value", staleness=0.0, clock=lambda: 1000.0)
    store.values["k"] = "live"
    assert await values.get("k") == "live"
    store.down = True
    assert await values.get("k") == "live"  # an outage: served as last read
    values.forget("k")  # ... unless this instance changed it since
    with pytest.raises(ServiceUnavailableError):
        await values.get("k")


async def test_an_outage_that_began_before_a_change_serves_no_stale_value() -> None:
    store = Store()
    values = StaleCache(store.read, what="a value", staleness=0.0, clock=lambda: 1000.0)
    store.values["k"] = "live"
    assert await values.get("k") == "live"
    store.hold()
    store.down = True
    reading = asyncio.create_task(values.get("k"))
    await store.reading.wait()
    values.forget("k")  # changed here while the failing read was under way
    store.go.set()
    with pytest.raises(ServiceUnavailableError):
        await reading
