"""Records ⇄ rows: a record's `budget` and `limits` Structs spread over their columns.

Lists and dicts travel as JSON; tuples come back as tuples because `msgspec.convert`
builds each record from its row, checking every field's type on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from sqlalchemy.engine import RowMapping

from prismgate.storage.records import Budget, KeyRecord, TeamRecord, UserRecord
from prismgate.storage.sql.schema import BUDGET_COLUMNS, LIMIT_COLUMNS

__all__ = ["Holding", "apply_changes", "changed_columns", "record_from_row", "row_from_record"]

Holding = KeyRecord | TeamRecord | UserRecord
R = TypeVar("R", KeyRecord, TeamRecord, UserRecord)

_NOT_COLUMNS = ("reserved",)  # kept beside a record, never part of it


def row_from_record(record: Holding) -> dict[str, Any]:
    """Every column of the record's row."""
    row: dict[str, Any] = msgspec.to_builtins(record)
    budget = row.pop("budget")
    for field, column in BUDGET_COLUMNS.items():
        row[column] = budget[field]
    row.update(row.pop("limits"))
    return row


def record_from_row(kind: type[R], row: RowMapping) -> R:
    """The record a row holds."""
    # Column names may come as `quoted_name`, a str subclass msgspec does not take as str.
    data = {str(name): value for name, value in row.items() if name not in _NOT_COLUMNS}
    data["budget"] = {field: data.pop(column) for field, column in BUDGET_COLUMNS.items()}
    data["limits"] = {name: data.pop(name) for name in LIMIT_COLUMNS}
    return msgspec.convert(data, kind)


def changed_columns(record: Holding, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The columns (and their values in `record`) that hold these fields."""
    row = row_from_record(record)
    columns: list[str] = []
    for field in fields:
        if field == "budget":  # its spend is never written here (see `apply_changes`)
            columns.extend(column for column in BUDGET_COLUMNS.values() if column != "spend")
        elif field == "limits":
            columns.extend(LIMIT_COLUMNS)
        else:
            columns.append(field)
    return {column: row[column] for column in columns}


def apply_changes(record: R, changes: Mapping[str, Any], *, fixed: str) -> R:
    """The record with these fields changed, every value type-checked. `ValueError` for a
    field the record does not have, a value of the wrong type, or the `fixed` id."""
    if fixed in changes:
        raise ValueError(f"{fixed} cannot change")
    unknown = sorted(set(changes) - set(type(record).__struct_fields__))
    if unknown:
        raise ValueError(f"{type(record).__name__} has no field {', '.join(unknown)}")
    changes = dict(changes)
    if isinstance(changes.get("budget"), Budget):
        # Spend moves only by settles, charges and period resets, each a row update of its
        # own: a budget change read before them must not write an older spend back.
        changes["budget"] = msgspec.structs.replace(changes["budget"], spend=record.budget.spend)
    changed = msgspec.structs.replace(record, **changes)
    # `replace` checks no types: a round trip through builtins does.
    return msgspec.convert(msgspec.to_builtins(changed), type(record))
