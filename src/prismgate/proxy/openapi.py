"""`GET /openapi.json`: every route of the proxy, with request bodies and answers from the
same msgspec Structs the handlers decode and encode, the error answers each route gives,
and which key it needs. Built once, at startup (`ProxyState`).

tests/proxy/test_openapi.py walks the app's route table: a route served and not described
here (or described and not served) fails it. Browser pages (`/docs`, `/ui`) are not API
operations and are left out.

Who may call what (proxy/auth.py): every operation takes the gateway key in any of the
four ways the proxy reads it (`Authorization: Bearer`, `x-portkey-api-key`, `x-api-key`,
`api-key`); the management API needs the master key, which OpenAPI 3.1 writes as the
role `master_key` in the operation's security requirement; the probes and stored images
need no key, nor, from the gateway's own machine by default, `/metrics`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from prismgate._version import __version__
from prismgate.proxy.openapi_management import management_paths, management_structs
from prismgate.proxy.openapi_parts import (
    ERROR_ANSWERS,
    REF,
    SECURITY_SCHEMES,
    TAGS,
    header_parameter,
    json_answer,
    json_body,
    operation,
    path_parameter,
    query_parameter,
    ref,
)
from prismgate.proxy.schemas import (
    ConfigReloaded,
    GroupInfoList,
    HealthReport,
    ModelInfoList,
    ModelList,
    Readiness,
)
from prismgate.types import (
    ErrorBody,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageResponse,
    ImageVariationRequest,
)
from prismgate.types.chat import ChatChunk, ChatCompletion, ChatCompletionRequest

__all__ = ["openapi_document"]

# Model calls can fail in the request, the key, the model, the size, the limits, or
# upstream (a provider's 5xx status is kept).
_CALL_ERRORS = ("400", "401", "403", "404", "408", "413", "429", "5XX")
# Listings only check the key (503: the key store could not be read for a new key).
_READ_ERRORS = ("401", "503")

_BINARY = {"type": "string", "format": "binary"}
_IMAGE_REFERENCE = {
    "type": "object",
    "description": "An input image: a data URL, or an http(s) link the gateway fetches.",
    "properties": {"image_url": {"type": "string"}},
    "required": ["image_url"],
}
_DEPLOYMENT = path_parameter("deployment", "The model group (Azure's deployment name).")
# Portkey's headers on a call (proxy/portkey.py reads them).
_PORTKEY_HEADERS = [
    header_parameter(
        "x-portkey-provider", "The provider, when `model` names no group (`openai`, ...)."
    ),
    header_parameter(
        "x-portkey-virtual-key", "A stored provider key, by name (`/v1/virtual-keys`)."
    ),
    header_parameter(
        "x-portkey-config",
        "A saved config's id (`pc-...`), or a config as JSON: fallback, loadbalance, retry, cache.",
    ),
    header_parameter(
        "x-portkey-custom-host",
        "The provider's base URL: a public address, or a host the operator allows.",
    ),
    header_parameter("x-portkey-trace-id", "Your id for the call, echoed and logged."),
    header_parameter(
        "x-portkey-metadata", 'A JSON object kept with the call, e.g. {"_user": "alice"}.'
    ),
    header_parameter(
        "x-portkey-cache-force-refresh",
        "`true`: call the provider even on a cache hit, and cache the new answer.",
        {"type": "string", "enum": ["true", "false"]},
    ),
    header_parameter(
        "x-portkey-request-timeout",
        "Milliseconds the call may take (at most the operator's timeout).",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
]


def _image_forms(kind: type[msgspec.Struct], schema: dict[str, Any]) -> dict[str, Any]:
    """An edit or variation body: a multipart form (images as files, the other fields as
    text), or JSON with `images: [{image_url}]`, from the request's own Struct schema."""
    form = msgspec.json.decode(msgspec.json.encode(schema))  # a deep copy, changed below
    properties = form["properties"]
    many = kind is ImageEditRequest
    properties["image"] = {"type": "array", "items": _BINARY} if many else _BINARY
    if "mask" in properties:
        properties["mask"] = _BINARY
    as_json = msgspec.json.decode(msgspec.json.encode(form))
    json_properties = as_json["properties"]
    del json_properties["image"]
    json_properties["images"] = {
        "type": "array",
        "items": _IMAGE_REFERENCE,
        "minItems": 1,
        **({} if many else {"maxItems": 1}),
    }
    if "mask" in json_properties:
        json_properties["mask"] = _IMAGE_REFERENCE
    as_json["required"] = ["images" if name == "image" else name for name in form["required"]]
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": form},
            "application/json": {"schema": as_json},
        },
    }


def _image_calls(schemas: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Generations, edits and variations, each at OpenAI's path and its two others."""
    answer = json_answer(ref(ImageResponse), "The images")
    calls = {
        "generations": operation(
            "Generate images",
            "Images",
            "key",
            answer=answer,
            errors=_CALL_ERRORS,
            body=json_body(ref(ImageGenerationRequest)),
            parameters=_PORTKEY_HEADERS,
        ),
        "edits": operation(
            "Edit images",
            "Images",
            "key",
            answer=answer,
            errors=_CALL_ERRORS,
            body=_image_forms(ImageEditRequest, schemas.pop("ImageEditRequest")),
            parameters=_PORTKEY_HEADERS,
        ),
        "variations": operation(
            "Variations of one image",
            "Images",
            "key",
            answer=answer,
            errors=_CALL_ERRORS,
            body=_image_forms(ImageVariationRequest, schemas.pop("ImageVariationRequest")),
            parameters=_PORTKEY_HEADERS,
        ),
    }
    paths: dict[str, dict[str, Any]] = {}
    for name, call in calls.items():
        paths[f"/v1/images/{name}"] = {"post": call}
        paths[f"/images/{name}"] = {"post": _other_path(call)}
        paths[f"/openai/deployments/{{deployment}}/images/{name}"] = {
            "post": _other_path(call, parameters=[_DEPLOYMENT])
        }
    return paths


def _chat() -> dict[str, dict[str, Any]]:
    """Chat completions; `stream: true` answers with server-sent events."""
    answer = json_answer(ref(ChatCompletion), "The completion, or with `stream: true` its chunks")
    answer["content"]["text/event-stream"] = {
        "schema": {
            "type": "string",
            "description": (
                "Server-sent events: `data: <ChatChunk as JSON>` for each chunk, then "
                "`data: [DONE]`; a failure after the first chunk is an error event, "
                '`data: {"error": ...}`, before `data: [DONE]`.'
            ),
        }
    }
    chat = operation(
        "Chat, with images in the messages",
        "Chat",
        "key",
        answer=answer,
        errors=_CALL_ERRORS,
        body=json_body(ref(ChatCompletionRequest)),
        parameters=_PORTKEY_HEADERS,
        description="`stream: true` answers with `text/event-stream` (see ChatChunk).",
    )
    return {
        "/v1/chat/completions": {"post": chat},
        "/chat/completions": {"post": _other_path(chat)},
        "/openai/deployments/{deployment}/chat/completions": {
            "post": _other_path(chat, parameters=[_DEPLOYMENT])
        },
    }


def _listings() -> dict[str, dict[str, Any]]:
    """Models, health, stored images and this document."""
    # The handler's own answer Struct; its module imports the state, which imports this.
    from prismgate.proxy.handlers.model_status import ModelStatus

    models = operation(
        "The model groups (OpenAI's list)",
        "Models",
        "key",
        answer=json_answer(ref(ModelList), "The model groups"),
        errors=_READ_ERRORS,
    )
    info = operation(
        "Every deployment: where it points and what it can do (never a secret)",
        "Models",
        "key",
        answer=json_answer(ref(ModelInfoList), "The deployments"),
        errors=_READ_ERRORS,
    )
    alive = operation(
        "The process answers",
        "Health",
        "public",
        answer=json_answer({"type": "string", "const": "I'm alive!"}, "Alive"),
    )
    image = {"schema": _BINARY}
    return {
        "/v1/models": {"get": models},
        "/models": {"get": _other_path(models)},
        "/model/info": {"get": info},
        "/v1/model/info": {"get": _other_path(info)},
        "/model_group/info": {
            "get": operation(
                "Per model group: providers, limits, prices, vision and image capabilities",
                "Models",
                "key",
                answer=json_answer(ref(GroupInfoList), "The model groups"),
                errors=_READ_ERRORS,
            )
        },
        "/model/status": {
            "get": operation(
                "Each deployment now: cooldown, usage, calls in flight, recent calls, health",
                "Models",
                "master_key",
                answer=json_answer(ref(ModelStatus), "Every deployment, by model group"),
                errors=("401", "403", "503"),
            )
        },
        "/health": {
            "get": operation(
                "Check every deployment (credentials, a free model listing; no paid call)",
                "Health",
                "key",
                answer=json_answer(ref(HealthReport), "Healthy and unhealthy deployments"),
                errors=(*_READ_ERRORS, "404"),
                parameters=[query_parameter("model", "Only this model group's deployments.")],
            )
        },
        "/health/readiness": {
            "get": operation(
                "Ready to serve: the version and the model groups",
                "Health",
                "public",
                answer=json_answer(ref(Readiness), "Ready"),
                errors=("503",),
                description="A 503 (`code: draining`) once the worker is shutting down "
                "(SIGTERM): it finishes its calls in flight and takes no new ones.",
            )
        },
        "/config/reload": {
            "post": operation(
                "Reload the config file without a restart (as SIGHUP does)",
                "Models",
                "master_key",
                answer=json_answer(ref(ConfigReloaded), "Reloaded (202: every worker reloads)"),
                errors=("400", "401", "403"),
                description="The model list, routing settings, virtual keys and Portkey "
                "configs change at once for new requests; calls in flight finish on the "
                "config they started with. A config that does not load, or that changes "
                "a setting only a restart applies (general_settings, callbacks, the cache "
                "backend), is refused with a 400 and the running one stays.",
            )
        },
        "/metrics": {
            "get": operation(
                "Prometheus metrics (the text exposition format)",
                "Health",
                "loopback",
                answer={
                    "description": "The metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                errors=("401", "403"),
                description="Who may read them is the operator's choice "
                "(general_settings.metrics_access): by default a client on the gateway's "
                "machine needs no key, and others need the master key or an admin's key.",
            )
        },
        "/health/liveliness": {"get": alive},
        "/health/liveness": {"get": _other_path(alive)},
        "/v1/images/files/{name}": {
            "get": operation(
                "A stored image, behind the signed link an answer gave (response_format url)",
                "Images",
                "public",
                answer={
                    "description": "The image",
                    "content": {f"image/{kind}": image for kind in ("png", "jpeg", "webp")},
                },
                errors=("403", "404"),
                parameters=[
                    path_parameter("name", "The stored image's name, from the link."),
                    query_parameter("expires", "From the link: when it stops working."),
                    query_parameter("signature", "From the link: the gateway's signature."),
                ],
            )
        },
        "/openapi.json": {
            "get": operation(
                "This document (GET /docs shows it as an interactive reference)",
                "Reference",
                "key",
                answer=json_answer({"type": "object"}, "The OpenAPI 3.1 document"),
                errors=_READ_ERRORS,
            )
        },
    }


def _other_path(call: dict[str, Any], *, parameters: list[Any] | None = None) -> dict[str, Any]:
    """The same operation at another path (OpenAI's without `/v1`, Azure's, LiteLLM's)."""
    other = {**call, "tags": ["Other paths"]}
    if parameters:
        other["parameters"] = [*parameters, *call.get("parameters", [])]
    return other


def _operation_ids(paths: dict[str, dict[str, Any]]) -> None:
    """Each operation's id, from its method and path (what Swagger UI links to)."""
    for path, operations in paths.items():
        words = "".join(c if c.isalnum() else "_" for c in path).strip("_")
        for method, done in operations.items():
            operations[method] = {**done, "operationId": f"{method}_{words}"}


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of the proxy, encoded."""
    from prismgate.proxy.handlers.model_status import ModelStatus

    kinds = (
        ImageGenerationRequest,
        ImageEditRequest,
        ImageVariationRequest,
        ImageResponse,
        ChatCompletionRequest,
        ChatCompletion,
        ChatChunk,
        ErrorBody,
        ModelList,
        ModelInfoList,
        GroupInfoList,
        HealthReport,
        Readiness,
        ConfigReloaded,
        ModelStatus,
        *management_structs(),
    )
    _, schemas = msgspec.json.schema_components(kinds, ref_template=REF)
    paths = {**_image_calls(schemas), **_chat(), **_listings(), **management_paths()}
    # Edits and variations are described as forms: their Structs' decoded images are not
    # what a client sends.
    schemas.pop("InputImage", None)
    _operation_ids(paths)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "prismgate",
            "version": __version__,
            "summary": "An OpenAI-compatible gateway for image generation and vision.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": ERROR_ANSWERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
    return msgspec.json.encode(document)
