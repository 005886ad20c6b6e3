"""The image store in an S3-compatible bucket (`general_settings.image_store.type: s3`):
AWS S3, MinIO, Cloudflare R2, Google Cloud Storage in interoperability mode.

Every instance of a fleet shares one bucket, so a link made by one instance is served by
any other. Objects are named by their content (`<prefix><sha256>.<ext>`, the names the
local store uses), so two instances storing the same image write the same object, and an
S3 PUT is atomic: a reader never sees half an image, and a failed upload leaves nothing.
The console's kept images live under `<prefix>kept/`, with their own lifetime and budget.

Links are the gateway's own signed links (`links: gateway`, the bytes flow through the
gateway's `/v1/images/files/`), or presigned S3 GET URLs valid `url_ttl_seconds`
(`links: presigned`, `PresignedLinks`: the bytes never touch the gateway).

Expiry: an image is kept until every link to it has expired (`url_ttl_seconds` plus
`expiry_margin_seconds`, counted from the object's LastModified). Storing an image again,
or linking to it again (`exists`), rewrites it in place on the server (a copy onto
itself: no bytes through the gateway), which starts its lifetime anew. A sweeper (every
`sweep_interval_seconds`, and on a put that does not fit `max_bytes`) lists the prefix,
deletes what is past its lifetime and recounts what stays; deletes of objects already
gone succeed, so any number of instances may sweep one bucket. A bucket lifecycle rule
(README) is the backstop, and enough alone for stores with lifecycle rules.

`max_bytes` is held per instance: its count is the last listing plus its own uploads
since, so several instances writing at once can pass it by what each wrote between two
sweeps. A store that fails (down, refusing the credentials, no bucket) is an
`ImageStoreError` (503, code `image_store_unavailable`): like a full store (507), the
gateway's fault, never retried upstream, and the caller may ask for `b64_json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from prismgate.config import ImageStoreSettings
from prismgate.errors import ImageStoreError, InsufficientStorageError
from prismgate.media.headers import read_dimensions
from prismgate.media.links import SignedLinks, image_name, is_image_name, media_type_of
from prismgate.observability.redaction import Redactor
from prismgate.storage import KeptFile, StoredImage
from prismgate.storage.s3_client import S3Access, is_missing

__all__ = ["PresignedLinks", "S3ImageStore"]

log = logging.getLogger(__name__)

KEPT_FOLDER = "kept/"
# Kept images may be a week of them: swept at most this often.
_KEPT_SWEEP_SECONDS = 600.0
# Room made when kept images pass their budget: down to this share of it.
_KEPT_ROOM = 0.9
# Enough of an image to read its size from its header (a JPEG's may follow its EXIF).
_HEADER_BYTES = 128 * 1024
# Deletes in flight at once during a sweep (one request per object: GCS's S3 interface
# has no multi-object delete).
_DELETES_AT_ONCE = 16
_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")
_TAKEN = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
# What a failure without an S3 error code says, by botocore's (or aiohttp's) class name.
_WHY = {
    "NoCredentialsError": "no AWS credentials were found",
    "PartialCredentialsError": "its AWS credentials are incomplete",
    "EndpointConnectionError": "it did not answer",
    "ConnectTimeoutError": "it did not answer",
    "ReadTimeoutError": "it did not answer in time",
    "ConnectionClosedError": "it closed the connection",
    "ClientConnectorError": "it did not answer",
    "ServerDisconnectedError": "it closed the connection",
}


class S3ImageStore:
    """Images in an S3 bucket, named by their content, within `max_bytes` and kept until
    every link to them has expired (the module's docstring says how).

    The aiobotocore client is made on first use, in the loop that uses the store (a
    gateway is built outside any loop); the sweeper starts then too, and both stop with
    `aclose()`. `clock` gives the time the sweeper compares LastModified with.
    """

    def __init__(
        self,
        settings: ImageStoreSettings,
        *,
        environ: Mapping[str, str] | None = None,
        keep_seconds: float = 7 * 86_400,
        keep_max_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._access = S3Access.from_settings(settings, environ or {})
        self._bucket = self._access.bucket
        self._prefix = folder(settings.prefix)
        self._kept = self._prefix + KEPT_FOLDER
        self._ttl = settings.url_ttl_seconds
        self._max_bytes = settings.max_bytes
        self._max_age = settings.max_age_seconds
        self._sweep_every = settings.sweep_interval_seconds
        self._presigned = settings.links == "presigned"
        self._keep_age = max(keep_seconds, self._max_age)
        self._keep_max = keep_max_bytes
        self._clock = clock
        self._redact = Redactor(self._access.secrets())
        self._client: Any = None
        self._closer: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[int] | None = None  # the sweep running now, shared
        self._used: int | None = None  # bytes of link images as last counted, plus puts
        self._writing = 0  # bytes of link images being uploaded (or copied) now
        self._written = 0  # bytes of link images this instance has written, ever
        self._kept_used: int | None = None
        self._kept_swept = -_KEPT_SWEEP_SECONDS  # time.monotonic() of the last kept sweep
        self._sync: Any = None  # botocore client: presigning and the signing key
        self._sync_session: Any = None
        self._sync_lock = threading.Lock()
        self._signing_key: bytes | None = None
        self._failing = False

    @property
    def where(self) -> str:
        """The store's place, as logs name it (`s3://bucket/prefix`)."""
        return f"s3://{self._bucket}/{self._prefix}"

    async def put(self, data: bytes, media_type: str) -> str:
        """Store `data` (uploaded as it is, in one atomic PUT); its name is what links
        point at. `InsufficientStorageError` when it does not fit in `max_bytes`, even
        once expired images go; `ImageStoreError` when the store fails."""
        self._start_sweeper()
        name = image_name(data, media_type)
        await self._room_for_link(len(data))
        self._writing += len(data)
        try:
            await self._call(
                "store an image",
                "put_object",
                Key=self._prefix + name,
                Body=data,
                ContentType=media_type,
            )
        except BaseException:
            self._give_back(len(data))
            raise
        finally:
            self._writing -= len(data)
        self._written += len(data)
        await self._ready_to_presign()
        return name

    async def exists(self, name: str) -> bool:
        """Whether `name` is stored; a found image is kept another link lifetime (copied
        onto itself, on the server). A kept image without a link name gets one (copied on
        the server) if there is room for it."""
        self._start_sweeper()
        if not is_image_name(name):
            return False
        found = await self._renew(self._prefix + name, media_type_of(name))
        if not found:
            found = await self._link_kept(name)
        if found:
            await self._ready_to_presign()
        return found

    async def get(self, name: str) -> StoredImage | None:
        """The image called `name` (stored for a link, or kept), or None."""
        if not is_image_name(name):
            return None  # only names this store made: never a key from a caller
        for key in (self._prefix + name, self._kept + name):
            data = await self._read(key)
            if data is not None:
                return StoredImage(data, media_type_of(name))
        return None

    async def keep(
        self, data: bytes, media_type: str, *, executor: Executor | None = None
    ) -> KeptFile:
        """Keep `data` among the kept images for the keep period; the oldest kept images
        go when their budget is passed. `InsufficientStorageError` for an image larger
        than the whole budget. (`executor` is not needed: nothing here blocks.)"""
        self._start_sweeper()
        name = image_name(data, media_type)
        if len(data) > self._keep_max:
            raise InsufficientStorageError(
                f"an image of {_amount(len(data))} is larger than all the room kept images "
                f"have ({_amount(self._keep_max)}): raise "
                "general_settings.console.keep_images_max_bytes",
            )
        await self._room_for_kept(len(data))
        try:
            await self._call(
                "keep an image",
                "put_object",
                Key=self._kept + name,
                Body=data,
                ContentType=media_type,
            )
        except BaseException:
            self._kept_used = max(0, (self._kept_used or 0) - len(data))
            raise
        return _kept_file(name, data, len(data))

    async def keep_stored(self, name: str, *, executor: Executor | None = None) -> KeptFile | None:
        """Keep the image stored for a link as `name` among the kept images too (copied
        on the server: S3 has no hard links, and its bytes never pass through the
        gateway); None when it is stored nowhere here."""
        self._start_sweeper()
        if not is_image_name(name):
            return None
        head = await self._head(self._prefix + name)
        if head is None:  # kept already, or gone
            if not await self._renew(self._kept + name, media_type_of(name)):
                return None
            head = await self._head(self._kept + name)
            return None if head is None else _kept_file(name, *head)
        await self._room_for_kept(head[1])
        copied = await self._call(
            "keep an image",
            "copy_object",
            missing_ok=True,
            Key=self._kept + name,
            CopySource={"Bucket": self._bucket, "Key": self._prefix + name},
        )
        return None if copied is None else _kept_file(name, *head)

    async def sweep(self) -> int:
        """Delete expired images now (kept ones too); the bytes the store holds for links
        afterwards."""
        await self._sweep_kept()
        return await self._shared_sweep()

    def signing_key(self, master_key: str | None) -> bytes:
        """The HMAC key for the gateway's links: derived from the master key, else a key
        kept in the bucket beside the prefix (`<prefix>.signing-key`, outside a lifecycle
        rule on the prefix), made by the first instance and read by the others. Read once,
        synchronously (the gateway asks for it outside any coroutine)."""
        if master_key:
            return hmac.new(master_key.encode(), b"prismgate image links", "sha256").digest()
        if self._signing_key is None:
            self._signing_key = self._shared_signing_key()
        return self._signing_key

    def presigned_url(self, name: str) -> str:
        """A presigned GET URL for the image stored as `name`, valid `url_ttl_seconds`.
        Arithmetic on the credentials (no request is sent)."""
        client = self._sync_client()
        try:
            url: str = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": self._prefix + name},
                ExpiresIn=self._ttl,
            )
        except Exception as error:  # botocore's, whichever: no credentials found, most often
            raise self._unavailable("sign a link", error) from None
        return url

    def presigned_links(self) -> PresignedLinks:
        """Links in answers as presigned URLs to this store (`links: presigned`)."""
        return PresignedLinks(self, self._ttl)

    async def ping(self) -> None:
        """The bucket answers (HEAD bucket); `ImageStoreError` when it does not."""
        await self._call("reach the bucket", "head_bucket")

    async def aclose(self) -> None:
        """Stop the sweeper and close the client (the images stay: other instances may
        link to them)."""
        sweeper, self._sweeper = self._sweeper, None
        for task in (sweeper, self._sweep):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                    await task  # RuntimeError: its loop is another one, already closed
        closer, self._closer, self._client = self._closer, None, None
        if closer is not None and self._client_loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await closer.__aexit__(None, None, None)
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    # --- the client, and the translation of its failures -------------------------------

    async def _s3(self) -> Any:
        """The aiobotocore client of the running loop (one made for another loop is
        left: that loop is closed, or is another thread's)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is loop:
            return self._client
        if self._opening is None or self._client_loop is not loop:
            self._opening, self._client_loop, self._client = asyncio.Lock(), loop, None
        async with self._opening:
            if self._client is None:
                try:
                    self._client, self._closer = await self._access.open_async()
                except Exception as error:  # botocore's, whichever: a bad region, say
                    raise self._unavailable("connect", error) from None
        return self._client

    async def _call(
        self, action: str, operation: str, *, missing_ok: bool = False, **params: Any
    ) -> dict[str, Any] | None:
        """One S3 operation on the bucket; None for a missing object when `missing_ok`.
        Any other failure is an `ImageStoreError` that says what could not be
        done (the details, redacted, are logged once per outage)."""
        client = await self._s3()
        try:
            answer: dict[str, Any] = await getattr(client, operation)(Bucket=self._bucket, **params)
        except Exception as error:  # botocore's and aiohttp's; cancellation passes
            if missing_ok and is_missing(error):
                self._answering()
                return None
            raise self._unavailable(action, error) from None
        self._answering()
        return answer

    async def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        answer = await self._call("read an image", "get_object", missing_ok=True, Key=key)
        if answer is None:
            return None
        try:
            async with answer["Body"] as body:
                data: bytes = await body.read()
        except Exception as error:  # the connection broke mid-body
            raise self._unavailable("read an image", error) from None
        return data

    async def _head(self, key: str) -> tuple[bytes, int] | None:
        """The object's first bytes (enough for its header) and its size, or None."""
        answer = await self._call(
            "read an image",
            "get_object",
            missing_ok=True,
            Key=key,
            Range=f"bytes=0-{_HEADER_BYTES - 1}",
        )
        if answer is None:
            return None
        try:
            async with answer["Body"] as body:
                head: bytes = await body.read()
        except Exception as error:
            raise self._unavailable("read an image", error) from None
        total = _CONTENT_RANGE.fullmatch(str(answer.get("ContentRange", "")))
        return head, int(total.group(1)) if total else len(head)

    async def _renew(self, key: str, media_type: str) -> bool:
        """Copy an object onto itself (its lifetime starts anew); False when absent."""
        renewed = await self._call(
            "keep an image",
            "copy_object",
            missing_ok=True,
            Key=key,
            CopySource={"Bucket": self._bucket, "Key": key},
            MetadataDirective="REPLACE",
            ContentType=media_type,
        )
        return renewed is not None

    def _unavailable(self, action: str, error: BaseException) -> ImageStoreError:
        """The caller's error for a store that failed; the details are logged (redacted)
        when an outage starts, not on every request of it."""
        code = _error_code(error)
        if not self._failing:
            self._failing = True
            log.warning(
                "image store %s: could not %s: %s (said once until it answers again)",
                self.where,
                action,
                self._redact(f"{type(error).__name__}: {error}"),
            )
        said = f"S3 answered {code}" if code else _WHY.get(type(error).__name__, "it failed")
        return ImageStoreError(
            f"the image store could not {action} ({said}); try again later, or ask for "
            "response_format=b64_json",
            param="response_format",
        )

    def _answering(self) -> None:
        if self._failing:
            self._failing = False
            log.info("image store %s answers again", self.where)

    # --- room: max_bytes for link images, the keep budget for kept ones ---------------

    async def _room_for_link(self, size: int) -> None:
        """Count `size` more bytes of link images, once there is room for them (expired
        ones swept if need be); `InsufficientStorageError` when there is none."""
        if self._used is None:
            await self._shared_sweep()
        if (self._used or 0) + size > self._max_bytes:
            await self._shared_sweep()
        used = self._used or 0
        if used + size > self._max_bytes:
            raise InsufficientStorageError(
                f"the image store is full ({_amount(used)} of {_amount(self._max_bytes)}); "
                "raise general_settings.image_store.max_bytes or ask for "
                "response_format=b64_json",
                param="response_format",
            )
        self._used = used + size

    def _give_back(self, size: int) -> None:
        if self._used is not None:
            self._used = max(0, self._used - size)

    async def _link_kept(self, name: str) -> bool:
        """A kept image given a link name (copied on the server), if there is room."""
        found = await self._call(
            "look up an image", "head_object", missing_ok=True, Key=self._kept + name
        )
        if found is None:
            return False
        size = int(found.get("ContentLength", 0))
        try:
            await self._room_for_link(size)
        except InsufficientStorageError:
            return False  # no room for a link: answered as not stored (stored again)
        self._writing += size
        try:
            copied = await self._call(
                "keep an image",
                "copy_object",
                missing_ok=True,
                Key=self._prefix + name,
                CopySource={"Bucket": self._bucket, "Key": self._kept + name},
            )
        except BaseException:
            self._give_back(size)
            raise
        finally:
            self._writing -= size
        if copied is None:
            self._give_back(size)
        else:
            self._written += size
        return copied is not None

    async def _room_for_kept(self, size: int) -> None:
        """Count `size` more bytes of kept images, once the oldest went to make room."""
        if self._kept_used is None:
            await self._sweep_kept()
        used = self._kept_used or 0
        if used + size > self._keep_max:
            target = int(self._keep_max * _KEPT_ROOM) - size
            objects = sorted(
                [item async for item in self._list(self._kept)], key=lambda o: o["LastModified"]
            )
            used = sum(o["Size"] for o in objects)
            doomed = []
            for item in objects:
                if used <= target:
                    break
                doomed.append(item["Key"])
                used -= item["Size"]
            await self._delete(doomed)
            log.info("kept images passed their budget: the %d oldest were removed", len(doomed))
        self._kept_used = used + size

    # --- sweeping ---------------------------------------------------------------------

    def _start_sweeper(self) -> None:
        # Started on first use, in the loop that uses the store; one whose loop has
        # closed is replaced.
        sweeper = self._sweeper
        loop = asyncio.get_running_loop()
        if sweeper is not None and not sweeper.done() and sweeper.get_loop() is loop:
            return
        self._sweeper = loop.create_task(self._sweep_periodically(), name="s3-image-sweep")

    async def _sweep_periodically(self) -> None:
        while True:
            # A store that does not answer was said by `_unavailable`; tried again later.
            with contextlib.suppress(ImageStoreError):
                if time.monotonic() - self._kept_swept >= _KEPT_SWEEP_SECONDS:
                    await self._sweep_kept()
                await self._shared_sweep()
            await asyncio.sleep(self._sweep_every)

    async def _shared_sweep(self) -> int:
        """The link images' sweep: one at a time, awaited by everyone who needs it."""
        sweep = self._sweep
        if sweep is None or sweep.done() or sweep.get_loop() is not asyncio.get_running_loop():
            sweep = self._sweep = asyncio.get_running_loop().create_task(self._sweep_links())
        return await asyncio.shield(sweep)

    async def _sweep_links(self) -> int:
        """Delete link images past their lifetime, count what stays. What this instance
        writes while the sweep lists is counted too (twice, if the listing saw it: the
        count may be high until the next sweep, never low)."""
        written = self._written
        oldest = self._clock() - self._max_age
        used, doomed = 0, []
        async for item in self._list(self._prefix):
            if item["LastModified"].timestamp() < oldest:
                doomed.append(item["Key"])
            else:
                used += item["Size"]
        await self._delete(doomed)
        self._used = used + self._writing + (self._written - written)
        return used

    async def _sweep_kept(self) -> int:
        """Delete kept images past the keep period, count what stays."""
        self._kept_swept = time.monotonic()
        oldest = self._clock() - self._keep_age
        used, doomed = 0, []
        async for item in self._list(self._kept):
            if item["LastModified"].timestamp() < oldest:
                doomed.append(item["Key"])
            else:
                used += item["Size"]
        await self._delete(doomed)
        self._kept_used = used
        return used

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """The store's images directly under `prefix` (never another folder's objects,
        the signing key, or anything that is not an image this store names)."""
        token: str | None = None
        while True:
            more: dict[str, Any] = {"ContinuationToken": token} if token else {}
            page = await self._call(
                "list images", "list_objects_v2", Prefix=prefix, Delimiter="/", **more
            )
            if page is None:  # (never: a listing has no missing object)
                return
            for item in page.get("Contents", ()):
                if is_image_name(item["Key"][len(prefix) :]):
                    yield item
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _delete(self, keys: list[str]) -> None:
        """Delete objects, a few at a time; one deleted already (by another instance's
        sweep) counts as deleted."""
        for start in range(0, len(keys), _DELETES_AT_ONCE):
            batch = keys[start : start + _DELETES_AT_ONCE]
            await asyncio.gather(
                *(
                    self._call("delete an expired image", "delete_object", missing_ok=True, Key=k)
                    for k in batch
                )
            )
        if keys:
            log.debug("image store %s: %d expired images deleted", self.where, len(keys))

    # --- the synchronous client: presigning and the signing key -----------------------

    def _sync_client(self) -> Any:
        with self._sync_lock:
            if self._sync is None:
                try:
                    self._sync, self._sync_session = self._access.open_sync()
                except Exception as error:  # botocore's, whichever
                    raise self._unavailable("connect", error) from None
            return self._sync

    async def _ready_to_presign(self) -> None:
        """Presigned links are made synchronously: their client is made, and refreshable
        credentials renewed when due, in a worker thread, before a link is asked for."""
        if self._presigned:
            await asyncio.to_thread(self._renew_credentials)

    def _renew_credentials(self) -> None:
        self._sync_client()
        if self._sync_session is not None and not self._access.access_key_id:
            # The chain's credentials, which the client signs with (botocore keeps one
            # object per session); renewed here when due, not while a link is made.
            credentials = self._sync_session.get_credentials()
            if credentials is not None:
                credentials.get_frozen_credentials()

    def _shared_signing_key(self) -> bytes:
        client = self._sync_client()
        key = self._prefix.rstrip("/") + ".signing-key" if self._prefix else ".signing-key"
        try:
            try:
                return bytes(client.get_object(Bucket=self._bucket, Key=key)["Body"].read())
            except Exception as error:
                if not is_missing(error):
                    raise
            try:
                client.put_object(
                    Bucket=self._bucket, Key=key, Body=secrets.token_bytes(32), IfNoneMatch="*"
                )
            except Exception as error:
                if _error_code(error) not in _TAKEN:
                    raise  # (taken: another instance made it first)
            # Read back: every instance uses the key the bucket holds.
            return bytes(client.get_object(Bucket=self._bucket, Key=key)["Body"].read())
        except Exception as error:
            raise self._unavailable("read the links' signing key", error) from None


class PresignedLinks(SignedLinks):
    """Links in answers as presigned S3 GET URLs, valid `url_ttl_seconds`, in the shape of
    `SignedLinks` so that delivery uses them unchanged. They are S3's to check: `check`
    refuses every link (the gateway's own links are checked by its `SignedLinks`)."""

    def __init__(self, store: S3ImageStore, ttl_seconds: int) -> None:
        super().__init__(b"", ttl_seconds)
        self._store = store

    def link(self, base_url: str, name: str, *, now: float | None = None) -> str:
        """A presigned URL to `name` (`base_url` and `now` are not part of it)."""
        return self._store.presigned_url(name)

    def check(
        self, name: str, expires: str, signature: str, *, now: float | None = None
    ) -> str | None:
        """Always a refusal: a presigned link is checked by S3, never by the gateway."""
        return "this image link is not valid; use the link exactly as it was given"


def folder(prefix: str) -> str:
    """The prefix as a folder: `images` and `images/` are `images/`; empty stays empty."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _kept_file(name: str, head: bytes, size: int) -> KeptFile:
    found = read_dimensions(head)
    return KeptFile(name, size, found.width if found else None, found.height if found else None)


def _error_code(error: BaseException) -> str:
    """S3's error code in a botocore error (`AccessDenied`, `NoSuchBucket`), else ""."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))[:64]


def _amount(size: int) -> str:
    """`size` bytes as people read them (binary units, as max_bytes is usually given)."""
    if size < 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"
