"""nginx from Debian's packages as the fleet's load balancer: round robin over the
instances, on a free loopback port, run by the tests in the foreground with a private
config, prefix, pid file and logs under one folder (nothing is written outside it).

Every answer carries `x-fleet-upstream` (nginx's `$upstream_addr`), so a test knows which
instance served it, and nginx's own 502s too. Like `deploy/compose/nginx.conf`, nginx
moves to the next instance only when a request could not be sent (`proxy_next_upstream
error timeout`): a POST that reached an instance is never sent to another (nginx passes
non-idempotent requests on only with `non_idempotent`, since 1.9.13)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.processes import free_port

UPSTREAM_HEADER = "x-fleet-upstream"

_CONFIG = """\
{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    log_format fleet '$request_id $request $status $upstream_addr $upstream_status';
    access_log {folder}/access.log fleet;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;

    upstream fleet {{
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 40m;

        location / {{
            proxy_pass http://fleet;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_read_timeout 60s;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            add_header {header} $upstream_addr always;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx is missing: scripts/test.sh installs it (apt-get install nginx)")
    return found


class Nginx:
    """nginx balancing over `upstreams` (`host:port` each) from `folder`."""

    def __init__(self, upstreams: list[str], folder: Path, *, port: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.error_log = folder / "error.log"
        servers = "\n".join(f"        server {address};" for address in upstreams)
        # As root, nginx would run its worker as `nobody`, which cannot enter pytest's
        # private temporary folders; as another user the directive is ignored anyway.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config = folder / "nginx.conf"
        self.config.write_text(
            _CONFIG.format(
                user=user, folder=folder, servers=servers, port=self.port, header=UPSTREAM_HEADER
            )
        )
        command = [nginx_binary(), "-p", str(folder), "-c", str(self.config),
                   "-e", str(self.error_log), "-g", "daemon off;"]  # fmt: skip
        # A session of its own: should the master ever not end, its workers go with it.
        with (folder / "stderr.log").open("wb") as stderr:
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )

    def wait_ready(self, timeout: float = 10) -> Nginx:
        """Return once nginx accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{self.logs()}") from None
                time.sleep(0.02)

    def logs(self) -> str:
        parts = [self.folder / "stderr.log", self.error_log]
        return "\n".join(path.read_text() for path in parts if path.exists())

    def stop(self) -> None:
        """A fast shutdown (SIGTERM), then wait; kill the whole group if it lingers."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
