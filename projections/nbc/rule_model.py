"""The compiled form of next-best-contact rules: what a rule file means, once checked.

Immutable records a later engine reads; compiled by ``projections.nbc.rules``. Nothing
here evaluates time or delivers anything: the engine decides *when* (triggers and
constraints against the customer's clock) and the channel systems act.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar

from projections.nbc.contact_time import BusinessHours, Duration, QuietHours
from projections.predicates.language import Predicate

__all__ = ["TRIGGER_KINDS", "PURPOSES", "CONSENT_CHANNEL_OF", "TouchpointTrigger", "LifecycleTrigger",
           "AfterTrigger", "CasePastSlaTrigger", "Trigger", "What", "ConsentRequirement", "Cap", "Constraints",
           "Rule", "Suppression", "RuleSet"]

TRIGGER_KINDS = ("touchpoint", "lifecycle", "after", "case_past_sla")
PURPOSES = ("marketing", "service")
CONSENT_CHANNEL_OF = {"call": "phone", "email": "email", "sms": "sms", "mail": "mail", "visit": "visit", "web": "web"}
"""Contact channel -> the channel name consents are recorded under (consent touchpoints)."""


@dataclass(frozen=True, slots=True)
class TouchpointTrigger:
    """Fires on a touchpoint of ``type`` whose fields satisfy ``where``."""

    kind: ClassVar[str] = "touchpoint"
    type: str
    where: Predicate


@dataclass(frozen=True, slots=True)
class LifecycleTrigger:
    """Fires on a stage transition; an empty set means any stage."""

    kind: ClassVar[str] = "lifecycle"
    to: frozenset[str]
    from_: frozenset[str]

    def matches(self, from_stage: str, to_stage: str) -> bool:
        return (not self.to or to_stage in self.to) and (not self.from_ or from_stage in self.from_)


@dataclass(frozen=True, slots=True)
class AfterTrigger:
    """Fires ``delay`` after a touchpoint of type ``event`` satisfying ``where``."""

    kind: ClassVar[str] = "after"
    event: str
    delay: Duration
    where: Predicate


@dataclass(frozen=True, slots=True)
class CasePastSlaTrigger:
    """Fires when a service case satisfying ``where`` is still open after the SLA of its
    severity; a severity with no SLA never escalates."""

    kind: ClassVar[str] = "case_past_sla"
    sla: Mapping[str, Duration]  # severity -> SLA, read-only
    where: Predicate

    def sla_for(self, severity: str) -> Duration | None:
        return self.sla.get(severity)


Trigger = TouchpointTrigger | LifecycleTrigger | AfterTrigger | CasePastSlaTrigger


@dataclass(frozen=True, slots=True)
class What:
    """The contact to make. ``channel`` is a contact channel or ``preferred`` (the
    ``preferred_channel`` fact, else ``fallback_channel``)."""

    channel: str
    action: str
    priority: int
    expected_value: Decimal
    valid_for: Duration
    script: str | None = None
    offer: str | None = None
    fallback_channel: str | None = None

    def channel_for(self, facts: Mapping[str, Any]) -> str:
        if self.channel != "preferred":
            return self.channel
        chosen = facts.get("preferred_channel")
        return chosen if isinstance(chosen, str) and chosen in CONSENT_CHANNEL_OF else str(self.fallback_channel)


@dataclass(frozen=True, slots=True)
class ConsentRequirement:
    purpose: str
    channel: str | None = None  # None: the consent channel of the channel the contact goes through

    def consent_channel(self, contact_channel: str) -> str:
        return self.channel or CONSENT_CHANNEL_OF[contact_channel]


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``max`` contacts within ``window``, counting every contact (human ones too)."""

    window: Duration
    max: int


@dataclass(frozen=True, slots=True)
class Constraints:
    consent: ConsentRequirement | None  # None: stated ``not_required``
    quiet_hours: QuietHours | None = None
    cooldown: Duration | None = None  # per rule and customer
    per_channel_cap: Cap | None = None
    overall_cap: Cap | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: int
    purpose: str
    when: Trigger
    who: Predicate
    what: What
    constraints: Constraints
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.id} (v{self.version})"


@dataclass(frozen=True, slots=True)
class Suppression:
    """While ``when`` holds, no rule of the given purposes fires (one place for policies
    such as "no promotions while a complaint is open", which no new rule can forget)."""

    id: str
    purposes: frozenset[str]
    when: Predicate
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleSet:
    source: str
    version: int
    timezone: str  # the customer's zone when the profile states none
    business_hours: BusinessHours
    rules: tuple[Rule, ...]
    suppressions: tuple[Suppression, ...] = ()
    by_trigger_kind: Mapping[str, tuple[Rule, ...]] = field(init=False)
    by_id: Mapping[str, Rule] = field(init=False)

    def __post_init__(self) -> None:
        kinds = {k: tuple(r for r in self.rules if r.when.kind == k) for k in TRIGGER_KINDS}
        object.__setattr__(self, "by_trigger_kind", MappingProxyType(kinds))
        object.__setattr__(self, "by_id", MappingProxyType({r.id: r for r in self.rules}))

    def suppressed_by(self, rule: Rule, facts: Mapping[str, Any]) -> Suppression | None:
        """The first suppression that stops ``rule`` for a customer with ``facts``."""
        return next((s for s in self.suppressions if rule.purpose in s.purposes and s.when.evaluate(facts)), None)

    def eligible(self, rule: Rule, facts: Mapping[str, Any]) -> bool:
        """``who`` holds and no suppression applies (constraints are the engine's part)."""
        return rule.who.evaluate(facts) and self.suppressed_by(rule, facts) is None

    @property
    def facts(self) -> frozenset[str]:
        """Every customer fact the rules and suppressions may read (what to compute)."""
        preferred = {"preferred_channel"} if any(r.what.channel == "preferred" for r in self.rules) else set()
        return frozenset(preferred).union(*(r.who.facts for r in self.rules),
                                          *(s.when.facts for s in self.suppressions))

    def zone_of(self, facts: Mapping[str, Any]) -> str:
        """The customer's time zone name: the profile's ``timezone``, else the file's."""
        profile = facts.get("profile")
        stated = profile.get("timezone") if isinstance(profile, Mapping) else None
        return stated if isinstance(stated, str) and stated else self.timezone
