"""Compilers of a rule's parts: ``when``, ``what``, ``constraints`` (``projections.nbc.rules``).

Each takes the raw YAML value and its path from the root of the file, and returns the
compiled record or raises ``RuleError`` at the exact field.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from projections.lifecycle.stages import STAGES
from projections.nbc.contact_time import QuietHours, parse_clock_time, parse_duration
from projections.nbc.rule_model import (
    PURPOSES,
    TRIGGER_KINDS,
    AfterTrigger,
    Cap,
    CasePastSlaTrigger,
    ConsentRequirement,
    Constraints,
    LifecycleTrigger,
    TouchpointTrigger,
    Trigger,
    What,
)
from projections.predicates.errors import Path, RuleError, describe
from projections.predicates.facts import CONTACT_CHANNELS, EVENT_FACTS
from projections.predicates.language import ALWAYS, Predicate, compile_predicate
from projections.touchpoints import CASE_SEVERITIES, TOUCHPOINT_TYPES
from projections.view.state import PRESSURE_WINDOW

__all__ = ["fields", "identifier", "whole_number", "one_of", "compile_when", "compile_what", "compile_constraints"]

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")


def fields(data: Any, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data`` as a mapping with only these keys and every required one."""
    if not isinstance(data, dict):
        raise RuleError(f"expected a mapping with {', '.join(required + optional)}, got {describe(data)}", path)
    for key in data:
        if key not in required and key not in optional:
            close = difflib.get_close_matches(str(key), required + optional, n=1, cutoff=0.7)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (expected {', '.join(required + optional)})"
            raise RuleError(f"unknown field '{key}'{hint}", (*path, str(key)))
    for key in required:
        if key not in data:
            raise RuleError(f"'{key}' is required", path)
    return data


def identifier(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise RuleError(f"expected an identifier (lower case, digits, _), got {describe(value)}", path)
    return value


def whole_number(value: Any, path: Path, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(f"expected a whole number >= {minimum}, got {describe(value)}", path)
    return value


def one_of(value: Any, choices: tuple[str, ...], path: Path) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.7) if isinstance(value, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RuleError(f"expected one of {', '.join(choices)}, got {describe(value)}{hint}", path)
    return value


def _where(data: dict[str, Any], path: Path, event_type: str) -> Predicate:
    if "where" not in data:
        return ALWAYS
    return compile_predicate(data["where"], (*path, "where"), EVENT_FACTS[event_type])


def _stages(value: Any, path: Path) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RuleError("expected a stage or a non-empty list of stages, got an empty list", path)
    return frozenset(one_of(s, STAGES, (*path, i) if isinstance(value, list) else path) for i, s in enumerate(items))


def compile_when(data: Any, path: Path) -> Trigger:
    """Exactly one trigger kind: touchpoint, lifecycle, after or case_past_sla."""
    if not isinstance(data, dict) or len(data) != 1:
        found = f"found {', '.join(map(str, data))}" if isinstance(data, dict) and data else f"got {describe(data)}"
        raise RuleError(f"expected exactly one of {', '.join(TRIGGER_KINDS)}, {found}", path)
    kind = one_of(next(iter(data)), TRIGGER_KINDS, (*path, str(next(iter(data)))))
    body, at = data[kind], (*path, kind)
    types = tuple(TOUCHPOINT_TYPES)
    if kind == "touchpoint":
        spec = fields(body, at, ("type",), ("where",))
        event = one_of(spec["type"], types, (*at, "type"))
        return TouchpointTrigger(event, _where(spec, at, event))
    if kind == "lifecycle":
        spec = fields(body, at, (), ("to", "from"))
        if not spec:
            raise RuleError("expected 'to', 'from' or both", at)
        return LifecycleTrigger(_stages(spec["to"], (*at, "to")) if "to" in spec else frozenset(),
                                _stages(spec["from"], (*at, "from")) if "from" in spec else frozenset())
    if kind == "after":
        spec = fields(body, at, ("event", "delay"), ("where",))
        event = one_of(spec["event"], types, (*at, "event"))
        return AfterTrigger(event, parse_duration(spec["delay"], (*at, "delay")), _where(spec, at, event))
    spec = fields(body, at, ("sla",), ("where",))
    sla = fields(spec["sla"], (*at, "sla"), (), CASE_SEVERITIES)
    if not sla:
        raise RuleError(f"expected an SLA for at least one severity ({', '.join(CASE_SEVERITIES)})", (*at, "sla"))
    durations = {s: parse_duration(d, (*at, "sla", s)) for s, d in sla.items()}
    return CasePastSlaTrigger(MappingProxyType(durations), _where(spec, at, "service_case"))


def _money(value: Any, path: Path) -> Decimal:
    try:
        amount = Decimal(str(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise RuleError(f"expected an amount >= 0 such as 12.50, got {describe(value)}", path)
    return amount


def _text(spec: dict[str, Any], key: str, path: Path) -> str | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise RuleError(f"expected text, got {describe(value)}", (*path, key))
    return value


def compile_what(data: Any, path: Path) -> What:
    spec = fields(data, path, ("channel", "action", "priority", "expected_value", "valid_for"),
                  ("script", "offer", "fallback_channel"))
    channel = one_of(spec["channel"], (*CONTACT_CHANNELS, "preferred"), (*path, "channel"))
    fallback = spec.get("fallback_channel")
    if channel == "preferred" and fallback is None:
        raise RuleError("channel preferred needs a fallback_channel for customers with none", (*path, "channel"))
    if fallback is not None:
        if channel != "preferred":
            raise RuleError("only a preferred channel has a fallback", (*path, "fallback_channel"))
        one_of(fallback, CONTACT_CHANNELS, (*path, "fallback_channel"))
    return What(channel, identifier(spec["action"], (*path, "action")),
                whole_number(spec["priority"], (*path, "priority"), minimum=0),
                _money(spec["expected_value"], (*path, "expected_value")),
                parse_duration(spec["valid_for"], (*path, "valid_for")),
                _text(spec, "script", path), _text(spec, "offer", path), fallback)


def _cap(data: Any, path: Path) -> Cap:
    spec = fields(data, path, ("window", "max"))
    window = parse_duration(spec["window"], (*path, "window"), business=False)
    if window.span is None or window.span.total_seconds() * 1e6 > PRESSURE_WINDOW:
        raise RuleError(f"at most 30d: the view keeps 30 days of contacts, got {window.text!r}", (*path, "window"))
    return Cap(window, whole_number(spec["max"], (*path, "max")))


def compile_constraints(data: Any, path: Path, purpose: str) -> Constraints:
    spec = fields(data, path, ("consent",), ("quiet_hours", "cooldown", "caps"))
    consent = spec["consent"]
    if consent == "not_required" and purpose == "marketing":
        raise RuleError("a marketing contact needs consent: not_required is for service contacts only",
                        (*path, "consent"))
    if consent != "not_required":
        if not isinstance(consent, dict):
            raise RuleError(f"expected {{purpose, channel}} or not_required, got {describe(consent)}",
                            (*path, "consent"))
        stated = fields(consent, (*path, "consent"), ("purpose",), ("channel",))
        channel = stated.get("channel")
        consent = ConsentRequirement(one_of(stated["purpose"], PURPOSES, (*path, "consent", "purpose")),
                                     None if channel is None else identifier(channel, (*path, "consent", "channel")))
    quiet = None
    if "quiet_hours" in spec:
        at = (*path, "quiet_hours")
        q = fields(spec["quiet_hours"], at, ("start", "end", "mode"))
        quiet = QuietHours(parse_clock_time(q["start"], (*at, "start")), parse_clock_time(q["end"], (*at, "end")),
                           one_of(q["mode"], ("defer", "drop"), (*at, "mode")))
        if quiet.start == quiet.end:
            raise RuleError("start and end are the same time: quiet hours would be all day or none", at)
    caps = fields(spec.get("caps", {}), (*path, "caps"), (), ("per_channel", "overall"))
    cooldown = spec.get("cooldown")
    return Constraints(
        None if consent == "not_required" else consent, quiet,
        None if cooldown is None else parse_duration(cooldown, (*path, "cooldown"), business=False),
        _cap(caps["per_channel"], (*path, "caps", "per_channel")) if "per_channel" in caps else None,
        _cap(caps["overall"], (*path, "caps", "overall")) if "overall" in caps else None,
    )
