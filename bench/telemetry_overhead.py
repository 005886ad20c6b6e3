"""What the access log, the metrics and the traces cost a small-answer call at c=32
(issue 13): CPU per request, measured natively by bench/callgrind/harness.py, or
instructions per request counted by callgrind (`--instructions`).

    .venv/bin/python bench/telemetry_overhead.py [--rounds 3] [--requests 20000]
    .venv/bin/python bench/telemetry_overhead.py --instructions [--jobs 2]
    .venv/bin/python bench/telemetry_overhead.py --src /tmp/other-checkout/src

Runs the harness (plain mode) in turn with nothing (`--telemetry off`, bench only: the
proxy has no such switch), the access log and metrics (as served), and both with
OpenTelemetry traces exported over OTLP/HTTP (`--otel on`); rounds interleaved, the
fastest of each kept (the one the rest of the machine disturbed least). Timed runs on a
shared machine move by ±20%; `--instructions` runs the same three under callgrind
(bench/callgrind/measure.py), whose counts do not move with the machine's load (about
12 minutes each under valgrind). `--src` imports prismgate from another copy of src/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent / ".venv" / "bin" / "python"
SETUPS = {
    "neither": ["--telemetry=off"],
    "log+metrics": [],
    "log+metrics+tracing": ["--otel=on"],
}
# measure.py's line for the plain mode: "plain   <steady>   <as counted>".
_PLAIN = re.compile(r"^\s*plain\s+([\d,]+)\s", re.MULTILINE)


def main() -> None:
    """Run the setups; print the cost per request of each, and the extra over neither."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--jobs", type=int, default=1, help="--instructions: runs at once")
    parser.add_argument("--src", type=Path, help="import prismgate from this src/ folder")
    args = parser.parse_args()
    environ = dict(os.environ)
    if args.src is not None:
        environ["PYTHONPATH"] = str(args.src.resolve())
    if args.instructions:
        costs, unit = _instructions(args, environ), "instructions/request"
    else:
        costs, unit = _cpu(args, environ), "µs CPU/request"
    base = costs["neither"]
    for name, cost in costs.items():
        extra = (cost - base) / base * 100
        sys.stdout.write(f"{name:22} {cost:12,.1f} {unit}  {extra:+6.1f}%\n")


def _cpu(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, float]:
    """The fewest µs of CPU per request of each setup over the rounds."""
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, options in SETUPS.items():
            command = [
                str(PYTHON),
                str(HERE / "callgrind" / "harness.py"),
                "--mode=plain",
                f"--requests={args.requests}",
                f"--warmup={args.warmup}",
                *options,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=environ)
            cpu = json.loads(done.stdout.splitlines()[-1])["cpu_us_per_request"]
            best[name] = min(cpu, best.get(name, cpu))
    return best


def _instructions(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, float]:
    """Instructions per request of each setup, counted by callgrind (measure.py)."""

    def count(name: str) -> float:
        with tempfile.TemporaryDirectory(prefix="telemetry-callgrind-") as out:
            command = [
                str(PYTHON),
                str(HERE / "callgrind" / "measure.py"),
                "--modes=plain",
                f"--out={out}",
                *([f"--src={args.src}"] if args.src is not None else []),
                "--",
                *SETUPS[name],
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=environ)
        found = _PLAIN.search(done.stdout)
        if found is None:
            raise SystemExit(f"measure.py said no count for {name}:\n{done.stdout}")
        return float(found[1].replace(",", ""))

    with ThreadPoolExecutor(args.jobs) as pool:
        return dict(zip(SETUPS, pool.map(count, SETUPS), strict=True))


if __name__ == "__main__":
    main()
