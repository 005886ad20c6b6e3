"""Tests of the Google emulator: google-auth gets tokens, httpx calls Vertex and the Gemini API."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import google.auth.transport.requests
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account

from .google import CLOUD_PLATFORM, DEFAULT_GOOGLE_API_KEY, DEFAULT_PROJECT, GoogleEmulator
from .google_oauth import GOOGLE_TOKEN_URI, JWT_BEARER
from .images import make_image

MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def server() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: GoogleEmulator) -> GoogleEmulator:
    server.reset()
    return server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def token(server: GoogleEmulator) -> str:
    return server.issue_token()


def vertex_url(emu: GoogleEmulator, method: str = "generateContent", **parts: str) -> str:
    project = parts.get("project", emu.project)
    model = parts.get("model", MODEL)
    version = parts.get("version", "v1")
    return (
        f"{emu.base_url}/{version}/projects/{project}/locations/us-central1/publishers/google/"
        f"models/{model}:{method}"
    )


def gemini_url(emu: GoogleEmulator, method: str = "generateContent", model: str = MODEL) -> str:
    return f"{emu.base_url}/v1beta/models/{model}:{method}"


def inline(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


def request_body(*parts: Any, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts) or [{"text": "hello"}]}], **extra}


def gemini_post(
    http: httpx.Client, emu: GoogleEmulator, payload: Any, **kwargs: Any
) -> httpx.Response:
    url = kwargs.pop("url", gemini_url(emu))
    return http.post(url, json=payload, headers={"x-goog-api-key": emu.api_key}, **kwargs)


def vertex_post(
    http: httpx.Client, emu: GoogleEmulator, token: str, payload: Any, **kwargs: Any
) -> httpx.Response:
    url = kwargs.pop("url", vertex_url(emu))
    return http.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def google_error(response: httpx.Response, code: int, status: str) -> dict[str, Any]:
    assert response.status_code == code, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    return error


def sse_chunks(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\r\n\r\n")
    return [json.loads(block.removeprefix("data: ")) for block in text.strip().split("\r\n\r\n")]


def assertion(emu: GoogleEmulator, **claims: Any) -> str:
    info = emu.service_account_info()
    now = int(time.time())
    payload = {
        "iss": info["client_email"],
        "aud": emu.token_uri,
        "scope": CLOUD_PLATFORM,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    signer = crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
    return sign(signer, {k: v for k, v in payload.items() if v is not None})


def sign(signer: Any, claims: dict[str, Any]) -> str:
    encoded: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
    return encoded.decode()


def credentials(emu: GoogleEmulator) -> Any:
    """google-auth's service-account credentials for the emulator's test account."""
    return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        emu.service_account_info(), scopes=[CLOUD_PLATFORM]
    )


def grant(
    http: httpx.Client, emu: GoogleEmulator, jwt_assertion: str, **form: str
) -> httpx.Response:
    data = {"grant_type": JWT_BEARER, "assertion": jwt_assertion, **form}
    return http.post(emu.token_uri, data=data)


# ---------------------------------------------------------------------------- OAuth


def test_service_account_info(emu: GoogleEmulator) -> None:
    info = emu.service_account_info()
    assert info["type"] == "service_account"
    assert info["project_id"] == DEFAULT_PROJECT
    assert info["token_uri"] == f"{emu.base_url}/token"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert info["client_email"].endswith(f"@{DEFAULT_PROJECT}.iam.gserviceaccount.com")
    assert len(info["private_key_id"]) == 40


def test_google_auth_gets_a_token_that_vertex_accepts(
    http: httpx.Client, emu: GoogleEmulator
) -> None:
    creds = credentials(emu)
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.valid and creds.token.startswith("ya29.")
    assert emu.tokens_issued == 1
    (exchange,) = emu.requests
    assert exchange.path == "/token"
    assert exchange.headers["content-type"] == "application/x-www-form-urlencoded"
    sent = exchange.raw.decode().split("assertion=")[1]
    claims = jwt.decode(sent, verify=False)  # type: ignore[no-untyped-call]
    assert claims["aud"] == GOOGLE_TOKEN_URI  # google-auth always uses Google's own URI
    assert vertex_post(http, emu, creds.token, request_body()).status_code == 200
    assert emu.tokens_issued == 1


def test_token_endpoint_answer(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = grant(http, emu, assertion(emu))
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"access_token", "expires_in", "token_type"}
    assert answer["expires_in"] == 3600 and answer["token_type"] == "Bearer"
    assert emu.tokens_issued == 1


def _foreign_assertion(emu: GoogleEmulator) -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    now = int(time.time())
    claims = {"iss": emu.account.client_email, "aud": emu.token_uri, "scope": CLOUD_PLATFORM}
    signer = crypt.RSASigner.from_string(pem)  # type: ignore[no-untyped-call]
    return sign(signer, {**claims, "iat": now, "exp": now + 60})


@pytest.mark.parametrize(
    ("make", "error", "description"),
    [
        (lambda e: assertion(e)[:-4] + "AAAA", "invalid_grant", "Invalid JWT Signature."),
        (_foreign_assertion, "invalid_grant", "Invalid JWT Signature."),
        (
            lambda e: assertion(e, iss="someone@else.iam.gserviceaccount.com"),
            "invalid_grant",
            "Invalid grant: account not found",
        ),
        (
            lambda e: assertion(e, aud="https://example.com/token"),
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ),
        (
            lambda e: assertion(e, exp=int(time.time()) + 7200),
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes)",
        ),
        (
            lambda e: assertion(e, iat=int(time.time()) - 7200, exp=int(time.time()) - 3700),
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes)",
        ),
        (
            lambda e: assertion(e, scope=None),
            "invalid_scope",
            "Empty or missing scope not allowed.",
        ),
        (lambda e: "not-a-jwt", "invalid_grant", "Invalid JWT: JWT must have three segments."),
    ],
)
def test_bad_assertions(
    http: httpx.Client, emu: GoogleEmulator, make: Any, error: str, description: str
) -> None:
    response = grant(http, emu, make(emu))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"].startswith(description)
    assert emu.tokens_issued == 0


def test_bad_grant_type(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = grant(http, emu, assertion(emu), grant_type="client_credentials")
    assert response.status_code == 400
    assert response.json() == {
        "error": "unsupported_grant_type",
        "error_description": "Invalid grant_type: client_credentials",
    }


def test_scopes_and_expiry_are_enforced_on_use(http: httpx.Client, emu: GoogleEmulator) -> None:
    narrow = grant(
        http, emu, assertion(emu, scope="https://www.googleapis.com/auth/userinfo.email")
    )
    forbidden = vertex_post(http, emu, narrow.json()["access_token"], request_body())
    assert google_error(forbidden, 403, "PERMISSION_DENIED")["message"] == (
        "Request had insufficient authentication scopes."
    )
    with GoogleEmulator(token_lifetime=0) as short:
        stale = vertex_post(http, short, short.issue_token(), request_body())
        google_error(stale, 401, "UNAUTHENTICATED")
    token = emu.issue_token()
    emu.expire_tokens()
    expired = google_error(vertex_post(http, emu, token, request_body()), 401, "UNAUTHENTICATED")
    assert expired["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    unknown = google_error(
        vertex_post(http, emu, "ya29.forged", request_body()), 401, "UNAUTHENTICATED"
    )
    assert unknown["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"


def test_token_faults_and_api_faults_are_separate(http: httpx.Client, emu: GoogleEmulator) -> None:
    emu.fail_next("status", status=429)  # waits for the next Vertex / Gemini call
    emu.fail_next("status", status=400, target="token")  # google-auth retries 5xx itself
    creds = credentials(emu)
    with pytest.raises(RefreshError, match="invalid_request"):
        creds.refresh(google.auth.transport.requests.Request())
    creds.refresh(google.auth.transport.requests.Request())
    google_error(vertex_post(http, emu, creds.token, request_body()), 429, "RESOURCE_EXHAUSTED")
    assert vertex_post(http, emu, creds.token, request_body()).status_code == 200
    with pytest.raises(ValueError):
        emu.fail_next("reset", target="nowhere")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- Vertex


def test_vertex_generate_content(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    payload = request_body(
        inline(make_image(64, 64, "png")),
        inline(make_image(10, 10, "jpeg"), "image/jpeg"),
        {"text": "What is in these?"},
        systemInstruction={"parts": [{"text": "Be brief."}]},
    )
    response = vertex_post(http, emu, token, payload)
    assert response.status_code == 200, response.text
    answer = response.json()
    (candidate,) = answer["candidates"]
    assert candidate == {
        "content": {
            "role": "model",
            "parts": [
                {
                    "text": "I see 2 image(s): 64x64 image/png; 10x10 image/jpeg. "
                    "You said: What is in these?"
                }
            ],
        },
        "finishReason": "STOP",
        "index": 0,
    }
    usage = answer["usageMetadata"]
    assert usage["promptTokenCount"] == 4 + 2 + 258 * 2
    assert usage["candidatesTokenCount"] == 14
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 14
    assert usage["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 6},
        {"modality": "IMAGE", "tokenCount": 516},
    ]
    assert usage["trafficType"] == "ON_DEMAND"
    assert answer["modelVersion"] == MODEL and answer["responseId"] and answer["createTime"]
    assert [image.size for image in emu.images] == [
        len(make_image(64, 64, "png")),
        len(make_image(10, 10, "jpeg")),
    ]


def test_vertex_routes_and_auth(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    assert (
        vertex_post(
            http, emu, token, request_body(), url=vertex_url(emu, version="v1beta1")
        ).status_code
        == 200
    )
    google_error(http.post(vertex_url(emu), json=request_body()), 401, "UNAUTHENTICATED")
    other = vertex_post(
        http, emu, token, request_body(), url=vertex_url(emu, project="someone-else")
    )
    assert (
        "aiplatform.endpoints.predict" in google_error(other, 403, "PERMISSION_DENIED")["message"]
    )
    missing = vertex_post(http, emu, token, request_body(), url=vertex_url(emu, model="palm-2"))
    assert google_error(missing, 404, "NOT_FOUND")["message"].startswith(
        f"Publisher Model `projects/{emu.project}/locations/us-central1/publishers/google/"
        "models/palm-2`"
    )
    # Gemini is never served by :predict (Imagen's route): Vertex says so.
    on_predict = vertex_post(http, emu, token, request_body(), url=vertex_url(emu, "predict"))
    assert "Predict/RawPredict" in google_error(on_predict, 400, "INVALID_ARGUMENT")["message"]


def test_vertex_streaming_sse(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    payload = request_body(inline(make_image(32, 32, "webp"), "image/webp"), {"text": "hi"})
    whole = vertex_post(http, emu, token, payload).json()
    url = vertex_url(emu, "streamGenerateContent") + "?alt=sse"
    response = vertex_post(http, emu, token, payload, url=url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(response.text)
    assert len(chunks) >= 2
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert (
        chunks[-1]["usageMetadata"]["candidatesTokenCount"]
        == whole["usageMetadata"]["candidatesTokenCount"]
    )
    assert "candidatesTokenCount" not in chunks[0]["usageMetadata"]


def test_stream_without_sse_is_a_json_array(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = gemini_post(http, emu, request_body(), url=gemini_url(emu, "streamGenerateContent"))
    assert response.headers["content-type"].startswith("application/json")
    chunks = response.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_vertex_file_data_and_image_errors(
    http: httpx.Client, emu: GoogleEmulator, token: str
) -> None:
    gcs = {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}}
    answer = vertex_post(http, emu, token, request_body(gcs)).json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == (
        "I see 1 image(s): image/jpeg at gs://bucket/cat.jpg."
    )
    bad = vertex_post(http, emu, token, request_body(inline(make_image(8, 8, "png"), "image/jpeg")))
    assert google_error(bad, 400, "INVALID_ARGUMENT")["message"] == "Provided image is not valid."
    insecure = {"fileData": {"mimeType": "image/png", "fileUri": "http://example.com/a.png"}}
    bad_uri = vertex_post(http, emu, token, request_body(insecure))
    assert google_error(bad_uri, 400, "INVALID_ARGUMENT")["message"] == (
        "Unsupported file uri: http://example.com/a.png"
    )


# ---------------------------------------------------------------------------- Gemini API


def test_gemini_api_key_in_header(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = gemini_post(
        http, emu, request_body(inline(make_image(16, 16, "png")), {"text": "x"})
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == (
        "I see 1 image(s): 16x16 image/png. You said: x"
    )
    assert "trafficType" not in answer["usageMetadata"] and "createTime" not in answer
    assert emu.key_in_url == []
    v1 = f"{emu.base_url}/v1/models/{MODEL}:generateContent"
    assert gemini_post(http, emu, request_body(), url=v1).status_code == 200


def test_gemini_key_in_url_works_but_is_recorded(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = http.post(f"{gemini_url(emu)}?key={emu.api_key}", json=request_body())
    assert response.status_code == 200
    (leak,) = emu.key_in_url
    assert leak.query["key"] == DEFAULT_GOOGLE_API_KEY
    assert leak.raw_path.endswith(f"?key={emu.api_key}")


def test_gemini_auth_errors_and_unknown_model(http: httpx.Client, emu: GoogleEmulator) -> None:
    missing = http.post(gemini_url(emu), json=request_body())
    assert "unregistered callers" in google_error(missing, 403, "PERMISSION_DENIED")["message"]
    wrong = http.post(gemini_url(emu), json=request_body(), headers={"x-goog-api-key": "AIzaNope"})
    error = google_error(wrong, 400, "INVALID_ARGUMENT")
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    unknown = gemini_post(http, emu, request_body(), url=gemini_url(emu, model="gpt-4o"))
    assert google_error(unknown, 404, "NOT_FOUND")["message"].startswith(
        "models/gpt-4o is not found for API version v1beta, or is not supported for "
        "generateContent."
    )


def test_snake_case_is_accepted(http: httpx.Client, emu: GoogleEmulator) -> None:
    payload = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "inline_data": {
                            "mime_type": "image/png",
                            "data": base64.urlsafe_b64encode(make_image(8, 8, "png")).decode(),
                        }
                    },
                    {"text": "hi"},
                ],
            }
        ],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "generation_config": {"max_output_tokens": 3, "media_resolution": "MEDIA_RESOLUTION_LOW"},
    }
    answer = gemini_post(http, emu, payload).json()
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == "I see 1"
    assert answer["usageMetadata"]["promptTokensDetails"][1] == {
        "modality": "IMAGE",
        "tokenCount": 64,
    }


JPEG = make_image(8, 8, "jpeg")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"contents": [], "model": "x"},
            'Invalid JSON payload received. Unknown name "model": Cannot find field.',
        ),
        ({}, "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
            "Please use a valid role: user, model.",
        ),
        (
            {"contents": [{"role": "user", "parts": []}]},
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
        ),
        (
            request_body({"text": ""}),
            "* GenerateContentRequest.contents[0].parts[0].data: required "
            "oneof field 'data' must have one initialized field\n",
        ),
        (
            request_body({"text": "a", **inline(JPEG, "image/jpeg")}),
            "Invalid JSON payload received. "
            "Oneof field 'data' is already set. Cannot set 'inlineData'",
        ),
        (
            request_body({"image_url": "https://x"}),
            "Invalid JSON payload received. Unknown name "
            "\"image_url\" at 'contents[0].parts[0]': Cannot find field.",
        ),
        (
            request_body(inline(JPEG, "image/png")),
            "Unable to process input image. Please retry or "
            "report in https://developers.generativeai.google/guide/troubleshooting",
        ),
        (
            request_body(inline(make_image(8, 8, "png"), "image/gif")),
            "Unsupported MIME type: image/gif",
        ),
        (
            request_body({"inlineData": {"mimeType": "image/png", "data": "%%%"}}),
            "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 "
            "decoding "
            'failed for "%%%"',
        ),
        (
            request_body({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/o.png"}}),
            "Unsupported file uri: gs://b/o.png",
        ),
        (
            request_body(generationConfig={"max_tokens": 5}),
            "Invalid JSON payload received. Unknown "
            "name \"max_tokens\" at 'generation_config': Cannot find field.",
        ),
        (
            request_body(generationConfig={"temperature": 3}),
            "* GenerateContentRequest.generation_config.temperature: temperature must be in the "
            "range [0.0, 2.0]\n",
        ),
        (
            request_body(generationConfig={"mediaResolution": "HIGHEST"}),
            "Invalid value at 'generation_config.media_resolution' (type.googleapis.com/"
            'google.ai.generativelanguage.v1beta.GenerationConfig.MediaResolution), "HIGHEST"',
        ),
        (
            request_body(generationConfig={"stopSequences": list("abcdef")}),
            "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences "
            "are allowed\n",
        ),
    ],
)
def test_gemini_validation(
    http: httpx.Client, emu: GoogleEmulator, payload: Any, message: str
) -> None:
    response = gemini_post(http, emu, payload)
    assert google_error(response, 400, "INVALID_ARGUMENT")["message"] == message
    assert emu.images == []


def test_unknown_field_error_details(http: httpx.Client, emu: GoogleEmulator) -> None:
    response = gemini_post(http, emu, request_body(generationConfig={"max_tokens": 5}))
    (detail,) = google_error(response, 400, "INVALID_ARGUMENT")["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0]["field"] == "generation_config"


def test_gemini_https_file_uri_and_stop_sequences(http: httpx.Client, emu: GoogleEmulator) -> None:
    uri = "https://generativelanguage.googleapis.com/v1beta/files/abc123"
    payload = request_body(
        {"fileData": {"mimeType": "image/png", "fileUri": uri}},
        {"text": "and this"},
        generationConfig={"stopSequences": ["You"], "temperature": 0.5, "topP": 0.9},
    )
    answer = gemini_post(http, emu, payload).json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == (
        f"I see 1 image(s): image/png at {uri}. "
    )
    assert answer["candidates"][0]["finishReason"] == "STOP"


# ---------------------------------------------------------------------------- faults


def test_status_fault_bodies_per_face(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    emu.fail_next("status", status=429, retry_after=2)
    limited = gemini_post(http, emu, request_body())
    error = google_error(limited, 429, "RESOURCE_EXHAUSTED")
    assert error["message"].startswith("You exceeded your current quota")
    assert error["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
    ]
    assert limited.headers["retry-after"] == "2"
    emu.fail_next("status", status=429)
    vertex = google_error(vertex_post(http, emu, token, {"garbage": 1}), 429, "RESOURCE_EXHAUSTED")
    assert vertex["message"].startswith("Resource exhausted.")
    emu.fail_next("status", status=503, message="try later")
    assert google_error(gemini_post(http, emu, {}), 503, "UNAVAILABLE")["message"] == "try later"
    assert emu.requests[1].json == {"garbage": 1}


def test_stream_error_and_truncate(http: httpx.Client, emu: GoogleEmulator) -> None:
    url = gemini_url(emu, "streamGenerateContent") + "?alt=sse"
    emu.fail_next("stream_error")
    chunks = sse_chunks(gemini_post(http, emu, request_body(), url=url).text)
    assert len(chunks) == 2 and "candidates" in chunks[0]
    assert chunks[1]["error"]["status"] == "INTERNAL" and chunks[1]["error"]["code"] == 500
    emu.fail_next("stream_error", status=503)
    plain = gemini_post(http, emu, request_body())
    google_error(plain, 503, "UNAVAILABLE")
    emu.fail_next("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        gemini_post(http, emu, request_body(), url=url)
    emu.fail_next("reset")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        gemini_post(http, emu, request_body())
    emu.fail_next("delay", delay=0.2)
    started = time.perf_counter()
    assert gemini_post(http, emu, request_body()).status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_reset_keeps_tokens_valid(http: httpx.Client, emu: GoogleEmulator) -> None:
    token = emu.issue_token()
    gemini_post(http, emu, request_body(inline(make_image(8, 8, "png"))))
    assert emu.tokens_issued == 1 and len(emu.images) == 1
    emu.fail_next("status", status=500)
    emu.reset()
    assert emu.tokens_issued == 0 and emu.requests == [] and emu.images == []
    assert vertex_post(http, emu, token, request_body()).status_code == 200


# ---------------------------------------------------------------------------- image output

IMAGEN = "imagen-3.0-generate-002"


def decoded(b64: str) -> tuple[str | None, tuple[int, int]]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.format, image.size


def predict(
    http: httpx.Client, emu: GoogleEmulator, token: str, model: str = IMAGEN, **parameters: Any
) -> httpx.Response:
    prompt = parameters.pop("prompt", "a lighthouse")
    body = {"instances": [{"prompt": prompt}], "parameters": parameters}
    return vertex_post(http, emu, token, body, url=vertex_url(emu, "predict", model=model))


@pytest.mark.parametrize(
    ("ratio", "size"),
    [("1:1", (1024, 1024)), ("16:9", (1408, 768)), ("9:16", (768, 1408)), ("3:4", (896, 1280))],
)
def test_imagen_makes_images_of_the_ratio(
    http: httpx.Client, emu: GoogleEmulator, token: str, ratio: str, size: tuple[int, int]
) -> None:
    answer = predict(http, emu, token, sampleCount=2, aspectRatio=ratio).json()
    assert [p["mimeType"] for p in answer["predictions"]] == ["image/png"] * 2
    assert [decoded(p["bytesBase64Encoded"]) for p in answer["predictions"]] == [("PNG", size)] * 2


def test_imagen_defaults_to_four_images_and_takes_its_options(
    http: httpx.Client, emu: GoogleEmulator, token: str
) -> None:
    assert len(predict(http, emu, token).json()["predictions"]) == 4
    answer = predict(
        http, emu, token, "imagen-4.0-generate-001", sampleCount=1, sampleImageSize="2K",
        outputOptions={"mimeType": "image/jpeg", "compressionQuality": 60}, enhancePrompt=True,
        personGeneration="ALLOW_ADULT", safetySetting="block_only_high", language="en",
        addWatermark=False, seed=7, guidanceScale=9.5,
    ).json()  # fmt: skip
    (only,) = answer["predictions"]
    assert decoded(only["bytesBase64Encoded"]) == ("JPEG", (2048, 2048))
    assert only["prompt"].endswith("a lighthouse")


@pytest.mark.parametrize(
    ("model", "parameters", "says"),
    [
        (IMAGEN, {"sampleCount": 5}, "sampleCount must be between 1 and 4"),
        ("imagen-4.0-ultra-generate-001", {"sampleCount": 2}, "between 1 and 1"),
        (IMAGEN, {"aspectRatio": "2:3"}, "Invalid aspectRatio"),
        ("imagen-4.0-generate-001", {"negativePrompt": "fog"}, "Negative prompts are not"),
        (IMAGEN, {"sampleImageSize": "2K"}, "Invalid sampleImageSize"),
        (IMAGEN, {"outputOptions": {"mimeType": "image/webp"}}, "outputOptions.mimeType"),
        (IMAGEN, {"personGeneration": "everyone"}, "Invalid personGeneration"),
        (IMAGEN, {"vertex_project": "leak"}, "unsupported parameter 'vertex_project'"),
    ],
)
def test_imagen_refuses_what_vertex_refuses(
    http: httpx.Client,
    emu: GoogleEmulator,
    token: str,
    model: str,
    parameters: dict[str, Any],
    says: str,
) -> None:
    error = google_error(predict(http, emu, token, model, **parameters), 400, "INVALID_ARGUMENT")
    assert says in error["message"]


def test_imagen_rejects_unknown_top_level_fields(
    http: httpx.Client, emu: GoogleEmulator, token: str
) -> None:
    body = {"instances": [{"prompt": "x"}], "parameters": {}, "project": "p"}
    response = vertex_post(http, emu, token, body, url=vertex_url(emu, "predict", model=IMAGEN))
    assert 'Unknown name "project"' in google_error(response, 400, "INVALID_ARGUMENT")["message"]


def test_imagen_safety_outcomes(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    some = predict(http, emu, token, prompt="FILTER_SOME cat", sampleCount=3).json()
    assert len(some["predictions"]) == 2  # the withheld one is left out
    told = predict(http, emu, token, prompt="FILTER_SOME", sampleCount=3, includeRaiReason=True)
    reasons = [p.get("raiFilteredReason") for p in told.json()["predictions"]]
    assert reasons[:2] == [None, None] and "safety filter" in str(reasons[2])
    assert predict(http, emu, token, prompt="FILTER_ME", sampleCount=2).json() == {}
    refused = predict(http, emu, token, prompt="BLOCK_PROMPT")
    assert "Responsible AI" in google_error(refused, 400, "INVALID_ARGUMENT")["message"]


def image_request(prompt: str = "a red kite", **config: Any) -> dict[str, Any]:
    return request_body({"text": prompt}, generationConfig=config)


def image_parts(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in answer["candidates"][0]["content"]["parts"] if "inlineData" in p]


def test_gemini_image_models_answer_with_an_image(
    http: httpx.Client, emu: GoogleEmulator, token: str
) -> None:
    config = {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}
    url = gemini_url(emu, model="gemini-2.5-flash-image")
    answer = gemini_post(http, emu, image_request(**config), url=url).json()
    (part,) = answer["candidates"][0]["content"]["parts"]
    assert decoded(part["inlineData"]["data"]) == ("PNG", (1344, 768))
    assert answer["candidates"][0]["finishReason"] == "STOP"
    assert answer["usageMetadata"]["candidatesTokensDetails"] == [
        {"modality": "IMAGE", "tokenCount": 1290}
    ]
    vertex = {"imageConfig": {"aspectRatio": "1:1", "imageSize": "2K",
                              "imageOutputOptions": {"mimeType": "image/jpeg"}}}  # fmt: skip
    url = vertex_url(emu, model="gemini-3-pro-image-preview")
    answer = vertex_post(http, emu, token, image_request(**vertex), url=url).json()
    assert answer["candidates"][0]["content"]["parts"][0] == {"text": "Here is your image."}
    (part,) = image_parts(answer)
    assert decoded(part["inlineData"]["data"]) == ("JPEG", (2048, 2048))


def test_gemini_image_output_rules(http: httpx.Client, emu: GoogleEmulator, token: str) -> None:
    image_url = gemini_url(emu, model="gemini-2.5-flash-image")
    wrong = gemini_post(http, emu, image_request(responseModalities=["IMAGE"]))  # a text model
    assert "Multi-modal output" in google_error(wrong, 400, "INVALID_ARGUMENT")["message"]
    vertex_only = image_request(imageConfig={"imageOutputOptions": {"mimeType": "image/png"}})
    refused = gemini_post(http, emu, vertex_only, url=image_url)
    assert "imageOutputOptions" in google_error(refused, 400, "INVALID_ARGUMENT")["message"]
    bad_ratio = gemini_post(http, emu, image_request(imageConfig={"aspectRatio": "5:3"}),
                            url=image_url)  # fmt: skip
    google_error(bad_ratio, 400, "INVALID_ARGUMENT")


def test_gemini_image_safety_outcomes(http: httpx.Client, emu: GoogleEmulator) -> None:
    url = gemini_url(emu, model="gemini-2.5-flash-image")
    withheld = gemini_post(http, emu, image_request("FILTER_ME"), url=url).json()
    assert withheld["candidates"] == [{"finishReason": "IMAGE_SAFETY", "index": 0}]
    blocked = gemini_post(http, emu, image_request("BLOCK_PROMPT"), url=url).json()
    assert blocked["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    text = gemini_post(http, emu, image_request("TEXT_ONLY"), url=url).json()
    assert image_parts(text) == [] and text["candidates"][0]["finishReason"] == "STOP"
