"""Benchmark runner: direct upstream, prismgate, LiteLLM and Portkey, interleaved, in one run.

prismgate runs twice: plain (the load with the master key, which skips keys, budgets and
the spend log) and with keys, budgets and spend logging on (`prismgate-keys`: the load
with a key generated after start; `prismgate-keys-pg`: the same on PostgreSQL). Asked
for, `prismgate-traced` is plain prismgate with OpenTelemetry traces exported to nginx,
and `prismgate-quiet` plain prismgate built without its access log and metrics
(`without_telemetry.py`, bench only): what the three cost (issue 13).

Started by bench/run.sh (which installs nginx, wrk, LiteLLM and Portkey first).
See bench/README.md. Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import canned
import report
from loadgen import Run, run_wrk, write_script
from procs import LOOPBACK, RssSampler, Service, free_port, tree_cpu_seconds, tree_hwm_kb
from targets import (
    BENCH_KEY_REQUEST,
    MASTER_KEY,
    Target,
    clean_env,
    command_version,
    portkey_version,
    postgres_reset,
    start_nginx,
    traces_environment,
    write_litellm_config,
    write_prismgate_config,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
PRISMGATE = ROOT / ".venv" / "bin" / "prismgate"
LITELLM_VENV = BENCH / ".venv-litellm"
PORTKEY_PACKAGE = BENCH / ".portkey" / "node_modules" / "@portkey-ai" / "gateway"
GATEWAYS = (
    "prismgate-quiet", "prismgate", "prismgate-keys", "prismgate-keys-pg", "prismgate-traced",
    "litellm", "portkey",
)  # fmt: skip
# prismgate-keys-pg needs a PostgreSQL server (--postgres-url); prismgate-quiet and
# prismgate-traced are for what telemetry costs (issue 13): only when asked for.
DEFAULT_GATEWAYS = ("prismgate", "prismgate-keys", "litellm", "portkey")
KEYED = {"prismgate-keys": "sqlite", "prismgate-keys-pg": "postgresql"}
LABELS = {"direct": "direct (nginx)", "prismgate": "prismgate",
          "prismgate-quiet": "prismgate, no access log or metrics",
          "prismgate-keys": "prismgate + keys (SQLite)",
          "prismgate-keys-pg": "prismgate + keys (PostgreSQL)",
          "prismgate-traced": "prismgate + traces (OTLP)",
          "litellm": "LiteLLM", "portkey": "Portkey"}  # fmt: skip
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/prismgate_bench"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    prefix: str  # nginx path prefix of the canned answer
    route: str  # OpenAI route under /v1/
    group: str  # model group in the prismgate and LiteLLM configs
    connections: int
    threads: int = 1
    slow: bool = False  # uses the --slow-* duration and rounds


WORKLOADS = (
    Workload("image-small-c1", "Image generation, small url answer, c=1",
             "small", "images/generations", "bench-image", 1),
    Workload("image-small-c32", "Image generation, small url answer, c=32",
             "small", "images/generations", "bench-image", 32),
    Workload("image-large-b64", "Image generation, 2-3 MB b64_json answer, c=1",
             "large", "images/generations", "bench-image-large", 1),
    Workload("vision-chat-c32", "Vision chat, 500 KB data-URL image, c=32",
             "chat", "chat/completions", "bench-vision", 32),
    Workload("slow-c1000", "1 s upstream, 1,000 concurrent connections",
             "slow", "images/generations", "bench-slow", 1000, threads=2, slow=True),
)  # fmt: skip


def say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- answer checks


def check_answer(workload: Workload, document: Any) -> str | None:
    """None if `document` is the right shape for `workload`'s answer, else what is wrong."""
    try:
        if workload.route == "chat/completions":
            content = document["choices"][0]["message"]["content"]
            return None if isinstance(content, str) and content else "no message content"
        item = document["data"][0]
        if workload.prefix == "large":
            b64 = item.get("b64_json") or ""
            if len(b64) < 1_000_000:
                return f"b64_json of {len(b64)} chars, expected 2-3 MB"
            if not base64.b64decode(b64[:64]).startswith(b"\x89PNG"):
                return "b64_json is not a PNG"
            return None
        return None if isinstance(item.get("url"), str) and item["url"] else "no data[0].url"
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:
        return f"unexpected answer: {type(error).__name__} {error}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _error_message(payload: bytes) -> str:
    """The message of an OpenAI-style error answer, else the start of the answer."""
    try:
        message = json.loads(payload)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = payload.decode(errors="replace")
    text = " ".join(str(message).split())
    return text if len(text) <= 100 else text[:97] + "..."


def probe(url: str, headers: dict[str, str], body: Path, workload: Workload) -> str | None:
    """One request before the load: None if it is a 200 of the right shape, else why not."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing a non-loopback target: {url}")
    data = body.read_bytes()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=60) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        return f"route not available: {error.code} {_error_message(error.read())}".strip()
    except OSError as error:
        return f"request failed: {error}"
    if status != 200:
        return f"route not available: {status}"
    try:
        document = json.loads(payload)
    except ValueError:
        return f"answer is not JSON: {payload[:100]!r}"
    problem = check_answer(workload, document)
    return f"wrong answer shape: {problem}" if problem else None


# ---------------------------------------------------------------- the run


# A gateway's command line, environment, and how long it may take to open its port.
Command = tuple[list[str], dict[str, str], float]


@dataclass
class Entry:
    """A target in one workload: its request, then its runs."""

    target: Target
    url: str
    script: Path
    runs: list[Run] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # the target's CPU time, per run
    peak_tree_kb: int = 0
    peak_process_kb: int = 0
    stopped: str = ""  # why runs stopped early, if they did


def _serve_missing() -> str | None:
    """None if this checkout's prismgate has the `serve` command, else why not."""
    if not PRISMGATE.exists():
        return f"{PRISMGATE} missing"
    try:
        helped = subprocess.run(
            [str(PRISMGATE), "serve", "--help"], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if helped.returncode == 0:
        return None
    lines = [line.strip(" │╭╰─╮╯") for line in helped.stderr.splitlines()]
    return next((line for line in reversed(lines) if line), f"exit code {helped.returncode}")


def _call(port: int, method: str, path: str, body: dict[str, object] | None = None) -> Any:
    """One management call to a prismgate on loopback with the master key: its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # loopback only
        f"http://{LOOPBACK}:{port}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with _OPENER.open(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        message = _error_message(error.read())
        raise RuntimeError(f"{method} {path}: {error.code} {message}") from None
    except (OSError, ValueError) as error:
        raise RuntimeError(f"{method} {path}: {error}") from None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.services: list[Service] = []
        self.pid_file = WORK / "pids"
        self.nginx_port = 0
        self.targets: list[Target] = []
        self.sizes: dict[str, int] = {}
        self.data_url = ""
        self.answered: dict[str, int] = {}  # 2xx answers per target, warm-ups and probes too
        self.accounting: dict[str, dict[str, object]] = {}  # the keyed targets' spend, at the end

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        for sub in ("canned", "bodies", "lua", "logs", "tmp"):
            (WORK / sub).mkdir(parents=True, exist_ok=True)
        self.nginx_port = free_port()
        say("generating canned answers")
        self.sizes = canned.write_answers(WORK / "canned", self.nginx_port)
        self.data_url = canned.vision_data_url(WORK / "canned")
        self.sizes["vision_data_url"] = len(self.data_url)
        nginx = start_nginx(WORK, self.nginx_port, cpu=self.args.load_cpu, pid_file=self.pid_file)
        self.services.append(nginx)
        problem = nginx.wait_port(self.nginx_port, 15)
        if problem:
            raise RuntimeError(f"nginx did not start: {problem}\n{nginx.log_tail()}")
        say(f"nginx on {LOOPBACK}:{self.nginx_port} (core {self.args.load_cpu})")
        direct = Target(
            "direct",
            LABELS["direct"],
            self.nginx_port,
            nginx,
            available=True,
            version=command_version(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
        )
        self.targets = [direct]
        for name in GATEWAYS:
            if name in self.args.gateways:
                self.targets.append(self._start_gateway(name))

    def _start_gateway(self, name: str) -> Target:
        target = Target(name, LABELS[name], port=free_port())
        command = {
            "prismgate": self._prismgate_command,
            "prismgate-quiet": self._prismgate_command,
            "prismgate-keys": self._prismgate_command,
            "prismgate-keys-pg": self._prismgate_command,
            "prismgate-traced": self._prismgate_command,
            "litellm": self._litellm_command,
            "portkey": self._portkey_command,
        }[name](target)
        if command is None:
            return self._unavailable(target)
        argv, env, timeout = command
        cpu, log = self.args.gateway_cpu, WORK / "logs" / f"{name}.log"
        say(f"starting {target.label} {target.version} on {LOOPBACK}:{target.port} (core {cpu})")
        service = Service(name, argv, cpu=cpu, log=log, pid_file=self.pid_file, env=env, cwd=WORK)
        self.services.append(service)
        problem = service.wait_port(target.port, timeout)
        if problem:
            target.reason = f"did not start: {problem}; see {log}"
            say(service.log_tail())
            service.stop()
            return self._unavailable(target)
        target.service, target.available = service, True
        if name in KEYED:
            try:
                answer = _call(target.port, "POST", "/key/generate", BENCH_KEY_REQUEST)
                target.api_key = str(answer["key"])
            except (RuntimeError, KeyError, TypeError) as error:
                target.reason = f"no key: {error}; see {log}"
                target.available = False
                return self._unavailable(target)
            say(f"{target.label}: load with a generated key, {json.dumps(BENCH_KEY_REQUEST)}")
        return target

    def _prismgate_command(self, target: Target) -> Command | None:
        problem = _serve_missing()
        if problem:
            target.reason = f"`prismgate serve` not available ({problem})"
            return None
        version = command_version([str(PRISMGATE), "--version"])
        target.version = version.removeprefix("prismgate ")
        # Every prismgate target starts from an empty store of its own.
        data_dir = WORK / "data" / target.name
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        database_url = None
        if KEYED.get(target.name) == "postgresql":
            database_url = self.args.postgres_url
            try:
                postgres_reset(database_url)
            except (OSError, RuntimeError, ValueError) as error:
                target.reason = f"PostgreSQL at {database_url} not usable: {error}"
                return None
        config = write_prismgate_config(WORK / f"{target.name}.yaml", self.nginx_port,
                                        data_dir=data_dir, database_url=database_url,
                                        spend_logs=target.name in KEYED,
                                        traces=target.name == "prismgate-traced")  # fmt: skip
        argv = [str(PRISMGATE), "serve", "--config", str(config), "--host", LOOPBACK,
                "--port", str(target.port), "--workers", "1"]  # fmt: skip
        if target.name == "prismgate-quiet":  # the same command, the app built without them
            argv[:1] = [str(PRISMGATE.parent / "python"), str(BENCH / "without_telemetry.py")]
        traces = traces_environment(self.nginx_port) if target.name == "prismgate-traced" else {}
        return argv, clean_env(PYTHONUNBUFFERED="1", **traces), 60.0

    def _litellm_command(self, target: Target) -> Command | None:
        executable = LITELLM_VENV / "bin" / "litellm"
        if not executable.exists():
            target.reason = f"not installed ({executable} missing; run bench/run.sh)"
            return None
        target.version = command_version([
            str(LITELLM_VENV / "bin" / "python"), "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])  # fmt: skip
        config = write_litellm_config(WORK / "litellm.yaml", self.nginx_port)
        argv = [str(executable), "--config", str(config), "--host", LOOPBACK,
                "--port", str(target.port), "--num_workers", "1"]  # fmt: skip
        env = clean_env(
            LITELLM_LOG="ERROR",  # also uvicorn's log level: no access log
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map at start
            DISABLE_ADMIN_UI="True", NO_DOCS="True", NO_REDOC="True",
            PYTHONUNBUFFERED="1",
        )  # fmt: skip
        return argv, env, 180.0

    def _portkey_command(self, target: Target) -> Command | None:
        script = PORTKEY_PACKAGE / "build" / "start-server.js"
        if not script.exists():
            target.reason = f"not installed ({script} missing; run bench/run.sh)"
            return None
        target.version = portkey_version(PORTKEY_PACKAGE)
        # --headless: no log-streaming UI. Portkey has no option for the listen address.
        argv = ["node", str(script), "--headless", f"--port={target.port}"]
        return argv, clean_env(NODE_ENV="production"), 60.0

    @staticmethod
    def _unavailable(target: Target) -> Target:
        say(f"{target.label}: not available: {target.reason}")
        return target

    # ------------------------------------------------------------ measuring

    def _body(self, workload: Workload, model: str) -> Path:
        path = WORK / "bodies" / f"{workload.route.split('/')[0]}-{model}.json"
        if workload.route == "chat/completions":
            document = canned.vision_request(model, self.data_url)
        else:
            document = canned.image_request(model)
        return canned.write_json(path, document)

    def _wrk(self, entry: Entry, workload: Workload, seconds: int, connections: int,
             log_name: str) -> Run:  # fmt: skip
        run = run_wrk(
            entry.url, entry.script, connections=connections,
            threads=min(workload.threads, connections), seconds=seconds,
            timeout=self.args.timeout, cpu=self.args.load_cpu,
            log=WORK / "logs" / f"wrk-{workload.key}-{entry.target.name}-{log_name}.txt",
        )  # fmt: skip
        name = entry.target.name
        self.answered[name] = self.answered.get(name, 0) + run.requests - run.non_2xx
        return run

    def entry(self, target: Target, workload: Workload) -> Entry | str:
        """`target`'s request for `workload`, probed once and written as wrk's script; or
        why the target cannot take it."""
        url, headers, model = target.request(
            self.nginx_port, workload.prefix, workload.route, workload.group
        )
        body = self._body(workload, model)
        problem = probe(url, headers, body, workload)
        if problem:
            say(f"{target.label}: n/a ({problem})")
            return problem
        self.answered[target.name] = self.answered.get(target.name, 0) + 1
        script = write_script(WORK / "lua" / f"{workload.key}-{target.name}.lua",
                              f"{workload.key} via {target.label}", headers, body)  # fmt: skip
        return Entry(target, url, script)

    def measure(self, workload: Workload) -> dict[str, object]:
        seconds = self.args.slow_duration if workload.slow else self.args.duration
        rounds = self.args.slow_rounds if workload.slow else self.args.rounds
        say(f"== {workload.title}: {rounds} round(s) x {seconds:g} s, c={workload.connections}")
        results: dict[str, dict[str, object]] = {}
        entries: list[Entry] = []
        for target in self.targets:
            if not target.available:
                results[target.name] = {"status": "n/a", "reason": target.reason}
                continue
            entry = self.entry(target, workload)
            if isinstance(entry, str):
                results[target.name] = {"status": "n/a", "reason": entry}
                continue
            entries.append(entry)
        if self.args.warmup > 0:  # the gateways only: JIT, pools, caches (nginx needs none)
            for entry in (e for e in entries if e.target.name != "direct"):
                with contextlib.suppress(RuntimeError):  # a failing target shows in its rounds
                    self._wrk(entry, workload, self.args.warmup, min(workload.connections, 32),
                              "warmup")  # fmt: skip
        for round_number in range(1, rounds + 1):
            for entry in entries:
                self._measure_once(entry, workload, seconds, round_number)
        for entry in entries:
            results[entry.target.name] = self._summary(entry)
        return {
            "key": workload.key, "title": workload.title, "connections": workload.connections,
            "threads": workload.threads, "seconds": seconds, "rounds": rounds,
            "results": results,
        }  # fmt: skip

    def _measure_once(self, entry: Entry, workload: Workload, seconds: int, number: int) -> None:
        service = entry.target.service
        assert service is not None
        if entry.stopped:
            return
        if not service.alive():
            entry.stopped = f"gateway exited with code {service.process.returncode}"
            say(f"{entry.target.label}: {entry.stopped}")
            return
        time.sleep(self.args.pause)
        try:
            cpu_before = tree_cpu_seconds(service.pid)
            with RssSampler(service.pid) as sampler:
                run = self._wrk(entry, workload, seconds, workload.connections, f"round{number}")
            cpu = tree_cpu_seconds(service.pid) - cpu_before
        except RuntimeError as error:
            entry.stopped = str(error)
            say(f"{entry.target.label}: {entry.stopped}")
            return
        entry.runs.append(run)
        entry.cpu_seconds.append(cpu)
        entry.peak_tree_kb = max(entry.peak_tree_kb, sampler.peak_tree_kb)
        entry.peak_process_kb = max(entry.peak_process_kb, sampler.peak_process_kb)
        say(
            f"{workload.key} round {number} {entry.target.label:>15}: "
            f"{run.ok_per_s:9.1f} req/s  p50 {run.p50_ms:8.2f} ms  p99 {run.p99_ms:8.2f} ms  "
            f"non-2xx {run.non_2xx}  errors {run.socket_errors}  "
            f"rss {sampler.peak_tree_kb / 1024:.0f} MB  cpu {_cpu_us(cpu, run):.0f} us/answer "
            f"({cpu / max(run.seconds, 1e-9):.0%} of a core)"
        )

    @staticmethod
    def _summary(entry: Entry) -> dict[str, object]:
        if not entry.runs:
            return {"status": "n/a", "reason": entry.stopped or "no run completed"}
        runs = entry.runs
        measured = list(zip(entry.cpu_seconds, runs, strict=True))
        service = entry.target.service
        assert service is not None
        return {
            "status": "ok",
            "stopped_early": entry.stopped or None,
            "ok_per_s": statistics.median(run.ok_per_s for run in runs),
            "p50_ms": statistics.median(run.p50_ms for run in runs),
            "p99_ms": statistics.median(run.p99_ms for run in runs),
            # CPU time of the target's processes per 2xx answer, and the share of a core
            # they got: less exposed than req/s to other work on the machine.
            "cpu_us_per_ok": statistics.median(_cpu_us(cpu, run) for cpu, run in measured),
            "cpu_share": statistics.median(cpu / max(run.seconds, 1e-9) for cpu, run in measured),
            "requests": sum(run.requests for run in runs),
            "non_2xx": sum(run.non_2xx for run in runs),
            "socket_errors": sum(run.socket_errors for run in runs),
            "timeouts": sum(run.timeouts for run in runs),
            "peak_rss_mb": round(entry.peak_tree_kb / 1024, 1),
            "peak_process_rss_mb": round(entry.peak_process_kb / 1024, 1),
            "lifetime_hwm_mb": round(tree_hwm_kb(service.pid) / 1024, 1),
            "runs": [
                {**asdict(run), "ok_per_s": run.ok_per_s, "cpu_s": round(cpu, 3)}
                for cpu, run in measured
            ],
        }

    # ------------------------------------------------------------ accounting

    def account(self) -> None:
        """For each keyed target: what the spend log and the key's budget recorded, next to
        the 2xx answers wrk counted (the proof that the "on" configuration really was on).

        The spend log may hold a few more rows than wrk counted: answers in flight when a
        wrk run ended are served and logged, but not counted by wrk."""
        for target in self.targets:
            if target.name not in KEYED or not target.available:
                continue
            counted = self.answered.get(target.name, 0)
            try:
                rows, previous, deadline = 0, -1, time.monotonic() + 15
                while time.monotonic() < deadline:  # the spend log is written in batches
                    totals = _call(target.port, "GET", "/spend/summary?group_by=key")
                    rows = int(sum(total["requests"] for total in totals))
                    if rows == previous and rows >= counted:
                        break
                    previous = rows
                    time.sleep(1.0)
                logged = sum(float(total["spend"]) for total in totals)
                info = _call(target.port, "GET", f"/key/info?key={target.api_key}")["info"]
                self.accounting[target.name] = {
                    "answered_2xx_counted_by_wrk": counted,
                    "spend_log_rows": rows,
                    "spend_log_usd": round(logged, 6),
                    "key_spend_usd": info["spend"],
                    "key_max_budget_usd": info["max_budget"],
                }
            except (RuntimeError, KeyError, TypeError, ValueError) as error:
                self.accounting[target.name] = {"answered_2xx_counted_by_wrk": counted,
                                                "error": str(error)}  # fmt: skip
            say(f"{target.label}: {json.dumps(self.accounting[target.name])}")

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


def _cpu_us(cpu_seconds: float, run: Run) -> float:
    """CPU microseconds per 2xx answer."""
    answered = run.requests - run.non_2xx
    return cpu_seconds * 1e6 / answered if answered else 0.0


def machine() -> dict[str, object]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")),
                   cpu)  # fmt: skip
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as info:
        memory_gib = int(info.readline().split()[1]) / 1024**2
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # Other work on the machine skews every target; the 1/5/15-minute load at the end.
        "loadavg_at_end": [round(load, 2) for load in os.getloadavg()],
    }


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
    return soft


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="warm-up seconds per gateway and workload"
    )
    parser.add_argument(
        "--slow-duration",
        type=int,
        default=15,
        help="seconds of the 1,000-connection run (default 15)",
    )
    parser.add_argument("--slow-rounds", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=10, help="wrk --timeout, seconds")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between runs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s runs, 1 round, 5 s slow run; writes to .work/quick/",
    )
    parser.add_argument(
        "--gateways",
        default=",".join(DEFAULT_GATEWAYS),
        help=f"comma-separated subset of {','.join(GATEWAYS)} "
        f"(default {','.join(DEFAULT_GATEWAYS)})",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="prismgate-keys-pg's database, dropped and re-created at start (psql, no "
        f"password; default {POSTGRES_URL})",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated subset of the workloads",
    )
    parser.add_argument("--out", type=Path, help="where RESULTS.md and results.json go")
    parser.add_argument("--gateway-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1, help="core for nginx and wrk")
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.duration, args.rounds, args.warmup, args.slow_duration = 2, 1, 1, 5
        args.out = args.out or WORK / "quick"
    args.out = args.out or BENCH
    args.gateways = [name for name in args.gateways.split(",") if name]
    unknown = set(args.gateways) - set(GATEWAYS)
    keys = [workload.key for workload in WORKLOADS]
    args.workloads = [key for key in args.workloads.split(",") if key]
    unknown |= set(args.workloads) - set(keys)
    if unknown:
        parser.error(f"unknown gateway or workload: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, {args.load_cpu})  # the runner stays off the gateway's core
    started = time.monotonic()
    fd_limit = raise_fd_limit()
    bench = Bench(args)
    try:
        bench.setup()
        workloads = [bench.measure(w) for w in WORKLOADS if w.key in args.workloads]
        bench.account()
    except (KeyboardInterrupt, SystemExit):
        say("interrupted: stopping the servers")
        raise
    finally:
        bench.close()
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_s": round(time.monotonic() - started),
        "quick": args.quick,
        "machine": machine(),
        "settings": {
            "duration_s": args.duration, "rounds": args.rounds, "warmup_s": args.warmup,
            "slow_duration_s": args.slow_duration, "slow_rounds": args.slow_rounds,
            "wrk_timeout_s": args.timeout, "gateway_cpu": args.gateway_cpu,
            "load_cpu": args.load_cpu, "fd_limit": fd_limit,
        },
        "versions": {
            **{t.name: t.version or "n/a" for t in bench.targets if t.name != "direct"},
            "nginx": next(t.version for t in bench.targets if t.name == "direct"),
            "wrk": command_version(["wrk", "-v"]).split(" Copyright")[0].removeprefix("wrk "),
            "node": command_version(["node", "--version"]),
        },
        "gateways": {
            t.name: {"label": t.label, "available": t.available, "reason": t.reason,
                     **({"accounting": bench.accounting[t.name]}
                        if t.name in bench.accounting else {})}
            for t in bench.targets
        },
        "canned_sizes_bytes": bench.sizes,
        "workloads": workloads,
    }  # fmt: skip
    results["targets"] = report.evaluate_targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(report.markdown(results))
    say(f"done in {results['elapsed_s']} s: {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
