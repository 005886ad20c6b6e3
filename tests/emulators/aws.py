"""AWS plumbing for the Bedrock emulator: error bodies, SigV4 verification, event-stream frames.

The signature check rebuilds the request as it arrived (method, the raw, still
percent-encoded path and query, the signed headers, the body) and lets botocore's
own :class:`~botocore.auth.SigV4Auth` compute what the signature must be at the
request's ``X-Amz-Date``. Nothing in this module does I/O.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

JsonObject = dict[str, Any]

SIGNING_NAME = "bedrock"  # not "bedrock-runtime": the endpoint prefix differs
MAX_SKEW = dt.timedelta(minutes=5)
_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class AwsError(Exception):
    """An error answer: status, ``x-amzn-ErrorType`` and ``{"message": ...}``.

    ``service``: raised by Bedrock itself, whose ``x-amzn-ErrorType`` carries a
    ``:http://internal.amazon.com/coral/...`` suffix (botocore strips it); errors of the
    AWS front end (authentication) send the bare name.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        service: bool = True,
        extra: JsonObject | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.service = service
        self.extra = extra or {}

    @property
    def header(self) -> str:
        return self.error_type + (_CORAL if self.service else "")

    def body(self) -> JsonObject:
        return {"message": self.message, **self.extra}


def validation(message: str) -> AwsError:
    return AwsError(400, "ValidationException", message)


def _auth_error(error_type: str, message: str) -> AwsError:
    return AwsError(403, error_type, message, service=False)


# ---------------------------------------------------------------------------- SigV4


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class _Verifier(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """SigV4Auth that signs exactly the headers the client said it signed."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SIGNING_NAME, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                headers[name] = value
        return headers


def _parse_authorization(value: str) -> dict[str, str]:
    _, _, rest = value.partition(" ")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in parts]
    if missing:
        text = " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        raise _auth_error("IncompleteSignatureException", f"{text} Authorization={value}")
    return parts


def _check_date(amz_date: str, scope_date: str, now: dt.datetime) -> None:
    try:
        when = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise _auth_error(
            "IncompleteSignatureException",
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601",
        ) from None
    stamp = now.strftime(_AMZ_DATE)
    if when < now - MAX_SKEW:
        earliest = (now - MAX_SKEW).strftime(_AMZ_DATE)
        raise _auth_error(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)",
        )
    if when > now + MAX_SKEW:
        latest = (now + MAX_SKEW).strftime(_AMZ_DATE)
        raise _auth_error(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {latest} "
            f"({stamp} + 5 min.)",
        )
    if scope_date != amz_date[:8]:
        raise _auth_error(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )


def verify_sigv4(
    *,
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    multi_headers: list[tuple[str, str]],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    now: dt.datetime | None = None,
) -> None:
    """Raise the 403 :class:`AwsError` AWS would send, unless the request is signed right.

    ``headers`` is looked up case-insensitively (aiohttp's); ``multi_headers`` lists every
    header line as received.
    """
    authorization = headers.get("Authorization")
    if authorization is None:
        raise _auth_error("MissingAuthenticationTokenException", "Missing Authentication Token")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        algorithm = authorization.split(" ", 1)[0]
        raise _auth_error(
            "IncompleteSignatureException", f"Unsupported AWS 'algorithm': '{algorithm}'"
        )
    parts = _parse_authorization(authorization)
    scope = parts["Credential"].split("/")
    if len(scope) != 5:
        raise _auth_error(
            "IncompleteSignatureException",
            f"Credential should have at least 5 slash-separated parts. Authorization="
            f"{authorization}",
        )
    key_id, scope_date, scope_region, service, terminator = scope
    if key_id != credentials.access_key_id:
        raise _auth_error("UnrecognizedClientException", _BAD_TOKEN)
    if headers.get("X-Amz-Security-Token") != credentials.session_token:
        raise _auth_error("UnrecognizedClientException", _BAD_TOKEN)
    amz_date = headers.get("X-Amz-Date")
    if amz_date is None:
        raise _auth_error(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            f"header. Authorization={authorization}",
        )
    _check_date(amz_date, scope_date, now or dt.datetime.now(dt.UTC))
    if scope_region != region:
        raise _auth_error(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'. ",
        )
    if service != SIGNING_NAME:
        raise _auth_error(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SIGNING_NAME}'. ",
        )
    if terminator != "aws4_request":
        raise _auth_error(
            "InvalidSignatureException",
            f"Credential should be scoped with a valid terminator: 'aws4_request', not "
            f"'{terminator}'. ",
        )
    signed = [name.strip().lower() for name in parts["SignedHeaders"].split(";") if name]
    if "host" not in signed:
        raise _auth_error(
            "InvalidSignatureException",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    expected = expected_signature(
        method=method,
        url=f"http://{headers.get('Host', '')}{raw_path}",
        header_lines=multi_headers,
        signed=signed,
        body=body,
        amz_date=amz_date,
        credentials=credentials,
        region=region,
    )
    if not hmac.compare_digest(expected, parts["Signature"]):
        raise _auth_error("InvalidSignatureException", _BAD_SIGNATURE)


def expected_signature(
    *,
    method: str,
    url: str,
    header_lines: list[tuple[str, str]],
    signed: list[str],
    body: bytes,
    amz_date: str,
    credentials: AwsCredentials,
    region: str,
) -> str:
    """The SigV4 signature botocore computes for this request at ``amz_date``."""
    keep = {*signed, "x-amz-content-sha256"}
    headers = HTTPHeaders()
    for name, value in header_lines:
        if name.lower() in keep:
            headers[name.lower()] = value
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    request.context["timestamp"] = amz_date
    creds = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    verifier = _Verifier(creds, region, signed)
    canonical = verifier.canonical_request(request)
    signature: str = verifier.signature(verifier.string_to_sign(request, canonical), request)
    return signature


# ---------------------------------------------------------------------------- event stream


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message (string-valued headers only).

    Prelude: total length and headers length (big-endian uint32) and their CRC32; then
    the headers (name length, name, type 7 = string, value length, value), the payload,
    and the CRC32 of everything before it.
    """
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: JsonObject) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception_frame(exception_type: str, payload: JsonObject) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())
