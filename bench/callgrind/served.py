"""Instructions per request of a real `prismgate serve` (uvicorn, uvloop, httptools), counted
by callgrind: what the access log, the metrics and the traces cost the server itself
(issue 13), the same on a busy machine as on an idle one.

    .venv/bin/python bench/callgrind/served.py                      # quiet, plain, traced
    .venv/bin/python bench/callgrind/served.py --targets plain,traced --jobs 2

Targets, as bench/run.py serves them: `quiet` (`without_telemetry.py`: no access log, no
metrics), `plain` (`prismgate serve`), `traced` (plus OpenTelemetry traces exported over
OTLP/HTTP). Each runs `serve --workers 1` under `valgrind --tool=callgrind
--instr-atstart=no` on core 0, against the instant upstream (`upstream.py`, outside
valgrind, which also takes the spans). After 200 warm-up requests, for each of the two
request counts (`--requests`), instrumentation is turned on (`callgrind_control -i on`),
that many requests are made at c=32 by a client on core 1, instrumentation is turned off
and the counts dumped. The difference of the two counts over the difference of the
requests is one request's cost: startup, warm-up and the window's edges cancel out.

Timers run on the wall clock, which valgrind slows about 50 times: work done once per
interval (the access log's write every 0.1 s, a batch of spans) is shared by fewer
requests than at full speed, and the more so the slower the server runs (two counted at
once run at half speed): compare builds counted side by side. Keyed calls (the spend
log's 0.5 s batches, budget leases settled each second) are left to `harness.py`, whose
clock counts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
PRISMGATE = ROOT / ".venv" / "bin" / "prismgate"
TARGETS = ("quiet", "plain", "traced")
CONCURRENCY = 32
WARMUP = 200


def main() -> None:
    """Count each target; print instructions per request, and each over `quiet`'s."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--requests", default="300,900", help="the two request counts")
    parser.add_argument("--jobs", type=int, default=1, help="targets counted at once")
    parser.add_argument(
        "--client", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        asyncio.run(_requests(*args.client))
        return
    targets = args.targets.split(",")
    if unknown := set(targets) - set(TARGETS):
        raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}")
    low, high = (int(count) for count in args.requests.split(","))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        counted = dict(zip(targets, pool.map(lambda t: _count(t, low, high), targets), strict=True))
    base = counted.get("quiet")
    lines = [f"instructions per request, c={CONCURRENCY} (slope over {low}..{high}):"]
    for target, instructions in counted.items():
        over = (
            f"   ({instructions / base - 1:+.1%} over quiet)" if base and target != "quiet" else ""
        )
        lines.append(f"  {target:8s} {instructions:12,.0f}{over}")
    sys.stdout.write("\n".join(lines) + "\n")


def _count(target: str, low: int, high: int) -> float:
    """One target's instructions per request."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from procs import free_port  # type: ignore[import-not-found]  # bench/, by path
    from targets import write_prismgate_config  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix=f"served-{target}-") as work:
        folder = Path(work)
        upstream_port, port = free_port(), free_port()
        upstream = subprocess.Popen([str(PYTHON), str(HERE / "upstream.py"), str(upstream_port)])
        config = write_prismgate_config(
            folder / "prismgate.yaml", upstream_port, data_dir=folder / "data",
            spend_logs=False, traces=target == "traced",
        )  # fmt: skip
        command = (
            [str(PRISMGATE)]
            if target != "quiet"
            else [str(PYTHON), str(BENCH / "without_telemetry.py")]
        )
        environment = dict(os.environ)
        if target == "traced":
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{upstream_port}"
        with (folder / "server.log").open("wb") as log:
            server = subprocess.Popen(
                ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={folder}/callgrind.%p", *command, "serve",
                 "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=environment,
            )  # fmt: skip
        try:
            _wait_ready(port, server)
            _client(port, WARMUP)
            totals = [_window(folder, server.pid, port, count) for count in (low, high)]
        finally:
            server.terminate()
            upstream.terminate()
            server.wait(60)
            upstream.wait(10)
        return (totals[1] - totals[0]) / (high - low)


def _window(folder: Path, pid: int, port: int, count: int) -> int:
    """Instructions of `count` requests: instrumentation on, the requests, off, a dump."""
    _control(pid, "-i", "on")
    _client(port, count)
    time.sleep(1)  # the answers' last work (the access log's write)
    _control(pid, "-i", "off")
    _control(pid, "-d")
    _control(pid, "-z")
    return _last_total(folder, pid)


def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def _last_total(folder: Path, pid: int) -> int:
    """The total of the newest dump of `pid` (callgrind.PID.N in `folder`)."""
    dumps = sorted(folder.glob(f"callgrind.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise RuntimeError(f"no callgrind dump of {pid} in {folder}")
    found = re.search(r"^totals: (\d+)", dumps[-1].read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


def _client(port: int, count: int) -> None:
    """`count` requests at c=32 from a process on core 1; each must be answered 200."""
    subprocess.run(
        ["taskset", "-c", "1", str(PYTHON), __file__, "--client", str(port), str(count)],
        check=True,
    )


async def _requests(port: int, count: int) -> None:
    import aiohttp

    body = b'{"model": "bench-image", "prompt": "A cute baby sea otter"}'
    headers = {"Authorization": "Bearer sk-bench-master", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{port}/v1/images/generations"
    left = count
    failed: list[int] = []
    async with aiohttp.ClientSession() as session:

        async def one_connection() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 200:
                        failed.append(answer.status)

        await asyncio.gather(*(one_connection() for _ in range(CONCURRENCY)))
    if failed:
        raise SystemExit(f"{len(failed)} of {count} requests failed (status {failed[0]})")


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600  # imports under valgrind take a while
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError("the server did not answer within 600 s")


if __name__ == "__main__":
    main()
