"""The evaluation side of predicates: compiled nodes, operators, fact lookup.

Semantics (stated in full in ``projections.predicates.language``): an absent fact (missing or None)
makes every comparison false except ``exists: false``; numbers compare exactly as
``Decimal``; a boolean is never a number; evaluation never raises on any facts mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

__all__ = ["OPERATORS", "Predicate", "Verdict", "ALWAYS", "All", "AnyOf", "Not", "Compare", "lookup"]

_MISSING = object()


def lookup(facts: Mapping[str, Any], name: str | tuple[str, ...]) -> Any:
    """The value at a dotted fact name (or its parts), or None when any step is missing."""
    value: Any = facts
    for part in name.split(".") if isinstance(name, str) else name:
        if not isinstance(value, dict) and not isinstance(value, Mapping):  # dict first: the ABC check is slow
            return None
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return None
    return value


def _number(value: Any) -> Decimal | int | None:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]  # an int compares exactly with a Decimal (the common case)
    if kind is Decimal:
        return value if value.is_finite() else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None  # a NaN compares with nothing
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Decimal):
        number = _number(actual)
        return number is not None and number == expected
    return type(actual) is type(expected) and actual == expected


def _order(test: Callable[[Decimal | int, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        number = _number(actual)
        return number is not None and test(number, expected)
    return compare


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _same,
    "ne": lambda a, e: not _same(a, e),
    "in": lambda a, e: any(_same(a, x) for x in e),
    "not_in": lambda a, e: not any(_same(a, x) for x in e),
    "gt": _order(lambda a, e: a > e),
    "gte": _order(lambda a, e: a >= e),
    "lt": _order(lambda a, e: a < e),
    "lte": _order(lambda a, e: a <= e),
    "contains": lambda a, e: isinstance(a, (list, tuple, set, frozenset)) and e in a,
    "exists": lambda a, e: e,  # reached only when the fact is present
}


class Verdict(NamedTuple):
    """A predicate's answer and the facts it read to reach it, in reading order."""

    holds: bool
    read: tuple[tuple[str, Any], ...]


class Predicate:
    """A compiled predicate. ``evaluate`` answers; ``explain`` also says what it read
    (facts skipped by short-circuiting are not listed); ``facts`` names what it may read."""

    facts: frozenset[str] = frozenset()

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        return self._holds(facts, None)

    def explain(self, facts: Mapping[str, Any]) -> Verdict:
        read: list[tuple[str, Any]] = []
        return Verdict(self._holds(facts, read), tuple(read))

    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Always(Predicate):
    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        return True


ALWAYS: Predicate = _Always()
"""The predicate of an absent ``who``: every customer."""


@dataclass(frozen=True, slots=True)
class All(Predicate):
    items: tuple[Predicate, ...]
    facts: frozenset[str]

    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        return all(p._holds(facts, read) for p in self.items)


@dataclass(frozen=True, slots=True)
class AnyOf(Predicate):
    items: tuple[Predicate, ...]
    facts: frozenset[str]

    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        return any(p._holds(facts, read) for p in self.items)


@dataclass(frozen=True, slots=True)
class Not(Predicate):
    item: Predicate
    facts: frozenset[str]

    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        return not self.item._holds(facts, read)


@dataclass(frozen=True, slots=True)
class Compare(Predicate):
    fact: str
    op: str
    value: Any
    facts: frozenset[str]
    parts: tuple[str, ...] = ()  # the fact name split once, at compile time

    def _holds(self, facts: Mapping[str, Any], read: list[tuple[str, Any]] | None) -> bool:
        actual = lookup(facts, self.parts or self.fact)
        if read is not None:
            read.append((self.fact, actual))
        if actual is None:
            return self.op == "exists" and not self.value
        return OPERATORS[self.op](actual, self.value)
