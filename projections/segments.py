"""Customer segments: declarative definitions, membership kept exact batch by batch.

A segment file (``rules/segments.yaml``) lists segments, each ``{id, version,
description, where}``; ``where`` is a predicate of the language next-best-contact
eligibility uses (``projections.predicates``, docs/RULES.md). ``compile_segments``
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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from projections.derived_facts import preferred_channel
from projections.facts import FACTS, facts_of
from projections.nbc_rule_parts import fields, identifier, whole_number
from projections.predicates import Predicate, compile_predicate
from projections.rule_errors import Path, RuleError, RuleErrors, describe
from projections.view_document import to_document
from projections.view_state import CustomerView

__all__ = ["Segment", "SegmentSet", "Change", "ENTERED", "EXITED", "TIMELESS_DERIVED", "compile_segments",
           "segment_facts", "members_of", "changes", "since_of"]

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

    @property
    def label(self) -> str:
        return f"{self.id} (v{self.version})"


@dataclass(frozen=True, slots=True)
class SegmentSet:
    segments: tuple[Segment, ...] = ()

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


def segment_facts(view: CustomerView) -> dict[str, Any]:
    """What a segment reads of a customer: the document's facts and the timeless derived ones."""
    open_complaints = sum(1 for _, c in view.cases if c.is_open and c.category == "complaint")
    return facts_of(to_document(view), {"open_complaints": open_complaints,
                                        "preferred_channel": preferred_channel(view)})


def members_of(view: CustomerView | None, segments: SegmentSet) -> frozenset[str]:
    """The ids of the segments ``view`` is a member of (None: a customer not yet seen, in none)."""
    if view is None or not segments.segments:
        return frozenset()
    facts = segment_facts(view)
    return frozenset(s.id for s in segments.segments if s.where.evaluate(facts))


def since_of(view: CustomerView) -> int | None:
    """When a member entered: the instant of the view's latest change (its latest
    touchpoint, or the stage change a clock tick made), as the view knows it."""
    instants = [i for i in (view.last_seen, view.lifecycle.since) if i is not None]
    return max(instants) if instants else None


def changes(moves: Iterable[tuple[CustomerView | None, CustomerView]], segments: SegmentSet) -> list[Change]:
    """Entries and exits of a batch: each touched customer's view before it (None: not
    stored yet) and after it. Ordered by customer, then segment."""
    out: list[Change] = []
    versions = {s.id: s.version for s in segments.segments}
    for before, after in sorted(moves, key=lambda move: move[1].customer_id):
        was, now = members_of(before, segments), members_of(after, segments)
        cid = after.customer_id
        out += [Change(cid, sid, versions[sid], ENTERED, since_of(after)) for sid in sorted(now - was)]
        out += [Change(cid, sid, versions[sid], EXITED, since_of(after)) for sid in sorted(was - now)]
    return out
