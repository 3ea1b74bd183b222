"""The next-best-contact engine: from what just happened to the contacts worth making.

Pure and deterministic, like the rest of the core: it reads no clock and no store. The
runtimes call ``fold_event`` and ``fold_tick`` where they used ``evolve`` and ``tick``;
each folds the view, then lets the engine react to the step:

1. **Outcomes.** A touchpoint carrying the ``trigger_id`` of a trigger the customer was
   issued records what became of it (reached, not reached, declined); a purchase within
   the attribution window of the latest trigger issued before it converts that trigger
   (the one it names, if it names one).
2. **Candidates.** A touchpoint fires the ``touchpoint`` rules of its type whose
   ``where`` holds; it starts the ``after`` timers of its type, and a service-case event
   (re)starts the SLA timer of its case. A lifecycle transition the step revealed fires
   the ``lifecycle`` rules it matches. Every timer due by the step's instant fires, at
   its own due instant: delays run out, cases still open pass their SLA, and contacts
   deferred past quiet hours come back.
3. **Decision.** Each candidate is judged at its own instant, on the view after the
   step: ``who`` (eligibility), the file's suppressions, the channel (``preferred``
   resolved), consent on that channel for the rule's purpose, validity (a contact whose
   ``valid_for`` ran out before the platform's time is ``expired``), quiet hours in the
   customer's zone (``defer`` makes a timer, ``drop`` a suppression), the rule's
   cooldown, then the caps. Caps count **every** contact in the window: the view's
   contact ledger (human calls, visits and customer-initiated contacts included) plus
   the triggers issued that no touchpoint has answered yet.
4. **Arbitration.** The candidates that survive compete: score = priority × expected
   value, then priority, then rule id. The best one per channel wins, provided the
   caps still allow it once the step's earlier winners are counted; the others are
   losers, recorded in the winner's explanation with the reason.

A trigger's id is a name-based UUID of the customer, the rule, its version and the
candidate's key (the event, transition, case or delay behind it), so a replay of the
same log with the same rules gives the same triggers, and a batch folded again after a
crash publishes the same ids. Decisions depend on the order events arrived in (a consent
withdrawn late cannot un-send yesterday's email): they are facts of the log's order,
not of event time; the view itself stays order-insensitive.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from projections.codec import format_instant
from projections.lifecycle.stages import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle.stages import LifecycleConfig, Transition, transition_id
from projections.nbc.contact_time import due_at
from projections.nbc.rule_model import Rule, RuleSet
from projections.nbc.state import (
    ISSUED_LIMIT,
    SUPPRESSED_LIMIT,
    TIMERS_LIMIT,
    ContactState,
    Fired,
    Issued,
    Outcome,
    Suppressed,
    Timer,
)
from projections.predicates.facts import CONTACT_CHANNEL_OF, CONTACT_CHANNELS, event_facts
from projections.touchpoints import Call, Email, Purchase, ServiceCase, Touchpoint
from projections.view.facts import view_facts
from projections.view.fold import CustomerView, evolve, instant_of, micros, tick

__all__ = ["ContactEngine", "TimeZones", "Decisions", "Suppression", "Step", "fold_event", "fold_tick", "next_due",
           "trigger_id",
           "OUTCOME_OF_CALL", "OUTCOME_OF_EMAIL", "REASONS"]

_NAMESPACE = uuid.UUID("6f1d9a52-4c1e-5b0a-9d7e-2b8c1f3e7a40")
_DAY_US = 86_400_000_000

REASONS = ("not_eligible", "suppression", "no_channel", "no_consent", "consent_withdrawn", "expired",
           "quiet_hours", "cooldown", "cap_per_channel", "cap_overall", "arbitration", "rule_removed",
           "case_closed", "timers_full")
"""Why a candidate did not become a trigger (``suppression`` carries the suppression id
in the detail; ``arbitration`` names the winner)."""

OUTCOME_OF_CALL = {"reached": "reached", "callback_requested": "reached", "no_answer": "not_reached",
                   "voicemail": "not_reached", "busy": "not_reached", "declined": "declined"}
OUTCOME_OF_EMAIL = {"delivered": "reached", "opened": "reached", "clicked": "reached", "replied": "reached",
                    "bounced": "not_reached"}


def trigger_id(customer_id: str, rule: str, version: int, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{customer_id}\x1f{rule}\x1f{version}\x1f{key}"))


def next_due(view: CustomerView) -> int | None:
    """The next instant the view may change without an event: a lifecycle deadline or a
    next-best-contact timer (what the deadline index holds)."""
    a, b = view.lifecycle.deadline, view.contact.next_due
    return a if b is None else b if a is None else min(a, b)


class TimeZones(Protocol):
    """The time-zone database the engine reads quiet hours and business time in. The shell
    gives a pinned one (``services.zones``: the ``tzdata`` package, loaded explicitly, never
    the host's), and its version is part of the configuration's fingerprint, so a replay
    on another machine decides the same."""

    version: str

    def get(self, name: str) -> tzinfo | None: ...


class Suppression(NamedTuple):
    """A candidate a constraint stopped: ``detail`` names the suppression, the winner of an
    arbitration, the consent, or the instant a cooldown began."""

    customer_id: str
    rule: str
    version: int
    reason: str
    at: int
    detail: str | None


@dataclass(slots=True)
class Decisions:
    """What one step decided, in order: returned with the step's view, never written
    anywhere while folding, so a step that fails later contributes nothing."""

    triggers: list[Fired] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def fired(self, trigger: Fired) -> None:
        self.triggers.append(trigger)

    def suppressed(self, customer_id: str, rule: Any, reason: str, at: int, detail: str | None) -> None:
        self.suppressions.append(Suppression(customer_id, rule.id, rule.version, reason, at, detail))

    def outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def __bool__(self) -> bool:
        return bool(self.triggers or self.suppressions or self.outcomes)


class Step(NamedTuple):
    """A view after one event or tick, and what the engine decided on the way."""

    view: CustomerView
    decisions: Decisions


class _Candidate(NamedTuple):
    rule: Rule
    key: str
    at: int
    cause: dict[str, Any]
    where: tuple[tuple[str, Any], ...] = ()  # the event facts the trigger's ``where`` read
    deferred: bool = False
    origin: int | None = None  # when the candidate first became due (a deferred one keeps it); None: ``at``


class _Judged(NamedTuple):
    candidate: _Candidate
    channel: str
    valid_until: int
    score: Decimal
    facts: Mapping[str, Any]  # read again with ``who.explain`` for a winner's explanation
    consent: dict[str, Any] | None


def _json_value(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True, slots=True)
class ContactEngine:
    """The compiled rules plus the engine's own settings."""

    rules: RuleSet
    zones: TimeZones
    attribution_days: float = 7.0
    _touchpoint: Mapping[str, tuple[Rule, ...]] = field(init=False)
    _after: Mapping[str, tuple[Rule, ...]] = field(init=False)

    def __post_init__(self) -> None:
        by_type: dict[str, list[Rule]] = {}
        after: dict[str, list[Rule]] = {}
        for rule in self.rules.by_trigger_kind["touchpoint"]:
            by_type.setdefault(rule.when.type, []).append(rule)  # type: ignore[union-attr]
        for rule in self.rules.by_trigger_kind["after"]:
            after.setdefault(rule.when.event, []).append(rule)  # type: ignore[union-attr]
        object.__setattr__(self, "_touchpoint", {k: tuple(v) for k, v in by_type.items()})
        object.__setattr__(self, "_after", {k: tuple(v) for k, v in after.items()})

    @property
    def watches_stages(self) -> bool:
        return bool(self.rules.by_trigger_kind["lifecycle"])

    @property
    def attribution_us(self) -> int:
        return round(self.attribution_days * _DAY_US)

    # -- the two entry points ----------------------------------------------------------------
    def react(self, before: CustomerView | None, after: CustomerView, event: Touchpoint | None, now: int,
              sink: Decisions, until: int | None = None) -> CustomerView:
        """``after`` with its contact state moved on by one step: the touchpoint ``event``
        (None for a clock tick), decided at the platform's time ``now``; timers due by
        ``until`` (default ``now``) fire."""
        state = after.contact
        horizon = now if until is None else until
        if self._quiet(before, after, event, horizon):
            return after
        cid = after.customer_id
        candidates: list[_Candidate] = []
        timers = list(state.timers)
        issued = list(state.issued)
        escalated = state.escalated
        if event is not None:
            at = micros(event.occurred_at)
            issued = self._outcomes(issued, event, at, cid, sink)
            facts: dict[str, Any] = {}  # computed below when a rule will read it
            rules = self._touchpoint.get(event.type, ())
            delayed = self._after.get(event.type, ())
            if rules or delayed:
                facts = event_facts(event)
            for rule in rules:
                where = rule.when.where  # type: ignore[union-attr]
                if where.evaluate(facts):  # the facts it read are only listed for a candidate
                    candidates.append(_Candidate(rule, f"tp:{event.event_id}", at,
                                                 {"kind": "touchpoint", "id": event.event_id, "type": event.type},
                                                 tuple(where.explain(facts).read)))
            for rule in delayed:
                if rule.when.where.evaluate(facts):  # type: ignore[union-attr]
                    due = self._due(after, at, rule.when.delay)  # type: ignore[union-attr]
                    bisect.insort(timers, Timer(due, rule.id, f"after:{event.event_id}", "after", "after",
                                                event.event_id, due))
            if isinstance(event, ServiceCase):
                timers, escalated = self._sla_timers(after, event.case_id, timers, escalated)
        old_seq = 0 if before is None else before.lifecycle.seq
        fresh = after.lifecycle.seq - old_seq
        if fresh > 0 and self.rules.by_trigger_kind["lifecycle"]:
            for t in after.lifecycle.history[max(0, len(after.lifecycle.history) - fresh):]:
                candidates += self._lifecycle(cid, t)
        while timers and timers[0].due <= horizon:
            timer = timers.pop(0)
            if timer.kind == "sla":  # decided once, whatever the decision
                escalated = escalated | {f"{timer.rule}\x1f{timer.key}"}
            candidate = self._from_timer(after, timer, sink)
            if candidate is not None:
                candidates.append(candidate)
        if not candidates and timers == list(state.timers) and issued == list(state.issued) \
                and escalated == state.escalated:
            return after
        last_fired = dict(state.last_fired)
        suppressed = list(state.suppressed)
        if candidates:
            self._decide(after, candidates, now, timers, issued, last_fired, suppressed, sink)
        if len(timers) > TIMERS_LIMIT:
            for timer in timers[TIMERS_LIMIT:]:
                dropped = self.rules.by_id.get(timer.rule)
                if dropped is not None:
                    sink.suppressed(cid, dropped, "timers_full", timer.due, timer.key)
            del timers[TIMERS_LIMIT:]
        oldest = now - self.attribution_us - 60 * _DAY_US  # caps read +-30 days around a contact still valid
        issued = [i for i in issued if i.valid_until >= oldest or i.at >= oldest][-ISSUED_LIMIT:]
        return after._replace(contact=ContactState(tuple(timers), tuple(sorted(last_fired.items())), escalated,
                                                   tuple(issued), tuple(suppressed[-SUPPRESSED_LIMIT:])))

    def _quiet(self, before: CustomerView | None, after: CustomerView, event: Touchpoint | None,
               horizon: int) -> bool:
        """Nothing for the engine in this step (most steps): no rule on the event's type,
        no outcome to record, no transition a rule watches, no timer due."""
        state = after.contact
        if state.timers and state.timers[0].due <= horizon:
            return False
        if self.rules.by_trigger_kind["lifecycle"] and after.lifecycle.seq != (0 if before is None
                                                                                else before.lifecycle.seq):
            return False
        if event is None:
            return True
        if event.type in self._touchpoint or event.type in self._after or isinstance(event, ServiceCase):
            return False
        return not state.issued or (event.trigger_id is None and not isinstance(event, Purchase))

    # -- candidates ----------------------------------------------------------------------------
    def _lifecycle(self, cid: str, t: Transition) -> list[_Candidate]:
        matching = [r for r in self.rules.by_trigger_kind["lifecycle"]
                    if r.when.matches(t.from_stage, t.to_stage)]  # type: ignore[union-attr]
        if not matching:
            return []
        cause = {"kind": "lifecycle", "id": transition_id(cid, t), "from": t.from_stage, "to": t.to_stage,
                 "reason": t.reason}
        return [_Candidate(rule, f"lc:{t.at}:{t.to_stage}", t.at, cause) for rule in matching]

    def _sla_timers(self, view: CustomerView, case_id: str, timers: list[Timer],
                    escalated: frozenset[str]) -> tuple[list[Timer], frozenset[str]]:
        """The SLA timers of one case, as the view now holds it: none once resolved, one
        per SLA rule for its severity while open (a severity change restarts the count
        from the case's opening with the new SLA)."""
        case = dict(view.cases).get(case_id)
        closed = case is None or not case.is_open
        kept = [t for t in timers if not (t.cause_kind == "case_past_sla" and t.cause_id == case_id
                                          and (t.kind == "sla" or closed))]
        if closed:  # a resolved case escalates no more: forget its escalations (the state stays bounded)
            escalated = frozenset(k for k in escalated if f"\x1fsla:{case_id}:" not in k)
        if case is not None and case.is_open:  # not closed
            for rule in self.rules.by_trigger_kind["case_past_sla"]:
                sla = rule.when.sla_for(case.severity)  # type: ignore[union-attr]
                key = f"sla:{case_id}:{case.severity}:{case.opened_at}"
                if sla is None or f"{rule.id}\x1f{key}" in escalated:
                    continue
                due = self._due(view, case.opened_at, sla)
                bisect.insort(kept, Timer(due, rule.id, key, "sla", "case_past_sla", case_id, due))
        return kept, escalated

    def _from_timer(self, view: CustomerView, timer: Timer, sink: Decisions) -> _Candidate | None:
        rule = self.rules.by_id.get(timer.rule)
        if rule is None:
            sink.suppressed(view.customer_id, _removed(timer), "rule_removed", timer.due, timer.key)
            return None  # the rule left the file: its pending timers lapse
        cause = {"kind": timer.cause_kind, "id": timer.cause_id}
        where: tuple[tuple[str, Any], ...] = ()
        if timer.cause_kind == "case_past_sla":
            case = dict(view.cases).get(timer.cause_id)
            if case is None or not case.is_open:  # resolving a case drops its timers; kept for safety
                sink.suppressed(view.customer_id, rule, "case_closed", timer.due, timer.cause_id)
                return None
        if timer.kind == "sla":
            case = dict(view.cases)[timer.cause_id]
            facts = {"case_id": timer.cause_id, "status": case.status, "severity": case.severity,
                     "category": case.category}
            verdict = rule.when.where.explain(facts)  # type: ignore[union-attr]
            if not verdict.holds:
                sink.suppressed(view.customer_id, rule, "not_eligible", timer.due, "where")
                return None
            where = tuple(verdict.read)
            cause = {**cause, "severity": case.severity, "sla": rule.when.sla_for(case.severity).text}  # type: ignore
        elif timer.kind == "after":
            cause = {**cause, "delay": rule.when.delay.text}  # type: ignore[union-attr]
        return _Candidate(rule, timer.key, timer.due, cause, where, deferred=timer.kind == "deferred",
                          origin=timer.origin)

    # -- outcomes --------------------------------------------------------------------------------
    def _outcomes(self, issued: list[Issued], event: Touchpoint, at: int, cid: str, sink: Decisions) -> list[Issued]:
        if not issued:
            return issued
        if event.trigger_id is not None:
            for n, i in enumerate(issued):
                if i.trigger_id == event.trigger_id:
                    outcome = _outcome_of(event)
                    if outcome == "converted" and not i.at <= at < i.at + self.attribution_us:
                        outcome = "reached"  # bought outside the attribution window: reached, not converted
                    # the contact itself stands for the trigger in caps only on the trigger's channel
                    held = i._replace(answered=True) if CONTACT_CHANNEL_OF.get(event.channel.value) == i.channel \
                        else i
                    if outcome == "converted" and not i.converted:
                        held = held._replace(converted=True)
                        sink.outcome(Outcome(i.trigger_id, cid, i.rule, i.version, i.channel, "converted", at,
                                             event.event_id))
                    elif outcome not in (None, "converted") and i.outcome is None:
                        held = held._replace(outcome=outcome)
                        sink.outcome(Outcome(i.trigger_id, cid, i.rule, i.version, i.channel, outcome, at,
                                             event.event_id))
                    issued[n] = held
                    return issued
        if isinstance(event, Purchase) and event.amount > 0:
            window = self.attribution_us
            for n in range(len(issued) - 1, -1, -1):  # the latest trigger issued before the purchase
                i = issued[n]
                if i.at <= at < i.at + window:
                    if not i.converted:
                        issued[n] = i._replace(converted=True)
                        sink.outcome(Outcome(i.trigger_id, cid, i.rule, i.version, i.channel, "converted", at,
                                             event.event_id))
                    break
        return issued

    # -- the decision --------------------------------------------------------------------------
    def _decide(self, view: CustomerView, candidates: list[_Candidate], now: int, timers: list[Timer],
                issued: list[Issued], last_fired: dict[str, int], suppressed: list[Suppressed], sink: Decisions) -> None:
        cid = view.customer_id
        facts_at: dict[int, Mapping[str, Any]] = {}
        verdicts: dict[tuple[int, int], bool] = {}
        consents: dict[tuple[str, str], Any] | None = None
        blockers: dict[tuple[int, str], Any] = {}
        judged: list[_Judged] = []
        stopped: list[dict[str, Any]] = []

        def stop(c: _Candidate, reason: str, detail: str | None = None) -> None:
            sink.suppressed(cid, c.rule, reason, c.at, detail)
            suppressed.append(Suppressed(c.at, c.rule.id, c.rule.version, reason, c.key))
            stopped.append({"rule": c.rule.id, "version": c.rule.version, "reason": reason,
                            **({"detail": detail} if detail else {})})

        for c in sorted(candidates, key=lambda c: (c.at, c.rule.id, c.key)):
            # cheapest checks first, the reason recorded being the first that stops it: cooldown,
            # channel and consent, who, suppressions, quiet hours, validity, caps
            cooldown = c.rule.constraints.cooldown
            last = last_fired.get(c.rule.id)
            if cooldown is not None and last is not None and c.at < last + _span_us(cooldown):
                stop(c, "cooldown", _iso(last))
                continue
            facts = facts_at.get(c.at)
            if facts is None:
                facts = facts_at[c.at] = view_facts(view, c.at)
            channel = c.rule.what.channel_for(facts)
            if channel not in _CONTACT_CHANNELS:
                stop(c, "no_channel")
                continue
            consent = None
            requirement = c.rule.constraints.consent
            if requirement is not None:
                if consents is None:
                    consents = dict(view.consents)
                held = consents.get((requirement.consent_channel(channel), requirement.purpose))
                if held is None or held.status != "granted":
                    stop(c, "no_consent" if held is None else "consent_withdrawn",
                         f"{requirement.consent_channel(channel)}/{requirement.purpose}")
                    continue
                consent = {"channel": requirement.consent_channel(channel), "purpose": requirement.purpose,
                           "status": held.status, "at": _iso(held.stamp[0]), "event_id": held.stamp[1],
                           "source": held.source}
            known = (c.at, id(c.rule.who))  # rules often share an eligibility: evaluated once per instant
            eligible = verdicts.get(known)
            if eligible is None:
                eligible = verdicts[known] = c.rule.who.evaluate(facts)
            if not eligible:
                stop(c, "not_eligible")
                continue
            blocking = (c.at, c.rule.purpose)
            blocker = blockers[blocking] if blocking in blockers else blockers.setdefault(
                blocking, self.rules.suppressed_by(c.rule, facts))
            if blocker is not None:
                stop(c, "suppression", blocker.id)
                continue
            # validity runs from when the candidate first became due: a deferral past quiet
            # hours, or an old event arriving today, never extends it
            origin = c.at if c.origin is None else c.origin
            quiet, valid_for = c.rule.constraints.quiet_hours, c.rule.what.valid_for
            if quiet is not None or valid_for.span is None:
                zone = self._zone_of(facts)
            valid_until = origin + _span_us(valid_for) if valid_for.span is not None else micros(
                due_at(instant_of(origin).astimezone(zone), valid_for, self.rules.business_hours))
            if valid_until <= now:
                stop(c, "expired", _iso(valid_until))
                continue
            # quiet hours are judged when the contact would be issued: a candidate decided late
            # (a late event, a delayed tick) is issued now, not at its instant
            if quiet is not None and not c.deferred and quiet.contains(
                    (issuing := instant_of(max(c.at, now)).astimezone(zone)).time()):
                if quiet.mode == "drop":
                    stop(c, "quiet_hours", "dropped")
                    continue
                resume = micros(quiet.ends_after(issuing))
                if resume >= valid_until:  # it would be stale by the time quiet hours end
                    stop(c, "expired", _iso(valid_until))
                    continue
                bisect.insort(timers, Timer(resume, c.rule.id, c.key, "deferred", c.cause["kind"],
                                            str(c.cause.get("id", "")), origin))
                continue  # deferred: decided again when the quiet hours end
            reason = self._capped(view, c.rule, channel, c.at, issued)
            if reason is not None:
                stop(c, reason)
                continue
            score = c.rule.what.priority * c.rule.what.expected_value
            judged.append(_Judged(c, channel, valid_until, score, facts, consent))
        judged.sort(key=lambda j: (-j.score, -j.candidate.rule.what.priority, j.candidate.rule.id, j.candidate.key))
        winners: dict[str, Fired] = {}
        losers: dict[str, list[dict[str, Any]]] = {}
        for j in judged:
            c = j.candidate
            held = winners.get(j.channel)
            if held is not None:
                stop(c, "arbitration", held.trigger_id)
                losers.setdefault(j.channel, []).append(
                    {"rule": c.rule.id, "version": c.rule.version, "score": str(j.score), "lost_to": held.trigger_id})
                continue
            last = last_fired.get(c.rule.id)
            cooldown = c.rule.constraints.cooldown
            if cooldown is not None and last is not None and c.at < last + _span_us(cooldown):
                stop(c, "cooldown", _iso(last))  # the same rule already won in this decision
                continue
            reason = self._capped(view, c.rule, j.channel, c.at, issued)
            if reason is not None:
                stop(c, reason)
                continue
            what = c.rule.what
            tid = trigger_id(cid, c.rule.id, c.rule.version, c.key)
            read = tuple(c.rule.who.explain(j.facts).read) + c.where
            if what.channel == "preferred":  # the channel was chosen from a fact: show it
                read += (("preferred_channel", j.facts.get("preferred_channel")),)
            winners[j.channel] = Fired(tid, cid, c.rule.id, c.rule.version, c.rule.purpose, j.channel, what.action,
                                       what.script, what.offer, what.priority, what.expected_value, j.score, c.at,
                                       j.valid_until, now, c.cause,
                                       tuple((k, _json_value(v)) for k, v in read), (), (), j.consent)
            issued.append(Issued(tid, c.rule.id, c.rule.version, j.channel, c.at, j.valid_until))
            last_fired[c.rule.id] = max(c.at, last_fired.get(c.rule.id, c.at))
        for channel, fired in winners.items():
            sink.fired(fired._replace(losers=tuple(losers.get(channel, ())), suppressed=tuple(stopped)))

    def _capped(self, view: CustomerView, rule: Rule, channel: str, at: int, issued: list[Issued]) -> str | None:
        """``cap_per_channel`` or ``cap_overall`` when a contact at ``at`` would make some
        window of the cap's width hold more than its maximum."""
        for cap, reason, only in ((rule.constraints.per_channel_cap, "cap_per_channel", channel),
                                  (rule.constraints.overall_cap, "cap_overall", None)):
            if cap is None:
                continue
            # both sides of ``at``: a contact decided late (a late event) must not fill a
            # window that already holds contacts made after it
            span = _span_us(cap.window)
            since, until = at - span, at + span
            count = sum(1 for m in view.contacts if since < m.occurred_at < until
                        and (only is None or CONTACT_CHANNEL_OF.get(m.channel) == only))
            count += sum(1 for i in issued if since < i.at < until and not i.answered
                         and (only is None or i.channel == only))
            if count >= cap.max:
                return reason
        return None

    def _zone(self, name: str | None) -> tzinfo:
        """``name``, else the rule file's zone, else UTC (an unknown name falls through)."""
        zones = self.zones
        return (name and zones.get(name)) or zones.get(self.rules.timezone) or UTC

    def _zone_of(self, facts: Mapping[str, Any]) -> tzinfo:
        return self._zone(self.rules.zone_of(facts))

    def _due(self, view: CustomerView, at: int, duration: Any) -> int:
        """``at`` plus ``duration`` (business time in the customer's zone)."""
        if duration.span is not None:  # calendar time: no zone needed
            return at + _span_us(duration)
        profile = dict(view.profile).get("timezone")
        zone = self._zone(profile.value if profile is not None else None)
        return micros(due_at(instant_of(at).astimezone(zone), duration, self.rules.business_hours))


_CONTACT_CHANNELS = frozenset(CONTACT_CHANNELS)


class _RemovedRule(NamedTuple):
    """What the sink needs of a rule that left the file (its id; version unknown: 0)."""

    id: str
    version: int = 0


def _removed(timer: Timer) -> Any:
    return _RemovedRule(timer.rule)


@lru_cache(maxsize=1024)
def _span_us(duration: Any) -> int:
    return duration.span // _ONE_US  # type: ignore[no-any-return]  # timedelta // timedelta: an int


_ONE_US = instant_of(1) - instant_of(0)


def _iso(us: int) -> str:
    return format_instant(instant_of(us))


def _outcome_of(event: Touchpoint) -> str | None:
    match event:
        case Purchase():
            return "converted"
        case Call():
            return OUTCOME_OF_CALL.get(event.outcome, "reached")
        case Email():
            if event.status == "sent":
                return None  # our own send is not an outcome
            return OUTCOME_OF_EMAIL.get(event.status, "reached")
        case _:
            return "reached"  # a visit, a form, a survey answered: the customer was reached


# -- the fold with the engine -------------------------------------------------------------------
def fold_event(view: CustomerView, event: Touchpoint, lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT,
               clock: int | None = None, engine: ContactEngine | None = None) -> Step:
    """``evolve``, then the engine's reaction to the event (when an engine is given).

    The platform's time when deciding is the later of the event's instant and the clock
    (the latest tick in the log): an event stamped a month ago that arrives while the
    clock says today is decided today, so what its rules proposed a month ago has
    expired, whatever the hour it arrives. (Not the customer's latest activity: one event
    stamped ahead by a skewed device would make every later contact of theirs look stale.)

    Timers already due at the event's instant fire first, on the view without the event:
    a delay that ran out before a purchase is decided on what was known when it ran out,
    whether a clock tick or the event came first (what the backtest does exactly)."""
    decisions = Decisions()
    if engine is None:
        return Step(evolve(view, event, lifecycle, clock), decisions)
    at = micros(event.occurred_at)
    now = max(at, clock or at)
    if event.event_id not in view.seen:
        deadline = view.lifecycle.deadline
        if lifecycle is not None and deadline is not None and deadline < at and engine.watches_stages:
            # stages the event would cross first are decided on the view without it, as a
            # tick at that instant would have (and the backtest does)
            before = view
            view = tick(view, at - 1, lifecycle)
            view = engine.react(before, view, None, now, decisions, until=at)
        due = view.contact.next_due
        if due is not None and due <= at:
            view = engine.react(view, view, None, now, decisions, until=at)
    after = evolve(view, event, lifecycle, clock)
    if after is view:
        return Step(after, decisions)
    return Step(engine.react(view, after, event, now, decisions), decisions)


def fold_tick(view: CustomerView, at: int, lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT,
              engine: ContactEngine | None = None) -> Step:
    """``tick``, then the timers due by ``at`` (when an engine is given)."""
    decisions = Decisions()
    after = tick(view, at, lifecycle)
    if engine is None:
        return Step(after, decisions)
    due = view.contact.next_due
    if after is view and (due is None or due > at):
        return Step(view, decisions)
    return Step(engine.react(view, after, None, at, decisions), decisions)
