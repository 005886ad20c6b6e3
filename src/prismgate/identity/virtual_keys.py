"""Virtual keys stored over the API: the logic behind `/v1/virtual-keys` (create, list,
retrieve, rotate, delete), over the key store. Records are sealed
(`virtual_key_records.py`), and calls read them through a cache (`virtual_key_cache.py`).

A stored key comes over the network, so it is held to the rule for a caller's own provider
key: it carries its credentials itself (no fallback to the gateway's environment, its
Application Default Credentials or instance role), and it names nothing on the gateway's
host (a setting its provider declares `host_local`: a credential file, an AWS profile).
Only the operator's config file may do those.

Creating and changing a key needs the encryption key; listing, reading and deleting do
not (an operator who lost it can still see and remove what is stored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from prismgate.config import check_api_base
from prismgate.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)
from prismgate.identity.sealing import Sealer
from prismgate.identity.stale_cache import DEFAULT_STALENESS, MAX_CACHED
from prismgate.identity.virtual_key_cache import StoredKeyCache
from prismgate.identity.virtual_key_records import (
    NAME,
    SET_A_KEY,
    OpenedRecord,
    Payload,
    UnreadableError,
    open_record,
    seal_record,
)
from prismgate.identity.virtual_key_wire import KeyView, create_body, update_body, view
from prismgate.providers import Setting, canonical_provider, get_provider, provider_names
from prismgate.routing.virtual_keys import (
    VirtualKey,
    VirtualKeys,
    deployment_fields,
    provider_setting_table,
    secret_fields,
    shown_fields,
    virtual_key_params,
)
from prismgate.storage import KeyStore
from prismgate.storage.records import ProviderKeyRecord

__all__ = ["StoredVirtualKeys"]

_NO_ENCRYPTION_KEY = "this gateway has no encryption key for virtual keys: " + SET_A_KEY


class StoredVirtualKeys:
    """Creates, lists, reads, rotates and deletes stored virtual keys, and resolves their
    names for calls (through `StoredKeyCache`). `configured` is the config's virtual keys:
    their names are taken, and they are listed alongside."""

    def __init__(
        self,
        store: KeyStore,
        sealer: Sealer | None,
        configured: VirtualKeys,
        *,
        staleness: float = DEFAULT_STALENESS,
        max_cached: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._configured = configured
        self._wall_clock = wall_clock
        self._cache = StoredKeyCache(
            store, sealer, staleness=staleness, max_cached=max_cached, clock=clock
        )

    async def resolve(self, name: str) -> VirtualKey | None:
        """The stored virtual key called `name` (through the cache); None when there is
        none, or when it does not open (the log says why)."""
        return await self._cache.resolve(name)

    # ----------------------------------------------------------------- the management API

    async def create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new virtual key from a `POST /v1/virtual-keys` body; its view."""
        sealer = self._need_sealer()
        body = create_body(data)
        name = body.pop("name")
        self._check_not_configured(name)
        provider = _provider(body.pop("provider"))
        note = body.pop("note", None)
        _check_fields(provider, body)
        now = self._wall_clock()
        payload = Payload(fields=body, note=note)
        record = seal_record(sealer, name, provider, payload, created=now, updated=now)
        if not await self._store.put_provider_key(record, only="new"):
            raise ConflictError(
                f"a virtual key called {name!r} exists already; change it with "
                f"PUT /v1/virtual-keys/{name}, or choose another name",
                param="name",
            )
        self._cache.forget(name)  # it may be cached as "none"
        return _written(
            self._stored_view(record, OpenedRecord(fields=body, note=note, current=True))
        )

    async def update(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Change a stored virtual key from a `PUT` body (fields sent replace the stored
        ones, a null one is removed; `{}` seals it again with the current encryption key).
        Its `created_at` is kept."""
        sealer = self._need_sealer()
        self._check_not_configured(name)
        changes = update_body(data)
        record = await self._record(name)
        opened = open_record(sealer, record)
        if changes.pop("name", name) != name:
            raise BadRequestError(
                "name is the virtual key's slug and cannot change; create a new virtual key "
                "and delete this one",
                param="name",
            )
        provider = _provider(changes.pop("provider")) if "provider" in changes else None
        provider = provider or record.provider
        note = changes.pop("note") if "note" in changes else opened.note
        fields = {k: v for k, v in {**opened.fields, **changes}.items() if v is not None}
        _check_fields(provider, fields)
        payload = Payload(fields=fields, note=note)
        fresh = seal_record(
            sealer, name, provider, payload, created=record.created_at, updated=self._wall_clock()
        )
        if not await self._store.put_provider_key(fresh, only="existing"):
            raise _not_found(name)  # deleted meanwhile
        self._cache.forget(name)
        return _written(
            self._stored_view(fresh, OpenedRecord(fields=fields, note=note, current=True))
        )

    async def delete(self, name: str) -> dict[str, Any]:
        """Delete a stored virtual key: calls naming it are refused from now on here, and
        on other instances within the cache's staleness. Needs no encryption key."""
        self._check_not_configured(name)
        if not NAME.fullmatch(name) or not await self._store.delete_provider_key(name):
            raise _not_found(name)
        self._cache.forget(name)
        return {"success": True, "id": name, "slug": name, "deleted": True}

    async def retrieve(self, name: str) -> dict[str, Any]:
        """One virtual key's view (the config's too); a stored key that does not open is
        shown with `status: unreadable` and why (this one too without an encryption
        key)."""
        configured = self._configured.configured(name)
        if configured is not None:
            return _configured_view(name, configured)
        return self._view_of(await self._record(name))

    async def list(self, *, page: int = 0, size: int = 50) -> dict[str, Any]:
        """Every virtual key, the config's and the stored ones, by name: page `page`
        (from 0) of `size`, and how many there are in all. Without an encryption key,
        the stored ones are listed as unreadable."""
        stored = await self._store.list_provider_keys()
        names = sorted({*self._configured.names(), *(record.name for record in stored)})
        by_name = {record.name: record for record in stored}
        views = []
        for name in names[page * size : (page + 1) * size]:
            configured = self._configured.configured(name)
            if configured is not None:
                views.append(_configured_view(name, configured))
            else:
                views.append(self._view_of(by_name[name]))
        return {"object": "list", "total": len(names), "data": views}

    # ------------------------------------------------------------------------- helpers

    def _need_sealer(self) -> Sealer:
        if self._sealer is None:
            raise ServiceUnavailableError(_NO_ENCRYPTION_KEY, code="encryption_key_required")
        return self._sealer

    def _check_not_configured(self, name: str) -> None:
        if name in self._configured:
            raise ConflictError(
                f"the virtual key {name!r} is defined in the config file (virtual_keys); "
                "change it there, or choose another name",
                param="name",
                code="virtual_key_in_config",
            )

    async def _record(self, name: str) -> ProviderKeyRecord:
        record = await self._store.provider_key(name) if NAME.fullmatch(name) else None
        if record is None:
            raise _not_found(name)
        return record

    def _view_of(self, record: ProviderKeyRecord) -> dict[str, Any]:
        try:
            opened = open_record(self._sealer, record)
        except UnreadableError as error:
            unreadable = KeyView(
                name=record.name,
                provider=record.provider,
                source="api",
                fields={},
                secrets=frozenset(),
                shown=frozenset(),
                created_at=record.created_at,
                updated_at=record.updated_at,
                unreadable=error.message,
            )
            return view(unreadable)
        return self._stored_view(record, opened)

    @staticmethod
    def _stored_view(record: ProviderKeyRecord, opened: OpenedRecord) -> dict[str, Any]:
        return view(
            KeyView(
                name=record.name,
                provider=record.provider,
                source="api",
                fields=opened.fields,
                secrets=secret_fields(record.provider),
                shown=shown_fields(record.provider),
                note=opened.note,
                created_at=record.created_at,
                updated_at=record.updated_at,
                sealed_with="current" if opened.current else "previous",
            )
        )


def _written(shown: dict[str, Any]) -> dict[str, Any]:
    """A created or changed key's view, with Portkey's `{success, data: {id, slug}}` too
    (what its API answers; its client reads `id` and `slug` at the top)."""
    return {**shown, "success": True, "data": {"id": shown["id"], "slug": shown["slug"]}}


def _not_found(name: str) -> NotFoundError:
    shown = name if len(name) <= 80 else name[:80] + "..."
    return NotFoundError(
        f"no virtual key {shown!r}; GET /v1/virtual-keys lists them",
        param="slug",
        code="virtual_key_not_found",
    )


def _provider(spelled: str) -> str:
    provider = canonical_provider(spelled)
    if provider is None:
        raise BadRequestError(
            f"unknown provider {spelled[:64]!r}; known: {', '.join(provider_names())}",
            param="provider",
        )
    return provider


def _check_fields(provider: str, fields: Mapping[str, Any]) -> None:
    """A 400 naming the first field `provider` does not take, an endpoint that carries
    credentials, a setting that points at the gateway's host, or credentials missing."""
    table = provider_setting_table(provider)
    allowed = {*deployment_fields(), *table}
    for name, value in fields.items():
        if name not in allowed:
            raise BadRequestError(
                f"{name} is not a setting of provider {provider}; it takes "
                f"{', '.join(sorted(allowed))} (send {name}: null to remove a stored one)",
                param=name,
                code="setting_not_allowed",
            )
        setting = table.get(name)
        if setting is not None and setting.host_local:
            _check_inline(setting, value)
        if name == "api_base" or (setting is not None and setting.endpoint):
            try:
                check_api_base(str(value))
            except ValueError as error:
                raise BadRequestError(f"{name}: {error}", param=name) from None
    try:
        virtual_key_params(provider, fields, "the virtual key")
    except ConfigError as error:
        raise BadRequestError(str(error)) from None
    _check_credentials(provider, fields)


def _check_inline(setting: Setting, value: Any) -> None:
    """A setting that may name a file or profile on the gateway's host: refused, unless
    the provider takes its value inline (a service-account key's JSON) and this is one."""
    if setting.inline is None:
        raise BadRequestError(
            f"{setting.name} names something on the gateway's own host (a file or a "
            "profile there), which only the gateway's config file may do; a virtual key "
            "stored over the API carries its credentials itself",
            param=setting.name,
            code="setting_not_allowed",
        )
    setting.inline(value)


def _check_credentials(provider: str, fields: Mapping[str, Any]) -> None:
    """A 400 unless the key holds the credentials (and the address) its calls need:
    they never come from the gateway's environment or its own cloud identity. Which
    these are is the provider's declaration: its key, and the settings it marks secret."""
    spec = get_provider(provider).credentials
    if spec.default_api_base is None and not fields.get("api_base"):
        raise BadRequestError(
            f"a virtual key of {provider} needs api_base (where its API is): a stored key's "
            "calls never take it from the gateway's environment",
            param="api_base",
            code="missing_api_base",
        )
    table = provider_setting_table(provider)
    own = sorted(name for name, setting in table.items() if setting.secret)
    # A provider with an API key to name (an env var for it, or one it requires).
    takes_key = bool(spec.api_key_env) or spec.key_required
    credentials = [*(["api_key"] if takes_key else []), *own]
    if any(fields.get(name) for name in credentials):
        return
    custom_base = bool(fields.get("api_base"))
    keyless = not spec.key_required or (spec.key_optional_with_custom_base and custom_base)
    if keyless and not own:
        return  # a server that takes no key (a self-hosted one behind api_base)
    raise BadRequestError(
        f"a virtual key of {provider} needs its credentials in it: "
        f"{' or '.join(credentials)} (with the settings that go with them); a stored key's "
        "calls never use the gateway's environment, files or own cloud identity",
        param=credentials[0],
        code="missing_credentials",
    )


def _configured_view(name: str, key: VirtualKey) -> dict[str, Any]:
    params = key.params
    fields = {field: getattr(params, field) for field in deployment_fields()}
    return view(
        KeyView(
            name=name,
            provider=key.provider,
            source="config",
            fields={**fields, **params.settings},
            secrets=secret_fields(key.provider),
            shown=shown_fields(key.provider),
        )
    )
