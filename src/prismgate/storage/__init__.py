"""Every store the gateway uses, as one small protocol per concern, and `open_stores`.

| concern | protocol | backends |
|---|---|---|
| routing state (cooldowns, failures, usage) | `RoutingState` | `memory`, `redis` |
| callers' rate limits (rpm, tpm, ipm, parallel) | `LimitState` | `memory`, `redis` |
| response cache | `CacheStore` | `memory`, `redis` |
| images behind signed links | `ImageStore` | `local_images`, `s3_images` |
| keys, teams, users, provider keys, budgets | `KeyStore` | `sql` (SQLite, PostgreSQL) |
| spend log | `SpendLog` | `sql` (SQLite, PostgreSQL) |

The gateway is given a `Stores` and builds none of them; `open_stores(config)` is the one
place a config becomes stores. The code above them only ever sees the protocols.

A Redis that does not answer never fails or holds up a request: every operation has a
short deadline (`general_settings.redis_timeout`), and a circuit breaker then answers from
in-process state until Redis answers again (see `breaker.py`); the outage and the recovery
are each logged once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol
from urllib.parse import quote

import msgspec

from prismgate.storage.breaker import DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, RedisBreaker
from prismgate.storage.records import (
    KeyRecord,
    Nanos,
    ProviderKeyRecord,
    SpendRow,
    TeamRecord,
    UserRecord,
)
from prismgate.types.meta import RateLimitStatus

if TYPE_CHECKING:
    from prismgate.config import Config
    from prismgate.media.links import SignedLinks

__all__ = [
    "LIMIT_WINDOW",
    "BudgetRefusal",
    "CacheStore",
    "Cooldown",
    "Holder",
    "ImageStore",
    "KeptFile",
    "KeyStore",
    "LimitAnswer",
    "LimitCheck",
    "LimitKind",
    "LimitState",
    "MemoryCacheStore",
    "MemoryLimitState",
    "MemoryRoutingState",
    "RedisBreaker",
    "RedisCacheStore",
    "RedisLimitState",
    "RedisRoutingState",
    "RoutingState",
    "SharedState",
    "SpendLog",
    "SpendQuery",
    "SpendTotal",
    "StoredImage",
    "Stores",
    "Usage",
    "open_image_store",
    "open_shared",
    "open_shared_state",
    "open_stores",
    "redis_url_from",
]

DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True, slots=True)
class Usage:
    """What one deployment has used in the current minute."""

    requests: int  # requests counted in the current minute
    tokens: int  # tokens counted in the current minute


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A deployment that is cooling down: for how long yet, and why."""

    left: float  # seconds until it ends
    reason: str  # the failure that started it ("" when none was given)


class RoutingState(Protocol):
    """Cooldowns, failure counts and per-minute usage of deployments, by deployment id."""

    async def cooled_down(self, deployment_ids: Sequence[str]) -> frozenset[str]:
        """The ids among these that are cooling down right now."""
        ...

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, Cooldown]:
        """The ids among these that are cooling down, each with its time left and reason."""
        ...

    async def cool_down(self, deployment_id: str, seconds: float, reason: str = "") -> None:
        """Skip this deployment for `seconds` (extends, never shortens, a running cooldown);
        `reason` says why (the failure that started it)."""
        ...

    async def record_failure(
        self,
        deployment_id: str,
        *,
        allowed_fails: int,
        window: float,
        cooldown: float,
        reason: str = "",
    ) -> bool:
        """Count one failure in a window of `window` seconds; when the count goes over
        `allowed_fails`, cool the deployment down for `cooldown` s, reset its count, return True."""
        ...

    async def usage(self, deployment_ids: Sequence[str]) -> dict[str, Usage]:
        """Requests and tokens counted for each id in the current minute (0s when none)."""
        ...

    async def take_request(self, deployment_id: str, rpm: int | None) -> bool:
        """Count one request in the current minute, atomically; False (and nothing counted)
        when `rpm` requests were already counted this minute. rpm None: always counts, True."""
        ...

    async def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Add tokens to this minute's count."""
        ...

    async def ping(self) -> None:
        """Return once the backend answers (readiness); raise when it does not. In this
        process: at once."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


class CacheStore(Protocol):
    """Bytes by key, each with a time to live."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0)."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key` (nothing happens when it is absent)."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image read back from the image store."""

    data: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class KeptFile:
    """An image kept for the console: its name, and the size its header declares."""

    name: str
    size_bytes: int
    width: int | None = None
    height: int | None = None


class ImageStore(Protocol):
    """Images kept behind signed links, named by their content."""

    async def put(self, data: bytes, media_type: str) -> str:
        """Store `data`; the name links point at. `InsufficientStorageError` when full."""
        ...

    async def exists(self, name: str) -> bool:
        """Whether `name` is stored (and keep it another link lifetime)."""
        ...

    async def get(self, name: str) -> StoredImage | None:
        """The image called `name`, or None (names this store did not make included)."""
        ...

    async def keep(
        self, data: bytes, media_type: str, *, executor: Executor | None = None
    ) -> KeptFile:
        """Keep `data` among the console's kept images (general_settings.console), apart
        from link images and for the store's keep period; its name and header. Blocking
        work runs in `executor` (the console's own threads) when one is given."""
        ...

    async def keep_stored(self, name: str, *, executor: Executor | None = None) -> KeptFile | None:
        """Keep the image stored as `name` for a link among the kept images too (its
        bytes are not copied, and its link keeps working until it expires); None when it
        is not stored. `executor` as for `keep`."""
        ...

    def signing_key(self, master_key: str | None) -> bytes:
        """The HMAC key for links, the same for every instance sharing this store."""
        ...

    async def ping(self) -> None:
        """Return once the store can be written (readiness); raise when it cannot."""
        ...

    async def aclose(self) -> None:
        """Stop background work and release connections."""
        ...


HolderKind = Literal["key", "team", "user"]


class Holder(NamedTuple):
    """Whose budget a call spends from: a key (by its token), a team or a user. A named
    tuple: holders key the dicts every keyed call looks up, and a tuple hashes in C."""

    kind: HolderKind
    id: str


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why a reservation was refused: the first budget it would pass."""

    holder: Holder
    max_budget: Nanos
    spend: Nanos  # spent, plus what calls in flight hold
    reset_at: float | None


# requests, tokens and images are counted per minute; parallel counts calls in flight.
LimitKind = Literal["requests", "tokens", "images", "parallel"]

LIMIT_WINDOW = 60.0  # seconds: every per-minute limit is a budget of this long


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One counter a call takes from: a holder's limit of one kind.

    `cost` is what the call takes when it is let in: 1 request, its n images, 1 parallel
    slot, and 0 tokens (they are known only after the call and added by `finish`; a call
    is let in while at least one token of the limit is left)."""

    holder: Holder
    kind: LimitKind
    limit: int
    cost: int
    # Worked out once, as checks are made once per caller and images asked for:
    # the counter's name, (holder, kind);
    counter: tuple[Holder, LimitKind] = field(init=False, repr=False, compare=False)
    # for a per-minute limit, the seconds of its window the call must find free (its cost,
    # at least 1; infinite when that is more than the whole limit: it never passes) and
    # the seconds its cost takes.
    needed_span: float = field(init=False, repr=False, compare=False)
    taken_span: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counter", (self.holder, self.kind))
        need = self.cost or 1
        fits = need <= self.limit
        needed = need * LIMIT_WINDOW / self.limit if fits else math.inf
        object.__setattr__(self, "needed_span", needed)
        object.__setattr__(
            self, "taken_span", self.cost * LIMIT_WINDOW / self.limit if fits else 0.0
        )


class LimitAnswer(msgspec.Struct, frozen=True):
    """What a take did: `levels[i]` is where `checks[i]` stands (after the take, or as it
    was when refused), as the caller's rate-limit headers say it (a parallel slot's
    `reset` is 0: slots come back when calls end). `refused` is the index of the check
    that refused the call (None: every counter was taken); `retry_after` the seconds
    until it would pass (None when unknown: a parallel slot comes back when a call ends)."""

    levels: tuple[RateLimitStatus, ...]
    refused: int | None = None
    retry_after: float | None = None


class LimitState(Protocol):
    """The counters behind callers' limits, shared by every instance on one backend.

    Per-minute kinds are exact token buckets (GCRA): a limit of L per minute lets L in at
    once, then one more every 60/L s, and says to the millisecond when the next would
    pass. Parallel slots are leases: a call's slot lapses `lease` s after it was taken or
    last renewed, so the calls of an instance that died free their slots.
    """

    async def take(
        self, call_id: str, checks: Sequence[LimitCheck], *, lease: float
    ) -> LimitAnswer:
        """Take every check's cost for call `call_id`, all or none, atomically: a call is
        refused (and nothing taken) when any one counter cannot give its cost."""
        ...

    async def renew(self, call_id: str, checks: Sequence[LimitCheck], *, lease: float) -> None:
        """Keep this call's parallel slots another `lease` s (a call still running)."""
        ...

    async def finish(self, call_id: str, checks: Sequence[LimitCheck], *, tokens: int) -> None:
        """The call ended: free its parallel slots, add `tokens` to its tokens counters.
        It is done in full even when the caller is cancelled while it runs."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


class KeyStore(Protocol):
    """Keys, teams, users and provider keys, and the budgets they spend from.

    `update_*` take the record's field names (`budget` and `limits` as whole Structs) and
    return the changed record, or None when there is none to change. Reservations are
    atomic across every instance sharing the store: a call holds its price before it goes
    upstream and settles with its real cost after.
    """

    async def create_key(self, key: KeyRecord) -> None:
        """Add a key. `ConflictError` when its token or alias is taken."""
        ...

    async def key(self, token: str) -> KeyRecord | None:
        """The key with this token, deleted ones included (they answer "deleted")."""
        ...

    async def key_by_alias(self, alias: str) -> KeyRecord | None:
        """The live key with this alias."""
        ...

    async def keys_by_tokens(self, tokens: Sequence[str]) -> list[KeyRecord]:
        """The keys with these tokens, deleted ones included, in one read (any order;
        tokens no key has are left out)."""
        ...

    async def update_key(self, token: str, changes: Mapping[str, Any]) -> KeyRecord | None:
        """Change a live key's fields."""
        ...

    async def replace_key(self, old_token: str, key: KeyRecord, *, now: float) -> None:
        """Give a live key a new token (a regenerated key), in one step: the old token
        is deleted as `key` is added, spend and budget holds included."""
        ...

    async def delete_keys(self, tokens: Sequence[str], *, now: float) -> list[str]:
        """Mark live keys deleted; the tokens that were."""
        ...

    async def list_keys(
        self,
        *,
        team_id: str | None = None,
        user_id: str | None = None,
        key_alias: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], int]:
        """Live keys, newest first, and how many match in all."""
        ...

    async def create_team(self, team: TeamRecord) -> None:
        """Add a team. `ConflictError` when its id is taken."""
        ...

    async def team(self, team_id: str) -> TeamRecord | None:
        """The team with this id."""
        ...

    async def update_team(self, team_id: str, changes: Mapping[str, Any]) -> TeamRecord | None:
        """Change a team's fields."""
        ...

    async def delete_teams(self, team_ids: Sequence[str]) -> list[str]:
        """Remove teams (their keys stay, without a team); the ids that were removed."""
        ...

    async def list_teams(self) -> list[TeamRecord]:
        """Every team, oldest first."""
        ...

    async def create_user(self, user: UserRecord) -> None:
        """Add a user. `ConflictError` when its id is taken."""
        ...

    async def user(self, user_id: str) -> UserRecord | None:
        """The user with this id."""
        ...

    async def update_user(self, user_id: str, changes: Mapping[str, Any]) -> UserRecord | None:
        """Change a user's fields."""
        ...

    async def put_provider_key(
        self, record: ProviderKeyRecord, *, only: Literal["new", "existing"] | None = None
    ) -> bool:
        """Add or replace a provider key (a rotation keeps its `created_at`); whether it
        was written. `only="new"` writes only when the name is free, `only="existing"`
        only when it is taken (each decided in the same statement as the write)."""
        ...

    async def provider_key(self, name: str) -> ProviderKeyRecord | None:
        """The provider key called `name`."""
        ...

    async def list_provider_keys(self) -> list[ProviderKeyRecord]:
        """Every provider key, by name."""
        ...

    async def delete_provider_key(self, name: str) -> bool:
        """Remove a provider key; whether there was one."""
        ...

    async def reserve(
        self, hold_id: str, holders: Sequence[Holder], amount: Nanos, *, now: float, ttl: float
    ) -> BudgetRefusal | None:
        """Hold `amount` against every holder's budget, all or none: budgets whose period
        ended are reset first; a holder without a budget always passes. The hold lapses
        after `ttl` s unless settled (an instance that died mid-call)."""
        ...

    async def settle(self, hold_id: str, spent: Nanos, *, now: float) -> bool:
        """Release the hold and add `spent` to each of its holders' spend (once); whether
        the hold was there (False: it lapsed, or was settled already)."""
        ...

    async def headroom(self, holders: Sequence[Holder]) -> Nanos | None:
        """The least room left (cap, less spend and holds) among the holders that have a
        cap; None when none has one. Read without a lock: a guide for sizing a hold."""
        ...

    async def charge(self, holders: Sequence[Holder], spent: Nanos, *, now: float) -> None:
        """Add `spent` to each holder's spend with no hold (a call that reserved nothing)."""
        ...

    async def charge_many(
        self, charges: Sequence[tuple[Sequence[Holder], Nanos]], *, now: float
    ) -> None:
        """`charge` for many sets of holders, all in one transaction."""
        ...

    async def release_lapsed(self, *, now: float) -> int:
        """Drop holds past their time; how many."""
        ...

    async def ping(self) -> None:
        """Return once the database answers (readiness); raise when it does not."""
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """Which spend rows to read: every given field must match; times are Unix seconds."""

    token: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    request_id: str | None = None
    start: float | None = None
    end: float | None = None
    limit: int = 1000
    offset: int = 0
    key_alias: str | None = None
    model_group: str | None = None  # or, for a call no group served, the model it named
    failed: bool | None = None  # True: status 400 and up; False: below
    status_code: int | None = None
    ended_after: float | None = None  # rows of calls that ended after this
    # Keyset paging: rows older than this (started_at, request_id), newest first.
    before: tuple[float, str] | None = None
    with_kept_images: bool = False  # only rows that kept images
    # Read each row's details (the console's record of the call, up to tens of KB a row);
    # without, rows come with `details` None.
    with_details: bool = False


SpendGrouping = Literal["key", "team", "model", "day"]


@dataclass(frozen=True, slots=True)
class SpendTotal:
    """Spend of one key, team, model group or day (`YYYY-MM-DD`, UTC)."""

    group: str | None
    spend: Nanos
    requests: int
    images: int
    total_tokens: int


class SpendLog(Protocol):
    """One row per served request."""

    async def write(self, rows: Sequence[SpendRow]) -> None:
        """Add rows; a row whose request id is already there is skipped (a replay after an
        outage writes each row once)."""
        ...

    async def rows(self, query: SpendQuery) -> list[SpendRow]:
        """Rows matching `query`, newest first."""
        ...

    async def totals(self, query: SpendQuery, by: SpendGrouping) -> list[SpendTotal]:
        """Spend matching `query`, grouped, largest first."""
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


def redis_url_from(
    *, url: str | None, host: str | None, port: int | None, password: str | None
) -> str | None:
    """The Redis URL a config names: its `url` (`redis_url`) when given, else one built from
    LiteLLM-style `host` / `port` / `password` (`redis://:password@host:port/0`); None when
    the config names no Redis at all."""
    if url:
        return url
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port or DEFAULT_REDIS_PORT}/0"


@dataclass(frozen=True, slots=True)
class SharedState:
    """The stores that instances share through Redis: routing state, cache, limits."""

    routing: RoutingState
    cache: CacheStore
    limits: LimitState


def open_shared(
    *,
    redis_url: str | None,
    cache_max_entries: int = 1024,
    cache_max_bytes: int = 256 * 1024 * 1024,
    prefix: str = "prismgate:",
    timeout: float = DEFAULT_TIMEOUT,
    retry_interval: float = DEFAULT_RETRY_INTERVAL,
) -> SharedState:
    """The routing state, cache store and limit state for a gateway: on Redis (one client,
    keys under `prefix`) when `redis_url` is given, in this process otherwise. Each Redis
    operation may take `timeout` s; past it, the stores use in-process state until a probe
    (every `retry_interval` s) finds Redis answering. Close all three when done."""
    if redis_url is None:
        return SharedState(
            MemoryRoutingState(),
            MemoryCacheStore(max_entries=cache_max_entries, max_bytes=cache_max_bytes),
            MemoryLimitState(),
        )
    client = connect_redis(redis_url, timeout=timeout)
    # One breaker for every store: one client, one outage, one log line.
    breaker = RedisBreaker(client, timeout=timeout, retry_interval=retry_interval)
    return SharedState(
        RedisRoutingState(client, prefix=prefix, breaker=breaker),
        RedisCacheStore(
            client,
            prefix=prefix,
            breaker=breaker,
            local_max_entries=cache_max_entries,
            local_max_bytes=cache_max_bytes,
        ),
        RedisLimitState(client, prefix=prefix, breaker=breaker),
    )


def open_shared_state(
    *,
    redis_url: str | None,
    cache_max_entries: int = 1024,
    cache_max_bytes: int = 256 * 1024 * 1024,
    prefix: str = "prismgate:",
    timeout: float = DEFAULT_TIMEOUT,
    retry_interval: float = DEFAULT_RETRY_INTERVAL,
) -> tuple[RoutingState, CacheStore]:
    """The routing state and cache store of `open_shared` (same arguments), for callers
    that keep no limits. Close both when done."""
    shared = open_shared(
        redis_url=redis_url,
        cache_max_entries=cache_max_entries,
        cache_max_bytes=cache_max_bytes,
        prefix=prefix,
        timeout=timeout,
        retry_interval=retry_interval,
    )
    return shared.routing, shared.cache


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store a gateway uses. The key store and spend log are None where there is no
    database (an SDK gateway whose config names none): calls then carry no accounting."""

    routing: RoutingState
    cache: CacheStore
    images: ImageStore
    keys: KeyStore | None = None
    spend: SpendLog | None = None
    # Callers' rate limits: in this process unless `open_stores` puts them on Redis. (A
    # lambda: the backend is imported at the bottom of this module, after this class.)
    limits: LimitState = field(default_factory=lambda: MemoryLimitState())  # noqa: PLW0108
    # How answers link to stored images when the image store makes the links itself
    # (presigned S3 URLs, `image_store.links: presigned`); None: the gateway's signed links.
    answer_links: SignedLinks | None = None

    async def aclose(self) -> None:
        """Close every store."""
        await self.routing.aclose()
        await self.cache.aclose()
        await self.limits.aclose()
        await self.images.aclose()
        if self.keys is not None:
            await self.keys.aclose()
        if self.spend is not None:
            await self.spend.aclose()


def open_stores(config: Config) -> Stores:
    """The stores `config` names: routing state, cache and limits in this process or on
    Redis (`router_settings.redis_*`), images in a local folder or an S3 bucket
    (`general_settings.image_store`). The SQL stores are attached by whoever serves
    (`prismgate.storage.sql`), since they need their schema migrated."""
    from prismgate.routing.settings import redis_url_of

    general = config.general_settings
    shared = open_shared(
        redis_url=redis_url_of(config),
        prefix=general.redis_prefix,
        timeout=general.redis_timeout,
        retry_interval=general.redis_retry_interval,
    )
    images, answer_links = open_image_store(config)
    return Stores(
        routing=shared.routing,
        cache=shared.cache,
        images=images,
        limits=shared.limits,
        answer_links=answer_links,
    )


def open_image_store(config: Config) -> tuple[ImageStore, SignedLinks | None]:
    """The image store `general_settings.image_store` names, and the links answers get
    when the store makes them itself (presigned S3 URLs; None: the gateway signs them)."""
    general = config.general_settings
    settings = general.image_store
    keep_seconds = general.console.keep_images_days * 86_400
    keep_max_bytes = general.console.keep_images_max_bytes
    if settings.type == "s3":
        # Imported only for an S3 store: aiobotocore is an extra (`prismgate[s3]`).
        from prismgate.storage.s3_images import S3ImageStore

        store = S3ImageStore(
            settings,
            environ=config.environ,
            keep_seconds=keep_seconds,
            keep_max_bytes=keep_max_bytes,
        )
        return store, store.presigned_links() if settings.links == "presigned" else None
    from prismgate.storage.local_images import LocalImageStore

    local = LocalImageStore(settings, keep_seconds=keep_seconds, keep_max_bytes=keep_max_bytes)
    return local, None


# The backends build `Usage` and follow the protocols above, so they
# are imported after them.
from prismgate.storage.memory import (  # noqa: E402
    MemoryCacheStore,
    MemoryLimitState,
    MemoryRoutingState,
)
from prismgate.storage.redis import (  # noqa: E402
    RedisCacheStore,
    RedisLimitState,
    RedisRoutingState,
    connect_redis,
)
