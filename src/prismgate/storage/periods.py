"""Budget periods: LiteLLM's `budget_duration` strings, and when the current period ends.

A duration is a whole number followed by a unit: `s`, `m` (minutes), `h`, `d`, `w` or
`mo` (calendar months, in UTC: a period that starts on Jan 31 ends on Feb 28 or 29, then
Mar 31). Periods run back to back from the end of the last one, so a monthly budget keeps
resetting on the same day of the month however rarely it is used.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

__all__ = ["Period", "next_reset", "parse_duration"]

Unit = Literal["s", "m", "h", "d", "w", "mo"]

_DURATION = re.compile(r"(\d{1,6})(mo|s|m|h|d|w)", re.ASCII)
_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True, slots=True)
class Period:
    """A budget period: `count` units (`mo` is a calendar month)."""

    count: int
    unit: Unit

    def after(self, start: float, times: int = 1) -> float:
        """The time `times` periods after `start` (Unix seconds)."""
        if self.unit != "mo":
            return start + times * self.count * _SECONDS[self.unit]
        return _add_months(start, times * self.count)


def parse_duration(text: str) -> Period:
    """The period a duration string names ("30s", "15m", "1h", "1d", "2w", "1mo").
    `ValueError` naming what is accepted when it names none."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"budget_duration {text!r} is not a duration: use a positive whole number and "
            "one of s, m, h, d, w, mo (for example 30s, 15m, 1h, 1d, 2w, 1mo)"
        )
    return Period(int(match[1]), cast(Unit, match[2]))  # the pattern admits units alone


def next_reset(duration: str, *, now: float, anchor: float | None = None) -> float:
    """When the period holding `now` ends (always later than `now`).

    Periods run back to back from `anchor`, the end of the last known period; with no
    anchor the first period starts at `now`."""
    period = parse_duration(duration)
    if anchor is None:
        return period.after(now)
    if anchor > now:
        return anchor
    if period.unit == "mo":
        # Whole calendar months between the two, a lower bound on the periods that passed:
        # the boundary one period before it lies in an earlier month than `now`.
        then, at = _utc(anchor), _utc(now)
        months = (at.year - then.year) * 12 + at.month - then.month
        steps = months // period.count
    else:
        steps = math.floor((now - anchor) / (period.count * _SECONDS[period.unit])) + 1
    ends = period.after(anchor, steps)
    while ends <= now:  # the month estimate, or float rounding, fell one short
        steps += 1
        ends = period.after(anchor, steps)
    return ends


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _add_months(start: float, months: int) -> float:
    moment = _utc(start)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    # The 31st of a 30-day month is its last day.
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day).timestamp()
