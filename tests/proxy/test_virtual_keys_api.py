"""Portkey-style virtual keys made over the admin API, on a real database (SQLite and the
real PostgreSQL): created, used by name through the portkey-ai and openai clients,
rotated, deleted; sealed at rest, never shown; refused to anyone but the master key."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from portkey_ai import Portkey
from portkey_ai.api_resources.exceptions import PermissionDeniedError

from prismgate.identity.sealing import Sealer
from prismgate.identity.virtual_key_records import Payload, seal_record
from prismgate.storage.sql import database_url, open_sql_stores
from tests.emulators import AnthropicEmulator, BedrockEmulator, OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
ENCRYPTION_KEY = "vk-test-encryption-key-000001"
FIRST = "sk-vk-first-provider-key-0001"
SECOND = "sk-vk-second-provider-key-0002"
IMAGE = {"model": "dall-e-2", "prompt": "an otter", "size": "256x256"}


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, url) of a fresh, empty database."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'prismgate.db'}"
        return
    name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield "postgres", f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def upstream() -> Iterator[OpenAIEmulator]:
    """An OpenAI emulator that accepts exactly one provider key (changed by rotations)."""
    with OpenAIEmulator(api_key=FIRST) as emulator:
        yield emulator


def gateway(database_url: str, **general: Any) -> dict[str, Any]:
    return {
        "model_list": [model("otters", "mock/otters")],
        "general_settings": {
            "master_key": MASTER_KEY,
            "database_url": database_url,
            "encryption_key": ENCRYPTION_KEY,
            **general,
        },
        "virtual_keys": {"from-config": {"provider": "openai", "api_key": "sk-config-key-0003"}},
    }


def create(proxy: RunningProxy, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(proxy.base_url + "/v1/virtual-keys", json=body, headers=headers or ADMIN)


def openai_body(upstream: OpenAIEmulator, name: str = "openai-prod") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "key": upstream.api_key,
        "api_base": upstream.base_url + "/v1",
        "note": "the art team's account",
    }


def generate(
    proxy: RunningProxy, virtual_key: str, caller: dict[str, str] | None = None
) -> httpx.Response:
    headers = {**(caller or ADMIN), "x-portkey-virtual-key": virtual_key}
    return httpx.post(proxy.base_url + "/v1/images/generations", json=IMAGE, headers=headers)


def post_key(proxy: RunningProxy, alias: str) -> dict[str, str]:
    """The headers of a new gateway key (not the master key): a plain caller."""
    made = httpx.post(proxy.base_url + "/key/generate", json={"key_alias": alias}, headers=ADMIN)
    return {"Authorization": f"Bearer {made.json()['key']}"}


def used_key(upstream: OpenAIEmulator) -> str:
    return upstream.requests[-1].headers["authorization"].removeprefix("Bearer ")


def test_a_virtual_key_is_created_used_rotated_and_deleted(
    serve: Callable[..., RunningProxy], database: tuple[str, str], upstream: OpenAIEmulator
) -> None:
    proxy = serve(gateway(database[1]))
    made = create(proxy, openai_body(upstream))
    assert made.status_code == 200, made.text
    shown = made.json()
    assert (shown["slug"], shown["provider"], shown["status"]) == (
        "openai-prod",
        "openai",
        "active",
    )
    assert shown["masked_api_key"] == "..." + FIRST[-4:] and FIRST not in made.text
    assert shown["model_config"] == {"api_base": upstream.base_url + "/v1"}

    # The portkey-ai client names the key; the provider key never leaves the gateway.
    portkey = Portkey(
        api_key=MASTER_KEY, base_url=proxy.base_url + "/v1", virtual_key="openai-prod"
    )
    assert portkey.images.generate(**IMAGE).data
    assert used_key(upstream) == FIRST
    # The openai client with the header as a default header.
    client = openai.OpenAI(
        api_key=MASTER_KEY,
        base_url=proxy.base_url + "/v1",
        default_headers={"x-portkey-virtual-key": "openai-prod"},
        max_retries=0,
    )
    assert client.images.generate(**IMAGE).data and len(upstream.requests) == 2
    # A Portkey config's virtual_key names it too.
    config = json.dumps({"virtual_key": "openai-prod", "retry": {"attempts": 1}})
    configured = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json=IMAGE,
        headers={**ADMIN, "x-portkey-config": config},
    )
    assert configured.status_code == 200, configured.text

    # Rotation: the upstream takes only the new key from now on; this instance uses it at once.
    upstream.api_key = SECOND
    rotated = httpx.put(
        proxy.base_url + "/v1/virtual-keys/openai-prod", json={"key": SECOND}, headers=ADMIN
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["created_at"] == shown["created_at"]
    assert rotated.json()["updated_at"] >= shown["updated_at"]
    assert rotated.json()["note"] == shown["note"]  # not sent: kept
    assert SECOND not in rotated.text
    assert generate(proxy, "openai-prod").status_code == 200
    assert used_key(upstream) == SECOND

    deleted = httpx.delete(proxy.base_url + "/v1/virtual-keys/openai-prod", headers=ADMIN)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    refused = generate(proxy, "openai-prod")
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("the virtual key 'openai-prod' is not")
    assert (
        httpx.get(proxy.base_url + "/v1/virtual-keys/openai-prod", headers=ADMIN).status_code == 404
    )


def test_a_rotation_reaches_another_instance_within_a_second(
    serve: Callable[..., RunningProxy], database: tuple[str, str], upstream: OpenAIEmulator
) -> None:
    admin, other = serve(gateway(database[1])), serve(gateway(database[1]))
    assert create(admin, openai_body(upstream)).status_code == 200
    assert generate(other, "openai-prod").status_code == 200  # read once: now cached there

    upstream.api_key = SECOND
    httpx.put(admin.base_url + "/v1/virtual-keys/openai-prod", json={"key": SECOND}, headers=ADMIN)
    rotated_at = time.monotonic()
    while generate(other, "openai-prod").status_code != 200:
        assert time.monotonic() - rotated_at < 1.0, "the other instance kept the old key"
        time.sleep(0.05)
    assert used_key(upstream) == SECOND

    httpx.delete(admin.base_url + "/v1/virtual-keys/openai-prod", headers=ADMIN)
    deleted_at = time.monotonic()
    while generate(other, "openai-prod").status_code != 400:
        assert time.monotonic() - deleted_at < 1.0, "the other instance kept a deleted key"
        time.sleep(0.05)


def _dump(kind: str, url: str) -> bytes:
    """Everything the database holds, as its own dump tool writes it."""
    if kind == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        raw = b"".join(file.read_bytes() for file in files if file.exists())
        dump = subprocess.run(["sqlite3", str(path), ".dump"], check=True, capture_output=True)
        return raw + dump.stdout
    name = url.rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", name], check=True, capture_output=True
    )
    return dump.stdout


def test_the_database_and_the_answers_hold_no_secret(
    serve: Callable[..., RunningProxy],
    database: tuple[str, str],
    upstream: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = serve(gateway(database[1]))
    aws_secret = "aws-secret-access-key-value-0004"
    bedrock = {
        "name": "bedrock-east",
        "provider": "bedrock",
        "awsAccessKeyId": "AKIAVIRTUALKEY000005",  # Portkey's spelling
        "aws_secret_access_key": aws_secret,
        "aws_region": "us-east-1",  # Portkey's option name for aws_region_name
    }
    assert create(proxy, bedrock).status_code == 200
    assert create(proxy, openai_body(upstream)).status_code == 200
    assert generate(proxy, "openai-prod").status_code == 200
    secrets = (FIRST, aws_secret)

    dump = _dump(*database)
    assert b"bedrock-east" in dump  # the dump is of the right database
    for secret in secrets:
        assert secret.encode() not in dump and secret.encode().hex().encode() not in dump

    listed = httpx.get(proxy.base_url + "/v1/virtual-keys", headers=ADMIN)
    one = httpx.get(proxy.base_url + "/v1/virtual-keys/bedrock-east", headers=ADMIN)
    for answer in (listed, one):
        assert answer.status_code == 200
        assert all(secret not in answer.text for secret in secrets)
    assert listed.json()["total"] == 3  # the config's own is listed too
    sources = {key["name"]: key["source"] for key in listed.json()["data"]}
    assert sources == {"bedrock-east": "api", "from-config": "config", "openai-prod": "api"}
    assert "sk-config-key-0003" not in listed.text
    shown = one.json()
    assert shown["secret_fields"] == ["aws_secret_access_key"]
    # What /model/info would show: where it points, never who it is (the key id).
    assert shown["model_config"] == {"aws_region_name": "us-east-1"}
    assert "AKIAVIRTUALKEY000005" not in listed.text + one.text
    assert shown["masked_api_key"] is None
    assert all(secret not in caplog.text for secret in secrets)


def test_an_upstream_that_echoes_a_stored_key_never_shows_it(
    serve: Callable[..., RunningProxy],
    tmp_path: Path,
    upstream: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Not shaped like any known key: only knowing it lets the gateway remove it.
    plain = "plain-provider-secret-000006"
    upstream.api_key = plain
    caplog.set_level(logging.DEBUG)
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    assert create(proxy, openai_body(upstream)).status_code == 200
    upstream.fail_next("status", status=400, message=f"the key {plain} is not allowed here")
    answer = generate(proxy, "openai-prod")
    assert answer.status_code == 400
    assert plain not in answer.text and "[REDACTED]" in answer.text

    # A provider whose answers are translated: an error answer, and an error event in
    # the middle of a stream (after the call was served, so no routing step sees it).
    claude = "plain-anthropic-secret-000007"
    with AnthropicEmulator(api_key=claude) as anthropic:
        body = {"name": "claude", "provider": "anthropic", "key": claude,
                "api_base": anthropic.base_url}  # fmt: skip
        assert create(proxy, body).status_code == 200
        url = proxy.base_url + "/v1/chat/completions"
        headers = {**ADMIN, "x-portkey-virtual-key": "claude"}
        chat = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        anthropic.fail_next("status", status=400, message=f"key {claude} may not do this")
        failed = httpx.post(url, json=chat, headers=headers)
        assert failed.status_code == 400, failed.text
        assert claude not in failed.text and "[REDACTED]" in failed.text

        anthropic.fail_next("stream_error", status=500, message=f"key {claude} broke the stream")
        streamed = httpx.post(url, json={**chat, "stream": True}, headers=headers)
        assert streamed.status_code == 200  # the first event was on its way already
        assert '"error"' in streamed.text and streamed.text.endswith("data: [DONE]\n\n")
        assert claude not in streamed.text and "[REDACTED]" in streamed.text
    assert plain not in caplog.text and claude not in caplog.text


def test_bad_requests_get_errors_that_name_the_field(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    body = openai_body(upstream)
    assert create(proxy, body).status_code == 200
    cases: list[tuple[dict[str, Any], int, str | None, str]] = [
        (body, 409, "name", "exists already"),
        ({**body, "name": "from-config"}, 409, "name", "config file"),
        ({**body, "name": "other", "soft_budget": 3}, 400, "soft_budget", "unknown field"),
        ({**body, "name": "other", "provider": "nope"}, 400, "provider", "unknown provider"),
        ({**body, "name": "other", "aws_region_name": "x"}, 400, "aws_region_name", "openai"),
        ({**body, "name": "other", "resourceName": "r"}, 400, "resourceName", "api_base"),
        ({**body, "name": "other", "api_key": "sk-twice-0000000007"}, 400, "api_key", "once"),
        ({**body, "name": "other", "timeout": "soon"}, 400, "timeout", "Expected"),
        ({**body, "name": "other", "api_base": "http://u:p@h/v1"}, 400, "api_base", "credentials"),
        ({**body, "name": "../etc/passwd"}, 400, "name", "matching"),
        ({**body, "name": "a/b"}, 400, "name", "matching"),
        ({**body, "name": "x" * 200}, 400, "name", "matching"),
        ({"provider": "openai"}, 400, None, "name"),
    ]
    for sent, status, param, words in cases:
        answer = create(proxy, sent)
        assert answer.status_code == status, (sent, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param and words in error["message"], (sent, error)
    not_json = httpx.post(proxy.base_url + "/v1/virtual-keys", content=b"{nope", headers={**ADMIN})
    assert not_json.status_code == 400

    url = proxy.base_url + "/v1/virtual-keys/"
    for method in ("GET", "PUT", "DELETE"):
        unknown = httpx.request(method, url + "nobody", json={}, headers=ADMIN)
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "slug"
        # A path character in a slug never reaches a handler as one.
        sneaky = httpx.request(method, url + "..%2F..%2Fetc", json={}, headers=ADMIN)
        assert sneaky.status_code == 404
    renamed = httpx.put(url + "openai-prod", json={"name": "other"}, headers=ADMIN)
    assert renamed.status_code == 400 and renamed.json()["error"]["param"] == "name"
    # A new provider must take every stored setting: OpenAI's organization is not Bedrock's.
    assert create(proxy, {**body, "name": "org", "organization": "org-1"}).status_code == 200
    to_bedrock = httpx.put(url + "org", json={"provider": "bedrock"}, headers=ADMIN)
    assert to_bedrock.status_code == 400, to_bedrock.text
    assert to_bedrock.json()["error"]["param"] == "organization"
    moved = httpx.put(
        url + "org", json={"provider": "bedrock", "organization": None}, headers=ADMIN
    )
    assert moved.status_code == 200 and moved.json()["provider"] == "bedrock"
    config_owned = httpx.put(url + "from-config", json={"key": "x"}, headers=ADMIN)
    assert config_owned.status_code == 409
    assert httpx.delete(url + "from-config", headers=ADMIN).status_code == 409


def test_only_the_master_key_manages_virtual_keys(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    made = httpx.post(proxy.base_url + "/key/generate", json={"key_alias": "ci"}, headers=ADMIN)
    caller = {"Authorization": f"Bearer {made.json()['key']}"}
    refused = create(proxy, openai_body(upstream), **caller)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "master_key_required"
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, proxy.base_url + "/v1/virtual-keys/x", headers=caller)
        assert answer.status_code == 403
    assert httpx.get(proxy.base_url + "/virtual-keys").status_code == 401  # no key at all
    portkey = Portkey(api_key=made.json()["key"], base_url=proxy.base_url + "/v1")
    with pytest.raises(PermissionDeniedError, match="master key"):
        portkey.virtual_keys.list()
    # The key may still call with a virtual key the operator made: naming is all it does.
    assert create(proxy, openai_body(upstream)).status_code == 200
    headers = {**caller, "x-portkey-virtual-key": "openai-prod"}
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=IMAGE, headers=headers)
    assert answer.status_code == 200
    # Naming it is not a credential: without a gateway key the call is a 401.
    anonymous = {"x-portkey-virtual-key": "openai-prod"}
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=IMAGE, headers=anonymous)
    assert answer.status_code == 401

    # A gateway without a master key manages none.
    open_proxy = serve(
        {
            **gateway(f"sqlite:///{tmp_path / 'open.db'}"),
            "general_settings": {
                "database_url": f"sqlite:///{tmp_path / 'open.db'}",
                "encryption_key": ENCRYPTION_KEY,
            },
        }
    )
    opened = create(open_proxy, openai_body(upstream), Authorization="Bearer anything")
    assert opened.status_code == 403 and "no master key" in opened.json()["error"]["message"]


def test_the_portkey_client_manages_virtual_keys(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    portkey = Portkey(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    api_base = upstream.base_url + "/v1"
    made = portkey.virtual_keys.create(
        name="pk-made", provider="openai", key=FIRST, note="made by portkey-ai", api_base=api_base
    )
    assert made.slug == "pk-made"
    assert [key["slug"] for key in portkey.virtual_keys.list().data or []] == [
        "from-config",
        "pk-made",
    ]
    assert portkey.virtual_keys.retrieve(slug="pk-made").note == "made by portkey-ai"
    upstream.api_key = SECOND
    assert portkey.virtual_keys.update(slug="pk-made", key=SECOND).slug == "pk-made"
    assert generate(proxy, "pk-made").status_code == 200 and used_key(upstream) == SECOND
    portkey.virtual_keys.delete(slug="pk-made")
    assert generate(proxy, "pk-made").status_code == 400


def test_without_an_encryption_key_the_routes_say_what_to_set(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    raw = gateway(f"sqlite:///{tmp_path / 'gateway.db'}")
    raw["general_settings"].pop("encryption_key")
    proxy = serve(raw)
    refused = create(proxy, openai_body(upstream))
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "encryption_key_required"
    for name in ("general_settings.encryption_key", "PRISMGATE_ENCRYPTION_KEY", "LITELLM_SALT_KEY"):
        assert name in error["message"]
    # LiteLLM's variable is enough; the master key never stands in for it.
    salted = serve(raw, environ={"LITELLM_SALT_KEY": ENCRYPTION_KEY})
    assert create(salted, openai_body(upstream)).status_code == 200


def test_the_encryption_key_rotates(
    serve: Callable[..., RunningProxy], database: tuple[str, str], upstream: OpenAIEmulator
) -> None:
    url = database[1]
    first = serve(gateway(url))
    assert create(first, openai_body(upstream)).status_code == 200
    newer = "vk-test-encryption-key-000002"

    # Both listed: the first seals, every one opens; `PUT {}` seals again with the first.
    both = serve(gateway(url, encryption_key=[newer, ENCRYPTION_KEY]))
    path = both.base_url + "/v1/virtual-keys/openai-prod"
    assert httpx.get(path, headers=ADMIN).json()["sealed_with"] == "previous"
    assert generate(both, "openai-prod").status_code == 200
    assert httpx.put(path, json={}, headers=ADMIN).json()["sealed_with"] == "current"

    only_newer = serve(gateway(url, encryption_key=newer))
    assert generate(only_newer, "openai-prod").status_code == 200

    # A key nobody listed: the admin's reads say why, and so does the log.
    only_older = serve(gateway(url))
    shown = httpx.get(only_older.base_url + "/v1/virtual-keys/openai-prod", headers=ADMIN)
    assert shown.status_code == 200 and shown.json()["status"] == "unreadable"
    assert "general_settings.encryption_key" in shown.json()["status_detail"]


def test_a_caller_naming_an_unreadable_key_learns_no_more_than_for_an_unknown_name(
    serve: Callable[..., RunningProxy],
    tmp_path: Path,
    upstream: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert create(serve(gateway(url)), openai_body(upstream)).status_code == 200
    # Sealed with a secret this gateway does not have: the operator's to fix.
    other = serve(gateway(url, encryption_key="vk-test-encryption-key-000002"))
    caller = post_key(other, "ci")
    caplog.set_level(logging.WARNING)
    unreadable = generate(other, "openai-prod", caller)
    unknown = generate(other, "nobody-here", caller)
    assert unreadable.status_code == unknown.status_code == 400
    assert unreadable.headers["content-type"] == unknown.headers["content-type"]
    error = unreadable.json()["error"]
    assert error == {
        **unknown.json()["error"],
        "message": unknown.json()["error"]["message"].replace("nobody-here", "openai-prod"),
    }
    for name in ("encryption_key", "ENCRYPTION_KEY", "LITELLM_SALT_KEY", "unreadable", "sealed"):
        assert name not in unreadable.text
    assert upstream.requests == []
    # The operator is told which key and what to set.
    logged = [r.getMessage() for r in caplog.records if "'openai-prod'" in r.getMessage()]
    assert logged and "general_settings.encryption_key" in logged[0]
    assert FIRST not in caplog.text and ENCRYPTION_KEY not in caplog.text


def _service_account(**fields: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "client_email": "gateway@example.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n",
        **fields,
    }


# A key stored over the network may not reach the gateway's host (files, AWS profiles) nor
# lean on its ambient credentials (environment keys, ADC, an instance role).
HOSTILE: list[tuple[dict[str, Any], str, str]] = [
    ({"provider": "vertex_ai", "vertex_project": "p", "vertex_credentials": "/etc/passwd"},
     "vertex_credentials", "JSON itself"),
    ({"provider": "vertex_ai",
      "vertex_credentials": "~/.config/gcloud/application_default_credentials.json"},
     "vertex_credentials", "JSON itself"),
    ({"provider": "vertex_ai", "vertex_service_account_json": "/var/run/secrets/sa.json"},
     "vertex_credentials", "JSON itself"),
    ({"provider": "vertex_ai",
      "vertex_credentials": _service_account(token_uri="http://169.254.169.254/token")},
     "vertex_credentials", "token_uri"),
    ({"provider": "vertex_ai", "vertex_credentials": json.dumps(
        {"type": "external_account", "credential_source": {"file": "/etc/shadow"}})},
     "vertex_credentials", "service_account"),
    ({"provider": "vertex_ai", "vertex_project": "p"}, "vertex_credentials", "credentials"),
    ({"provider": "bedrock", "aws_region_name": "us-east-1", "aws_profile_name": "default",
      "aws_access_key_id": "AKIAVIRTUALKEY000008", "aws_secret_access_key": "s" * 40},
     "aws_profile_name", "config file"),
    ({"provider": "bedrock", "awsProfileName": "prod", "aws_region": "us-east-1"},
     "aws_profile_name", "config file"),
    ({"provider": "bedrock", "aws_region_name": "us-east-1"}, "api_key", "cloud identity"),
    ({"provider": "openai"}, "api_key", "environment"),
    ({"provider": "anthropic", "api_base": "https://claude.example"}, "api_key", "credentials"),
    ({"provider": "azure", "key": "azure-key-000000000009"}, "api_base", "environment"),
]  # fmt: skip


def test_a_stored_key_never_points_at_the_gateways_files_or_ambient_credentials(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    for body, param, words in HOSTILE:
        refused = create(proxy, {"name": "hostile", **body})
        assert refused.status_code == 400, (body, refused.text)
        error = refused.json()["error"]
        assert error["param"] == param and words in error["message"], (body, error)
        assert "/etc/passwd" not in refused.text and "/etc/shadow" not in refused.text
    listed = httpx.get(proxy.base_url + "/v1/virtual-keys", headers=ADMIN).json()
    assert [key["name"] for key in listed["data"]] == ["from-config"]  # nothing stored


def test_a_stored_key_keeps_its_own_credentials_when_changed(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    proxy = serve(gateway(f"sqlite:///{tmp_path / 'gateway.db'}"))
    vertex = {
        "name": "vertex",
        "provider": "vertex_ai",
        "vertex_project": "p",
        "vertex_location": "europe-west4",
        "vertex_credentials": _service_account(),
    }
    made = create(proxy, vertex)
    assert made.status_code == 200, made.text
    assert made.json()["secret_fields"] == ["vertex_credentials"]
    assert "PRIVATE KEY" not in made.text
    url = proxy.base_url + "/v1/virtual-keys/"
    profile = httpx.put(url + "vertex", json={"vertex_credentials": "/root/sa.json"}, headers=ADMIN)
    assert profile.status_code == 400 and profile.json()["error"]["param"] == "vertex_credentials"
    assert create(proxy, openai_body(upstream)).status_code == 200
    keyless = httpx.put(url + "openai-prod", json={"key": None, "api_base": None}, headers=ADMIN)
    assert keyless.status_code == 400, keyless.text
    assert keyless.json()["error"]["code"] == "missing_credentials"
    assert generate(proxy, "openai-prod").status_code == 200  # unchanged


def test_calls_with_a_stored_key_never_use_the_gateways_environment(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    # An OpenAI-compatible server behind api_base may take no key: stored so, its calls go
    # without one, never with the key the gateway's own environment holds.
    proxy = serve(
        gateway(f"sqlite:///{tmp_path / 'gateway.db'}"), environ={"OPENAI_API_KEY": FIRST}
    )
    body = {"name": "self-hosted", "provider": "openai", "api_base": upstream.base_url + "/v1"}
    assert create(proxy, body).status_code == 200
    answer = generate(proxy, "self-hosted")
    assert answer.status_code == 401, answer.text  # the emulator wants a key
    assert all(FIRST not in str(request.headers) for request in upstream.requests)


def test_a_record_stored_before_these_rules_gets_no_ambient_aws_identity(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    with BedrockEmulator(region="eu-west-1") as bedrock:
        # The gateway's own AWS keys, which an older version would have lent to the record.
        environ = {
            "AWS_ACCESS_KEY_ID": bedrock.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": bedrock.credentials.secret_access_key,
        }
        proxy = serve(gateway(url), environ=environ)
        fields = {"aws_region_name": "eu-west-1", "aws_profile_name": "default",
                  "aws_bedrock_runtime_endpoint": bedrock.base_url}  # fmt: skip
        asyncio.run(_store_record(url, "legacy", "bedrock", fields))
        answer = httpx.post(
            proxy.base_url + "/v1/images/generations",
            json={"model": "amazon.titan-image-generator-v2:0", "prompt": "an otter"},
            headers={**ADMIN, "x-portkey-virtual-key": "legacy"},
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "missing_credentials"
        assert bedrock.requests == []


async def _store_record(url: str, name: str, provider: str, fields: dict[str, Any]) -> None:
    """A record written straight to the store, as an older version might have stored it."""
    keys, spend = await open_sql_stores(database_url(url, "."))
    sealer = Sealer([ENCRYPTION_KEY])
    now = time.time()
    record = seal_record(sealer, name, provider, Payload(fields=fields), created=now, updated=now)
    assert await keys.put_provider_key(record, only="new")
    await keys.aclose()
    await spend.aclose()


def test_without_the_encryption_key_stored_keys_are_still_listed_and_deleted(
    serve: Callable[..., RunningProxy], tmp_path: Path, upstream: OpenAIEmulator
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert create(serve(gateway(url)), openai_body(upstream)).status_code == 200
    raw = gateway(url)
    raw["general_settings"].pop("encryption_key")
    lost = serve(raw)
    listed = httpx.get(lost.base_url + "/v1/virtual-keys", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    statuses = {key["name"]: key["status"] for key in listed.json()["data"]}
    assert statuses == {"from-config": "active", "openai-prod": "unreadable"}
    path = lost.base_url + "/v1/virtual-keys/openai-prod"
    one = httpx.get(path, headers=ADMIN)
    assert one.status_code == 200 and "PRISMGATE_ENCRYPTION_KEY" in one.json()["status_detail"]
    assert httpx.delete(path, headers=ADMIN).status_code == 200
    assert httpx.get(path, headers=ADMIN).status_code == 404
    assert FIRST not in listed.text + one.text
