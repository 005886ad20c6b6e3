"""A real S3-compatible server for tests: moto's server mode in its own process, on a
free loopback port (this worker's share of ports: `tests.processes.free_port`).

It can be stopped and started again on the same port (a store that fails and comes
back); its buckets live in the process, so a restarted server starts empty."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.processes import free_port

# moto takes any credentials; these are the ones the tests give the store.
ACCESS_KEY_ID = "AKIAPRISMGATETEST001"  # the shape of a real one (the redactor knows it)
SECRET_ACCESS_KEY = "s3-secret-access-key-for-tests-0001"
REGION = "us-east-1"


class S3Server:
    """`python -m moto.server` on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        """Start the server and wait until it answers."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto's server exited ({self._process.returncode})")
            try:
                httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            return self
        raise RuntimeError("moto's server did not start")

    def stop(self) -> None:
        """Stop the server (its port then refuses connections)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def client(self) -> Any:
        """A plain botocore S3 client on this server (for setting up and looking)."""
        import botocore.config
        import botocore.session

        return botocore.session.Session().create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket `name` (a fresh one per test keeps tests apart); its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in `bucket` under `prefix`."""
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", ()))

    def store_settings(self, bucket: str, **settings: Any) -> dict[str, Any]:
        """`general_settings.image_store` for a store in `bucket` on this server."""
        return {
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            **settings,
        }


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """One S3 server for the module's tests (each test makes its own bucket)."""
    server = S3Server().start()
    yield server
    server.stop()
