"""Python bytecode instructions per request, by function: where a setup's extra cost is,
in the gateway's own Python code (callgrind sees C functions only: every Python frame is
`_PyEval_EvalFrameDefault` there).

    .venv/bin/python bench/callgrind/opcodes.py plain keyed                 # keyed's extra
    .venv/bin/python bench/callgrind/opcodes.py plain "plain --otel=on"     # what traces add
    .venv/bin/python bench/callgrind/opcodes.py "plain --telemetry=off" plain --top 20

Each setup is a harness.py mode and more of its options. The harness runs in this process
with a trace function that counts, for each function, the bytecode instructions it ran
(`f_trace_opcodes`) between the harness's two marks (its `os.getppid()` calls), in every
thread (the spend log's writer included). Counting is deterministic (the harness's clock
moves by requests, not by the wall) and about 15x slower than running free, so a few
hundred requests do. Each setup runs twice (`--requests`, default 200 and 600), and the
difference of the two counts over the difference of the requests is what one request
costs: the window's fixed costs (the spend log's last batch, the wait for it) cancel
out, as in `measure.py`. Setups run in turn, each in a process of its own; the first is
the base the others are compared with. An instruction is not a fixed cost (a call of a C
function is one, whatever it does), so use this to find the Python code that grew, and
callgrind (`measure.py`) or the bench to weigh it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import runpy
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent.parent / ".venv" / "bin" / "python"


def main() -> None:
    """Count each setup, print the base's total and each other setup's difference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setups", nargs="+", help="harness.py options, one string a setup")
    parser.add_argument("--requests", default="200,600", help="the two request counts")
    parser.add_argument("--top", type=int, default=30, help="functions listed per setup")
    args = parser.parse_args()
    low, high = (int(count) for count in args.requests.split(","))
    counts = [_slope(_options(setup), low, high) for setup in args.setups]
    base = counts[0]
    _say(f"{args.setups[0]}: {sum(base.values()):,.0f} instructions/request")
    for setup, other in zip(args.setups[1:], counts[1:], strict=True):
        extra = sum(other.values()) - sum(base.values())
        _say(f"\n{setup}: {extra:+,.0f} instructions/request; by function:")
        changes = {name: other.get(name, 0) - base.get(name, 0) for name in base | other}
        for name, change in sorted(changes.items(), key=lambda item: -abs(item[1]))[: args.top]:
            _say(f"  {change:+9.1f}  {name}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _options(setup: str) -> list[str]:
    mode, *rest = shlex.split(setup)
    return [f"--mode={mode}", *rest]


def _slope(setup: list[str], low: int, high: int) -> dict[str, float]:
    """Instructions per request by function: the difference of two runs over the
    difference of their counts, so what the window's edges cost (the spend log's last
    batch, the settling wait) cancels out."""
    few, many = _count(setup, low), _count(setup, high)
    return {name: (many[name] - few[name]) / (high - low) for name in few | many}


def _count(setup: list[str], requests: int) -> collections.Counter[str]:
    with tempfile.TemporaryDirectory(prefix="prismgate-opcodes-") as folder:
        out = Path(folder, "counts.json")
        command = [str(PYTHON), __file__, "--child", str(out), *setup]
        subprocess.run([*command, f"--requests={requests}"], check=True, stdout=subprocess.DEVNULL)
        return collections.Counter(json.loads(out.read_text()))


def _child(out: Path, harness_args: list[str]) -> None:
    """Run the harness here, counting between its marks; write the counts to `out`."""
    counts: collections.Counter[str] = collections.Counter()
    names: dict[Any, str] = {}
    marks = 0
    real_getppid = os.getppid

    def name_of(code: Any) -> str:
        name = names.get(code)
        if name is None:
            path = code.co_filename
            for prefix in (*sys.path[::-1], str(HERE.parent.parent)):
                if prefix and path.startswith(prefix):
                    path = path[len(prefix) :].lstrip("/")
                    break
            name = names[code] = f"{path}:{code.co_qualname}"
        return name

    def on_call(frame: FrameType, _event: str, _arg: object) -> Any:
        frame.f_trace_opcodes = True
        name = name_of(frame.f_code)

        def on_step(_frame: FrameType, event: str, _arg: object) -> Any:
            if event == "opcode":
                counts[name] += 1
            return on_step

        return on_step

    def mark() -> int:
        nonlocal marks
        marks += 1
        tracer = on_call if marks == 1 else None
        sys.settrace(tracer)
        threading.settrace(tracer)
        for thread_frame in sys._current_frames().values():  # the loop's frames, already running
            frame: FrameType | None = thread_frame
            while frame is not None and marks == 1:
                frame.f_trace = on_call(frame, "call", None)
                frame = frame.f_back
        if marks == 2:
            out.write_text(json.dumps(counts))
        return real_getppid()

    os.getppid = mark  # the harness marks its measured requests with this call
    sys.argv = [str(HERE / "harness.py"), *harness_args]
    runpy.run_path(str(HERE / "harness.py"), run_name="__main__")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), sys.argv[3:])
    else:
        main()
