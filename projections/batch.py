"""The batch decider: the one place a batch of log records is folded.

``fold_batch(states, records, config)`` takes the stored states of the customers a batch
may touch and the batch's records, and returns a ``BatchResult``: the new states and
everything decided on the way — next-best-contact triggers, outcomes and per-rule
figures, lifecycle transitions, the change in customers per stage, RFM cells and segment
memberships, the deadline index entries, timeline rows, identity links and conflicts,
dead letters with their reasons, and the clock it ends at. Nothing is written anywhere:
every runtime is an adapter that loads states, calls ``fold_batch`` and commits the
result in one transaction (the embedded runner, the Kafka worker, both replays, the
backtest).

Business rules it holds for every runtime alike:

* **Atomic steps.** An event that fails anywhere in its fold (identity, view, lifecycle,
  the engine's decision) contributes nothing — no trigger, figure, transition, link or
  timeline row — and becomes a dead letter with the reason; the batch goes on.
* **Batch boundaries change nothing.** A clock tick visits the customers whose deadline
  has passed — the stored deadline index merged with the views the batch already
  changed — the earliest first, at most ``tick_limit``; the same log cut into other
  batches gives the same result.
* **Idempotent.** A record whose event the view already holds changes nothing (a
  producer retry) and is counted as a duplicate; it writes no timeline row.
* **Two clocks.** Live folds and replays decide in arrival order at the platform's time
  (the latest clock tick in the log, or the event's own instant if later);
  ``event_time`` (the backtest) folds a history sorted by event time and crosses every
  deadline at its own instant, as if everything had arrived on time.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from projections.identity import Identifier, Resolution, resolve, settled
from projections.lifecycle.stages import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle.stages import LifecycleConfig, Transition, dwell
from projections.nbc.engine import ContactEngine, Step, Suppression, fold_event, fold_tick, next_due
from projections.nbc.state import Fired, Outcome
from projections.segments.membership import Change as SegmentChange
from projections.segments.membership import EXITED, Memo, SegmentSet, members_of
from projections.segments.membership import changes as segment_changes
from projections.touchpoints import Touchpoint
from projections.value.rfm_cells import Cell, Change, rfm_figures
from projections.value.rfm_cells import changes as rfm_changes
from projections.view.document import STATE_FORMAT
from projections.view.fold import CustomerView, initial_view, micros

__all__ = ["FoldConfig", "Touch", "Tick", "Rejected", "Record", "Figure", "BatchResult", "fold_batch", "due",
           "DeadLetter", "Conflict", "TimelineRow", "TickFailure", "regroup"]


@dataclass(frozen=True, slots=True)
class FoldConfig:
    """Everything besides the log that decides what a fold gives. Its ``fingerprint``
    changes with any of it (and with the stored-state format and the time-zone database),
    so a worker, a replay or a backtest given another configuration can say so."""

    lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT
    engine: ContactEngine | None = None
    segments: SegmentSet | None = None
    currency: str | None = "EUR"  # the RFM cells' currency; None: the cells are not kept
    tick_limit: int = 10_000  # customers one clock tick visits at most
    fingerprint: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", hashlib.sha256(self.describe().encode()).hexdigest()[:16])

    def describe(self) -> str:
        """The configuration as text, in a fixed order: what the fingerprint digests."""
        parts = [f"state_format={STATE_FORMAT}", f"lifecycle={self.lifecycle!r}", f"currency={self.currency}",
                 f"tick_limit={self.tick_limit}"]
        engine = self.engine
        if engine is not None:
            rules = engine.rules
            parts += [f"rules={rules.version}:{rules.timezone}:{rules.business_hours!r}",
                      "rule_ids=" + ",".join(f"{r.id}@{r.version}" for r in rules.rules),
                      "suppressions=" + ",".join(s.id for s in rules.suppressions),
                      f"attribution_days={engine.attribution_days}", f"tzdata={engine.zones.version}"]
        if self.segments is not None:
            parts.append("segments=" + ",".join(f"{s.id}@{s.version}:{s.fingerprint}" for s in self.segments.segments))
        return "\n".join(parts)


class Touch(NamedTuple):
    """A touchpoint read from the log. ``customer_id`` None: resolve its identity here
    against the identifier index (embedded); else the customer ingest decided, with the
    identifiers it found owned by others (scale-out)."""

    key: int  # where the record sits in its log: a position, or a partition offset
    event: Touchpoint
    customer_id: str | None = None
    conflicts: Mapping[Identifier, str] = {}


class Tick(NamedTuple):
    """A clock tick read from the log: time has reached ``at`` (µs) for every customer."""

    key: int
    tick_id: str
    at: int


class Rejected(NamedTuple):
    """A record the adapter could not decode: a dead letter with ``reason``."""

    key: int
    reason: str


Record = Touch | Tick | Rejected

Figure = tuple[str, int, str, str]
"""(rule id, rule version, channel or "", figure): fired, suppressed:<reason>, reached,
not_reached, declined, converted."""


class DeadLetter(NamedTuple):
    key: int
    event_id: str | None
    reason: str


class Conflict(NamedTuple):
    key: int
    event_id: str
    customer_id: str
    identifiers: tuple[tuple[Identifier, str], ...]  # (identifier, its owner)


class TimelineRow(NamedTuple):
    customer_id: str  # the customer the event is shown as
    key: int
    event: Touchpoint
    natural: str  # its natural customer (``projections.merge``): who it belongs to whatever the merges


class TickFailure(NamedTuple):
    """A customer a tick could not move (its stored state did not load): left due."""

    key: int
    customer_id: str
    reason: str


@dataclass(slots=True)
class BatchResult:
    """Everything a batch changes, to be committed atomically with its last position."""

    clock: int | None  # the latest clock tick folded, once the batch is folded
    views: dict[str, CustomerView] = field(default_factory=dict)  # every customer changed, as the batch ends
    changed_at: dict[str, int] = field(default_factory=dict)  # customer -> key of the last record that changed it
    timeline: list[TimelineRow] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, value, customer)
    conflicts: list[Conflict] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    transitions: list[tuple[str, Transition, int]] = field(default_factory=list)  # (customer, transition, dwell µs)
    triggers: list[Fired] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    figures: dict[Figure, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)  # customers per stage: the change
    deadlines: dict[str, int | None] = field(default_factory=dict)  # changed customers' next deadline
    rfm: dict[Cell, Change] = field(default_factory=dict)
    segments: list[SegmentChange] = field(default_factory=list)
    visited: int = 0  # customers the batch's ticks re-evaluated
    tick_failures: list[TickFailure] = field(default_factory=list)
    received: list[int] = field(default_factory=list)  # received_at (µs) of each folded touchpoint
    removed: list[str] = field(default_factory=list)  # customers no longer shown (``regroup``: absorbed by a merge)


def fold_batch(states: Mapping[str, CustomerView | None], records: Sequence[Record], config: FoldConfig, *,
               clock: int | None = None, owners: Mapping[Identifier, str] | None = None,
               due_stored: Mapping[str, Sequence[tuple[str, int]]] | None = None, memo: Memo | None = None,
               event_time: bool = False, settle_until: int | None = None,
               roots: Mapping[str, str] | None = None) -> BatchResult:
    """Fold ``records`` (in log order) onto ``states``.

    ``states``: the stored view of every existing customer the batch may touch (a named
    customer, an owner of any of its identifiers, a customer a tick may visit); a missing
    one is new. Reading an entry may raise (a state that does not decode): the event is
    then a dead letter. ``clock``: the latest tick folded before the batch.
    ``owners``: the identifier index, for the batch's identifiers (``Touch`` without a
    customer). ``due_stored``: per tick id, the stored deadline index at or before the
    tick, earliest first — at least ``tick_limit`` + the batch's size of entries when
    there are that many. ``memo``: segment answers kept between batches (it changes what
    is computed, never the answer).

    ``event_time``: ``records`` are touchpoints sorted by event time; before each one,
    every customer due strictly before its instant is moved on at its own due instant,
    and at the end every deadline up to ``settle_until``.

    ``roots``: the merges in force (absorbed customer → the customer it is shown as,
    ``projections.merge.Merges.roots``): an event is folded onto its natural customer's
    root, and identifiers owned within one root are no conflict."""
    batch = _Batch(states, config, clock, dict(owners or {}), event_time, roots or {})
    for record in records:
        if isinstance(record, Touch):
            if event_time:
                batch.settle(micros(record.event.occurred_at) - 1)
            batch.touch(record)
        elif isinstance(record, Tick):
            batch.tick(record, (due_stored or {}).get(record.tick_id, ()))
        else:
            batch.out.dead_letters.append(DeadLetter(record.key, None, record.reason))
    if event_time and settle_until is not None:
        batch.settle(settle_until)
    return batch.finish(memo)


def due(at: int, stored: Sequence[tuple[str, int]], folded: Mapping[str, CustomerView], limit: int) -> list[str]:
    """The customers a tick at ``at`` visits: stored deadlines (customer, due_at) at or
    before it, overridden by the views the batch already changed; earliest deadline first,
    then customer id; ``limit`` at most."""
    candidates = {cid: d for cid, d in stored if cid not in folded}
    for cid, view in folded.items():
        deadline = next_due(view)
        if deadline is not None and deadline <= at:
            candidates[cid] = deadline
    return [cid for cid, _ in sorted(candidates.items(), key=lambda kv: (kv[1], kv[0]))[:limit]]


class _Batch:
    """The fold of one batch in progress: views so far, and what each step decided."""

    def __init__(self, states: Mapping[str, CustomerView | None], config: FoldConfig, clock: int | None,
                 owners: dict[Identifier, str], event_time: bool, roots: Mapping[str, str]):
        self.states, self.config, self.owners, self.event_time = states, config, owners, event_time
        self.roots = roots
        self.out = BatchResult(clock)
        self.views = self.out.views
        self.before: dict[str, CustomerView | None] = {}  # each changed customer as loaded (None: new)
        self.dues: list[tuple[int, str]] = []  # event time: a heap of (next due, customer), stale entries skipped

    def load(self, customer_id: str) -> CustomerView | None:
        view = self.views.get(customer_id)
        return view if view is not None else self.states.get(customer_id)

    def touch(self, record: Touch) -> None:
        config, out = self.config, self.out
        event = record.event
        try:  # identity, view, lifecycle and decisions succeed together, or the record is a dead letter
            resolution: Resolution = (resolve(event, self.owners, self.roots) if record.customer_id is None
                                      else settled(event, record.customer_id, record.conflicts, self.roots))
            cid = resolution.customer_id
            view = self.load(cid)
            start = view if view is not None else initial_view(cid)
            step = fold_event(start, resolution.folded, config.lifecycle, None if self.event_time else out.clock,
                              config.engine)
        except Exception as error:  # noqa: BLE001 - a bad record must not stop the batch
            out.dead_letters.append(DeadLetter(record.key, event.event_id,
                                               f"unfoldable: {type(error).__name__}: {error}"[:500]))
            return
        if step.view is start:
            out.duplicates += 1
            return
        self.apply(cid, view, step, record.key)
        natural = resolution.natural
        for identifier in resolution.links:  # only a folded event may claim identifiers
            self.owners.setdefault(identifier, natural)
            out.links.append((*identifier, natural))
        if resolution.conflicts:
            out.conflicts.append(Conflict(record.key, event.event_id, cid, resolution.conflicts))
        out.timeline.append(TimelineRow(cid, record.key, event, natural))
        out.received.append(micros(event.received_at))

    def tick(self, record: Tick, stored: Sequence[tuple[str, int]]) -> None:
        config, out = self.config, self.out
        out.clock = record.at if out.clock is None else max(out.clock, record.at)
        if config.lifecycle is None and config.engine is None:
            return
        visiting = due(record.at, stored, self.views, config.tick_limit)
        out.visited += len(visiting)
        for cid in visiting:
            self.move_on(cid, record.at, record.key)

    def move_on(self, cid: str, at: int, key: int) -> None:
        """Time reaches ``at`` for one customer."""
        try:
            view = self.load(cid)
            if view is None:
                return  # an index entry without a view cannot happen: both commit together
            step = fold_tick(view, at, self.config.lifecycle, self.config.engine)
        except Exception as error:  # noqa: BLE001 - one customer must not stop the batch: left due
            self.out.tick_failures.append(TickFailure(key, cid, f"{type(error).__name__}: {error}"[:500]))
            return
        if step.view is not view:
            self.apply(cid, view, step, key)

    def settle(self, until: int) -> None:
        """Event time: every deadline up to ``until``, each at its own instant."""
        dues, views = self.dues, self.views
        while dues and dues[0][0] <= until:
            at, cid = heapq.heappop(dues)
            if next_due(views[cid]) != at:
                continue  # superseded
            self.move_on(cid, at, -1)

    def apply(self, cid: str, before: CustomerView | None, step: Step, key: int) -> None:
        out, after = self.out, step.view
        if cid not in self.before:
            self.before[cid] = before
        old = 0 if before is None else before.lifecycle.seq
        fresh = after.lifecycle.seq - old
        if fresh > 0:
            history = after.lifecycle.history
            first_seen = after.first_seen
            # a step crossing more stages than the history keeps publishes the ones it kept
            out.transitions += [(cid, t, dwell(t, first_seen)) for t in history[max(0, len(history) - fresh):]]
        decisions = step.decisions
        if decisions:
            figures = out.figures
            for trigger in decisions.triggers:
                _count(figures, (trigger.rule, trigger.version, trigger.channel, "fired"))
            for s in decisions.suppressions:
                _count(figures, (s.rule, s.version, "", f"suppressed:{s.reason}"))
            for o in decisions.outcomes:
                _count(figures, (o.rule, o.version, o.channel, o.outcome))
            out.triggers += decisions.triggers
            out.suppressions += decisions.suppressions
            out.outcomes += decisions.outcomes
        self.views[cid] = after
        out.changed_at[cid] = key
        if self.event_time:
            following = next_due(after)
            if following is not None and (before is None or following != next_due(before)):
                heapq.heappush(self.dues, (following, cid))

    def finish(self, memo: Memo | None) -> BatchResult:
        _portfolio(self.out, {cid: (before, self.views[cid]) for cid, before in self.before.items()}, self.config, memo)
        return self.out


def regroup(moves: Mapping[str, tuple[CustomerView | None, CustomerView | None]], config: FoldConfig,
            memo: Memo | None = None) -> BatchResult:
    """What a merge or an undone merge changes: per customer, the view before and after
    (None after: an absorbed customer, shown as another from now on; None before: one
    shown alone again). The views after, the customers removed, and the portfolio's
    changes — customers per stage, RFM cells, segment entries and exits, deadlines — as
    a batch gives them, so an adapter commits it as it commits a batch."""
    moves = {cid: move for cid, move in moves.items() if move != (None, None)}  # absorbed before and after
    out = BatchResult(None)
    out.views = {cid: after for cid, (_, after) in moves.items() if after is not None}
    out.removed = sorted(cid for cid, (_, after) in moves.items() if after is None)
    _portfolio(out, moves, config, memo)
    return out


def _portfolio(out: BatchResult, moves: Mapping[str, tuple[CustomerView | None, CustomerView | None]],
               config: FoldConfig, memo: Memo | None) -> None:
    """Set ``out``'s deadlines, stage counts, RFM cells and segment changes from each
    changed customer's view before and after (None: not shown)."""
    out.deadlines = {cid: None if after is None else next_due(after) for cid, (_, after) in moves.items()}
    stages: dict[str, int] = {}
    for before, after in moves.values():
        was = None if before is None else before.lifecycle.stage
        now = None if after is None else after.lifecycle.stage
        if was != now:
            if now is not None:
                stages[now] = stages.get(now, 0) + 1
            if was is not None:
                stages[was] = stages.get(was, 0) - 1
    out.stages = {k: v for k, v in sorted(stages.items()) if v}
    if config.currency is not None:
        currency = config.currency
        out.rfm = rfm_changes((None if b is None else rfm_figures(b, currency),
                               None if a is None else rfm_figures(a, currency)) for b, a in moves.values())
    if config.segments is not None:
        kept = [(b, a) for b, a in moves.values() if a is not None]
        out.segments = segment_changes(kept, config.segments, memo)
        gone = [SegmentChange(cid, sid, config.segments.by_id[sid].version, EXITED, None)
                for cid, (b, a) in moves.items() if a is None for sid in sorted(members_of(b, config.segments))]
        if gone:
            out.segments = sorted([*out.segments, *gone], key=lambda c: (c.customer_id, c.segment))


def _count(figures: dict[Figure, int], key: Figure) -> None:
    figures[key] = figures.get(key, 0) + 1
