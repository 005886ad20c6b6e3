"""Portkey's conditional-routing queries: compiled once when a config is parsed, then tested
against each request.

A query is an object whose keys are `metadata.<key>`, `params.<path>` (dots walk into
nested objects, a number indexes a list) or `url.pathname`, plus the logical `$and` / `$or`
(lists of queries). A key's value is either a bare value (meaning `$eq`) or an object of
operators: `$eq $ne $gt $gte $lt $lte $in $nin $regex $length`. Every key of a query must
hold for the query to match.

Compilation rejects every shape problem with the exact path (`...query.metadata.plan.$like`),
so evaluation never fails: it only answers true or false.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "FieldTest",
    "InvalidConfig",
    "OpTest",
    "QueryNode",
    "RequestFacts",
    "compile_conditions",
    "compile_query",
    "first_match",
    "query_matches",
]

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
OPERATORS = (*COMPARISONS, "$regex", "$length")
_ORDERING = frozenset({"$gt", "$gte", "$lt", "$lte"})
_MAX_QUERY_DEPTH = 8
# A regex runs on every request on the event loop; Python's engine backtracks, so these
# bounds keep a hostile or careless pattern to milliseconds (see _check_regex_cost).
MAX_REGEX_SUBJECT = 1000
_MAX_REGEX_LENGTH = 256
_WIDE_REPEAT = 16
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MISSING: Any = object()


class InvalidConfig(Exception):
    """A config field is wrong: `path` names it (`targets[1].weight`), `problem` says how."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class OpTest:
    """One operator and its operand (a compiled pattern for `$regex`, tests for `$length`)."""

    op: str
    operand: Any


@dataclass(frozen=True, slots=True)
class FieldTest:
    """The value at `source`/`path` must pass every test."""

    source: Literal["metadata", "params", "url"]
    path: tuple[str, ...]
    tests: tuple[OpTest, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part matches (a query object's keys, or `$and`)."""

    parts: tuple[QueryNode, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one part matches (`$or`)."""

    parts: tuple[QueryNode, ...]


QueryNode: TypeAlias = "FieldTest | AllOf | AnyOf"


@dataclass(frozen=True, slots=True)
class Condition:
    """`strategy.conditions[i]`: when `query` matches, route to the target named `then`."""

    query: QueryNode
    then: str


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a query can look at: the request's metadata, its parameters, its URL path."""

    metadata: Mapping[str, Any]
    params: Mapping[str, Any]
    url_path: str | None = None


# --- compiling ---------------------------------------------------------------------------


def compile_conditions(
    raw: Any, default: Any, names: Sequence[str | None], spath: str, path: str
) -> tuple[Condition, ...]:
    """Check a conditional branch: its targets (named `names`, under `path`) have unique
    names, and `strategy.conditions` / `strategy.default` (under `spath`) name them."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        where = _at(path, f"targets[{i}].name")
        if name is None:
            raise InvalidConfig(where, "is required in conditional mode (conditions route by name)")
        if name in seen:
            raise InvalidConfig(where, f"{name!r} repeats targets[{seen[name]}]; names must differ")
        seen[name] = i

    def check_target(value: Any, where: str) -> str:
        if not isinstance(value, str) or value not in seen:
            raise InvalidConfig(where, f"names no target: {value!r} (targets: {', '.join(seen)})")
        return value

    if not isinstance(raw, list):
        raise InvalidConfig(_at(spath, "conditions"), "must be a list of {query, then} objects")
    out = []
    for i, item in enumerate(raw):
        cpath = _at(spath, f"conditions[{i}]")
        if not isinstance(item, Mapping):
            raise InvalidConfig(cpath, "must be an object with query and then")
        for key in item:
            if key not in ("query", "then"):
                raise InvalidConfig(_at(cpath, str(key)), "is not supported by this gateway")
        if "query" not in item or "then" not in item:
            raise InvalidConfig(cpath, "needs both query and then")
        then = check_target(item["then"], _at(cpath, "then"))
        out.append(Condition(compile_query(item["query"], _at(cpath, "query")), then))
    if default is not None:
        check_target(default, _at(spath, "default"))
    return tuple(out)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def compile_query(raw: Any, path: str, depth: int = 1) -> QueryNode:
    """Validate and compile one query object found at `path`; raises `InvalidConfig`."""
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidConfig(path, 'must be a non-empty object, e.g. {"metadata.plan": "paid"}')
    if depth > _MAX_QUERY_DEPTH:
        raise InvalidConfig(path, f"nests $and/$or more than {_MAX_QUERY_DEPTH} levels deep")
    parts: list[QueryNode] = []
    for key, value in raw.items():
        here = f"{path}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidConfig(here, "must be a non-empty list of queries")
            subs = tuple(compile_query(q, f"{here}[{i}]", depth + 1) for i, q in enumerate(value))
            parts.append(AllOf(subs) if key == "$and" else AnyOf(subs))
        else:
            source, segments = _split_key(key, here)
            parts.append(FieldTest(source, segments, _compile_tests(value, here)))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _split_key(key: Any, path: str) -> tuple[Literal["metadata", "params", "url"], tuple[str, ...]]:
    if isinstance(key, str):
        root, _, rest = key.partition(".")
        if root == "metadata" and rest:
            return "metadata", (rest,)  # metadata is flat: the rest is one key, dots and all
        if root == "params" and rest and all(rest.split(".")):
            return "params", tuple(rest.split("."))
        if key == "url.pathname":
            return "url", ("pathname",)
    raise InvalidConfig(
        path, "is not a query key: use metadata.<key>, params.<name>, url.pathname, $and or $or"
    )


def _compile_tests(value: Any, path: str) -> tuple[OpTest, ...]:
    if not isinstance(value, Mapping):
        return (OpTest("$eq", value),)  # a bare value means equality
    if not value:
        raise InvalidConfig(path, 'must name at least one operator, e.g. {"$eq": "paid"}')
    return tuple(_compile_op(op, operand, f"{path}.{op}") for op, operand in value.items())


def _compile_op(op: Any, operand: Any, path: str) -> OpTest:
    if op in ("$eq", "$ne"):
        return OpTest(op, operand)
    if op in _ORDERING:
        number = _as_number(operand)
        if number is None:
            raise InvalidConfig(path, "must be a number")
        return OpTest(op, number)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise InvalidConfig(path, "must be a list of values")
        return OpTest(op, tuple(operand))
    if op == "$regex":
        return OpTest(op, _compile_regex(operand, path))
    if op == "$length":
        if isinstance(operand, int) and not isinstance(operand, bool) and operand >= 0:
            return OpTest(op, (OpTest("$eq", operand),))
        if isinstance(operand, Mapping) and operand and all(k in COMPARISONS for k in operand):
            return OpTest(op, _compile_tests(operand, path))
        raise InvalidConfig(
            path, "must be an integer >= 0 or an object of comparison operators ($eq ... $nin)"
        )
    raise InvalidConfig(path, f"is not a supported operator; use one of {', '.join(OPERATORS)}")


def _compile_regex(pattern: Any, path: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise InvalidConfig(path, "must be a string (a regular expression)")
    if len(pattern) > _MAX_REGEX_LENGTH:
        raise InvalidConfig(path, f"is longer than {_MAX_REGEX_LENGTH} characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InvalidConfig(path, f"is not a valid regular expression ({exc})") from None
    problem = _check_regex_cost(pattern)
    if problem:
        raise InvalidConfig(path, f"is too costly to test on every request: {problem}")
    return compiled


def _check_regex_cost(pattern: str) -> str | None:
    """Refuse the shapes that make backtracking explode: backreferences, a repetition
    inside a wide repetition, or more than one wide (> 16 or unbounded) repetition."""
    # The stdlib's own parser gives the pattern's structure; it is private, hence the import.
    parser: Any = importlib.import_module("re._parser")
    wide = 0

    def walk(items: Any, inside_wide: bool) -> str | None:
        nonlocal wide
        for op, arg in items:
            name = op.name
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "backreferences are not allowed"
            if name in ("MAX_REPEAT", "MIN_REPEAT"):
                _low, high, body = arg
                if inside_wide and high > 1:
                    return "a repetition inside a repetition (like (a+)+) is not allowed"
                is_wide = high > _WIDE_REPEAT
                wide += is_wide
                found = walk(body, inside_wide or is_wide)
            elif name == "SUBPATTERN":
                found = walk(arg[3], inside_wide)
            elif name == "BRANCH":
                found = next((p for alt in arg[1] if (p := walk(alt, inside_wide))), None)
            elif name in ("ASSERT", "ASSERT_NOT"):
                found = walk(arg[1], inside_wide)
            else:  # literals, classes, anchors; possessive and atomic parts never backtrack
                found = None
            if found:
                return found
        return None

    problem = walk(parser.parse(pattern), False)
    if problem is None and wide > 1:
        problem = "use at most one unbounded repetition (*, +, {n,}); split it with $and"
    return problem


# --- evaluating --------------------------------------------------------------------------


def query_matches(node: QueryNode, facts: RequestFacts) -> bool:
    """Whether the compiled query holds for this request. Never raises."""
    if isinstance(node, AllOf):
        return all(query_matches(part, facts) for part in node.parts)
    if isinstance(node, AnyOf):
        return any(query_matches(part, facts) for part in node.parts)
    value = _lookup(node, facts)
    # A missing key fails every test, $ne and $nin included (Portkey documents it so).
    return value is not _MISSING and all(_passes(t, value) for t in node.tests)


def _lookup(test: FieldTest, facts: RequestFacts) -> Any:
    if test.source == "url":
        return _MISSING if facts.url_path is None else facts.url_path
    if test.source == "metadata":
        return facts.metadata.get(test.path[0], _MISSING)
    value: Any = facts.params
    for segment in test.path:
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _passes(test: OpTest, value: Any) -> bool:
    op, operand = test.op, test.operand
    if op == "$eq":
        return _equal(value, operand)
    if op == "$ne":
        return not _equal(value, operand)
    if op == "$in":
        return any(_equal(value, item) for item in operand)
    if op == "$nin":
        return not any(_equal(value, item) for item in operand)
    if op == "$regex":
        return (
            isinstance(value, str)
            and len(value) <= MAX_REGEX_SUBJECT
            and operand.search(value) is not None
        )
    if op == "$length":
        return isinstance(value, list) and all(_passes(t, len(value)) for t in operand)
    number, bound = _as_number(value), float(operand)
    if number is None:
        return False  # ordering a non-number is simply false
    if op == "$gt":
        return number > bound
    if op == "$gte":
        return number >= bound
    if op == "$lt":
        return number < bound
    return number <= bound


def _equal(value: Any, expected: Any) -> bool:
    """Equality where a string from metadata may stand for a number or a boolean:
    "3" equals 3 and "true" equals true; otherwise types must agree (true is not 1)."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return _as_bool(value) is not None and _as_bool(value) == _as_bool(expected)
    if _is_number(value) or _is_number(expected):
        a, b = _as_number(value), _as_number(expected)
        return a is not None and a == b
    return bool(value == expected)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    """A number, or a string that reads as one (metadata values are strings)."""
    if not _is_number(value) and not (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    return None


def first_match(conditions: Sequence[Condition], facts: RequestFacts) -> str | None:
    """The `then` of the first condition that matches, in order; None when none does."""
    return next((c.then for c in conditions if query_matches(c.query, facts)), None)
