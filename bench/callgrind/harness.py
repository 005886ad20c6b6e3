"""One process that serves image generations through the proxy app, in process, for
callgrind to count: `create_app(config)` driven by raw ASGI calls (no server, no client
library), against the instant upstream of `upstream.py` (another process, not counted).

    python bench/callgrind/harness.py --mode keyed --requests 1200 [--concurrency 32]

Modes, as bench/run.py configures its targets:

- `plain`: the master key, the spend log off (`disable_spend_logs`): bench's `prismgate`;
- `keyed`: a key made with bench's `BENCH_KEY_REQUEST` (a budget, rpm and ipm limits),
  the spend log on, the embedded SQLite store: bench's `prismgate-keys`;
- `keyed-pg`: the same on PostgreSQL (`--database-url`, dropped and re-created first).

**Time is counted in requests**, not read from the wall: under valgrind a request takes
~50x longer, so every timer of the gateway (the spend log's 0.5 s batches, key re-reads
after 0.5 s, budget leases settled after 1 s) would fire every few requests instead of
every few thousand, and how often would depend on the machine's load. Before prismgate
is imported, `time.time` and `time.monotonic` are replaced by a clock that moves
`--step` seconds (default 1/3500 s: the bench's c=32 rate) per request sent; the event
loop is asyncio's own, whose clock is `time.monotonic`. So one run does the same work
whatever the load, and the spend log writes full batches, as it does at c=32.
(`--loop uvloop` serves on uvloop instead, as `prismgate serve` does, but its timers
run on the wall clock: counts then move with the machine's speed.)

Logging is set up as `prismgate serve` sets it up, the access log on (its lines go to a
file of the run's data folder). What telemetry costs (issue 13): `--otel on` adds
OpenTelemetry traces (the config's "otel" callback, spans exported over OTLP/HTTP to the
upstream process, which answers every POST and is not counted), `--otel unexported`
makes them without exporting, and `--telemetry off` builds the app without its access
log and metrics (bench only: the proxy has no such switch).

Prints one JSON line: the mode, the requests measured, their wall time, and the CPU
they took per request (in all, and by thread: the spend log's SQLite writer and the
span exporter are threads of their own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import importlib
import itertools
import json
import operator
import os
import pstats
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
DEFAULT_STEP = 1 / 3500  # virtual seconds per request: about plain prismgate's c=32 rate
MASTER_KEY = "sk-bench-master"
# Request-clock seconds that let the spend log's interval (0.5 s) pass at a window's edge.
SETTLE_SECONDS = 1.0
SETTLE_TIMEOUT = 600.0  # wall seconds: under valgrind a write takes ~50x longer
Message = dict[str, Any]


class RequestClock:
    """A clock that moves only when a request is sent: `tick()` adds `step` seconds.

    `time` and `monotonic` read a list item through `functools.partial`: C calls, as
    cheap as the clocks they stand in for (a Python method here would add ~1,000
    instructions to every clock read, and the keyed path reads the clock more often)."""

    def __init__(self, step: float) -> None:
        self._step = step
        self._now = [time.time(), time.monotonic()]
        self.time = functools.partial(operator.getitem, self._now, 0)
        self.monotonic = functools.partial(operator.getitem, self._now, 1)

    def tick(self) -> None:
        """One request sent."""
        self.advance(self._step)

    def advance(self, seconds: float) -> None:
        """Move on `seconds`: the timers due by then fire."""
        self._now[0] += seconds
        self._now[1] += seconds


def main() -> None:
    """Parse the options, install the clock, run the load, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("plain", "keyed", "keyed-pg"), default="keyed")
    parser.add_argument("--requests", type=int, default=1200, help="requests measured")
    parser.add_argument("--warmup", type=int, default=1000, help="requests before them")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--step", type=float, default=DEFAULT_STEP)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--upstream-port", type=int, help="an upstream already running")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/prismgate_callgrind",
        help="keyed-pg's database (dropped and re-created)",
    )
    parser.add_argument(
        "--key", type=json.loads, help="keyed modes: the /key/generate body (JSON) instead"
    )
    parser.add_argument(
        "--spend-logs",
        choices=("on", "off"),
        help="the spend log (default: off for plain, on for keyed, as in bench/)",
    )
    parser.add_argument("--profile", type=int, default=0, help="cProfile: print the top N")
    parser.add_argument(
        "--otel",
        choices=("off", "on", "unexported"),
        default="off",
        help="unexported: spans made, not exported (OTEL_TRACES_EXPORTER=none); "
        "on: OpenTelemetry traces (the 'otel' callback), exported over OTLP/HTTP to "
        "the upstream process (which answers every POST: its work is not counted)",
    )
    parser.add_argument(
        "--telemetry",
        choices=("on", "off"),
        default="on",
        help="off (bench only): the app built without its access log and metrics, to "
        "count what they cost",
    )
    args = parser.parse_args()

    clock = RequestClock(args.step)
    # Before any module that keeps a reference to them (default arguments) is imported.
    time.time = clock.time  # type: ignore[assignment]
    time.monotonic = clock.monotonic  # type: ignore[assignment]

    upstream = None
    port = args.upstream_port
    if port is None:
        port = _free_port()
        upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), str(port)])
    try:
        _wait_for_port(port)
        runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]
        if args.loop == "uvloop":
            import uvloop

            runner = uvloop.run
        else:
            runner = asyncio.run
        with tempfile.TemporaryDirectory(prefix="prismgate-callgrind-") as data_dir:
            result = runner(_run(args, clock, port, data_dir))
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait()
    sys.stdout.write(json.dumps(result) + "\n")


async def _run(
    args: argparse.Namespace, clock: RequestClock, port: int, data_dir: str
) -> dict[str, Any]:
    spend_logs = args.spend_logs or ("off" if args.mode == "plain" else "on")
    app = _app(args, port, data_dir, spend_logs)
    async with _lifespan(app):
        key = MASTER_KEY if args.mode == "plain" else await _bench_key(app, args.key)
        request = {"model": "bench-image", "prompt": "A cute baby sea otter"}

        async def load(count: int) -> None:
            sent = itertools.count()

            async def one_connection() -> None:
                while next(sent) < count:
                    clock.tick()
                    status, body = await _call(app, "/v1/images/generations", request, key)
                    if status != 200 or b'"url"' not in body:
                        raise SystemExit(f"the gateway answered {status}: {body[:300]!r}")

            await asyncio.gather(*(one_connection() for _ in range(args.concurrency)))

        await load(args.warmup)
        if spend_logs == "on":
            await _settle(app, clock, data_dir, args.mode, args.warmup)
        collections = [generation["collections"] for generation in gc.get_stats()]
        profile = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        cpu = _cpu_seconds()
        threads = _thread_cpu_seconds()
        if profile is not None:
            profile.enable()
        os.getppid()  # a mark: `--dump-before=os_getppid` starts a new callgrind part here
        await load(args.requests)
        if spend_logs == "on":
            await _settle(app, clock, data_dir, args.mode, args.warmup + args.requests)
        os.getppid()  # and here: the part between holds the measured requests only
        if profile is not None:
            profile.disable()
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        threads = _thread_cpu_seconds(since=threads)
        collections = [
            generation["collections"] - before
            for generation, before in zip(gc.get_stats(), collections, strict=True)
        ]
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
    result = {
        "mode": args.mode,
        "otel": args.otel,
        "telemetry": args.telemetry,
        "requests": args.requests,
        "seconds": round(seconds, 3),
        # This process's CPU, its threads' and the kernel's for it included (not counted
        # by callgrind's instructions): µs per request, for runs outside valgrind.
        "cpu_us_per_request": round(cpu / args.requests * 1e6, 1),
        "gc_collections": collections,  # per generation, while measured
        # The same, by thread (named by its Python name; threads that ended are not seen).
        "cpu_us_by_thread": {
            name: round(seconds / args.requests * 1e6, 1) for name, seconds in threads.items()
        },
    }
    if args.mode == "keyed" and spend_logs == "on":  # it really was on: one row per call
        rows = await _rows_logged(app, data_dir, args.mode)
        if rows != args.warmup + args.requests:
            raise SystemExit(f"{rows} spend rows for {args.warmup + args.requests} calls")
        result["spend_rows"] = rows
    return result


async def _settle(app: Any, clock: RequestClock, data_dir: str, mode: str, calls: int) -> None:
    """Every call's spend row written: the spend log's interval passes on the request
    clock, then this waits, blocked rather than spinning (so that what it costs does not
    depend on how long it waits), until the rows are in. The clock moves on at each look:
    a batch that was being written when it last moved is followed by the next one only
    once its interval has passed on this clock."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    loop = asyncio.get_running_loop()
    if mode == "keyed":  # the file, read in a thread: the loop just waits
        database = Path(data_dir, "prismgate.db")
        with contextlib.closing(sqlite3.connect(database, check_same_thread=False)) as db:
            while time.perf_counter() < deadline:
                clock.advance(SETTLE_SECONDS)
                if await loop.run_in_executor(None, _holds_rows, db, calls):
                    return
    else:
        while time.perf_counter() < deadline:
            clock.advance(SETTLE_SECONDS)
            if await _rows_logged(app, data_dir, mode) >= calls:
                return
            await loop.run_in_executor(None, _real_sleep, 0.05)
    raise SystemExit(f"the spend log did not get {calls} rows")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _thread_cpu_seconds(since: dict[str, float] | None = None) -> dict[str, float]:
    """CPU seconds by thread name (Linux: /proc/self/task), less `since`'s."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    seconds: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
            name = names.get(int(task.name), "other")
            used = (int(fields[11]) + int(fields[12])) / tick
            seconds[name] = seconds.get(name, 0.0) + used
    if since is not None:
        seconds = {name: used - since.get(name, 0.0) for name, used in seconds.items()}
    return {name: used for name, used in seconds.items() if used > 0}


def _holds_rows(db: sqlite3.Connection, calls: int) -> bool:
    """Whether the SQLite spend log holds `calls` rows; if not, after a tenth of a second
    (it never deletes any here, so its largest rowid is its count: one cheap look)."""
    (rows,) = db.execute("SELECT max(rowid) FROM spend_logs").fetchone()
    if (rows or 0) >= calls:
        return True
    _real_sleep(0.1)
    return False


async def _rows_logged(app: Any, data_dir: str, mode: str) -> int:
    """The rows in the spend log: read from the SQLite file, else asked of the proxy."""
    if mode == "keyed-pg":
        status, answer = await _call(app, "/spend/summary?group_by=key", None, MASTER_KEY)
        if status != 200:
            raise SystemExit(f"/spend/summary answered {status}: {answer!r}")
        return sum(int(total["requests"]) for total in json.loads(answer))
    with contextlib.closing(sqlite3.connect(Path(data_dir, "prismgate.db"))) as db:
        (rows,) = db.execute("SELECT count(*) FROM spend_logs").fetchone()
    return int(rows)


def _app(args: argparse.Namespace, port: int, data_dir: str, spend_logs: str) -> Any:
    """`create_app` of bench's config, with the telemetry `--otel` and `--telemetry` ask."""
    from prismgate.config import load_config
    from prismgate.proxy import create_app

    if args.telemetry == "off":
        _bench_module("without_telemetry").without_telemetry()
    else:
        _serve_logging(data_dir)
    environ = {}
    if args.otel == "on":
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    elif args.otel == "unexported":
        environ = {"OTEL_TRACES_EXPORTER": "none"}
    app = create_app(
        load_config(_config(args, port, data_dir, spend_logs), environ=environ), serving=True
    )
    if args.telemetry == "off":
        _bench_module("without_telemetry").drop_collector(app)
    return app


def _config(args: argparse.Namespace, port: int, data_dir: str, spend_logs: str) -> dict[str, Any]:
    """bench/'s prismgate config: one model group on the upstream."""
    general: dict[str, Any] = {"master_key": MASTER_KEY, "data_dir": data_dir}
    if spend_logs == "off":
        general["disable_spend_logs"] = True
    if args.mode == "keyed-pg":
        _reset_postgres(args.database_url)
        general["database_url"] = args.database_url
    deployment = {
        "model": "openai/dall-e-3",
        "api_base": f"http://127.0.0.1:{port}/small/v1",
        "api_key": "sk-upstream",
    }
    config: dict[str, Any] = {
        "model_list": [{"model_name": "bench-image", "litellm_params": deployment}],
        "general_settings": general,
    }
    if args.otel != "off":
        config["litellm_settings"] = {"callbacks": ["otel"]}
    return config


def _serve_logging(data_dir: str) -> None:
    """Logging as `prismgate serve` sets it up (its access log on), the access lines
    written to a file of the run's data folder instead of stdout (the result's line)."""
    import logging.config

    from prismgate.observability.log_config import serve_logging

    config, _ = serve_logging("info")
    lines = Path(data_dir, "access.log").open("w", encoding="utf-8")  # noqa: SIM115 (the run's)
    config["handlers"]["access"]["stream"] = lines
    logging.config.dictConfig(config)


async def _bench_key(app: Any, wanted: dict[str, Any] | None) -> str:
    """A key made as bench/ makes it (`BENCH_KEY_REQUEST`, or `wanted`)."""
    body = _targets().BENCH_KEY_REQUEST if wanted is None else wanted
    status, answer = await _call(app, "/key/generate", body, MASTER_KEY)
    if status != 200:
        raise SystemExit(f"/key/generate answered {status}: {answer!r}")
    key: str = json.loads(answer)["key"]
    return key


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> Any:
    """The app's startup and shutdown, as a server runs them."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app did not start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def _call(app: Any, path: str, document: object, key: str) -> tuple[int, bytes]:
    """One POST of `document` (a GET when None) through the ASGI app, as uvicorn hands
    it over: its status and body."""
    body = b"" if document is None else json.dumps(document).encode()
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET" if document is None else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:4000"),
            (b"authorization", b"Bearer " + key.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4000),
        "state": {},
    }
    done = asyncio.Event()
    received = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the server reports the disconnect after the answer
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, b"".join(chunks)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_for_port(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return
        _real_sleep(0.05)
    raise SystemExit(f"the upstream did not listen on port {port}")


_real_sleep = time.sleep


def _reset_postgres(url: str) -> None:
    """Drop and re-create the database of `url` (bench/targets.py's psql reset)."""
    _targets().postgres_reset(url)


def _targets() -> Any:
    """bench/targets.py."""
    return _bench_module("targets")


def _bench_module(name: str) -> Any:
    """A module of bench/ (not a package: found by path)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


if __name__ == "__main__":
    main()
