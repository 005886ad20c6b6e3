"""Budgets on the request path: a call holds its price before it goes upstream and pays its
real cost after, without a database round trip per call.

A caller whose key, team or user has a cap draws from a **lease**: one hold in the key
store (`KeyStore.reserve`) that covers many calls. Each call takes its price bound from
the lease in memory and gives back what it did not spend; a lease is settled with the
sum of its calls' costs once it is a second old (or used up) and its last call ended. A
lease takes at most an eighth of the room left, so instances sharing a budget each get
some; when that is less than two calls' price, each call holds just its own price in
the store itself, so that a budget covering ten calls lets exactly ten
through across every instance. A caller without any cap holds nothing: its spend is
added up here and charged once a second.

What the store has not been told yet is lost if the process dies (the spend log keeps
the rows; holds lapse after `HOLD_TTL`); `aclose()` settles everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from prismgate.errors import BudgetExceededError, PrismgateError, ServiceUnavailableError
from prismgate.identity.principal import Principal
from prismgate.identity.wire import iso
from prismgate.storage import BudgetRefusal, Holder, KeyStore
from prismgate.storage.records import NANOS_PER_DOLLAR, Nanos, dollars

__all__ = ["Budgets", "Hold"]

log = logging.getLogger(__name__)

LEASE_SHARE = 8  # a lease takes at most this fraction (1/8) of the room left
LEASE_CALLS = 4096  # and at most this many calls' price
LEASE_SECONDS = 1.0  # a lease is settled this long after it was taken
HOLD_TTL = 900.0  # a hold that is never settled (its instance died) lapses after this
SWEEP_SECONDS = 60.0  # how often lapsed holds are released
STORE_TIMEOUT = 5.0  # a store that takes longer to hold a call's price counts as down


@dataclass(slots=True, eq=False)
class _Lease:
    """A hold in the store that calls draw from in memory."""

    hold_id: str
    size: Nanos  # what the store holds for it
    unit: Nanos  # the price of the call that took it
    taken_at: float
    room: Nanos = 0  # what calls may still take
    spent: Nanos = 0  # the real cost of the calls that ended
    calls: int = 0  # calls drawing from it now
    closed: bool = False  # no new calls; settled when the last one ends
    settled: bool = False  # the store was told; nothing more to tell it


@dataclass(slots=True, eq=False)
class _Account:
    """What this process holds and owes for one set of holders (a key, its team, its user)."""

    holders: tuple[Holder, ...]
    lease: _Lease | None = None
    owed: Nanos = 0  # spend of calls without a hold, not yet charged
    calls: int = 0  # calls running now
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    refilling: bool = False  # a lease to follow the current one is being taken
    principal: Principal | None = None  # the last caller: whose name a refill would give


# What a call took from one lease: the lease, and the amount.
_Part = tuple[_Lease, Nanos]


class Hold:
    """One call's claim on its budgets: `cover` each deployment's price bound before its
    attempt goes upstream, then `pay` once, with what the call cost."""

    # Made for every keyed call: plain slots, and the usual single part in two of them
    # (a call covered again, for a dearer fallback, keeps its further parts in a list).
    __slots__ = ("_account", "_amount", "_budgets", "_capped", "_held", "_lease", "_more",
                 "_paid", "_principal")  # fmt: skip

    def __init__(
        self, budgets: Budgets, principal: Principal, account: _Account, capped: bool
    ) -> None:
        self._budgets = budgets
        self._principal = principal
        self._account = account
        self._capped = capped
        self._lease: _Lease | None = None  # the first part: its lease and amount
        self._amount: Nanos = 0
        self._more: list[_Part] | None = None  # the parts after it
        self._held: Nanos = 0  # the sum of the parts' amounts
        self._paid = False

    @property
    def capped(self) -> bool:
        """Whether a budget limits the call (else nothing is held, the cost is counted)."""
        return self._capped

    @property
    def price(self) -> Nanos:
        """What the call holds: the highest price bound it was covered for."""
        return self._held

    async def cover(self, price: float | None) -> None:
        """Hold up to `price` (dollars; None: unpriced) in all: a deployment dearer than
        the call's first bound (a fallback, a Portkey target) takes the difference before
        it is called. `BudgetExceededError` when the budgets cannot cover it."""
        if self.cover_now(price):
            return
        wanted = self._wanted(price)
        self._add(await self._budgets._take(self._principal, self._account, wanted))

    def cover_now(self, price: float | None) -> bool:
        """`cover(price)` when this process's lease has room for it (the usual case: taken
        in memory, no wait); False, and nothing held, when the store must be asked."""
        wanted = self._wanted(price)
        if wanted <= 0:
            return True
        account = self._account
        lease = account.lease
        if lease is None or lease.closed or lease.room < wanted:
            return False
        self._budgets._draw(self._principal, account, lease, wanted)
        if self._lease is None:  # the usual call: its first part
            self._lease, self._amount = lease, wanted
            self._held = wanted
        else:
            self._add((lease, wanted))
        return True

    def _wanted(self, price: float | None) -> Nanos:
        """What is still to hold to cover `price`: nothing unless capped and not paid."""
        if not self._capped or self._paid:
            return 0
        # Never zero: a budget that is spent refuses even a call that costs nothing.
        return max(1, round((price or 0.0) * NANOS_PER_DOLLAR)) - self._held

    def _add(self, part: _Part) -> None:
        lease, amount = part
        if self._lease is None:
            self._lease, self._amount = lease, amount
        elif self._more is None:
            self._more = [(lease, amount)]
        else:
            self._more.append((lease, amount))
        self._held += amount

    def pay(self, cost: Nanos) -> None:
        """The call ended and cost `cost` (0 when it failed): return the rest of its hold.
        Never blocks; the store is told in the background."""
        if self._paid:
            return
        self._paid = True
        account = self._account
        account.calls -= 1
        if not self._capped:
            account.owed += cost
            return
        lease = self._lease
        if lease is None:
            return
        if self._more is None:  # the usual call: one part, which pays it all
            self._give_back(account, lease, self._amount, cost)
            return
        parts = [(lease, self._amount), *self._more]
        last = len(parts) - 1
        for index, (part_lease, amount) in enumerate(parts):
            # Each part pays up to its amount; the last one pays what is left, even past it.
            spent = cost if index == last else min(cost, amount)
            cost -= spent
            self._give_back(account, part_lease, amount, spent)

    def _give_back(self, account: _Account, lease: _Lease, amount: Nanos, spent: Nanos) -> None:
        lease.room += amount - spent
        lease.spent += spent
        lease.calls -= 1
        if lease.closed and lease.calls == 0:
            self._budgets._settle_soon(account, lease)


class Budgets:
    """Holds and settles calls against the budgets of their keys, teams and users."""

    def __init__(self, store: KeyStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._accounts: dict[tuple[Holder, ...], _Account] = {}
        self._leases: dict[_Lease, _Account] = {}  # every lease not settled yet
        self._unsettled: list[tuple[_Account, _Lease]] = []  # settlements to try again
        self._settling: set[asyncio.Task[None]] = set()  # settlements under way
        self._refills: set[asyncio.Task[None]] = set()  # leases being taken ahead
        self._ticker: asyncio.Task[None] | None = None
        self._swept_at = 0.0

    async def hold(self, principal: Principal, price: Callable[[], float | None]) -> Hold | None:
        """Hold the call's price bound (`price()`, dollars; None when unknown) against the
        caller's budgets. None when the caller has no key (nothing is counted).
        `BudgetExceededError` (429) when a budget cannot cover it; nothing went upstream."""
        hold = self.open(principal)
        if hold is not None and hold.capped:
            try:
                await hold.cover(price())
            except BaseException:
                hold.pay(0)
                raise
        return hold

    def open(self, principal: Principal) -> Hold | None:
        """A call's hold, covering nothing yet (`hold` without the price; then
        `cover_now` or `cover`, and `pay` whatever happens). None when the caller has no
        key (nothing is counted)."""
        holders = principal.holders
        if not holders:
            return None
        account = self._accounts.get(holders)
        if account is None:
            account = self._accounts[holders] = _Account(holders)
        ticker = self._ticker
        if ticker is None or ticker.done():
            self._start()
        account.calls += 1  # from here on, until paid: the account is kept while it runs
        account.principal = principal
        return Hold(self, principal, account, principal.capped)

    async def _take(self, principal: Principal, account: _Account, amount: Nanos) -> _Part:
        lease = account.lease
        if lease is None or lease.closed or lease.room < amount:
            async with account.opening:
                lease = account.lease
                if lease is None or lease.closed or lease.room < amount:
                    lease = await self._open_lease(principal, account, amount)
        return self._draw(principal, account, lease, amount)

    def _draw(self, principal: Principal, account: _Account, lease: _Lease, amount: Nanos) -> _Part:
        """Take `amount` from `lease`, which has room for it."""
        lease.room -= amount
        lease.calls += 1
        if lease.room < amount:
            self._close(account, lease)  # used up (an exact hold is used up at once)
        elif lease.room < lease.size // 4:
            self._refill(principal, account)  # the next lease is ready before this one ends
        return lease, amount

    def _refill(self, principal: Principal, account: _Account) -> None:
        """Take the lease that follows the current one in the background: calls go on
        drawing from the current one meanwhile, and never wait for the store."""
        if account.refilling or account.lease is None:
            return
        account.refilling = True
        task = asyncio.get_running_loop().create_task(self._refilled(principal, account))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refilled(self, principal: Principal, account: _Account) -> None:
        current = account.lease
        try:
            async with account.opening:
                if current is not None and account.lease is current:
                    await self._open_lease(principal, account, current.unit)
        except PrismgateError:
            pass  # no room for another lease (or no store): calls ask when this one ends
        finally:
            account.refilling = False

    async def flush(self) -> None:
        """Settle every lease and charge every owed amount now."""
        now = self._clock()
        for account in list(self._accounts.values()):
            if account.lease is not None:
                self._close(account, account.lease)
        await self._charge(now)
        while self._settling or self._refills:
            await asyncio.gather(*self._settling, *self._refills, return_exceptions=True)
        await self._retry_unsettled()

    async def aclose(self) -> None:
        """Stop the background work and settle what is left (calls still running are
        settled as they would be at their lapse)."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        try:
            await self.flush()
            # Calls still running are charged what they hold: their cost is not known yet.
            for lease, account in list(self._leases.items()):
                lease.spent = lease.size - lease.room
                await self._settle(account, lease)
        except Exception as exc:
            log.error("budgets: spend could not be settled at shutdown (%s)", type(exc).__name__)

    async def _open_lease(self, principal: Principal, account: _Account, amount: Nanos) -> _Lease:
        now = self._clock()
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                size, hold_id, refusal = await self._reserve(account, amount, now)
        except Exception as exc:
            log.warning("budgets: the key store did not answer (%s)", type(exc).__name__)
            raise ServiceUnavailableError(
                "the budget of this key cannot be checked right now (its store does not "
                "answer); try again shortly",
                code="budget_store_unavailable",
            ) from exc
        if refusal is not None:
            raise _refused(principal, refusal, amount, now)
        previous = account.lease
        lease = account.lease = _Lease(hold_id, size=size, unit=amount, room=size, taken_at=now)
        self._leases[lease] = account
        if previous is not None:
            self._close(account, previous)  # its calls end on it; new ones take the new one
        return lease

    async def _reserve(
        self, account: _Account, amount: Nanos, now: float
    ) -> tuple[Nanos, str, BudgetRefusal | None]:
        """A lease's size and id, once the store holds it (or the refusal)."""
        store = self._store
        room = await store.headroom(account.holders)
        size = amount if room is None else min(amount * LEASE_CALLS, room // LEASE_SHARE)
        if size < 2 * amount:
            size = amount  # little room left: each call holds just its own price
        hold_id = uuid.uuid4().hex
        refusal = await store.reserve(hold_id, account.holders, size, now=now, ttl=HOLD_TTL)
        if refusal is not None and (size > amount or self._settling):
            # Others drew from the room since it was read, or calls of this process
            # that ended are still giving theirs back: wait for those, ask for one call.
            if self._settling:
                await asyncio.gather(*self._settling, return_exceptions=True)
            size = amount
            refusal = await store.reserve(hold_id, account.holders, size, now=now, ttl=HOLD_TTL)
        return size, hold_id, refusal

    def _close(self, account: _Account, lease: _Lease) -> None:
        if lease.closed:
            return
        lease.closed = True
        if account.lease is lease:
            account.lease = None
        if lease.calls == 0:
            self._settle_soon(account, lease)

    def _settle_soon(self, account: _Account, lease: _Lease) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(account, lease))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, account: _Account, lease: _Lease, *, retried: bool = False) -> None:
        if lease.settled:
            return
        try:
            found = await self._store.settle(lease.hold_id, lease.spent, now=self._clock())
            if not found and not retried:
                # Lapsed (a call longer than the hold's lifetime): the spend still counts.
                # (On a retry, the hold may be gone because the failed try did commit.)
                await self._store.charge(account.holders, lease.spent, now=self._clock())
        except Exception as exc:
            log.warning("budgets: a settlement failed (%s); it is retried", type(exc).__name__)
            self._unsettled.append((account, lease))
            return
        lease.settled = True
        self._leases.pop(lease, None)

    async def _retry_unsettled(self) -> None:
        waiting, self._unsettled = self._unsettled, []
        for index, (account, lease) in enumerate(waiting):
            try:
                await self._settle(account, lease, retried=True)
            except BaseException:
                self._unsettled.extend(waiting[index:])  # cancelled: kept for the next try
                raise

    async def _charge(self, now: float) -> None:
        """Charge what every account owes, in one write."""
        owing = [account for account in self._accounts.values() if account.owed]
        if not owing:
            return
        owed = [account.owed for account in owing]
        for account in owing:
            account.owed = 0
        try:
            await self._store.charge_many(
                [(account.holders, amount) for account, amount in zip(owing, owed, strict=True)],
                now=now,
            )
        except BaseException as exc:
            for account, amount in zip(owing, owed, strict=True):
                account.owed += amount  # charged on the next tick (or at shutdown)
            if not isinstance(exc, Exception):
                raise
            log.warning("budgets: a charge failed (%s); it is retried", type(exc).__name__)

    def _start(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 2)
            now = self._clock()
            for account in self._accounts.values():
                lease = account.lease
                if lease is None:
                    continue
                age = now - lease.taken_at
                if age >= 2 * LEASE_SECONDS:
                    self._close(account, lease)  # no lease followed it: settle it anyway
                elif age >= LEASE_SECONDS and account.principal is not None:
                    self._refill(account.principal, account)
            await self._charge(now)
            for holders, account in list(self._accounts.items()):
                if account.lease is None and not (account.owed or account.calls):
                    del self._accounts[holders]  # idle: nothing to keep
            await self._retry_unsettled()
            if now - self._swept_at >= SWEEP_SECONDS:
                self._swept_at = now
                with contextlib.suppress(Exception):
                    await self._store.release_lapsed(now=now)


def _refused(
    principal: Principal, refusal: BudgetRefusal, amount: Nanos, now: float
) -> BudgetExceededError:
    holder = refusal.holder
    if holder.kind == "key":
        whose = f"the key {principal.key_alias}"
    elif holder.kind == "team":
        team = principal.team
        whose = f"the team {team.team_alias or team.team_id if team else holder.id}"
    else:
        whose = f"the user {holder.id}"
    reset = ""
    retry_after = None
    if refusal.reset_at is not None:
        reset = f"; it resets at {iso(refusal.reset_at)}"
        retry_after = max(1.0, refusal.reset_at - now)
    return BudgetExceededError(
        f"{whose} is over its budget: ${dollars(refusal.spend):.4f} spent or held of "
        f"${dollars(refusal.max_budget):.4f}, and this call may cost up to "
        f"${dollars(amount):.4f}{reset}. Raise max_budget (/key/update, /team/update) or "
        "wait for the reset",
        retry_after=retry_after,
    )
