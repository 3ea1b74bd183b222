"""Predicates: the condition language next-best-contact eligibility and segments share.

A predicate is plain data (YAML-friendly), compiled once against a fact catalogue
(``projections.predicates.facts``) and then evaluated on facts mappings:

    {all: [p, ...]}           every one holds (an empty list is refused: say what you mean)
    {any: [p, ...]}           at least one holds
    {not: p}                  p does not hold: the exact negation
    {fact: NAME, OP: VALUE}   a comparison, exactly one operator

Operators, a closed set: ``eq``, ``ne`` (string, number or boolean facts, a value of the
fact's type), ``in``, ``not_in`` (a non-empty list of such values), ``gt``, ``gte``,
``lt``, ``lte`` (number facts), ``contains`` (list facts, a string), ``exists`` (true or
false). A string fact with a closed set of values (``lifecycle.stage``) only accepts
those values, so a typo is an error, not a rule that never fires.

**Absent facts.** A fact that is missing or None makes every comparison false, ``ne`` and
``not_in`` included ("present and different"); only ``exists: false`` holds. So
``{not: {fact: satisfaction.csat, lt: 3}}`` holds for a customer who never answered while
``{fact: satisfaction.csat, gte: 3}`` does not: write the one you mean.

Numbers compare exactly (``Decimal``); a boolean is never a number. Evaluation never
raises, whatever the facts mapping holds: a value of the wrong type is a comparison that
does not hold. Compilation raises ``RuleError`` at the first mistake, with its path.
"""

from __future__ import annotations

import difflib
from decimal import Decimal
from typing import Any

from projections.predicates.errors import Path, RuleError, describe
from projections.predicates.facts import FACTS, PLACEHOLDERS, Catalogue, Fact
from projections.predicates.nodes import ALWAYS, OPERATORS, All, AnyOf, Compare, Not, Predicate, Verdict, lookup

__all__ = ["compile_predicate", "Predicate", "Verdict", "ALWAYS", "OPERATORS", "COMBINATORS", "lookup",
           "RuleError"]

COMBINATORS = ("all", "any", "not")
_ORDERING = ("gt", "gte", "lt", "lte")


def compile_predicate(data: Any, path: Path | str = (), catalogue: Catalogue = FACTS) -> Predicate:
    """The predicate ``data`` states, or ``RuleError`` at the first mistake. ``path`` says
    where ``data`` sits in its file (``"who"``, ``("rules", 0, "who")``) for the message."""
    return _node(data, (path,) if isinstance(path, str) else tuple(path), catalogue)


def _node(data: Any, path: Path, catalogue: Catalogue) -> Predicate:
    if not isinstance(data, dict) or not data:
        raise RuleError(f"expected a predicate (a mapping with all, any, not or fact), got {describe(data)}", path)
    key = next((k for k in COMBINATORS if k in data), None)
    if key is None:
        return _comparison(data, path, catalogue)
    beside = [str(k) for k in data if k != key]
    if beside:
        raise RuleError(f"'{key}' stands alone in its mapping, found '{beside[0]}' beside it", path)
    if key == "not":
        inner = _node(data["not"], (*path, "not"), catalogue)
        return Not(inner, inner.facts)
    items = data[key]
    if not isinstance(items, list) or not items:
        raise RuleError(f"expected a non-empty list of predicates, got {describe(items)}", (*path, key))
    compiled = tuple(_node(item, (*path, key, i), catalogue) for i, item in enumerate(items))
    facts = frozenset().union(*(p.facts for p in compiled))
    return All(compiled, facts) if key == "all" else AnyOf(compiled, facts)


def _comparison(data: dict[Any, Any], path: Path, catalogue: Catalogue) -> Predicate:
    if "fact" not in data:
        first = str(next(iter(data)))
        raise RuleError(f"unknown key '{first}' (a predicate is all, any, not or fact){_closest(first, COMBINATORS)}",
                        (*path, first))
    name = data["fact"]
    if not isinstance(name, str):
        raise RuleError(f"expected a fact name, got {describe(name)}", (*path, "fact"))
    fact = catalogue.find(name)
    if fact is None:
        raise RuleError(f"unknown fact '{name}'{_unknown_fact_hint(name, catalogue)}", (*path, "fact"))
    ops = [str(k) for k in data if k != "fact"]
    if not ops:
        raise RuleError(f"fact '{name}' needs an operator: one of {', '.join(OPERATORS)}", path)
    for op in ops:
        if op not in OPERATORS:
            raise RuleError(f"unknown operator '{op}' (one of {', '.join(OPERATORS)}){_closest(op, OPERATORS)}",
                            (*path, op))
    if len(ops) > 1:
        raise RuleError(f"one operator per comparison, found {' and '.join(ops)}: combine comparisons with all", path)
    op = ops[0]
    value = _operand(op, data[op], name, fact, (*path, op))
    return Compare(name, op, value, frozenset({name}), tuple(name.split(".")))


def _operand(op: str, value: Any, name: str, fact: Fact, path: Path) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise RuleError(f"expected true or false, got {describe(value)}", path)
        return value
    if op == "contains":
        if fact.type != "list":
            raise RuleError(f"contains reads a list fact; '{name}' is a {fact.type}", path)
        if not isinstance(value, str):
            raise RuleError(f"expected a string, got {describe(value)}", path)
        return value
    if fact.type == "list":
        raise RuleError(f"'{name}' is a list: use contains or exists", path)
    if op in _ORDERING and fact.type != "number":
        raise RuleError(f"{op} compares numbers; '{name}' is a {fact.type}", path)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise RuleError(f"expected a non-empty list of values, got {describe(value)}", path)
        return tuple(_scalar(item, fact, (*path, i)) for i, item in enumerate(value))
    return _scalar(value, fact, path)


def _scalar(value: Any, fact: Fact, path: Path) -> Any:
    if fact.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
                float("inf"), float("-inf")):
            raise RuleError(f"expected a number, got {describe(value)}", path)
        return Decimal(str(value))
    if fact.type == "boolean":
        if not isinstance(value, bool):
            raise RuleError(f"expected true or false, got {describe(value)}", path)
        return value
    if not isinstance(value, str):
        raise RuleError(f"expected a string, got {describe(value)}", path)
    if fact.values is not None and value not in fact.values:
        raise RuleError(f"expected one of {', '.join(fact.values)}, got {value!r}"
                        f"{_closest(value, fact.values)}", path)
    return value


def _closest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_fact_hint(name: str, catalogue: Catalogue) -> str:
    """Why a name matched no declared fact: a placeholder value that is not one of its
    kind (``channels.phon.count``), or the nearest declared name."""
    parts = name.split(".")
    for pattern in catalogue.names():
        segments = pattern.split(".")
        if len(segments) != len(parts):
            continue
        fixed = all(s == p for s, p in zip(segments, parts, strict=True) if s not in PLACEHOLDERS)
        misfit = next(((p, s) for s, p in zip(segments, parts, strict=True)
                       if s in PLACEHOLDERS and not _fits(s, p)), None)
        if fixed and misfit is not None:
            part, kind = misfit
            known = PLACEHOLDERS[kind]
            allowed = f" (one of {', '.join(sorted(known))})" if isinstance(known, frozenset) else ""
            return f": '{part}' is not a {kind.strip('<>').replace('_', ' ')}{allowed}"
    names = catalogue.names()
    near = _closest(name, names)
    return near or (f" (known here: {', '.join(names)})" if len(names) <= 12 else "")


def _fits(kind: str, part: str) -> bool:
    known = PLACEHOLDERS[kind]
    return part in known if isinstance(known, frozenset) else known.match(part) is not None
