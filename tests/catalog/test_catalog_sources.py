"""Where the catalog's facts come from, and whether they are still fresh.

Every entry of the providers and modes listed in VERIFIED_SCOPE, and every entry that
carries a shutdown, must name its sources (the provider's own pages first) and the day
they were last checked against them. An entry checked more than MAX_AGE_DAYS before
today (the real clock: this test starts failing by itself as the facts age) is stale;
re-check it with the provider's documentation, then update `checked`.
"""

from __future__ import annotations

import datetime

from prismgate.catalog.model_info import ModelInfo
from tests.catalog.test_catalog_data import CATALOG

# Prices and models change every few months at these providers.
MAX_AGE_DAYS = 180
# (provider, mode) pairs whose every entry must be sourced. Grow it as blocks get checked.
VERIFIED_SCOPE = frozenset(
    {
        ("openai", "image_generation"),
        ("vertex_ai", "image_generation"),
        ("gemini", "image_generation"),
    }
)


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def _in_scope(info: ModelInfo) -> bool:
    return (info.provider, info.mode) in VERIFIED_SCOPE or info.shutdown_date is not None


def _problem(info: ModelInfo, today: datetime.date) -> str | None:
    """Why `info`'s facts cannot be trusted today, or None."""
    if not info.sources:
        return "no sources"
    if not all(source.startswith("https://") for source in info.sources):
        return f"a source is not an https URL: {info.sources}"
    if not info.checked:
        return "no checked date"
    try:
        checked = datetime.date.fromisoformat(info.checked)
    except ValueError:
        return f"checked {info.checked!r} is not an ISO date"
    if checked > today:
        return f"checked {info.checked} is in the future"
    age = (today - checked).days
    if age > MAX_AGE_DAYS:
        return f"checked {info.checked}, {age} days ago (more than {MAX_AGE_DAYS})"
    return None


def test_catalog_facts_are_sourced_and_fresh() -> None:
    today = _today()
    problems = {
        key: problem
        for key, info in CATALOG.items()
        if (_in_scope(info) or info.sources or info.checked)
        and (problem := _problem(info, today)) is not None
    }
    assert not problems, (
        f"{len(problems)} catalog entries are unverified or stale (today is {today}); check "
        "them against the provider's documentation and update `sources` / `checked` in "
        "src/prismgate/catalog/models/<provider>.json:\n"
        + "\n".join(f"  {key}: {problem}" for key, problem in sorted(problems.items()))
    )


def test_shutdowns_are_well_formed() -> None:
    for key, info in CATALOG.items():
        if info.shutdown_date is None:
            assert info.replacement is None, f"{key}: a replacement without a shutdown date"
            continue
        datetime.date.fromisoformat(info.shutdown_date)
        if info.replacement is not None:
            provider = key.partition("/")[0]
            assert info.replacement != key.partition("/")[2], f"{key} replaces itself"
            replacement = CATALOG.get(f"{provider}/{info.replacement}")
            if replacement is not None:  # a catalogued replacement must still be served
                assert replacement.shutdown_date is None or (
                    replacement.shutdown_date > info.shutdown_date
                ), f"{key}: its replacement {info.replacement} shut down first"


def test_the_check_flags_missing_and_stale_facts() -> None:
    today = datetime.date(2026, 12, 3)
    assert _problem(ModelInfo(), today) == "no sources"
    fresh = ModelInfo(sources=("https://example.com/models",), checked="2026-11-01")
    assert _problem(fresh, today) is None
    stale = ModelInfo(sources=("https://example.com/models",), checked="2026-01-02")
    assert _problem(stale, today) == "checked 2026-01-02, 335 days ago (more than 180)"
    assert _problem(ModelInfo(sources=("https://example.com",)), today) == "no checked date"
