"""Instructions per request, plain and keyed, counted by callgrind: the same on a busy
machine as on an idle one, so a change of a few percent shows.

    .venv/bin/python bench/callgrind/measure.py                          # plain and keyed, c=32
    .venv/bin/python bench/callgrind/measure.py --modes keyed --functions 25
    .venv/bin/python bench/callgrind/measure.py --modes plain,keyed,keyed-pg --concurrency 1

Each mode runs `harness.py` under `valgrind --tool=callgrind` twice, with two request
counts (`--requests`, default 400 and 1200, after the same warm-up). The harness marks
the start and the end of its measured requests (a call of `os.getppid`, on which
callgrind is told to start a new part: `--dump-before=os_getppid`), so startup, imports
and shutdown are left out; the difference of the two measured parts over the
difference of the counts is what one request costs, with whatever the window's edges
add (a spend-log batch under way) cancelled out too. `--functions N` also lists, per
mode, the N functions (C functions: Python frames all show as
`_PyEval_EvalFrameDefault`) with the most instructions per request, inclusive, from the
same two runs. The callgrind files stay in `--out` for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
_LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(?:\*\s+)?(.+?)\s*$")


def main() -> None:
    """Run the modes, print instructions per request (and the keyed extra)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="plain,keyed")
    parser.add_argument("--requests", default="400,1200", help="the two request counts")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=1, help="valgrind runs at once")
    parser.add_argument("--functions", type=int, default=0, help="top N functions per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / ".work" / "callgrind")
    parser.add_argument(
        "--src", type=Path, help="import prismgate from this src/ folder (a copy to compare)"
    )
    parser.add_argument("harness_args", nargs="*", help="more harness options, after --")
    args = parser.parse_args()
    modes = args.modes.split(",")
    low, high = (int(count) for count in args.requests.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    runs = [(mode, count) for mode in modes for count in (low, high)]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        files = dict(zip(runs, pool.map(lambda run: _callgrind(args, *run), runs), strict=True))

    slopes = {mode: _slopes(files[mode, low], files[mode, high], high - low) for mode in modes}
    # SQLite prepares a statement once per connection; which window a first use falls in
    # is chance (the pool hands out connections in turn), and a 256-row INSERT costs
    # millions to prepare: the steady state leaves it out.
    steady = {
        mode: slopes[mode][_TOTAL] - sum(v for k, v in slopes[mode].items() if _PREPARE in k)
        for mode in modes
    }
    _say(f"instructions per request (c={args.concurrency}, slope over {low}..{high}):")
    _say(f"  {'':9} {'steady':>12} {'as counted':>12}")
    for mode in modes:
        extra = ""
        if mode != "plain" and "plain" in steady:
            extra = f"   (+{steady[mode] - steady['plain']:,.0f} over plain)"
        _say(f"  {mode:9} {steady[mode]:>12,.0f} {slopes[mode][_TOTAL]:>12,.0f}{extra}")
    for mode in modes if args.functions else ():
        _say(f"\n{mode}: functions by instructions per request, inclusive")
        ranked = sorted(slopes[mode].items(), key=lambda item: -item[1])
        for name, slope in ranked[: args.functions]:
            _say(f"  {slope:>12,.0f}  {name[:110]}")


_TOTAL = "(all)"
_PREPARE = "sqlite3_prepare_v2 "


def _slopes(low: Path, high: Path, requests: int) -> dict[str, float]:
    """Per request, between the two measured parts: the total and each function's
    inclusive count."""
    low_counts, high_counts = _inclusive(low), _inclusive(high)
    slopes = {
        name: (count - low_counts.get(name, 0)) / requests for name, count in high_counts.items()
    }
    slopes[_TOTAL] = (_total(high) - _total(low)) / requests
    return slopes


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _callgrind(args: argparse.Namespace, mode: str, requests: int) -> Path:
    """Run one count under callgrind; the file of its measured part."""
    out: Path = args.out / f"{mode}-c{args.concurrency}-{requests}.callgrind"
    for old in args.out.glob(f"{out.name}*"):
        old.unlink()
    command = [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        "--dump-before=os_getppid",
        f"--callgrind-out-file={out}",
        str(PYTHON),
        str(HERE / "harness.py"),
        f"--mode={mode}",
        f"--requests={requests}",
        f"--concurrency={args.concurrency}",
        *args.harness_args,
    ]
    sys.stderr.write(f"[callgrind] {mode}, {requests} requests ...\n")
    environ = dict(os.environ)
    if args.src is not None:
        environ["PYTHONPATH"] = str(args.src.resolve())
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environ)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    # Part 1: startup and warm-up; part 2: the measured requests; part 3: up to the end.
    measured = out.with_name(f"{out.name}.2")
    if not measured.exists() or out.with_name(f"{out.name}.4").exists():
        raise SystemExit(f"{out}: expected three parts (two marks), found otherwise")
    return measured


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no total in {path}")


def _inclusive(path: Path) -> dict[str, int]:
    """Inclusive instructions by function, from callgrind_annotate."""
    done = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[str, int] = {}
    for line in done.stdout.splitlines():
        match = _LINE.match(line)
        if match and ":" in match[2]:
            counts[match[2]] = counts.get(match[2], 0) + int(match[1].replace(",", ""))
    return counts


if __name__ == "__main__":
    main()
