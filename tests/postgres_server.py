"""A PostgreSQL server of a test's own, to stop and start at will (the machine's own
server on 127.0.0.1:5432 is never touched).

`initdb` makes a cluster in a fresh folder under the system's temporary folder; `pg_ctl`
starts it on a free loopback port. PostgreSQL refuses to run as root: as root, its tools
run as the `postgres` user (`runuser`), and the folder is made theirs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests import processes

__all__ = ["PostgresServer", "running_postgres"]

_TIMEOUT = 60  # seconds any one PostgreSQL tool may take


class PostgresServer:
    """A throwaway PostgreSQL cluster: `start()`, `stop()` (fast: open connections are
    cut, as in a restart), `url` for the gateway, `close()` to remove it."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: its parents are root's own, closed to the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="prismgate-pg-"))
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self.data = self.folder / "data"
        self.port = _free_port()
        self.running = False
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )

    def url(self, database: str = "postgres") -> str:
        """`general_settings.database_url` for one of this server's databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
            timeout=_TIMEOUT,
        )
        return self.url(name)

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(_TIMEOUT),
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: sessions are ended, as when a database restarts)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(_TIMEOUT), "stop")
        self.running = False

    def close(self) -> None:
        """Stop the server if it runs, and remove its folder."""
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if self._user is not None else []
        done = subprocess.run(
            [*as_user, *command],
            cwd=self.folder,  # a folder the postgres user may enter
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )


def _free_port() -> int:
    return processes.free_port()  # each xdist worker its own ports


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server, removed afterwards (a module-scoped fixture's body)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
