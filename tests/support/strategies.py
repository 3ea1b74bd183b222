"""Hypothesis strategies for touchpoints of one customer (any type, any time, any order)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from projections.batch import Record, Tick
from projections.touchpoints import CustomerRef, Touchpoint
from projections.view.fold import micros
from tests.support import touchpoints as tp

REF = CustomerRef(customer_id="c-1", emails=("ana@example.com",))
moments = st.integers(min_value=0, max_value=60 * 24 * 120).map(lambda m: tp.T0 + timedelta(minutes=m))
money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2).map(str)


def _one(event_id: str, kind: int, when, amount: str, small: int, flag: bool) -> Touchpoint:  # type: ignore[no-untyped-def]
    match kind:
        case 0:
            return tp.purchase(event_id, when, amount, margin=amount if flag else None, ref=REF,
                               currency="EUR" if small % 3 else "GBP")
        case 1:
            return tp.call(event_id, when, "outbound" if flag else "inbound",
                           ("reached", "no_answer", "voicemail")[small % 3], ref=REF)
        case 2:
            return tp.case(event_id, f"case-{small % 3}", ("opened", "updated", "resolved")[small % 3], when,
                           category="complaint" if flag else None, ref=REF)
        case 3:
            return tp.survey(event_id, when, csat=1 + small % 5, nps=small % 11 if flag else None, ref=REF)
        case 4:
            return tp.consent(event_id, "granted" if flag else "withdrawn", when, ("email", "sms")[small % 2], ref=REF)
        case 5:
            return tp.email(event_id, when, ("sent", "opened", "clicked")[small % 3], ref=REF)
        case 6:
            return tp.visit(event_id, when, "company" if flag else "customer", ref=REF)
        case 8:  # money given back, for an order that may come before or after it, or never
            return tp.refund(event_id, when, f"o-ev-{small:03}", amount, margin=amount if flag else None, ref=REF,
                             currency="EUR" if small % 3 else "GBP")
        case _:
            return tp.web_form(event_id, when, {"first_name": f"N{small}", "city": "Lyon" if flag else "Nantes"}, ref=REF)


@st.composite
def customer_histories(draw: st.DrawFn, max_size: int = 40) -> list[Touchpoint]:
    """Distinct event ids; times may collide (ties are broken by event id)."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    return [
        _one(f"ev-{i:03}", draw(st.integers(0, 8)), draw(moments), draw(money), draw(st.integers(0, 30)),
             draw(st.booleans()))
        for i in range(n)
    ]


def in_arrival_order(draw: st.DrawFn, events: list[Touchpoint], touch: Callable[[int, Touchpoint], Record],
                     max_ticks: int = 12) -> list[Record]:
    """``events`` in any arrival order as a log (``touch`` makes each record from its key),
    clock ticks moving forward among them."""
    order = draw(st.permutations(range(len(events))))
    ticks = sorted(draw(st.lists(st.integers(0, 60 * 24 * 150), max_size=max_ticks)))
    slots = sorted(draw(st.lists(st.integers(0, len(events)), min_size=len(ticks), max_size=len(ticks))))
    log: list[Record] = []
    pending = list(zip(slots, ticks, strict=True))
    for n, i in enumerate(order):
        while pending and pending[0][0] <= n:
            _, minutes = pending.pop(0)
            log.append(tick(len(log), tp.T0 + timedelta(minutes=minutes)))
        log.append(touch(len(log), events[i]))
    for _, minutes in pending:
        log.append(tick(len(log), tp.T0 + timedelta(minutes=minutes)))
    return log


def tick(key: int, when: datetime) -> Tick:
    return Tick(key, f"tick/0/{when.isoformat()}", micros(when))
