"""`GET /metrics` through the real proxy: who may read it, and labels a caller cannot grow
or fill with secrets."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from prismgate.config import load_config
from prismgate.proxy import create_app
from prismgate.proxy.server import ConnectionGuard, GuardedConfig
from tests.serving import MASTER_KEY, model, open_file_limit

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in a scrape, by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def lan_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.250", 9))  # no packet is sent: it picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@contextmanager
def serving_everywhere(raw: dict[str, Any]) -> Iterator[int]:
    """The proxy on 0.0.0.0 (as `prismgate serve --host 0.0.0.0` runs it: X-Forwarded-For
    not read), so that it can be called from loopback and from the LAN address."""
    with tempfile.TemporaryDirectory(prefix="prismgate-data-") as data:
        raw = {**raw, "general_settings": {**raw.get("general_settings", {}), "data_dir": data}}
        config = load_config(raw, environ={})
        sock = socket.socket()
        sock.bind(("0.0.0.0", 0))  # the point: reachable beyond loopback
        guard = ConnectionGuard(config.general_settings.server, open_file_limit())
        settings = GuardedConfig(
            create_app(config), guard=guard, lifespan="on", log_level="warning",
            loop="uvloop", ws="none", proxy_headers=False,
        )  # fmt: skip
        server = uvicorn.Server(settings)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the proxy did not start"
            time.sleep(0.01)
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def scrape(host: str, port: int, **headers: str) -> httpx.Response:
    return httpx.get(f"http://{host}:{port}/metrics", headers=headers, timeout=10)


@pytest.mark.parametrize("access", ["loopback", "admin", "open"])
def test_who_may_read_the_metrics(access: str) -> None:
    lan = lan_address()
    if lan is None:
        pytest.skip("this machine has no network address besides loopback")
    raw = {
        "model_list": [model("art", "mock/dall-e-3")],
        "general_settings": {"master_key": MASTER_KEY, "metrics_access": access},
    }
    with serving_everywhere(raw) as port:
        made = httpx.post(
            f"http://127.0.0.1:{port}/key/generate", json={"key_alias": "bot"}, headers=ADMIN
        )
        key = made.json()["key"]
        local = scrape("127.0.0.1", port)
        remote = scrape(lan, port)
        # A header cannot make a remote scraper local.
        forged = scrape(lan, port, **{"x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1"})
        not_admin = scrape(lan, port, Authorization=f"Bearer {key}")
        admin = scrape(lan, port, **ADMIN)
        posted = httpx.post(f"http://127.0.0.1:{port}/metrics", headers=ADMIN)
        head = httpx.head(f"http://{lan}:{port}/metrics", headers=ADMIN)
    expected_local = 401 if access == "admin" else 200
    expected_remote = 200 if access == "open" else 401
    assert (local.status_code, remote.status_code, forged.status_code) == (
        expected_local,
        expected_remote,
        expected_remote,
    )
    assert admin.status_code == 200
    assert not_admin.status_code == (200 if access == "open" else 403)
    assert "prismgate_requests_total" in admin.text
    assert admin.headers["content-type"].startswith("text/plain")
    if access != "open":
        error = remote.json()["error"]
        assert error["code"] == "metrics_key_required"
        assert "master key" in error["message"] and "metrics_access: open" in error["message"]
        assert not_admin.json()["error"]["type"] == "permission_error"
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0
    assert posted.status_code == 405
    assert posted.json()["error"]["code"] == "method_not_allowed"


def test_invented_model_names_cannot_grow_the_labels_or_show_a_secret(
    serve: Any,
) -> None:
    secret = "sk-proj-0123456789abcdefghij"
    proxy = serve({"model_list": [model("art", "mock/dall-e-3")]})
    with httpx.Client(base_url=proxy.base_url) as client:
        client.post("/v1/images/generations", json={"model": secret, "prompt": "x"})
        for number in range(130):
            body = {"model": f"invented-{number}", "prompt": "x"}
            assert client.post("/v1/images/generations", json=body).status_code == 404
        text = client.get("/metrics").text
    counts = samples(text, "prismgate_requests_total")
    groups = {dict(labels)["model_group"] for labels in counts}
    assert secret not in text
    assert "[REDACTED]" in groups
    assert "other" in groups
    assert len(groups) == 101  # the first 100 names the config does not know, then "other"
    assert sum(counts.values()) == 131
