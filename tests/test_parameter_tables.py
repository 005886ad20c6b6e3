"""The README's parameter tables are the code's own: generated from the providers' field
tables and the catalog, and checked here so they cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from prismgate.catalog import builtin_catalog
from prismgate.providers import get_provider, provider_names
from prismgate.providers.tables import BEGIN, END, parameter_tables, updated_readme

README = Path(__file__).parents[1] / "README.md"
FAMILIES = [
    (name, family)
    for name in provider_names()
    if (generation := get_provider(name).image_generation) is not None
    for family in generation.families
]


def test_readme_tables_match_the_code() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text
    assert updated_readme(text) == text, (
        "README.md's parameter tables are out of date: run "
        "`.venv/bin/python -m prismgate.providers.tables README.md`"
    )


def test_every_image_provider_declares_its_families() -> None:
    # mock/ serves any name and is not a real provider: it has no table.
    declared = {name for name, _ in FAMILIES}
    expected = {
        name
        for name in provider_names()
        if get_provider(name).image_generation is not None
        and get_provider(name).default_info is None
    }
    assert expected <= declared, expected - declared


@pytest.mark.parametrize(("provider", "family"), FAMILIES, ids=lambda v: getattr(v, "name", v))
def test_family_models_are_catalogued_and_fields_say_what_they_do(provider, family) -> None:  # type: ignore[no-untyped-def]
    catalog = builtin_catalog()
    for model in family.models:
        prefix, _, name = model.partition("/")
        assert prefix == provider, model
        info = catalog.lookup(name, provider)
        assert info is not None and info.image is not None, model
    for param, field in family.fields.items():
        # A converted value must be described, or the README would not say what happens.
        assert field.convert is None or field.note, (provider, family.name, param)


def test_tables_name_every_family() -> None:
    tables = parameter_tables()
    for provider, family in FAMILIES:
        assert f"#### {provider}: {family.name}" in tables
