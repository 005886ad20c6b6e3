"""Several gateway processes on one database: a key made on one works on the other, and a
key revoked on one stops working on the other within a second."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.processes import GatewayProcess, fresh_database
from tests.proxy.conftest import MASTER_KEY, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.mark.parametrize(
    ("kind", "revoke"), [("sqlite", "/key/block"), ("postgres", "/key/delete")]
)
def test_a_key_revoked_on_one_instance_stops_on_the_other_within_a_second(
    tmp_path: Path, kind: str, revoke: str
) -> None:
    with fresh_database(kind, tmp_path) as url:
        config = {
            "model_list": [model("otters", "mock/otters")],
            "general_settings": {"master_key": MASTER_KEY, "database_url": url},
        }
        gateways = [GatewayProcess(config, tmp_path, name=f"gw{i}") for i in range(2)]
        try:
            one, two = (gateway.wait_ready().base_url for gateway in gateways)
            made = httpx.post(one + "/key/generate", json={"key_alias": "roaming"}, headers=ADMIN)
            key = made.json()["key"]
            caller = {"Authorization": f"Bearer {key}"}
            body = {"model": "otters", "prompt": "an otter", "size": "64x64"}
            # The other instance knows the key (and now has it in its cache).
            assert (
                httpx.post(two + "/v1/images/generations", json=body, headers=caller).status_code
                == 200
            )
            field = {"keys": [key]} if revoke == "/key/delete" else {"key": key}
            assert httpx.post(one + revoke, json=field, headers=ADMIN).status_code == 200
            revoked_at = time.monotonic()
            while True:
                answer = httpx.post(two + "/v1/images/generations", json=body, headers=caller)
                if answer.status_code == 401:
                    break
                assert answer.status_code == 200
                time.sleep(0.02)
            assert time.monotonic() - revoked_at < 1.0
            assert ("deleted" if revoke == "/key/delete" else "blocked") in answer.json()["error"][
                "message"
            ]
        finally:
            for gateway in gateways:
                gateway.stop()
