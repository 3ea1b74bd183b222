"""Lifecycle stages: an event-sourced state machine in which time is data.

The stages (seed 003: welcome the new customer, keep active customers at their level,
re-contact customers whose consumption drops, win back lost customers):

=============  ==========================================================================
stage          when (defaults; every figure is a ``LifecycleConfig`` field)
=============  ==========================================================================
prospect       no purchase yet
new            one purchase, less than ``new_days`` (90) ago
active         repeat purchases, the latest within k x the customer's typical interval
declining      recency past k x the typical interval (``recency``); one purchase and no
               second within ``new_days`` (``no_repeat_purchase``); or spend in the
               latest ``spend_window_days`` fell by >= 50% against the window before
               (``spend_drop``)
               with ``alive`` set (``projections.lifecycle.alive``): P(alive) below a threshold
               (``p_alive``), in place of the recency rule, for repeat buyers
lost           ``lost_days`` (365) without a purchase (``inactivity``); with ``alive``:
               P(alive) below the lower threshold (``p_alive``)
reactivated    a purchase while lost (``purchase_after_lost``); active again after the
               next purchase
=============  ==========================================================================

The typical interval is the median gap between the customer's own purchases (gaps of
``lost_days`` or more left out) once there are ``min_intervals`` gaps, else the
population default ``default_interval_days``; k is ``recency_factor``, and k x interval
is never below ``min_active_days``. The spend rule compares the customer's dominant
currency, and only when the earlier window holds ``spend_drop_min_purchases`` purchases
or more: two sparse purchases are not a consumption pattern.

Decisions:

* **Purchases only.** The stage describes buying behaviour. An open complaint or a
  cancellation is a fact on the 360° view that next-best-contact rules read on their own
  (for instance "no promotion while a complaint is open"); folding them into the stage
  would hide the consumption signal the stage exists for. A purchase of amount zero (a
  free order: a voucher, a sample) is a purchase here, as it is for recency and
  frequency. A refund is not a purchase and moves no stage: a customer whose only order
  was refunded in full still bought (they are ``new``, then ``active``…); what they are
  worth is the value figures' business (net revenue, docs/VALUE.md).
* **No high-water mark.** Stages move backwards as readily as forwards.
* **Time is data.** The stage is a pure function of the purchases and an instant
  (``judge``). Nothing reads a clock: the customer's clock is the latest event time the
  fold has seen for them, moved on by clock ticks (events in the log). Between two
  *deadlines* (``next_deadline``: the next instant at which the stage can change without
  a new event) the stage is constant, so a tick only needs the customers whose deadline
  has passed, and ``advance`` walks every deadline crossed, emitting each change at the
  exact instant it happened: how often ticks come changes when a transition is seen,
  never what it says.
* **Late events.** A purchase older than the customer's clock that contradicts nothing
  reported (it is the latest purchase and the current stage began before it) is told as
  it happened: its transition at its own instant, then every deadline crossed up to the
  clock. One that rewrites what was reported (an older stage is no longer true) gives a
  single correcting transition with reason ``late_event`` at the clock. The final stage
  after any arrival order equals the stage after in-order processing.
* **Deterministic ids.** A transition's id derives from the customer, its sequence
  number in the customer's history, the new stage and the causing event, so a replay of
  the same log gives the same transitions with the same ids.

Instants are integer microseconds (as everywhere in the view); amounts are integers in
ten-thousandths (the codec's four decimal places), so every comparison is exact.
"""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from projections.lifecycle.alive import AliveRule

__all__ = [
    "STAGES",
    "REASONS",
    "LifecycleConfig",
    "Buy",
    "Transition",
    "Lifecycle",
    "judge",
    "next_deadline",
    "advance",
    "on_purchase",
    "transition_id",
    "dwell",
    "amount_units",
    "DEFAULT",
    "DAY",
]

DAY = 86_400 * 1_000_000  # µs
STAGES = ("prospect", "new", "active", "declining", "lost", "reactivated")
REASONS = ("first_purchase", "repeat_purchases", "no_repeat_purchase", "recency", "spend_drop",
           "inactivity", "purchase_after_lost", "late_event", "p_alive")
_NAMESPACE = uuid.UUID("5d0c7f43-6a3e-4b7e-9a55-2f1d8c3e7b10")


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    new_days: float = 90
    recency_factor: float = 2.0
    default_interval_days: float = 45
    min_intervals: int = 2
    min_active_days: float = 14
    spend_window_days: float = 90
    spend_drop: float = 0.5
    spend_drop_min_purchases: int = 2
    lost_days: float = 365
    history_limit: int = 20
    purchases_limit: int = 64
    interval_gaps: int = 16  # the typical interval is the median of the latest gaps
    # P(alive) from pinned BG/NBD parameters (projections.lifecycle.alive): when set, it decides
    # declining and lost for repeat buyers in place of the recency rule (off: None)
    alive: AliveRule | None = None
    # derived, in µs
    new_us: int = field(init=False)
    default_interval_us: int = field(init=False)
    min_active_us: int = field(init=False)
    window_us: int = field(init=False)
    lost_us: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("new_days", "default_interval_days", "spend_window_days", "lost_days", "recency_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"lifecycle {name} must be positive")
        if not 0 < self.spend_drop <= 1:
            raise ValueError("lifecycle spend_drop must be in (0, 1]")
        if self.purchases_limit < 2 or self.history_limit < 1 or self.min_intervals < 1:
            raise ValueError("lifecycle limits must be at least 2 purchases, 1 history entry, 1 interval")
        for name, days in (("new_us", self.new_days), ("default_interval_us", self.default_interval_days),
                           ("min_active_us", self.min_active_days), ("window_us", self.spend_window_days),
                           ("lost_us", self.lost_days)):
            object.__setattr__(self, name, round(days * DAY))


DEFAULT = LifecycleConfig()


class Buy(NamedTuple):
    """A purchase as the lifecycle sees it; ordered as a tuple, by (at, event_id)."""

    at: int
    event_id: str
    currency: str
    amount: int  # ten-thousandths of the currency unit, > 0


class Transition(NamedTuple):
    seq: int  # 1, 2, ... in the customer's history
    at: int  # when the new stage began (µs)
    from_stage: str
    to_stage: str
    reason: str
    cause: str  # the purchase that caused it, or ``time:<deadline µs>`` for a change time alone made
    since: int | None  # when the previous stage began; None: a prospect since the customer was first seen


def dwell(t: Transition, first_seen: int | None) -> int:
    """µs spent in the previous stage (a prospect's stage began when the customer was first
    seen: read at the time of asking, so an earlier event arriving late lengthens it)."""
    start = t.since if t.since is not None else first_seen
    return 0 if start is None else max(0, t.at - start)


class Lifecycle(NamedTuple):
    stage: str = "prospect"
    since: int | None = None  # when the stage began; None: a prospect since first seen
    rule: str = "no_purchase"
    evaluated: int | None = None  # the latest instant the stage was judged at
    deadline: int | None = None  # the next instant the stage may change without an event
    buys: tuple[Buy, ...] = ()  # the latest ``purchases_limit`` purchases, oldest first
    interval: int | None = None  # typical inter-purchase interval from own history (µs)
    seq: int = 0  # transitions so far
    history: tuple[Transition, ...] = ()  # the latest ``history_limit`` transitions


def transition_id(customer_id: str, t: Transition) -> str:
    """The transition's deterministic id: a name-based UUID (version 5) of the customer,
    the sequence number, the new stage and the cause. Computed when a transition is
    published, not while folding."""
    return str(uuid.uuid5(_NAMESPACE, f"{customer_id}\x1f{t.seq}\x1f{t.to_stage}\x1f{t.cause}"))


def _threshold(interval: int | None, config: LifecycleConfig) -> int:
    typical = config.default_interval_us if interval is None else interval
    return max(config.min_active_us, round(config.recency_factor * typical))


def _span(buys: tuple[Buy, ...], at: int, config: LifecycleConfig) -> tuple[Buy, ...]:
    """The purchases in the two spend windows before ``at``: (at - 2w, at] (``at`` is at or
    after every purchase)."""
    return buys[bisect.bisect_right(buys, (at - 2 * config.window_us, "\U0010ffff")):]


def _spend_drop(buys: tuple[Buy, ...], at: int, config: LifecycleConfig) -> bool:
    span = _span(buys, at, config)
    need = config.spend_drop_min_purchases
    if len(span) < need:
        return False
    currency = span[-1].currency
    if any(b.currency != currency for b in span):  # several currencies: the one bought most
        counts: dict[str, int] = {}
        for b in span:
            counts[b.currency] = counts.get(b.currency, 0) + 1
        currency = min(counts, key=lambda c: (-counts[c], c))
    cut = at - config.window_us
    latest = earlier = n_earlier = 0
    for b in span:
        if b.currency == currency:
            if b.at > cut:
                latest += b.amount
            else:
                earlier += b.amount
                n_earlier += 1
    return n_earlier >= need and latest <= earlier * (1 - config.spend_drop)


def judge(buys: tuple[Buy, ...], interval: int | None, at: int, config: LifecycleConfig = DEFAULT) -> tuple[str, str]:
    """(stage, rule) at instant ``at``, which is at or after every purchase in ``buys``."""
    if not buys:
        return "prospect", "no_purchase"
    last = buys[-1].at
    elapsed = at - last
    if elapsed >= config.lost_us:
        return "lost", "inactivity"
    if len(buys) == 1:
        return ("new", "first_purchase") if elapsed < config.new_us else ("declining", "no_repeat_purchase")
    if config.alive is not None:
        if at >= config.alive.crossing(buys, config.alive.lost_below):  # type: ignore[operator]
            return "lost", "p_alive"
        if at >= config.alive.crossing(buys, config.alive.declining_below):  # type: ignore[operator]
            return "declining", "p_alive"
    elif elapsed >= _threshold(interval, config):
        return "declining", "recency"
    if last - buys[-2].at >= config.lost_us:
        return "reactivated", "purchase_after_lost"
    if _spend_drop(buys, at, config):
        return "declining", "spend_drop"
    return "active", "repeat_purchases"


def next_deadline(buys: tuple[Buy, ...], interval: int | None, at: int, config: LifecycleConfig = DEFAULT) -> int | None:
    """The first instant after ``at`` at which ``judge`` answers differently with the same
    purchases (None: never). Every rule compares elapsed times with fixed lengths, so the
    stage can only change at a purchase's instant plus one of them: the thresholds, or a
    purchase crossing a spend-window boundary, where the spend rule is tried."""
    if not buys:
        return None
    last = buys[-1].at
    lost = last + config.lost_us
    if lost <= at:
        return None  # lost stays lost until a purchase
    if len(buys) == 1:
        renewal = last + config.new_us
        return min(renewal, lost) if renewal > at else lost
    recency = last + _threshold(interval, config)
    if config.alive is not None:  # P(alive) in place of the recency rule (judge)
        recency = config.alive.crossing(buys, config.alive.declining_below)  # type: ignore[assignment]
        lost = min(lost, config.alive.crossing(buys, config.alive.lost_below))  # type: ignore[type-var, assignment]
        if lost <= at:
            return None
    if recency <= at or last - buys[-2].at >= config.lost_us:
        return min(recency, lost) if recency > at else lost  # the spend rule is not consulted
    span = _span(buys, at, config)
    if len(span) < config.spend_drop_min_purchases:
        return recency if recency < lost else lost
    base = min(recency, lost)
    currency = span[-1].currency
    if any(b.currency != currency for b in span):  # several currencies: judge at each crossing
        dropping = _spend_drop(buys, at, config)
        w = config.window_us
        for moment in sorted({b.at + w for b in span if b.at + w > at} | {b.at + 2 * w for b in span}):
            if moment >= base:
                break
            if _spend_drop(buys, moment, config) != dropping:
                return moment
        return base
    return _first_spend_flip(span, at, base, config)


def _first_spend_flip(span: tuple[Buy, ...], at: int, base: int, config: LifecycleConfig) -> int:
    """One currency: sweep the window crossings in time order, moving each purchase from
    the latest window to the earlier one (at + w) and out (at + 2w), and return the first
    instant before ``base`` where the spend rule's answer changes (else ``base``)."""
    w, need, keep = config.window_us, config.spend_drop_min_purchases, 1 - config.spend_drop
    cut = at - w
    latest = earlier = n_earlier = 0
    moves: list[tuple[int, int, int]] = []  # (instant, change to latest, change to earlier)
    for b in span:
        if b.at > cut:
            latest += b.amount
            moves.append((b.at + w, -b.amount, b.amount))
        else:
            earlier += b.amount
            n_earlier += 1
        moves.append((b.at + 2 * w, 0, -b.amount))
    dropping = n_earlier >= need and latest <= earlier * keep
    moves.sort()
    i, n = 0, len(moves)
    while i < n:
        moment = moves[i][0]
        if moment >= base:
            break
        while i < n and moves[i][0] == moment:
            _, d_latest, d_earlier = moves[i]
            latest += d_latest
            earlier += d_earlier
            n_earlier += (d_earlier > 0) - (d_latest == 0)
            i += 1
        if moment > at and (n_earlier >= need and latest <= earlier * keep) != dropping:
            return moment
    return base


def _interval(buys: tuple[Buy, ...], config: LifecycleConfig) -> int | None:
    recent = buys[-(config.interval_gaps + 1):]
    gaps = sorted(b.at - a.at for a, b in zip(recent, recent[1:], strict=False) if b.at - a.at < config.lost_us)
    if len(gaps) < config.min_intervals:
        return None
    mid = len(gaps) // 2
    return gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) // 2


def _moved(lc: Lifecycle, at: int, stage: str, rule: str, reason: str, cause: str, config: LifecycleConfig,
           evaluated: int, deadline: int | None, buys: tuple[Buy, ...], interval: int | None) -> Lifecycle:
    seq = lc.seq + 1
    history = (*lc.history, Transition(seq, at, lc.stage, stage, reason, cause, lc.since))
    if len(history) > config.history_limit:
        history = history[-config.history_limit:]
    return Lifecycle(stage, at, rule, evaluated, deadline, buys, interval, seq, history)


def advance(lc: Lifecycle, to: int, config: LifecycleConfig = DEFAULT) -> Lifecycle:
    """The lifecycle at instant ``to`` with no new purchase: every deadline crossed is
    judged at its own instant, and each change becomes a transition at that instant."""
    buys, interval = lc.buys, lc.interval
    while lc.deadline is not None and lc.deadline <= to:
        at = lc.deadline
        stage, rule = judge(buys, interval, at, config)
        deadline = next_deadline(buys, interval, at, config)
        if stage != lc.stage:
            # caused by time alone, whichever event or tick revealed it: the same transition
            # (and id) whatever arrived first
            lc = _moved(lc, at, stage, rule, rule, f"time:{at}", config, at, deadline, buys, interval)
        else:
            lc = Lifecycle(lc.stage, lc.since, rule, at, deadline, buys, interval, lc.seq, lc.history)
    if lc.evaluated is None or lc.evaluated < to:
        lc = Lifecycle(lc.stage, lc.since, lc.rule, to, lc.deadline, buys, interval, lc.seq, lc.history)
    return lc


def on_purchase(lc: Lifecycle, clock: int | None, buy: Buy, config: LifecycleConfig = DEFAULT) -> Lifecycle:
    """A purchase (any amount: zero is a free order). ``clock`` is the latest event time the view had
    seen before it (None for the customer's first event)."""
    if lc.evaluated is not None and (clock is None or lc.evaluated > clock):
        clock = lc.evaluated
    if clock is None or buy.at >= clock:
        if lc.deadline is not None and lc.deadline <= buy.at:  # time-driven changes first
            lc = advance(lc, buy.at, config)
        clock = buy.at
    held = lc.buys
    if not held or buy > held[-1]:  # in order: the common case
        buys = (*held, buy) if len(held) < config.purchases_limit else (*held[1:], buy)
    else:
        if buy in held:
            return lc
        buys = tuple(sorted((*held, buy)))[-config.purchases_limit:]
        if buy not in buys:  # older than every purchase kept: it cannot change any rule
            return lc
    interval = _interval(buys, config)
    if buy.at < clock and buys[-1] == buy and (lc.since is None or lc.since <= buy.at):
        # A late purchase that contradicts nothing reported (the current stage began
        # before it, and it is the latest purchase): the history is told as it happened,
        # from the purchase's own instant on to the clock.
        stage, rule = judge(buys, interval, buy.at, config)
        deadline = next_deadline(buys, interval, buy.at, config)
        if stage == lc.stage:
            lc = Lifecycle(stage, lc.since, rule, buy.at, deadline, buys, interval, lc.seq, lc.history)
        else:
            lc = _moved(lc, buy.at, stage, rule, rule, buy.event_id, config, buy.at, deadline, buys, interval)
        return advance(lc, clock, config)
    stage, rule = judge(buys, interval, clock, config)
    deadline = next_deadline(buys, interval, clock, config)
    if stage == lc.stage:
        return Lifecycle(stage, lc.since, rule, clock, deadline, buys, interval, lc.seq, lc.history)
    # on time, or a late purchase that rewrites what was reported: a correction at the clock
    reason = rule if buy.at == clock else "late_event"
    return _moved(lc, clock, stage, rule, reason, buy.event_id, config, clock, deadline, buys, interval)


def amount_units(amount: Decimal) -> int:
    """An amount in ten-thousandths (the codec keeps four decimal places)."""
    return int(amount.scaleb(4).to_integral_value())
