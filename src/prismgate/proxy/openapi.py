"""`GET /openapi.json`, generated from the same Structs the handlers decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from prismgate._version import __version__
from prismgate.proxy.schemas import (
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
from prismgate.types.chat import ChatCompletion, ChatCompletionRequest

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _json(kind: type, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(kind)}}}


def _operation(summary: str, answer: type, *, body: type | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _json(answer, "Success"), "default": _json(ErrorBody, "Error")},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _management(components: dict[str, Any]) -> dict[str, Any]:
    """The `/key/*`, `/team/*`, `/user/*` operations: bodies from their Structs, answers
    as JSON objects (LiteLLM's shapes, documented in the README)."""
    from prismgate.identity import wire

    bodies = {
        "/key/generate": wire.GenerateKey, "/key/update": wire.UpdateKey,
        "/key/delete": wire.DeleteKeys, "/key/block": wire.BlockKey,
        "/key/unblock": wire.BlockKey, "/key/regenerate": wire.RegenerateKey,
        "/team/new": wire.NewTeam, "/team/update": wire.UpdateTeam,
        "/team/delete": wire.DeleteTeams, "/user/new": wire.NewUser,
    }  # fmt: skip
    _, found = msgspec.json.schema_components(tuple(bodies.values()), ref_template=_REF)
    components.update(found)
    answer = {"description": "Success", "content": {"application/json": {"schema": {}}}}
    error = _json(ErrorBody, "Error")

    def operation(summary: str, body: type | None = None, **query: bool) -> dict[str, Any]:
        done: dict[str, Any] = {"summary": summary, "responses": {"200": answer, "default": error}}
        if body is not None:
            done["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            }
        if query:
            done["parameters"] = [
                {"name": name, "in": "query", "required": required, "schema": {"type": "string"}}
                for name, required in query.items()
            ]
        return done

    paths: dict[str, Any] = {
        path: {"post": operation(f"{path} (master key)", body)} for path, body in bodies.items()
    }
    path_key = [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}]
    paths["/key/{key}/regenerate"] = {
        "post": {**operation("A new key for the same settings", wire.RegenerateKey),
                 "parameters": path_key}
    }  # fmt: skip
    paths["/key/info"] = {"get": operation("A key's settings and spend", key=False)}
    paths["/key/list"] = {
        "get": operation("Keys, a page at a time", page=False, size=False, team_id=False,
                         user_id=False, key_alias=False, return_full_object=False)
    }  # fmt: skip
    paths["/team/info"] = {"get": operation("A team and its keys", team_id=True)}
    paths["/team/list"] = {"get": operation("Every team")}
    paths["/user/info"] = {"get": operation("A user, their keys and teams", user_id=True)}
    paths["/spend/logs"] = {
        "get": operation("Spend log rows", api_key=False, user_id=False, request_id=False,
                         start_date=False, end_date=False)
    }  # fmt: skip
    summary = operation(
        "Spend per key, team, model group or day (dollars, requests, images, tokens)",
        group_by=False,
        api_key=False,
        user_id=False,
        internal_user_id=False,
        team_id=False,
        start_date=False,
        end_date=False,
    )
    groups = ["team", "key", "api_key", "model", "day"]
    summary["parameters"][0]["schema"] = {"type": "string", "enum": groups}
    paths["/spend/summary"] = {"get": summary}
    paths["/global/spend/report"] = {"get": summary}  # LiteLLM's path for the same
    # Portkey's virtual keys: bodies derived from the settings providers declare.
    from prismgate.identity.virtual_key_wire import create_struct, update_struct

    create, change = create_struct(), update_struct()
    components.update(msgspec.json.schema_components((create, change), ref_template=_REF)[1])
    slug = [{"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}]
    for prefix in ("/v1", ""):
        paths[f"{prefix}/virtual-keys"] = {
            "post": operation("Store a virtual key (master key)", create),
            "get": operation("Virtual keys, a page at a time", current_page=False, page_size=False),
        }
        paths[f"{prefix}/virtual-keys/{{slug}}"] = {
            "get": {**operation("A virtual key (never its secrets)"), "parameters": slug},
            "put": {**operation("Rotate or change a virtual key", change), "parameters": slug},
            "delete": {**operation("Delete a virtual key"), "parameters": slug},
        }
    return paths


def _form(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """A multipart body for `kind`: its images are files, the other fields text."""
    schema = msgspec.json.schema(kind)["$defs"][kind.__name__]
    binary = {"type": "string", "format": "binary"}
    properties = schema["properties"]
    many = properties["image"].get("type") == "array"
    properties["image"] = {"type": "array", "items": binary} if many else binary
    if "mask" in properties:
        properties["mask"] = binary
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


# Paths that answer without the gateway key (proxy/auth.py's PUBLIC_PATHS).
_PUBLIC: dict[str, Any] = {"security": []}


def _schema(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _image_file() -> dict[str, Any]:
    """A stored image, behind the signature of the link the gateway made for it."""
    query = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("expires", "signature")
    ]
    path = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    image = {"schema": {"type": "string", "format": "binary"}}
    return {
        "summary": "A stored image (links from answers with response_format url)",
        "parameters": path + query,
        "responses": {
            "200": {
                "description": "The image",
                "content": {f"image/{kind}": image for kind in ("png", "jpeg", "webp", "gif")},
            },
            "default": _json(ErrorBody, "Error"),
        },
        **_PUBLIC,
    }


def _document() -> dict[str, Any]:
    return {
        "summary": "This document",
        "responses": {
            "200": _schema({"type": "object"}, "The OpenAPI document"),
            "default": _json(ErrorBody, "Error"),
        },
    }


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of the proxy, encoded."""
    kinds = (ImageGenerationRequest, ImageResponse, ChatCompletionRequest, ChatCompletion,
             ErrorBody, ModelList, ModelInfoList, GroupInfoList, HealthReport,
             Readiness)  # fmt: skip
    _, components = msgspec.json.schema_components(kinds, ref_template=_REF)
    generate = _operation("Generate images", ImageResponse, body=ImageGenerationRequest)
    chat = _operation(
        "Chat, with images; `stream: true` answers with text/event-stream",
        ChatCompletion,
        body=ChatCompletionRequest,
    )
    edit = {
        **_operation("Edit images (JSON with images[].image_url also accepted)", ImageResponse),
        "requestBody": _form(ImageEditRequest),
    }
    vary = {
        **_operation("Variations of one image", ImageResponse),
        "requestBody": _form(ImageVariationRequest),
    }
    alive = {
        "summary": "The process answers",
        "responses": {"200": _schema({"type": "string", "const": "I'm alive!"}, "Alive")},
        **_PUBLIC,
    }
    deployment = [
        {"name": "deployment", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    paths: dict[str, Any] = {
        "/v1/images/generations": {"post": generate},
        "/images/generations": {"post": generate},
        "/openai/deployments/{deployment}/images/generations": {
            "post": {**generate, "parameters": deployment}
        },
        "/v1/images/edits": {"post": edit},
        "/images/edits": {"post": edit},
        "/openai/deployments/{deployment}/images/edits": {
            "post": {**edit, "parameters": deployment}
        },
        "/v1/images/variations": {"post": vary},
        "/images/variations": {"post": vary},
        "/openai/deployments/{deployment}/images/variations": {
            "post": {**vary, "parameters": deployment}
        },
        "/v1/chat/completions": {"post": chat},
        "/chat/completions": {"post": chat},
        "/openai/deployments/{deployment}/chat/completions": {
            "post": {**chat, "parameters": deployment}
        },
        "/v1/models": {"get": _operation("List model groups", ModelList)},
        "/models": {"get": _operation("List model groups", ModelList)},
        "/model/info": {"get": _operation("Deployments and capabilities", ModelInfoList)},
        "/v1/model/info": {"get": _operation("Deployments and capabilities", ModelInfoList)},
        "/model_group/info": {"get": _operation("Model groups", GroupInfoList)},
        "/health": {"get": _operation("Check every deployment", HealthReport)},
        **{path: {"get": alive} for path in ("/health/liveliness", "/health/liveness")},
        "/health/readiness": {"get": {**_operation("Ready to serve", Readiness), **_PUBLIC}},
        "/v1/images/files/{name}": {"get": _image_file()},
        "/openapi.json": {"get": _document()},
        **_management(components),
    }
    document = {
        "openapi": "3.1.0",
        "info": {"title": "prismgate", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    return msgspec.json.encode(document)
