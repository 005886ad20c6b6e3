"""What the command shows while a call runs: a spinner with the time spent, and where a
provider's remote job stands (queued, its place in the queue, the share done)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from prismgate.providers.jobs import JobProgress

__all__ = ["job_progress", "spinner"]


def spinner(what: str, console: Console) -> Any:
    """A spinner with the time spent, on `console`, while the call runs (shown only on a
    terminal; gone when the call ends). Use it as a context manager."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Elsewhere (a pipe, a log) it would leave an empty line before the result.
        disable=not console.is_terminal,
    )
    progress.add_task(escape(what), total=None)
    return progress


def job_progress(progress: Any, what: str) -> Callable[[JobProgress], None]:
    """An `on_progress` callback that writes where the job stands into `progress`'s
    spinner (a `spinner(...)`)."""

    def show(moved: JobProgress) -> None:
        where = f"{moved.state}"
        if moved.queue_position is not None:
            where += f", place {moved.queue_position + 1} in the queue"
        if moved.progress is not None:
            where += f", {moved.progress:.0%}"
        progress.update(progress.task_ids[0], description=escape(f"{what}: {where}"))

    return show
