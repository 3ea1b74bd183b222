"""What a projection batch derives beside the views, for both runtimes.

A runner (embedded ``services.runner``, scale-out ``services.worker.fold``) folds events and
clock ticks; this ledger remembers each touched customer's view as it was before the
batch and collects what the batch must commit atomically with the views: the lifecycle
transitions (in fold order), the change in customers per stage, each touched customer's
next deadline (the deadline index: lifecycle deadlines and next-best-contact timers), the
change in the portfolio's RFM cells, and the next-best-contact triggers, outcomes and
figures (the ledger is the engine's sink).
``due`` merges the stored deadline index with the views already changed in the batch,
so batch boundaries never change which customers a tick visits: the earliest deadlines
first, ``limit`` at most.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from projections.lifecycle import Transition
from projections.nbc_engine import next_due
from projections.nbc_rule_model import Rule
from projections.nbc_state import Fired, Outcome
from projections.rfm_cells import Cell, Change, changes, rfm_figures
from projections.segments import Change as SegmentChange
from projections.segments import Memo, SegmentSet
from projections.segments import changes as segment_changes
from projections.view import CustomerView

log = structlog.get_logger("touchstream.batch")

__all__ = ["BatchLedger", "due"]


Figure = tuple[str, int, str, str]
"""(rule id, rule version, channel or "", figure): fired, suppressed:<reason>, reached, not_reached,
declined, converted (next-best-contact figures, counted atomically with the views)."""


@dataclass(slots=True)
class BatchLedger:
    transitions: list[tuple[str, Transition]] = field(default_factory=list)  # (customer, transition)
    triggers: list[Fired] = field(default_factory=list)  # next-best-contact triggers, in fold order
    outcomes: list[Outcome] = field(default_factory=list)
    figures: dict[Figure, int] = field(default_factory=dict)
    _before: dict[str, CustomerView | None] = field(default_factory=dict)  # view before the batch (None: new)

    # -- the next-best-contact engine's sink (projections.nbc_engine.Sink) --------------------
    def fired(self, trigger: Fired) -> None:
        self.triggers.append(trigger)
        self._count((trigger.rule, trigger.version, trigger.channel, "fired"))

    def suppressed(self, customer_id: str, rule: Rule, reason: str, at: int, detail: str | None) -> None:
        self._count((rule.id, rule.version, "", f"suppressed:{reason}"))

    def outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._count((outcome.rule, outcome.version, outcome.channel, outcome.outcome))

    def _count(self, key: Figure) -> None:
        self.figures[key] = self.figures.get(key, 0) + 1

    @property
    def _start(self) -> dict[str, str | None]:
        return {cid: None if v is None else v.lifecycle.stage for cid, v in self._before.items()}

    def record(self, before: CustomerView | None, after: CustomerView) -> None:
        """``before`` is the view as loaded or as folded so far (None: not stored yet)."""
        cid = after.customer_id
        if cid not in self._before:
            self._before[cid] = before
        old = 0 if before is None else before.lifecycle.seq
        fresh = after.lifecycle.seq - old
        if fresh > 0:
            history = after.lifecycle.history
            if fresh > len(history):  # one step crossed more stages than the history keeps
                log.error("lifecycle_transitions_beyond_history", missing=fresh - len(history))
            self.transitions += [(cid, t) for t in history[max(0, len(history) - fresh):]]

    def stage_changes(self, views: Mapping[str, CustomerView]) -> dict[str, int]:
        """customers per stage: + for the stage entered, - for the stage left (zeros left out)."""
        delta: dict[str, int] = {}
        for cid, start in self._start.items():
            end = views[cid].lifecycle.stage
            if start != end:
                delta[end] = delta.get(end, 0) + 1
                if start is not None:
                    delta[start] = delta.get(start, 0) - 1
        return {k: v for k, v in sorted(delta.items()) if v}

    def deadlines(self, views: Mapping[str, CustomerView]) -> dict[str, int | None]:
        return {cid: next_due(views[cid]) for cid in self._before}

    def rfm_changes(self, views: Mapping[str, CustomerView], currency: str) -> dict[Cell, Change]:
        """The batch's change to the portfolio's RFM cells (monetary in ``currency``)."""
        return changes((None if before is None else rfm_figures(before, currency), rfm_figures(views[cid], currency))
                       for cid, before in self._before.items())

    def segment_changes(self, views: Mapping[str, CustomerView], segments: SegmentSet,
                        memo: Memo | None = None) -> list[SegmentChange]:
        """The batch's segment entries and exits (each touched customer before and after)."""
        return segment_changes(((before, views[cid]) for cid, before in self._before.items()), segments, memo)


def due(at: int, stored: Iterable[tuple[str, int]], folded: Mapping[str, CustomerView], limit: int) -> list[str]:
    """The customers a tick at ``at`` visits: stored deadlines (customer, due_at) at or
    before it, overridden by views the batch already changed; earliest deadline first,
    then customer id; ``limit`` at most. ``stored`` must hold at least ``limit +
    len(folded)`` of the earliest stored entries when there are that many."""
    candidates = {cid: d for cid, d in stored if cid not in folded}
    for cid, view in folded.items():
        deadline = next_due(view)
        if deadline is not None and deadline <= at:
            candidates[cid] = deadline
    return [cid for cid, _ in sorted(candidates.items(), key=lambda kv: (kv[1], kv[0]))[:limit]]
