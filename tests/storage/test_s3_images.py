"""The S3 image store on a real S3-compatible server (moto's server mode on loopback):

- the store's contract: images named by content, read back, renewed, kept for the
  console, within `max_bytes`, swept when their links have expired (by any number of
  instances at once), one signing key for every instance;
- the real proxy with `type: s3`: `url` answers by the gateway's links (served by any
  gateway on the bucket) and by presigned URLs (fetched from S3 itself);
- a store that fails and comes back: a clear 503, nothing half-written, then served again;
- the settings are the operator's: checked at load, never shown, never set by a caller.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from prismgate.config import ImageStoreSettings, load_config
from prismgate.config_secrets import config_secrets
from prismgate.errors import ConfigError, ImageStoreError, InsufficientStorageError
from prismgate.storage import open_stores
from prismgate.storage.s3_images import S3ImageStore
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, s3_server
from tests.security.canary import Canary
from tests.serving import MASTER_KEY, RunningProxy, model

__all__ = ["s3_server"]  # the fixture, used by name

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def image(width: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, width // 2 or 1), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket(f"images-{uuid.uuid4().hex[:12]}")


class Clock:
    """The time the store's sweeper compares LastModified with: moved on by the test."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


def store(
    server: S3Server, bucket: str, *, clock: Clock | None = None, **settings: Any
) -> S3ImageStore:
    keep = {k: settings.pop(k) for k in ("keep_seconds", "keep_max_bytes") if k in settings}
    defaults = {"prefix": "gateway/", "url_ttl_seconds": 60, "expiry_margin_seconds": 0}
    config = ImageStoreSettings(**server.store_settings(bucket, **{**defaults, **settings}))
    return S3ImageStore(config, clock=clock or Clock(), **keep)


# --- 1. The store's contract ------------------------------------------------------------


async def test_images_are_named_by_content_and_read_back(s3_server: S3Server, bucket: str) -> None:
    one, other = store(s3_server, bucket), store(s3_server, bucket)
    data = image(40)
    name = await one.put(data, "image/png")
    assert name == f"{hashlib.sha256(data).hexdigest()}.png"
    assert await other.put(data, "image/png") == name  # another instance: the same object
    assert s3_server.keys(bucket) == [f"gateway/{name}"]
    found = await other.get(name)
    assert found is not None and found.data == data and found.media_type == "image/png"
    assert await other.exists(name)
    absent = f"{'0' * 64}.png"
    assert await one.get(absent) is None and not await one.exists(absent)
    for hostile in ("../gateway/" + name, "kept/" + name, name.upper(), ".signing-key", ""):
        assert await one.get(hostile) is None and not await one.exists(hostile)
    await one.aclose()
    await other.aclose()


async def test_linking_again_renews_an_image_on_the_server(
    s3_server: S3Server, bucket: str
) -> None:
    images = store(s3_server, bucket)
    name = await images.put(image(30), "image/png")
    client = s3_server.client()
    before = client.head_object(Bucket=bucket, Key=f"gateway/{name}")["LastModified"]
    await asyncio.sleep(1.05)  # LastModified is kept to the second
    assert await images.exists(name)
    after = client.head_object(Bucket=bucket, Key=f"gateway/{name}")
    assert after["LastModified"] > before
    assert after["ContentType"] == "image/png"
    await images.aclose()


async def test_concurrent_puts_never_pass_the_cap(s3_server: S3Server, bucket: str) -> None:
    images = store(s3_server, bucket, max_bytes=10_000)
    puts = [images.put(bytes([n]) * 1000, "image/png") for n in range(30)]
    results = await asyncio.gather(*puts, return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 10
    refusals = [r for r in results if not isinstance(r, str)]
    assert all(isinstance(r, InsufficientStorageError) for r in refusals)
    assert {r.code for r in refusals if isinstance(r, InsufficientStorageError)} == {
        "image_store_full"
    }
    assert "general_settings.image_store.max_bytes" in str(refusals[0])
    assert len(s3_server.keys(bucket, "gateway/")) == 10
    await images.aclose()


async def test_the_sweep_removes_expired_images_and_nothing_else(
    s3_server: S3Server, bucket: str
) -> None:
    clock = Clock()
    images = store(s3_server, bucket, clock=clock, url_ttl_seconds=60, expiry_margin_seconds=30)
    name = await images.put(image(20), "image/png")
    client = s3_server.client()
    others = ["gateway/notes.txt", f"elsewhere/{name}", "gateway.signing-key"]
    for key in others:
        client.put_object(Bucket=bucket, Key=key, Body=b"not the store's")
    kept = await images.keep(image(21), "image/png")
    # S3 dates objects to the second, and a busy machine takes its time between the
    # put and the sweeps: wide margins either side of the 90 s lifetime.
    clock.ahead = 80  # its links (60 s, plus 30 s) still work
    assert await images.sweep() > 0
    assert f"gateway/{name}" in s3_server.keys(bucket)
    clock.ahead = 95  # they have all expired
    assert await images.sweep() == 0
    # Only the store's own link images go; kept images have their own (longer) period.
    assert s3_server.keys(bucket) == sorted([*others, f"gateway/kept/{kept.name}"])
    await images.aclose()


async def test_the_sweeper_runs_on_its_own(s3_server: S3Server, bucket: str) -> None:
    clock = Clock()
    images = store(s3_server, bucket, clock=clock, sweep_interval_seconds=0.05)
    await images.put(image(20), "image/png")
    clock.ahead = 61
    deadline = time.monotonic() + 5
    while s3_server.keys(bucket, "gateway/") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert s3_server.keys(bucket, "gateway/") == []
    await images.aclose()


async def test_the_sweeper_outlives_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    server = S3Server().start()
    try:
        bucket = server.make_bucket("sweep-outage")
        clock = Clock()
        images = store(server, bucket, clock=clock, sweep_interval_seconds=0.05)
        await images.put(image(20), "image/png")
        with caplog.at_level(logging.WARNING):
            server.stop()
            deadline = time.monotonic() + 10
            while "could not" not in caplog.text:  # a sweep failed: the store did not answer
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        server.start()  # the same port, empty: the bucket and an image again, put there
        server.make_bucket(bucket)  # by another instance (not through this store, which
        server.client().put_object(  # would start a sweeper of its own again)
            Bucket=bucket, Key=f"gateway/{'0' * 64}.png", Body=image(21)
        )
        clock.ahead = 61
        deadline = time.monotonic() + 5
        while server.keys(bucket, "gateway/") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.keys(bucket, "gateway/") == []  # the sweeper went on
        await images.aclose()
    finally:
        server.stop()


async def test_several_instances_may_sweep_one_bucket_at_once(
    s3_server: S3Server, bucket: str
) -> None:
    clock = Clock()  # the fleet's clocks agree
    fleet = [store(s3_server, bucket, clock=clock) for _ in range(3)]
    names = await asyncio.gather(*(fleet[n % 3].put(image(10 + n), "image/png") for n in range(40)))
    clock.ahead = 61  # every link has expired
    results = await asyncio.gather(*(images.sweep() for images in fleet), return_exceptions=True)
    assert results == [0, 0, 0]  # each deleted what it found; none failed on another's deletes
    assert len(set(names)) == 40 and s3_server.keys(bucket, "gateway/") == []
    for images in fleet:
        await images.aclose()


async def test_kept_images_are_apart_copied_on_the_server_and_found(
    s3_server: S3Server, bucket: str
) -> None:
    images = store(s3_server, bucket)
    data = image(40)
    kept = await images.keep(data, "image/png")
    assert (kept.width, kept.height, kept.size_bytes) == (40, 20, len(data))
    assert s3_server.keys(bucket) == [f"gateway/kept/{kept.name}"]
    found = await images.get(kept.name)
    assert found is not None and found.data == data
    # A kept image linked: it gets a link name (copied on the server).
    assert await images.exists(kept.name)
    assert f"gateway/{kept.name}" in s3_server.keys(bucket)

    linked = image(50, (1, 2, 3))
    name = await images.put(linked, "image/png")
    again = await images.keep_stored(name)
    assert again is not None and (again.width, again.size_bytes) == (50, len(linked))
    assert f"gateway/kept/{name}" in s3_server.keys(bucket)
    assert await images.keep_stored(f"{'0' * 64}.png") is None
    assert await images.keep_stored("../x") is None
    await images.aclose()


async def test_kept_images_stay_within_their_budget_oldest_first(
    s3_server: S3Server, bucket: str
) -> None:
    sizes = [len(image(30 + n, (n, n, n))) for n in range(4)]
    images = store(s3_server, bucket, keep_max_bytes=sum(sizes[:3]) + 10)
    names = []
    for n in range(4):
        names.append((await images.keep(image(30 + n, (n, n, n)), "image/png")).name)
        await asyncio.sleep(1.05 if n == 0 else 0)  # the first is the oldest, to the second
    left = s3_server.keys(bucket, "gateway/kept/")
    assert f"gateway/kept/{names[0]}" not in left
    assert f"gateway/kept/{names[3]}" in left
    with pytest.raises(InsufficientStorageError, match="keep_images_max_bytes"):
        await images.keep(b"x" * (sum(sizes) + 100), "image/png")
    await images.aclose()


async def test_every_instance_signs_links_with_one_key(s3_server: S3Server, bucket: str) -> None:
    from prismgate.storage.local_images import LocalImageStore

    one, other = store(s3_server, bucket), store(s3_server, bucket)
    local = LocalImageStore(ImageStoreSettings(path="/nonexistent"))
    assert one.signing_key("sk-master") == local.signing_key("sk-master")  # one derivation
    first = await asyncio.to_thread(one.signing_key, None)
    assert len(first) == 32
    assert await asyncio.to_thread(other.signing_key, None) == first
    assert "gateway.signing-key" in s3_server.keys(bucket)  # beside the prefix, not in it
    assert not [k for k in s3_server.keys(bucket) if k.startswith("gateway/")]
    await one.aclose()
    await other.aclose()


async def test_presigned_urls_are_fetched_from_s3_itself(s3_server: S3Server, bucket: str) -> None:
    images = store(s3_server, bucket, links="presigned", url_ttl_seconds=120)
    data = image(33)
    name = await images.put(data, "image/png")
    url = images.presigned_links().link("http://ignored", name)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == s3_server.endpoint_url
    assert parts.path == f"/{bucket}/gateway/{name}"
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["120"]
    assert SECRET_ACCESS_KEY not in url
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-type"] == "image/png"
    await images.aclose()


async def test_a_store_that_does_not_answer_is_a_clear_503(
    s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    closed = S3Server()  # never started: its port refuses connections
    images = store(closed, "nowhere")
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            with pytest.raises(ImageStoreError) as raised:
                await images.put(image(20), "image/png")
            assert raised.value.code == "image_store_unavailable"
            assert raised.value.status_code == 503
            assert "b64_json" in raised.value.message
            with pytest.raises(ImageStoreError):
                await images.get(f"{'0' * 64}.png")
    said = [r.getMessage() for r in caplog.records if "s3://nowhere" in r.getMessage()]
    assert len(said) == 1  # once per outage, not per request
    assert SECRET_ACCESS_KEY not in caplog.text
    await images.aclose()


async def test_a_missing_bucket_is_named_by_its_s3_error(s3_server: S3Server) -> None:
    images = store(s3_server, "no-such-bucket-here")
    with pytest.raises(ImageStoreError, match="NoSuchBucket") as raised:
        await images.put(image(20), "image/png")
    assert raised.value.code == "image_store_unavailable"
    await images.aclose()


# --- 2. The real proxy with type: s3 ------------------------------------------------------


def proxy_config(server: S3Server, bucket: str, **store_settings: Any) -> dict[str, Any]:
    return {
        "model_list": [model("gpt-image-1", "mock/painter")],
        "router_settings": {"num_retries": 2},
        "general_settings": {
            "master_key": MASTER_KEY,
            "image_store": server.store_settings(bucket, prefix="fleet", **store_settings),
        },
    }


def generate(
    proxy: RunningProxy, prompt: str, response_format: str, **extra: Any
) -> httpx.Response:
    body = {"model": "gpt-image-1", "prompt": prompt, "size": "64x64", **extra}
    return httpx.post(
        f"{proxy.base_url}/v1/images/generations",
        json={**body, "response_format": response_format},
        headers=AUTH,
        timeout=30,
    )


def b64_image(proxy: RunningProxy, prompt: str) -> bytes:
    answer = generate(proxy, prompt, "b64_json")
    assert answer.status_code == 200, answer.text
    return base64.b64decode(answer.json()["data"][0]["b64_json"])


def test_gateway_links_are_served_by_any_gateway_on_the_bucket(
    serve: Callable[..., RunningProxy], s3_server: S3Server, bucket: str
) -> None:
    first = serve(proxy_config(s3_server, bucket))
    second = serve(proxy_config(s3_server, bucket))
    answer = generate(first, "an otter", "url")
    assert answer.status_code == 200, answer.text
    url = answer.json()["data"][0]["url"]
    assert url.startswith(f"{first.base_url}/v1/images/files/")
    expected = b64_image(first, "an otter")
    name = urlsplit(url).path.rpartition("/")[2]
    assert s3_server.keys(bucket, "fleet/") == [f"fleet/{name}"]
    for proxy in (first, second):
        fetched = httpx.get(url.replace(first.base_url, proxy.base_url), timeout=10)
        assert fetched.status_code == 200, fetched.text
        assert fetched.content == expected
        assert fetched.headers["content-type"] == "image/png"


def test_presigned_links_send_callers_to_s3(
    serve: Callable[..., RunningProxy], s3_server: S3Server, bucket: str
) -> None:
    proxy = serve(proxy_config(s3_server, bucket, links="presigned", url_ttl_seconds=900))
    answer = generate(proxy, "a heron", "url")
    assert answer.status_code == 200, answer.text
    url = answer.json()["data"][0]["url"]
    assert url.startswith(f"{s3_server.endpoint_url}/{bucket}/fleet/")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["900"]
    fetched = httpx.get(url, timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == b64_image(proxy, "a heron")


def test_a_cached_answer_links_to_the_renewed_image(
    serve: Callable[..., RunningProxy], s3_server: S3Server, bucket: str
) -> None:
    config = proxy_config(s3_server, bucket, links="presigned")
    proxy = serve({**config, "litellm_settings": {"cache": True}})
    first = generate(proxy, "a kingfisher", "url")
    hit = generate(proxy, "a kingfisher", "url")
    assert hit.status_code == 200, hit.text
    assert hit.headers["x-portkey-cache-status"] == "HIT"
    url = hit.json()["data"][0]["url"]
    assert urlsplit(url).path == urlsplit(first.json()["data"][0]["url"]).path
    fetched = httpx.get(url, timeout=10)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")


def test_a_store_that_fails_and_comes_back(serve: Callable[..., RunningProxy]) -> None:
    server = S3Server().start()
    try:
        bucket = server.make_bucket("comes-back")
        proxy = serve(proxy_config(server, bucket))
        assert generate(proxy, "before", "url").status_code == 200
        server.stop()

        failed = generate(proxy, "during", "url")
        assert failed.status_code == 503, failed.text
        assert b"Traceback" not in failed.content
        error = failed.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "image_store_unavailable"
        assert error["type"] == "service_unavailable"
        assert "b64_json" in error["message"]
        assert SECRET_ACCESS_KEY not in failed.text and ACCESS_KEY_ID not in failed.text
        # The store's fault, not the provider's: one attempt, not three.
        assert "," not in failed.headers["x-prismgate-attempts"]
        assert generate(proxy, "during", "b64_json").status_code == 200

        server.start()  # the same port; a new server is empty: the bucket is made again
        server.make_bucket(bucket)
        again = generate(proxy, "after", "url")
        assert again.status_code == 200, again.text
        fetched = httpx.get(again.json()["data"][0]["url"], timeout=10)
        assert fetched.status_code == 200
        # Nothing half-written: only what was stored after the restart is there.
        assert len(server.keys(bucket)) == 1
    finally:
        server.stop()


def test_a_cached_answer_is_made_again_while_the_store_is_down(
    serve: Callable[..., RunningProxy],
) -> None:
    server = S3Server().start()
    try:
        bucket = server.make_bucket("cache-down")
        config = proxy_config(server, bucket)
        proxy = serve({**config, "litellm_settings": {"cache": True}})
        assert generate(proxy, "a heron", "b64_json").status_code == 200
        assert generate(proxy, "a heron", "b64_json").headers["x-portkey-cache-status"] == "HIT"
        server.stop()
        # The cached images are out of reach: a miss, served by the provider again.
        again = generate(proxy, "a heron", "b64_json")
        assert again.status_code == 200, again.text
        assert again.headers["x-portkey-cache-status"] != "HIT"
    finally:
        server.stop()


# --- 3. The settings: the operator's, checked, never shown --------------------------------


def s3_config(**store_settings: Any) -> dict[str, Any]:
    return {"general_settings": {"image_store": {"type": "s3", **store_settings}}}


@pytest.mark.parametrize(
    ("store_settings", "said"),
    [
        ({}, "needs a bucket"),
        ({"bucket": "b", "endpoint_url": "ftp://x"}, "http:// or https://"),
        ({"bucket": "b", "endpoint_url": "http://u:p@minio:9000"}, "must not carry credentials"),
        ({"bucket": "b", "access_key_id": "AKIAX"}, "go together"),
        ({"bucket": "b", "links": "public"}, "links"),
        ({"bucket": "b", "prefix": "/images"}, "does not start with '/'"),
    ],
)
def test_s3_settings_that_cannot_work_are_refused_at_load(
    store_settings: dict[str, Any], said: str
) -> None:
    with pytest.raises(ConfigError, match=r"general_settings\.image_store") as raised:
        load_config(s3_config(**store_settings))
    assert said in str(raised.value)


def test_s3_settings_on_a_local_store_are_refused() -> None:
    with pytest.raises(ConfigError, match="bucket, endpoint_url are settings of type: s3"):
        load_config(
            {"general_settings": {"image_store": {"bucket": "b", "endpoint_url": "http://x"}}}
        )
    with pytest.raises(ConfigError, match="Invalid enum value 'azure'"):
        load_config({"general_settings": {"image_store": {"type": "azure"}}})


def test_type_s3_without_aiobotocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "aiobotocore" else find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'prismgate\[s3\]'"):
        load_config(s3_config(bucket="b"))


def test_credentials_come_from_environment_references_and_are_never_shown() -> None:
    environ = {"S3_KEY_ID": "AKIAREFERENCED000001", "S3_SECRET": "referenced-secret-0001"}
    config = load_config(
        s3_config(
            bucket="b",
            access_key_id="os.environ/S3_KEY_ID",
            secret_access_key="os.environ/S3_SECRET",
            session_token="inline-session-token-0001",
        ),
        environ=environ,
    )
    settings = config.general_settings.image_store
    assert settings.secret_access_key == "referenced-secret-0001"
    for shown in (repr(settings), repr(config.general_settings), repr(config)):
        assert "referenced-secret-0001" not in shown and "inline-session-token" not in shown
    # The gateway's redactor removes them wherever they might be echoed.
    secrets = config_secrets(config)
    assert "referenced-secret-0001" in secrets and "inline-session-token-0001" in secrets
    with pytest.raises(ConfigError, match="S3_MISSING is not set"):
        load_config(s3_config(bucket="b", secret_access_key="os.environ/S3_MISSING"))


async def test_open_stores_builds_the_s3_store_and_its_links() -> None:
    config = load_config(s3_config(bucket="b", links="presigned"))
    stores = open_stores(config)
    assert isinstance(stores.images, S3ImageStore)
    assert stores.answer_links is not None
    await stores.aclose()
    gateway_links = open_stores(load_config(s3_config(bucket="b")))
    assert isinstance(gateway_links.images, S3ImageStore) and gateway_links.answer_links is None
    await gateway_links.aclose()


STORE_SETTING_NAMES = sorted(set(ImageStoreSettings.__struct_fields__))


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


def test_a_caller_cannot_point_the_image_store_anywhere(
    serve: Callable[..., RunningProxy], s3_server: S3Server, bucket: str, canary: Canary
) -> None:
    # The store is built from the config when the gateway starts, and no entry point
    # reaches its settings (so the caller-authority rule has nothing to add): whatever a
    # caller sends under their names, in the body, in extra_body or in a Portkey config, is
    # a request parameter for the provider (which refuses ones it does not take), never a
    # setting of the store. Nothing is dialled, and links stay the operator's.
    proxy = serve(proxy_config(s3_server, bucket, links="presigned"))
    hostile = {
        name: canary.url if "url" in name or name == "path" else "attacker"
        for name in STORE_SETTING_NAMES
    } | {"type": "local", "links": "gateway", "url_ttl_seconds": 86_400_000}
    attempts = [
        {"json": hostile},
        {"json": {"extra_body": hostile}},
        {"json": {"image_store": hostile, "general_settings": {"image_store": hostile}}},
        {"headers": {"x-portkey-config": json.dumps({"override_params": hostile})}},
        {"headers": {"x-portkey-config": json.dumps({"image_store": hostile, **hostile})}},
    ]
    body = {"model": "gpt-image-1", "prompt": "x", "response_format": "url"}
    for attempt in attempts:
        answer = httpx.post(
            f"{proxy.base_url}/v1/images/generations",
            json={**body, **attempt.get("json", {})},
            headers={**AUTH, **attempt.get("headers", {})},
            timeout=30,
        )
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 200:
            assert_the_operators_link(answer, s3_server, bucket)
        else:
            assert "image store" not in answer.json()["error"]["message"]
    assert canary.hits == 0
    clean = httpx.post(f"{proxy.base_url}/v1/images/generations", json=body, headers=AUTH)
    assert_the_operators_link(clean, s3_server, bucket)


def assert_the_operators_link(answer: httpx.Response, server: S3Server, bucket: str) -> None:
    assert answer.status_code == 200, answer.text
    url = answer.json()["data"][0]["url"]
    assert url.startswith(f"{server.endpoint_url}/{bucket}/fleet/"), url
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["3600"]
