"""What keys, budgets, rate limits and the spend log cost a small-answer call at c=32
(issue 12: keyed throughput within 10% of plain): CPU per request, in all and by thread,
measured natively by bench/callgrind/harness.py.

    .venv/bin/python bench/keyed_overhead.py [--rounds 3] [--requests 40000]
    .venv/bin/python bench/keyed_overhead.py --src /tmp/other-checkout/src

Runs the harness in turn as bench's `prismgate` (plain: the master key, no spend log),
with bench's key (a budget, rpm and ipm limits) and the spend log off, and as bench's
`prismgate-keys` (the spend log on, on SQLite); rounds interleaved, the fastest run of
each kept (the one the rest of the machine disturbed least). Prints each setup's CPU per
request, its extra over plain, and the threads that used it: the event loop's, the spend
log's SQLite writer, the worker threads of file and database work. Timed runs on a shared
machine move by ±10%: compare figures from one run. `--src` imports prismgate from
another copy of src/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent / ".venv" / "bin" / "python"
SETUPS = {
    "plain": ["--mode=plain"],
    "keyed, no spend log": ["--mode=keyed", "--spend-logs=off"],
    "keyed": ["--mode=keyed"],
}


def main() -> None:
    """Run the setups; print the CPU per request of each, by thread, and the extra."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--src", type=Path, help="import prismgate from this src/ folder")
    args = parser.parse_args()
    environ = dict(os.environ)
    if args.src is not None:
        environ["PYTHONPATH"] = str(args.src.resolve())
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):
        for name, options in SETUPS.items():
            command = [
                str(PYTHON),
                str(HERE / "callgrind" / "harness.py"),
                f"--requests={args.requests}",
                f"--warmup={args.warmup}",
                *options,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=environ)
            result = json.loads(done.stdout.splitlines()[-1])
            kept = best.get(name)
            if kept is None or result["cpu_us_per_request"] < kept["cpu_us_per_request"]:
                best[name] = result
    base = best["plain"]["cpu_us_per_request"]
    for name, result in best.items():
        cpu = result["cpu_us_per_request"]
        extra = (cpu - base) / base * 100
        sys.stdout.write(f"{name:22} {cpu:8.1f} µs CPU/request  {extra:+6.1f}%\n")
        for thread, used in sorted(result["cpu_us_by_thread"].items(), key=lambda t: -t[1]):
            sys.stdout.write(f"    {thread:40} {used:8.1f}\n")


if __name__ == "__main__":
    main()
