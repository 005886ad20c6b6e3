"""Processes the harness starts: pinned to a core, stopped by id, measured by RSS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOOPBACK, port)) == 0


class Service:
    """A server started in its own session, pinned with taskset, logging to a file.

    Every process group started is written to `pid_file`, so that run.sh can stop
    whatever a crashed runner left behind (by id, never by name).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cpu: int,
        log: Path,
        pid_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self._pid_file = pid_file
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["taskset", "-c", str(cpu), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        with pid_file.open("a") as pids:
            pids.write(f"{self.process.pid}\n")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_port(self, port: int, timeout: float) -> str | None:
        """None once `port` accepts connections, else why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return f"exited with code {self.process.returncode}"
            if port_open(port):
                return None
            time.sleep(0.2)
        return f"port {port} not open after {timeout:.0f} s"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        # The group may hold children that outlive the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(2)
        self._forget()

    def _forget(self) -> None:
        try:
            pids = self._pid_file.read_text().split()
        except OSError:
            return
        rest = [pid for pid in pids if pid != str(self.process.pid)]
        self._pid_file.write_text("".join(f"{pid}\n" for pid in rest))


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (via /proc/<pid>/task/<tid>/children)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(child) for child in children.read().split())
    return tree


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(sum of VmRSS over the tree, the largest single process's VmRSS), in KiB."""
    values = [_status_kb(member, "VmRSS:") for member in process_tree(pid)]
    return sum(values), max(values, default=0)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name
        return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat
    return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """The CPU time used so far by `pid` and its descendants (living ones), in seconds."""
    return sum(_cpu_seconds(member) for member in process_tree(pid))


def tree_hwm_kb(pid: int) -> int:
    """The largest VmHWM (lifetime peak RSS) of any process in the tree, in KiB."""
    return max((_status_kb(member, "VmHWM:") for member in process_tree(pid)), default=0)


@dataclass
class RssSampler:
    """Samples a process tree's RSS in a thread while a load runs."""

    pid: int
    interval: float = 0.05
    peak_tree_kb: int = 0
    peak_process_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            tree, largest = tree_rss_kb(self.pid)
            self.peak_tree_kb = max(self.peak_tree_kb, tree)
            self.peak_process_kb = max(self.peak_process_kb, largest)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
