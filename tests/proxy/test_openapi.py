"""`/openapi.json` against what the proxy really serves: every route of the app's own route
table is described (and nothing else), the document is valid OpenAPI 3.1, each operation
asks for the key the proxy really wants, and the statuses it answers are the documented
ones. (The bodies are fuzzed against the document in tests/security/test_schemathesis.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from prismgate.config import load_config
from prismgate.proxy import create_app
from prismgate.proxy.openapi import openapi_document
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CONFIG: dict[str, Any] = {
    "model_list": [model("painter", "mock/dall-e-3"), model("llava-hf", "mock/llava-hf")],
    "general_settings": {"master_key": MASTER_KEY},
}
# Pages for a browser, not API operations: the reference itself and the console.
BROWSER_PAGES = ("/docs", "/ui")
# A value for each path parameter, naming nothing that exists.
PATH_VALUES = {"deployment": "painter", "name": "gone.png", "key": "sk-none", "slug": "none"}


def is_browser_page(path: str) -> bool:
    return any(path == page or path.startswith(page + "/") for page in BROWSER_PAGES)


def served_operations(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, mounted ones included; a mounted app that is not a
    router is one `*` operation (it could serve anything under its path)."""
    for route in routes:
        if isinstance(route, Route):
            # path_format: `{name:path}` is `{name}`, as OpenAPI writes it.
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path_format
        elif isinstance(route, Mount) and route.routes:
            yield from served_operations(list(route.routes), prefix + route.path)
        elif isinstance(route, Mount):
            yield "*", prefix + route.path
        else:
            yield "?", f"{prefix}{route!r}"


def starlette_app(app: ASGIApp) -> Starlette:
    """The Starlette app inside the proxy's plain-ASGI middleware."""
    while not isinstance(app, Starlette):
        app = app.app  # type: ignore[attr-defined]
    return app


def described_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return msgspec.json.decode(openapi_document())


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client (and connection) for the module's few hundred requests."""
    with httpx.Client(timeout=30) as opened:
        yield opened


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    running = RunningProxy(CONFIG).start()
    yield running
    running.stop()


def unknown(answer: httpx.Response) -> bool:
    """The router's own 404: no route for this path."""
    return answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url"


def test_every_route_is_described_and_nothing_else(
    document: dict[str, Any], proxy: RunningProxy, client: httpx.Client
) -> None:
    app = starlette_app(create_app(load_config(CONFIG, environ={})))
    served = {(m, p) for m, p in served_operations(app.routes) if not is_browser_page(p)}
    described = described_operations(document)
    assert served - described == set(), "served, and missing from /openapi.json"
    # What is described and not routed must be answered before the router (middleware).
    for method, path in sorted(described - served):
        answer = client.request(method, proxy.base_url + path.format(**PATH_VALUES))
        assert not unknown(answer), f"{method} {path} is in /openapi.json, and not served"
    # `/metrics` is answered by middleware when the gateway has it: described too.
    if not unknown(client.get(proxy.base_url + "/metrics")):
        assert ("GET", "/metrics") in described
    assert len(described) > 40


def test_the_rule_leaves_out_browser_pages_only() -> None:
    assert is_browser_page("/docs") and is_browser_page("/docs/swagger-ui.css")
    assert is_browser_page("/ui") and is_browser_page("/ui/static")
    assert not is_browser_page("/docsearch") and not is_browser_page("/uild")
    assert not is_browser_page("/metrics") and not is_browser_page("/v1/docs")


def test_the_served_document_is_valid_openapi_3_1(proxy: RunningProxy) -> None:
    answer = httpx.get(proxy.base_url + "/openapi.json", headers=ADMIN)
    assert answer.status_code == 200
    document = answer.json()
    validate(document)  # raises, saying where, on anything OpenAPI 3.1 does not allow
    assert document == msgspec.json.decode(openapi_document())
    # As before /docs: the document itself still needs the gateway key.
    refused = httpx.get(proxy.base_url + "/openapi.json")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def _url(proxy: RunningProxy, path: str, operation: dict[str, Any]) -> str:
    url = proxy.base_url + path.format(**PATH_VALUES)
    required = [
        p["name"] for p in operation.get("parameters", []) if p["in"] == "query" and p["required"]
    ]
    return url + ("?" + "&".join(f"{name}=none" for name in required) if required else "")


def _documented(status: int, operation: dict[str, Any]) -> bool:
    answers = operation["responses"]
    return str(status) in answers or f"{str(status)[0]}XX" in answers


def test_each_operation_asks_for_the_key_it_needs(
    proxy: RunningProxy, document: dict[str, Any], client: httpx.Client
) -> None:
    """Without a key, with a generated (non-admin) key, and with the master key: each
    operation refuses or serves as its security requirement says, with a documented
    status. No body is sent: a route that reads one refuses it, documented too."""
    generated = client.post(proxy.base_url + "/key/generate", json={}, headers=ADMIN)
    assert generated.status_code == 200
    member = {"Authorization": f"Bearer {generated.json()['key']}"}
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            url = _url(proxy, path, operation)
            where = f"{method.upper()} {path}"
            security = operation["security"]
            anonymous = client.request(method, url)
            if security == [] or {} in security:  # no key is one way in
                assert anonymous.status_code != 401, where
            else:
                assert anonymous.status_code == 401, where
                roles = {
                    role for requirement in security for r in requirement.values() for role in r
                }
                by_member = client.request(method, url, headers=member)
                refused_as_member = (
                    by_member.status_code == 403
                    and by_member.json()["error"]["code"] == "master_key_required"
                )
                assert refused_as_member == ("master_key" in roles), where
                assert _documented(by_member.status_code, operation), (where, by_member.text)
            by_admin = client.request(method, url, headers=ADMIN)
            assert by_admin.status_code < 500, (where, by_admin.text)
            for answer in (anonymous, by_admin):
                assert _documented(answer.status_code, operation), (where, answer.text)
                if answer.status_code >= 400:
                    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
            checked += 1
    assert checked == len(described_operations(document))


def _header(scheme: dict[str, Any], key: str) -> dict[str, str]:
    if scheme["type"] == "http":
        assert scheme["scheme"] == "bearer"
        return {"Authorization": f"Bearer {key}"}
    assert scheme["type"] == "apiKey" and scheme["in"] == "header"
    return {scheme["name"]: key}


def test_every_documented_way_to_send_the_key_works(
    proxy: RunningProxy, document: dict[str, Any]
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"bearer", "x-portkey-api-key", "x-api-key", "api-key"}
    for name, scheme in schemes.items():
        accepted = httpx.get(proxy.base_url + "/key/list", headers=_header(scheme, MASTER_KEY))
        assert accepted.status_code == 200, name
        refused = httpx.get(proxy.base_url + "/key/list", headers=_header(scheme, "sk-wrong"))
        assert refused.status_code == 401, name


def test_a_streamed_chat_answers_as_documented(
    proxy: RunningProxy, document: dict[str, Any]
) -> None:
    answers = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "text/event-stream"}
    assert "ChatChunk" in document["components"]["schemas"]
    body: dict[str, Any] = {"model": "llava-hf", "messages": [{"role": "user", "content": "hi"}]}
    plain = httpx.post(proxy.base_url + "/v1/chat/completions", json=body, headers=ADMIN)
    assert plain.headers["content-type"] == "application/json"
    with httpx.stream(
        "POST",
        proxy.base_url + "/v1/chat/completions",
        json={**body, "stream": True},
        headers=ADMIN,
    ) as streamed:
        assert streamed.headers["content-type"].split(";")[0] == "text/event-stream"
        events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunk = msgspec.json.decode(events[0].removeprefix("data: "))
    assert set(chunk) <= set(document["components"]["schemas"]["ChatChunk"]["properties"])


def test_errors_are_documented_as_error_bodies(document: dict[str, Any]) -> None:
    answers = document["components"]["responses"]
    for name, answer in answers.items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, name
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status != "200":
                    assert answer["$ref"].removeprefix("#/components/responses/") in answers
            assert operation["operationId"], f"{method} {path}"


def test_edits_are_documented_as_forms_and_as_json(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["image"] == {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
    }
    as_json = content["application/json"]["schema"]
    assert "image" not in as_json["properties"]
    assert as_json["required"] == ["prompt", "images"]
    assert as_json["properties"]["images"]["items"]["required"] == ["image_url"]
    variation = document["paths"]["/v1/images/variations"]["post"]["requestBody"]["content"]
    assert variation["application/json"]["schema"]["properties"]["images"]["maxItems"] == 1
    # The decoded image type is internal: never a schema a client sees.
    assert "InputImage" not in msgspec.json.encode(document).decode()


def test_query_parameters_are_typed(document: dict[str, Any]) -> None:
    listing = {p["name"]: p for p in document["paths"]["/key/list"]["get"]["parameters"]}
    assert listing["page"]["schema"]["type"] == "integer"
    assert listing["return_full_object"]["schema"] == {"type": "boolean"}
    summary = {p["name"]: p for p in document["paths"]["/spend/summary"]["get"]["parameters"]}
    assert summary["start_date"]["schema"]["type"] == "string"
    assert "day" in summary["group_by"]["schema"]["enum"]


def test_the_management_api_says_it_needs_the_master_key(document: dict[str, Any]) -> None:
    generate = document["paths"]["/key/generate"]["post"]
    assert generate["security"][0] == {"bearer": ["master_key"]}
    assert generate["description"].startswith("Needs the master key.")
    assert generate["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GenerateKey"
    }
    assert document["paths"]["/v1/models"]["get"]["security"][0] == {"bearer": []}
    assert document["paths"]["/health/readiness"]["get"]["security"] == []


def test_management_answers_match_their_documented_shapes(document: dict[str, Any]) -> None:
    """Each management answer, made for real, against its operation's schema (exact
    shapes: a field added or renamed in a handler fails here until the document says so)."""
    config = {
        "model_list": [model("painter", "mock/dall-e-3")],
        "general_settings": {
            "master_key": MASTER_KEY,
            "console": {"keep_images": True, "keep_request_details": True},
        },
    }
    running = RunningProxy(config).start()
    checked: list[str] = []

    def call(method: str, path: str, **options: Any) -> Any:
        answer = httpx.request(method, running.base_url + path, headers=ADMIN, **options)
        assert answer.status_code == 200, (path, answer.text)
        route = path.partition("?")[0]
        schema = document["paths"][route][method.lower()]["responses"]["200"]
        Draft202012Validator(schema["content"]["application/json"]["schema"]).validate(
            answer.json()
        )
        checked.append(f"{method} {route}")
        return answer.json()

    try:
        team = call("POST", "/team/new", json={"team_alias": "painters", "rpm_limit": 10})
        key = call(
            "POST",
            "/key/generate",
            json={"team_id": team["team_id"], "key_alias": "k", "max_budget": 5},
        )
        call("POST", "/key/update", json={"key": key["key"], "tpm_limit": 100})
        call("POST", "/key/block", json={"key": key["key"]})
        call("POST", "/key/unblock", json={"key": key["key"]})
        call("GET", f"/key/info?key={key['key']}")
        call("GET", "/key/list")
        call("GET", "/key/list?return_full_object=true")
        call("POST", "/team/update", json={"team_id": team["team_id"], "max_budget": 50})
        call("GET", f"/team/info?team_id={team['team_id']}")
        call("GET", "/team/list")
        user = call("POST", "/user/new", json={"user_email": "a@example.com"})
        call("POST", "/user/new", json={"auto_create_key": False})
        call("GET", f"/user/info?user_id={user['user_id']}")
        image = httpx.post(
            running.base_url + "/v1/images/generations",
            headers={"Authorization": f"Bearer {key['key']}"},
            json={"model": "painter", "prompt": "an otter", "size": "1024x1024"},
        )
        assert image.status_code == 200, image.text
        deadline = time.monotonic() + 10
        while not any(row["kept_images"] for row in call("GET", "/spend/logs")):
            assert time.monotonic() < deadline, "the call's row and its image were not kept"
            time.sleep(0.05)
        call("GET", "/spend/logs?details=true")
        call("GET", "/spend/images")
        fresh = call("POST", "/key/regenerate", json={"key": key["key"]})
        assert fresh["key"] != key["key"]
    finally:
        running.stop()
    assert len(set(checked)) == 15  # every management route with an answer of its own
