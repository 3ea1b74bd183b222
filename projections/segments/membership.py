"""Customer segments: declarative definitions, membership kept exact batch by batch.

A segment file (``rules/segments.yaml``) lists segments, each ``{id, version,
description, where}``; ``where`` is a predicate of the language next-best-contact
eligibility uses (``projections.predicates.language``, docs/RULES.md). ``compile_segments``
checks it with the same precise errors (``RuleErrors``, one per broken segment).

**Membership is a function of the stored view alone.** A segment may read only facts
that change when the view changes: ``document`` facts and the derived facts that do not
depend on the time (``TIMELESS_DERIVED``). A fact relative to *now* (``days_since_*``,
``days_in_stage``, ``contacts_7d``) or to the rest of the portfolio (the value card:
RFM scores, lifetime value, P(alive)) would change with no event, so a member would go
stale between two visits; the compiler refuses them and says what to use instead.
Then a runner evaluates each touched customer's view before and after a batch, and the
differences are the entries and exits (``changes``): membership after any sequence of
batches equals evaluating every segment on the final views (property-tested).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from projections.nbc.rule_parts import fields, identifier, whole_number
from projections.predicates.derived import DERIVED, preferred_channel
from projections.predicates.errors import Path, RuleError, RuleErrors, describe
from projections.predicates.facts import FACTS
from projections.predicates.language import Predicate, compile_predicate
from projections.predicates.nodes import OPERATORS, All, AnyOf, Compare, Not
from projections.view.facts import SECTIONS
from projections.view.state import CustomerView

__all__ = ["Segment", "SegmentSet", "Change", "ENTERED", "EXITED", "TIMELESS_DERIVED", "compile_segments",
           "segment_facts", "members_of", "changes", "since_of", "fast_test", "Memo", "version"]

ENTERED, EXITED = "entered", "exited"
TIMELESS_DERIVED = ("open_complaints", "preferred_channel")
"""Derived facts that depend on the view only, never on the time: segments may read them."""

_INSTEAD = {
    "days_since_last_purchase": "lifecycle.stage (declining, lost: the lifecycle moves with time for you)",
    "days_since_first_purchase": "lifecycle.stage or purchases.count",
    "days_since_last_seen": "lifecycle.stage",
    "days_in_stage": "lifecycle.stage",
    "contacts_7d": "channels.<channel>.count",
    "contacts_30d": "channels.<channel>.count",
}


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    version: int
    description: str
    where: Predicate
    fingerprint: str  # of the definition's data: a change of ``where`` is a new definition
    test: Callable[[dict[str, Any]], bool] = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", fast_test(self.where))

    @property
    def label(self) -> str:
        return f"{self.id} (v{self.version})"


@dataclass(frozen=True, slots=True)
class SegmentSet:
    segments: tuple[Segment, ...] = ()
    sections: frozenset[str] = field(init=False, default=frozenset())  # top-level facts the segments read

    def __post_init__(self) -> None:
        object.__setattr__(self, "sections", frozenset(name.split(".", 1)[0] for s in self.segments
                                                       for name in s.where.facts))

    @property
    def by_id(self) -> dict[str, Segment]:
        return {s.id: s for s in self.segments}

    @property
    def facts(self) -> frozenset[str]:
        return frozenset().union(*(s.where.facts for s in self.segments))


class Change(NamedTuple):
    customer_id: str
    segment: str
    version: int
    kind: str  # entered | exited
    at: int | None  # µs: the instant of the view's latest change (``since_of``), when known


def compile_segments(data: Any, source: str) -> SegmentSet:
    """The segments ``data`` (a parsed segment file: ``{segments: [...]}``) defines, or
    ``RuleErrors`` with the first error of every broken segment."""
    try:
        top = fields(data, (), ("segments",))
    except RuleError as error:
        raise RuleErrors([error.within(source)]) from None
    listed = top["segments"]
    if not isinstance(listed, list):
        raise RuleErrors([RuleError(f"expected a list of segments, got {describe(listed)}", ("segments",), source)])
    errors: list[RuleError] = []
    compiled: list[Segment] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(listed):
        path: Path = ("segments", i)
        label = _label(raw)
        try:
            segment = _segment(raw, path)
            if segment.id in seen:
                raise RuleError(f"id '{segment.id}' is already used by segment {seen[segment.id] + 1}", (*path, "id"))
        except RuleError as error:
            errors.append(error.within(source, label, 2))
            continue
        seen[segment.id] = i
        compiled.append(segment)
    if errors:
        raise RuleErrors(errors)
    return SegmentSet(tuple(compiled))


def _label(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return f"segment {raw['id']} (v{raw.get('version', '?')})"
    return None


def _segment(raw: Any, path: Path) -> Segment:
    data = fields(raw, path, ("id", "version", "where"), ("description",))
    sid = identifier(data["id"], (*path, "id"))
    version = whole_number(data["version"], (*path, "version"))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"expected a text, got {describe(description)}", (*path, "description"))
    where = compile_predicate(data["where"], (*path, "where"))
    _only_timeless(data["where"], (*path, "where"))
    fingerprint = hashlib.sha256(json.dumps(data["where"], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Segment(sid, version, description, where, fingerprint)


def _only_timeless(data: Any, path: Path) -> None:
    """Refuse a fact whose value moves with time or with the portfolio (see the module)."""
    if isinstance(data, dict):
        if "fact" in data:
            name = data["fact"]
            fact = FACTS.find(name)
            if fact is not None and fact.source == "caller":
                raise RuleError(f"'{name}' is computed against the whole portfolio when a view is read, so "
                                "membership would go stale with no event; a segment reads the view's own facts "
                                "(e.g. purchases.by_currency.EUR.revenue, purchases.count, lifecycle.stage)",
                                (*path, "fact"))
            if fact is not None and fact.source == "derived" and name not in TIMELESS_DERIVED:
                raise RuleError(f"'{name}' depends on the current time, so membership would go stale between "
                                f"visits; use {_INSTEAD.get(name, 'a fact of the view')}", (*path, "fact"))
            return
        for key, value in data.items():
            _only_timeless(value, (*path, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _only_timeless(item, (*path, i))


def segment_facts(view: CustomerView, sections: Iterable[str] | None = None) -> dict[str, Any]:
    """What a segment reads of a customer: ``facts_of(to_document(view), timeless derived
    facts)`` — only the top-level ``sections`` asked for (all when None), built straight
    from the view: a document per customer twice a batch would cost more than the fold
    (a property test checks every catalogued fact equals the document's)."""
    wanted = _BUILDERS.keys() if sections is None else sections
    return {name: _BUILDERS[name](view) for name in wanted if name in _BUILDERS}


_BUILDERS: dict[str, Callable[[CustomerView], Any]] = {
    **SECTIONS,  # the rules' own builders (projections.view.facts): one builder of a view's facts
    "open_complaints": lambda v: DERIVED["open_complaints"](v, 0),  # timeless: the instant is not read
    "preferred_channel": preferred_channel,
}


# What each section is computed from: when these parts of a view are unchanged, so are
# the facts (the fold keeps unchanged parts as the same objects, so comparing is cheap).
_INPUTS: dict[str, Callable[[CustomerView], Any]] = {
    "customer_id": lambda v: v.customer_id,
    "touchpoints": lambda v: v.touchpoints,
    "profile": lambda v: v.profile,
    "identity": lambda v: (v.emails, v.phones),
    "channels": lambda v: v.channels,
    "purchases": lambda v: (v.purchases, v.currencies),
    "service_cases": lambda v: v.cases,
    "satisfaction": lambda v: (v.csat, v.nps),
    "consent": lambda v: v.consents,
    "lifecycle": lambda v: (v.lifecycle.stage, v.lifecycle.rule, v.lifecycle.seq, v.lifecycle.interval),
    "open_complaints": lambda v: v.cases,
    "preferred_channel": lambda v: (v.profile, v.channels),
}


def members_of(view: CustomerView | None, segments: SegmentSet) -> frozenset[str]:
    """The ids of the segments ``view`` is a member of (None: a customer not yet seen, in none)."""
    if view is None or not segments.segments:
        return frozenset()
    facts = segment_facts(view, segments.sections)
    return frozenset(s.id for s in segments.segments if s.test(facts))


def since_of(view: CustomerView) -> int | None:
    """When a member entered: the instant of the view's latest change (its latest
    touchpoint, or the stage change a clock tick made), as the view knows it."""
    instants = [i for i in (view.last_seen, view.lifecycle.since) if i is not None]
    return max(instants) if instants else None


Memo = dict[str, tuple[tuple[Any, ...], frozenset[str]]]
"""customer -> (a version of their view, the segments it is a member of): what a runner
may keep between batches so that a view folded in one batch is not evaluated again as the
next one's "before". ``version``: with one writer per customer, a view changes only by a
new event (``touchpoints`` + 1) or by a tick moving its lifecycle (``evaluated`` moves
forward), so this identifies the view's state without comparing it whole."""


def version(view: CustomerView) -> tuple[Any, ...]:
    lc = view.lifecycle
    return (view.touchpoints, lc.evaluated, lc.deadline, lc.seq, lc.stage)


def changes(moves: Iterable[tuple[CustomerView | None, CustomerView]], segments: SegmentSet,
            memo: Memo | None = None) -> list[Change]:
    """Entries and exits of a batch: each touched customer's view before it (None: not
    stored yet) and after it. Ordered by customer, then segment.

    Only segments whose inputs changed are evaluated (``_input_of``: the parts of the view
    each fact is computed from): membership cannot change otherwise, and most touchpoints
    change nothing a segment reads. ``memo`` (updated) spares evaluating a "before" view
    that an earlier batch evaluated as its "after"."""
    out: list[Change] = []
    reads = [(s, frozenset(_input_of(name) for name in s.where.facts)) for s in segments.segments]
    distinct = frozenset().union(*(inputs for _, inputs in reads))  # each read once per customer
    everything, versions = list(segments.segments), {s.id: s.version for s in segments.segments}
    for before, after in sorted(moves, key=lambda move: move[1].customer_id):
        cid = after.customer_id
        known = memo.get(cid) if memo is not None else None
        held = known[1] if known is not None and before is not None and known[0] == version(before) else None
        if before is None:
            moved = everything
        else:
            changed = {read for read in distinct if read(before) != read(after)}
            moved = [s for s, inputs in reads if not inputs.isdisjoint(changed)] if changed else []
        if held is None and before is not None:  # kept in the memo: every segment's answer
            held = _members(before, everything if memo is not None else moved)
        was = held or frozenset()
        now = (was - {s.id for s in moved}) | _members(after, moved)
        if memo is not None:
            memo[cid] = (version(after), now)
        for sid in sorted(was ^ now):
            out.append(Change(cid, sid, versions[sid], ENTERED if sid in now else EXITED,
                              since_of(after)))
    return out


def _facts(view: CustomerView, segments: list[Segment]) -> dict[str, Any]:
    return segment_facts(view, {name.split(".", 1)[0] for s in segments for name in s.where.facts})


def _members(view: CustomerView, segments: list[Segment]) -> frozenset[str]:
    if not segments:
        return frozenset()
    facts = _facts(view, segments)
    return frozenset(s.id for s in segments if s.test(facts))


def fast_test(predicate: Predicate) -> Callable[[dict[str, Any]], bool]:
    """``predicate.evaluate`` as nested closures over plain-dict facts (what
    ``segment_facts`` builds): the same operators and absent-fact rule, without the
    per-node dispatch, since segments are evaluated for every touched customer (a
    property test checks both answer alike)."""
    if isinstance(predicate, All):
        items = tuple(fast_test(p) for p in predicate.items)
        return lambda facts: all(test(facts) for test in items)
    if isinstance(predicate, AnyOf):
        items = tuple(fast_test(p) for p in predicate.items)
        return lambda facts: any(test(facts) for test in items)
    if isinstance(predicate, Not):
        inner = fast_test(predicate.item)
        return lambda facts: not inner(facts)
    if isinstance(predicate, Compare):
        parts, operator, expected = predicate.parts or tuple(predicate.fact.split(".")), OPERATORS[predicate.op], \
            predicate.value
        absent = predicate.op == "exists" and not expected

        def compare(facts: dict[str, Any]) -> bool:
            value: Any = facts
            for part in parts:
                if not isinstance(value, dict):
                    return absent
                value = value.get(part)
            return absent if value is None else operator(value, expected)
        return compare
    return predicate.evaluate


def _input_of(name: str) -> Callable[[CustomerView], Any]:
    section, _, rest = name.partition(".")
    if section == "lifecycle":
        return _LIFECYCLE_INPUTS[rest]
    if section == "purchases":
        return _PURCHASE_COUNT if rest == "count" else _CURRENCIES
    return _INPUTS[section]


def _PURCHASE_COUNT(v: CustomerView) -> Any:  # noqa: N802 - named like the constants beside it
    return v.purchases


def _CURRENCIES(v: CustomerView) -> Any:  # noqa: N802
    return v.currencies


_LIFECYCLE_INPUTS: dict[str, Callable[[CustomerView], Any]] = {
    "stage": lambda v: v.lifecycle.stage,
    "rule": lambda v: v.lifecycle.rule,
    "transitions": lambda v: v.lifecycle.seq,
    "typical_interval_days": lambda v: v.lifecycle.interval,
}
