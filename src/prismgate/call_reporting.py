"""What a gateway tells about its calls, wired in one place for the SDK and the proxy:
its observers (observers.py: a spend recorder, the config's webhook callbacks, the
proxy's metrics), its traces (observability/tracing.py) and the console's record of each
call (call_records.py).

The gateway builds one `CallReporting` from its config and what its caller gave it
(observers, a `Tracing`); the proxy adds its observers later through the same
`observers` setter, so both faces decide the same way. The console's records are finished
into spend-log rows, so a keeper is built only once a spend recorder is among the
observers: an SDK gateway without one, or a proxy with `disable_spend_logs` or without a
database, makes no record and starts no thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from prismgate.call_records import CallRecord, Keeper
from prismgate.observability.callbacks import webhooks_from_config
from prismgate.observability.redaction import Redactor
from prismgate.observability.tracing import Tracing, propagating, tracing_from_config
from prismgate.observers import CallReport, Observer, report_to
from prismgate.request_ids import new_request_id
from prismgate.spend import SpendRecorder
from prismgate.storage import ImageStore
from prismgate.streaming import RelayedStream
from prismgate.transport import Transport
from prismgate.types import Served

if TYPE_CHECKING:
    from prismgate.call_options import CallOptions
    from prismgate.config import Config
    from prismgate.routing.router import Target

__all__ = ["CallReporting"]

A = TypeVar("A")

# The attempt span of a gateway without tracing: nothing, and nothing made per attempt.
_NO_SPAN = contextlib.nullcontext()


class CallReporting:
    """A gateway's observers, tracing and console records (see the module docstring).

    `tracing` replaces the config's; the config's is this object's to close, one passed
    in is its caller's."""

    def __init__(
        self,
        config: Config,
        image_store: ImageStore,
        redactor: Redactor,
        *,
        observers: Sequence[Observer],
        tracing: Tracing | None,
    ) -> None:
        self._config = config
        self._image_store = image_store
        self._redactor = redactor
        self._own_tracing = tracing is None
        self.tracing = tracing if tracing is not None else tracing_from_config(config)
        self._webhooks = webhooks_from_config(config)
        # The console's record keeper: built with the first spend recorder, if the
        # console keeps anything (general_settings.console).
        self.keeper: Keeper | None = None
        self._observers: tuple[Observer, ...] = ()
        self.observers = (*observers, *self._webhooks)

    @property
    def observers(self) -> tuple[Observer, ...]:
        """Who is told about every call."""
        return self._observers

    @observers.setter
    def observers(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)
        if self.keeper is None and any(isinstance(o, SpendRecorder) for o in observers):
            self.keeper = Keeper.from_config(self._config, self._image_store, self._redactor)

    def record_for(self, options: CallOptions) -> CallRecord | None:
        """The console's record of a call; None when it keeps nothing of it."""
        return None if self.keeper is None else self.keeper.record_for(options.principal)

    def upstream(self, transport: Transport) -> Transport:
        """`transport`, each request carrying its attempt's trace context (with tracing)."""
        return propagating(self.tracing, transport)

    def sending(
        self, transport: Transport, target: Target, record: CallRecord | None, redact: Redactor
    ) -> Transport:
        """`transport`, noting what it sends for `target` in the call's `record`."""
        return transport if record is None else record.recording(transport, redact, target.label)

    def attempt_span(self, target: Target) -> AbstractContextManager[None]:
        """A context manager around one try at `target`: its span (with tracing)."""
        return _NO_SPAN if self.tracing is None else self.tracing.attempt(target)

    async def run(
        self,
        operation: str,
        name: str,
        request: msgspec.Struct,
        options: CallOptions,
        *,
        work: Callable[[], Awaitable[Served[A]]],
        record: CallRecord | None,
    ) -> Served[A]:
        """`work()` as one call: in its span (with tracing), reported once to every
        observer, served or failed (a call whose caller left included), with the
        console's `record` of it. A stream's span ends, and it is reported, when it is
        closed (with the cost of the usage it reported). One coroutine for all of it:
        each coroutine around the call is resumed at every wait of the call."""
        observers, tracing = self._observers, self.tracing
        if not observers and tracing is None:
            return await work()
        started = time.time()
        clock = time.perf_counter()

        def report(served: Served[Any] | None, failure: BaseException | None) -> None:
            meta = served.meta if served is not None else None
            value = served.value if served is not None else None
            if meta is not None and isinstance(value, RelayedStream):
                meta = msgspec.structs.replace(meta, response_cost=value.cost)
            report_to(
                observers,
                CallReport(
                    request_id=options.request_id or new_request_id(),
                    operation=operation,
                    model=name,
                    request=request,
                    principal=options.principal,
                    started_at=started,
                    latency=time.perf_counter() - clock,
                    value=value,
                    meta=meta,
                    failure=failure,
                    trace_id=options.trace_id,
                    metadata=options.metadata,
                    record=record,
                ),
            )

        span = None if tracing is None else tracing.open_call(operation, name, options)
        try:
            served = await work()
        except BaseException as exc:
            if span is not None:
                span.close(None, exc)
            if observers:
                report(None, exc)
            raise
        if span is not None:
            span.close(served, None)
        if not observers:
            return served
        if isinstance(served.value, RelayedStream):
            stream, done = served.value, served
            stream.at_close(lambda failure: report(done, failure))
        else:
            report(served, None)
        return served

    async def aclose(self) -> None:
        """Send what the webhooks and the tracing hold; stop the keeper's threads."""
        for webhook in self._webhooks:
            await webhook.aclose()
        if self.tracing is not None and self._own_tracing:
            await self.tracing.aclose()
        if self.keeper is not None:
            self.keeper.close()
