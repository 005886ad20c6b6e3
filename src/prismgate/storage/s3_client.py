"""Clients for the S3 image store (`general_settings.image_store.type: s3`), on botocore.

aiobotocore is botocore on aiohttp: botocore's credential chain, SigV4 signer, endpoint
rules and presigning, maintained by aio-libs in step with botocore's releases, with the
HTTP pool on aiohttp like the rest of the gateway (DESIGN.md §2: SigV4 is never hand-rolled).
The image store does its work with the async client; a plain botocore client signs
presigned links, which is arithmetic on the credentials and needs no network (the gateway
makes links synchronously), and reads the links' signing key once when there is no
master key.

Credentials come from the settings (`access_key_id`, `secret_access_key`,
`session_token`, which may be `os.environ/NAME` references), else the config's snapshot of
the environment (`AWS_ACCESS_KEY_ID`, ...), else botocore's chain (shared files, SSO,
container and instance roles). The region likewise: `region`, then `AWS_REGION` /
`AWS_DEFAULT_REGION`, then botocore's own configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prismgate.config import ImageStoreSettings

__all__ = ["S3Access", "is_missing"]

# One try more on a broken connection or a 5xx; the caller is waiting for its answer.
_ATTEMPTS = 2
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 30.0
# What the error codes of a missing object or bucket look like across S3 implementations
# (HEAD answers have no body, so botocore names them by status).
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing(error: BaseException) -> bool:
    """Whether a botocore error says the object is not there."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    return str(response.get("Error", {}).get("Code", "")) in _MISSING


@dataclass(frozen=True, slots=True)
class S3Access:
    """How to reach the bucket: endpoint, region and credentials, resolved once."""

    bucket: str
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None

    @classmethod
    def from_settings(cls, settings: ImageStoreSettings, environ: Mapping[str, str]) -> S3Access:
        """The settings first, then the environment snapshot; None leaves a value to
        botocore's chain."""
        key_id, secret, token = (
            settings.access_key_id,
            settings.secret_access_key,
            settings.session_token,
        )
        if not key_id:
            names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            key_id, secret, token = (environ.get(name) or None for name in names)
        region = settings.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if not (key_id and secret):
            key_id = secret = token = None  # half a key pair: botocore's chain instead
        return cls(
            bucket=settings.bucket or "",
            endpoint_url=settings.endpoint_url,
            region=region or None,
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token or None,
        )

    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the secret key and the session token."""
        return tuple(s for s in (self.secret_access_key, self.session_token) if s)

    def client_arguments(self) -> dict[str, Any]:
        """`create_client("s3", **these)`, for botocore and aiobotocore alike."""
        arguments: dict[str, Any] = {"region_name": self.region, "endpoint_url": self.endpoint_url}
        if self.access_key_id:
            arguments |= {
                "aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key,
                "aws_session_token": self.session_token,
            }
        return arguments

    def config_options(self) -> dict[str, Any]:
        """botocore `Config` options: SigV4; path-style addressing on a custom endpoint
        (MinIO, R2 and GCS all take it; virtual hosts need DNS for every bucket); and
        checksums only where an operation requires one, since the CRC32 headers botocore
        sends by default are refused by some S3-compatible stores."""
        return {
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path" if self.endpoint_url else "auto"},
            "connect_timeout": _CONNECT_TIMEOUT,
            "read_timeout": _READ_TIMEOUT,
            "retries": {"total_max_attempts": _ATTEMPTS, "mode": "standard"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }

    async def open_async(self) -> tuple[Any, Any]:
        """An aiobotocore S3 client, and what closes it (`await closer.__aexit__(...)`)."""
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]

        # The service model is read from disk: off the event loop.
        session = await asyncio.to_thread(AioSession)
        context = session.create_client(
            "s3", config=AioConfig(**self.config_options()), **self.client_arguments()
        )
        client = await context.__aenter__()
        return client, context

    def open_sync(self) -> tuple[Any, Any]:
        """A plain botocore S3 client (for presigning and the signing key), and its session."""
        import botocore.config
        import botocore.session

        session = botocore.session.Session()
        client = session.create_client(
            "s3", config=botocore.config.Config(**self.config_options()), **self.client_arguments()
        )
        return client, session
