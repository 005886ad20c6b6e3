"""Two builds of prismgate measured at the same time, on the same core: what keys (issue 12)
or telemetry (issue 13) cost, with the machine's drift cancelled.

    .venv/bin/python bench/side_by_side.py                                  # both pairs
    .venv/bin/python bench/side_by_side.py --pairs prismgate:prismgate-keys --rounds 12

`bench/run.sh` must have run once (it installs nginx and wrk). On a shared virtual machine
the same build's req/s moves by ±15% from one 8-second run to the next, more than the
10% (keys) and 5% (telemetry) being judged, so `run.py`'s runs in turn, even paired by
round, cannot tell those targets apart. Here each pair's two gateways are pinned to the
gateway core together and each is loaded by its own wrk (c=32, the small answer, on the
load core) over the same seconds: whatever slows the machine then slows both.

Each gateway's CPU time per 2xx answer (`/proc`, its process tree) is what serving a call
costs it; the ratio base / other of those is the throughput the other would keep, alone
on the core, relative to the base (a saturated server answers one call per CPU time per
answer). The req/s ratio is printed too; it also depends on how the scheduler split the
core (a process with more busy threads gets a little more), so the CPU ratio is the one
judged. Prints a line per round and the median; `--out` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
from pathlib import Path

from loadgen import Run
from procs import tree_cpu_seconds
from run import (
    GATEWAYS,
    WORKLOADS,
    Bench,
    Entry,
    _cpu_us,
    parse_args,
    raise_fd_limit,
    say,
)

# The pairs the issues judge, (base, other): the least ratio other / base they allow.
PAIRS = {
    ("prismgate", "prismgate-keys"): 0.90,  # issue 12 §6
    ("prismgate-quiet", "prismgate-traced"): 0.95,  # issue 13
}
WORKLOAD = next(workload for workload in WORKLOADS if workload.key == "image-small-c32")


def main() -> int:
    """Measure each pair for `--rounds` rounds; print each round and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=",".join(f"{a}:{b}" for a, b in PAIRS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=8, help="seconds per round")
    parser.add_argument("--out", type=Path, help="a JSON file for the rounds and medians")
    args = parser.parse_args()
    pairs = [tuple(pair.split(":")) for pair in args.pairs.split(",") if pair]
    if any(len(pair) != 2 or not set(pair) <= set(GATEWAYS) for pair in pairs):
        parser.error(f"--pairs: base:other, each one of {', '.join(GATEWAYS)}")
    names = sorted({name for pair in pairs for name in pair}, key=GATEWAYS.index)
    bench_args = parse_args(["--gateways", ",".join(names), "--workloads", WORKLOAD.key])
    os.sched_setaffinity(0, {bench_args.load_cpu})  # off the gateways' core
    raise_fd_limit()
    bench = Bench(bench_args)
    results = []
    try:
        bench.setup()
        entries = {entry.target.name: entry for entry in _entries(bench)}
        for base, other in pairs:
            if base not in entries or other not in entries:
                say(f"{base} : {other}: not measured (a gateway is not available)")
                continue
            results.append(_pair(bench, entries[base], entries[other], args))
    finally:
        bench.close()
    for result in results:
        least = PAIRS.get((result["base"], result["other"]))
        verdict = "" if least is None else (" met" if result["cpu_ratio"] >= least else " missed")
        say(
            f"{result['other']} / {result['base']}, side by side, median of {args.rounds}: "
            f"CPU per answer {result['cpu_ratio']:.1%} (rounds {result['cpu_low']:.1%} to "
            f"{result['cpu_high']:.1%}), req/s {result['rate_ratio']:.1%}"
            + (f"; at least {least:.0%} wanted:{verdict}" if least is not None else "")
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _entries(bench: Bench) -> list[Entry]:
    """Each gateway that started, with its request for the workload (probed once)."""
    entries = []
    for target in bench.targets:
        if target.name != "direct" and target.available:
            entry = bench.entry(target, WORKLOAD)
            if isinstance(entry, Entry):
                entries.append(entry)
    return entries


def _pair(bench: Bench, base: Entry, other: Entry, args: argparse.Namespace) -> dict[str, object]:
    """Warm both up together, then measure `args.rounds` rounds of both at once."""
    _together(bench, (base, other), bench.args.warmup, "warmup")
    rounds = []
    for number in range(1, args.rounds + 1):
        (base_run, base_cpu), (other_run, other_cpu) = _together(
            bench, (base, other), args.duration, f"side{number}"
        )
        cpu_ratio = _cpu_us(base_cpu, base_run) / _cpu_us(other_cpu, other_run)
        rate_ratio = other_run.ok_per_s / base_run.ok_per_s
        rounds.append({
            "base_ok_per_s": round(base_run.ok_per_s, 1),
            "other_ok_per_s": round(other_run.ok_per_s, 1),
            "base_cpu_us_per_ok": round(_cpu_us(base_cpu, base_run), 1),
            "other_cpu_us_per_ok": round(_cpu_us(other_cpu, other_run), 1),
            "cpu_ratio": round(cpu_ratio, 4),
            "rate_ratio": round(rate_ratio, 4),
        })  # fmt: skip
        say(
            f"round {number}: {base.target.name} {base_run.ok_per_s:.0f} req/s "
            f"{_cpu_us(base_cpu, base_run):.0f} us/answer, {other.target.name} "
            f"{other_run.ok_per_s:.0f} req/s {_cpu_us(other_cpu, other_run):.0f} us/answer: "
            f"CPU {cpu_ratio:.1%}, req/s {rate_ratio:.1%}"
        )
    cpu = [float(r["cpu_ratio"]) for r in rounds]
    return {
        "base": base.target.name,
        "other": other.target.name,
        "cpu_ratio": statistics.median(cpu),
        "cpu_low": min(cpu),
        "cpu_high": max(cpu),
        "rate_ratio": statistics.median(float(r["rate_ratio"]) for r in rounds),
        "rounds": rounds,
    }


def _together(
    bench: Bench, entries: tuple[Entry, ...], seconds: int, name: str
) -> list[tuple[Run, float]]:
    """Each entry's wrk run and its gateway's CPU seconds, all loaded over the same seconds."""
    outcomes: dict[str, tuple[Run, float] | BaseException] = {}

    def load(entry: Entry) -> None:
        assert entry.target.service is not None
        pid = entry.target.service.pid
        try:
            before = tree_cpu_seconds(pid)
            run = bench._wrk(entry, WORKLOAD, seconds, WORKLOAD.connections, name)
            outcomes[entry.target.name] = (run, tree_cpu_seconds(pid) - before)
        except Exception as error:  # reported below, for the round
            outcomes[entry.target.name] = error

    threads = [threading.Thread(target=load, args=(entry,)) for entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = []
    for entry in entries:
        outcome = outcomes[entry.target.name]
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"{entry.target.label}: {outcome}")
        if not outcome[0].all_ok:
            raise RuntimeError(f"{entry.target.label}: failed answers in {name}: {outcome[0]}")
        measured.append(outcome)
    return measured


if __name__ == "__main__":
    sys.exit(main())
