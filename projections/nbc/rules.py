"""Next-best-contact rules: compile a rule file's data into a ``RuleSet`` (docs/RULES.md).

A file holds a ``version``, optional ``timezone`` (the customer's zone when the profile
states none), ``business_hours`` and ``suppressions``, and the ``rules``. A rule is
``id`` + ``version`` (the engine reports the version that fired), a ``purpose``
(marketing or service: the consent it needs and the suppressions it obeys), ``when``
(one trigger), ``who`` (a predicate, ``projections.predicates.language``; absent: everyone),
``what`` (the contact) and ``constraints`` (consent, quiet hours, cooldown, caps).

Errors: every rule is compiled on its own and the first error of each is kept, so one
check lists every broken rule; ``RuleErrors`` carries them, each a ``RuleError`` naming
file, rule id and version, and field path. Ids are unique within a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from projections.nbc.contact_time import DEFAULT_BUSINESS_HOURS, WEEKDAYS, BusinessHours, parse_clock_time
from projections.nbc.rule_model import (
    PURPOSES,
    TRIGGER_KINDS,
    AfterTrigger,
    Cap,
    CasePastSlaTrigger,
    ConsentRequirement,
    Constraints,
    LifecycleTrigger,
    Rule,
    RuleSet,
    Suppression,
    TouchpointTrigger,
    Trigger,
    What,
)
from projections.nbc.rule_parts import (
    compile_constraints,
    compile_what,
    compile_when,
    fields,
    identifier,
    one_of,
    whole_number,
)
from projections.predicates.errors import Path, RuleError, RuleErrors, describe
from projections.predicates.language import ALWAYS, compile_predicate

__all__ = ["compile_rules", "RuleError", "RuleErrors", "RuleSet", "Rule", "Suppression", "Trigger", "TRIGGER_KINDS",
           "TouchpointTrigger", "LifecycleTrigger", "AfterTrigger", "CasePastSlaTrigger", "What", "Constraints",
           "ConsentRequirement", "Cap"]

_T = TypeVar("_T")
_ZONE = re.compile(r"UTC\Z|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+)+\Z")


def compile_rules(data: Any, source: str) -> RuleSet:
    """The rule set ``data`` (a rule file, parsed) states, or ``RuleErrors``."""
    errors: list[RuleError] = []

    def attempt(compile_: Callable[[], _T], label: str | None = None) -> _T | None:
        try:
            return compile_()
        except RuleError as error:
            errors.append(error.within(source, label, 2))
            return None

    try:
        top = fields(data, (), ("version", "rules"), ("timezone", "business_hours", "suppressions"))
    except RuleError as error:
        raise RuleErrors([error.within(source)]) from None
    version = attempt(lambda: whole_number(top["version"], ("version",)))
    zone = attempt(lambda: _timezone(top.get("timezone", "UTC")))
    hours = attempt(lambda: _business_hours(top.get("business_hours")))
    suppressions = [attempt(partial(_suppression, raw, ("suppressions", i)), _label(raw, "suppression"))
                    for i, raw in _listed(top.get("suppressions", []), ("suppressions",), errors, source, True)]
    named: dict[str, int] = {}
    for i, suppression in enumerate(suppressions):
        if suppression is not None and suppression.id in named:
            errors.append(RuleError(f"duplicate id '{suppression.id}' (also suppressions[{named[suppression.id]}])",
                                    ("suppressions", i, "id")).within(source, f"suppression {suppression.id}", 2))
        elif suppression is not None:
            named[suppression.id] = i
    rules: list[Rule | None] = []
    first_at: dict[str, int] = {}
    for i, raw in _listed(top["rules"], ("rules",), errors, source, False):
        label = _label(raw, "rule")
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rule_id, str) and rule_id in first_at:
            errors.append(RuleError(f"duplicate id '{rule_id}' (also rules[{first_at[rule_id]}])",
                                    ("rules", i, "id")).within(source, label, 2))
            continue
        if isinstance(rule_id, str):
            first_at[rule_id] = i
        rules.append(attempt(partial(_rule, raw, ("rules", i)), label))
    if errors:
        raise RuleErrors(errors)
    return RuleSet(source, version or 0, zone or "UTC", hours or DEFAULT_BUSINESS_HOURS,
                   tuple(r for r in rules if r), tuple(s for s in suppressions if s))


def _listed(value: Any, path: Path, errors: list[RuleError], source: str, may_be_empty: bool) -> list[tuple[int, Any]]:
    if not isinstance(value, list) or not (value or may_be_empty):
        errors.append(RuleError(f"expected a {'' if may_be_empty else 'non-empty '}list, got {describe(value)}",
                                path).within(source))
        return []
    return list(enumerate(value))


def _label(raw: Any, kind: str) -> str | None:
    """``rule welcome (v2)`` when the id (and version) can be read, for every message."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    version = raw.get("version")
    stated = isinstance(version, int) and not isinstance(version, bool)
    return f"{kind} {raw['id']} (v{version})" if stated else f"{kind} {raw['id']}"


def _rule(raw: Any, path: Path) -> Rule:
    spec = fields(raw, path, ("id", "version", "purpose", "when", "what", "constraints"), ("description", "who"))
    rule_id = identifier(spec["id"], (*path, "id"))
    version = whole_number(spec["version"], (*path, "version"))
    purpose = one_of(spec["purpose"], PURPOSES, (*path, "purpose"))
    when = compile_when(spec["when"], (*path, "when"))
    who = compile_predicate(spec["who"], (*path, "who")) if "who" in spec else ALWAYS
    what = compile_what(spec["what"], (*path, "what"))
    constraints = compile_constraints(spec["constraints"], (*path, "constraints"), purpose)
    return Rule(rule_id, version, purpose, when, who, what, constraints, _description(spec, path))


def _suppression(raw: Any, path: Path) -> Suppression:
    spec = fields(raw, path, ("id", "purposes", "while"), ("description",))
    purposes = spec["purposes"]
    if not isinstance(purposes, list) or not purposes:
        raise RuleError(f"expected a non-empty list of purposes, got {describe(purposes)}", (*path, "purposes"))
    return Suppression(identifier(spec["id"], (*path, "id")),
                       frozenset(one_of(p, PURPOSES, (*path, "purposes", i)) for i, p in enumerate(purposes)),
                       compile_predicate(spec["while"], (*path, "while")), _description(spec, path))


def _description(spec: dict[str, Any], path: Path) -> str:
    text = spec.get("description", "")
    if not isinstance(text, str):
        raise RuleError(f"expected text, got {describe(text)}", (*path, "description"))
    return text.strip()


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not _ZONE.match(value):
        raise RuleError(f"expected a time zone such as Europe/Paris or UTC, got {describe(value)}", ("timezone",))
    return value


def _business_hours(data: Any) -> BusinessHours:
    if data is None:
        return DEFAULT_BUSINESS_HOURS
    path: Path = ("business_hours",)
    spec = fields(data, path, (), ("days", "start", "end"))
    days = spec.get("days", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days:
        raise RuleError(f"expected a non-empty list of days (mon..sun), got {describe(days)}", (*path, "days"))
    numbers = [WEEKDAYS.index(one_of(d, WEEKDAYS, (*path, "days", i))) for i, d in enumerate(days)]
    if len(set(numbers)) != len(numbers):
        raise RuleError("a day is listed twice", (*path, "days"))
    start = parse_clock_time(spec.get("start", "09:00"), (*path, "start"))
    end = parse_clock_time(spec.get("end", "18:00"), (*path, "end"))
    if not start < end:
        raise RuleError("business hours end after they start, on the same day", (*path, "end"))
    return BusinessHours(frozenset(numbers), start, end)
