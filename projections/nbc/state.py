"""The next-best-contact state a customer's view carries, and what a decision emits.

The engine (``projections.nbc.engine``) keeps, per customer, only what its decisions need
later: pending timers (``after`` delays, service-case SLAs, contacts deferred past quiet
hours), when each rule last fired (cooldowns), the SLA escalations already made, the
latest triggers issued (caps, outcomes, attribution) and the latest suppressions (so a
customer card can say why nothing was proposed). Every instant is in microseconds since
the epoch, like the rest of the view. Records are NamedTuples: immutable, ordered as
tuples, cheap to build.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["TIMERS_LIMIT", "ISSUED_LIMIT", "SUPPRESSED_LIMIT", "Timer", "Issued", "Suppressed", "ContactState",
           "Fired", "Outcome", "OUTCOMES", "contact_state", "contact_from"]

TIMERS_LIMIT = 64  # pending timers kept per customer: the earliest ones
ISSUED_LIMIT = 32  # latest triggers kept per customer (caps, outcomes and attribution read them)
SUPPRESSED_LIMIT = 20  # latest suppressions kept per customer (the card's "why not")

OUTCOMES = ("reached", "not_reached", "declined", "converted")


class Timer(NamedTuple):
    """Ordered as tuples: by due instant first."""

    due: int
    rule: str  # rule id
    key: str  # the candidate's identity: it names the trigger (after:<event>, sla:<case>..., or the deferred key)
    kind: str  # after | sla | deferred
    cause_kind: str  # what made the candidate: touchpoint, lifecycle, after, case_past_sla
    cause_id: str  # the event id, transition id or case id behind it
    origin: int  # when the candidate first became due (a deferred contact keeps it)


class Issued(NamedTuple):
    trigger_id: str
    rule: str
    version: int
    channel: str
    at: int  # when the contact became actionable
    valid_until: int
    outcome: str | None = None  # reached | not_reached | declined (the first reported)
    converted: bool = False
    answered: bool = False  # a touchpoint carrying its id was recorded: that contact stands for it in caps


class Suppressed(NamedTuple):
    at: int
    rule: str
    version: int
    reason: str
    key: str


class ContactState(NamedTuple):
    timers: tuple[Timer, ...] = ()  # sorted by due
    last_fired: tuple[tuple[str, int], ...] = ()  # rule id -> latest trigger instant, sorted by rule id
    escalated: frozenset[str] = frozenset()  # SLA candidate keys already decided
    issued: tuple[Issued, ...] = ()  # oldest first
    suppressed: tuple[Suppressed, ...] = ()  # oldest first

    @property
    def next_due(self) -> int | None:
        return self.timers[0].due if self.timers else None


class Fired(NamedTuple):
    """A trigger, as decided: everything its published document and explanation say."""

    trigger_id: str
    customer_id: str
    rule: str
    version: int
    purpose: str
    channel: str
    action: str
    script: str | None
    offer: str | None
    priority: int
    expected_value: Decimal
    score: Decimal
    at: int  # actionable from
    valid_until: int
    decided_at: int  # the platform's time when the decision was taken
    cause: dict[str, Any]
    facts: tuple[tuple[str, Any], ...]  # the facts the rule read, in reading order, with their values
    losers: tuple[dict[str, Any], ...]  # candidates of the same decision that lost the arbitration
    suppressed: tuple[dict[str, Any], ...]  # candidates of the same decision that constraints stopped
    consent: dict[str, Any] | None  # the consent record in force (None: the rule needs none)


class Outcome(NamedTuple):
    """What became of a trigger: a touchpoint carrying its id, or a purchase it converted."""

    trigger_id: str
    customer_id: str
    rule: str
    version: int
    channel: str
    outcome: str  # reached | not_reached | declined | converted
    at: int
    event_id: str


def contact_state(state: ContactState) -> list[Any]:
    """The stored form (JSON-ready lists)."""
    return [[list(t) for t in state.timers], [list(p) for p in state.last_fired], sorted(state.escalated),
            [list(i) for i in state.issued], [list(s) for s in state.suppressed]]


def contact_from(raw: list[Any] | None) -> ContactState:
    if raw is None:  # stored before the engine existed
        return ContactState()
    timers, fired, escalated, issued, suppressed = raw
    return ContactState(tuple(Timer(*t) for t in timers), tuple((r, at) for r, at in fired), frozenset(escalated),
                        tuple(Issued(*i) for i in issued), tuple(Suppressed(*s) for s in suppressed))
