"""What the access log, the metrics and the traces cost a small-answer call at c=32
(issue 13): CPU per request, measured natively by bench/callgrind/harness.py.

    .venv/bin/python bench/telemetry_overhead.py [--rounds 3] [--requests 20000]

Runs the harness (plain mode) in turn with nothing (`--telemetry off`, bench only: the
proxy has no such switch), the access log and metrics (as served), and both with
OpenTelemetry traces exported over OTLP/HTTP (`--otel on`); rounds interleaved, the
fastest of each kept (the one the rest of the machine disturbed least). For counts that
do not move with the machine's load, the same three under callgrind:

    .venv/bin/python bench/callgrind/measure.py --modes plain -- --telemetry=off
    .venv/bin/python bench/callgrind/measure.py --modes plain
    .venv/bin/python bench/callgrind/measure.py --modes plain -- --otel=on
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent / ".venv" / "bin" / "python"
SETUPS = {
    "neither": ["--telemetry=off"],
    "log+metrics": [],
    "log+metrics+tracing": ["--otel=on"],
}


def main() -> None:
    """Run the rounds; print µs of CPU per request for each setup, and the extra."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    args = parser.parse_args()
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
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            cpu = json.loads(done.stdout.splitlines()[-1])["cpu_us_per_request"]
            best[name] = min(cpu, best.get(name, cpu))
    base = best["neither"]
    for name, cpu in best.items():
        extra = (cpu - base) / base * 100
        sys.stdout.write(f"{name:22} {cpu:8.1f} µs CPU/request  {extra:+6.1f}%\n")


if __name__ == "__main__":
    main()
