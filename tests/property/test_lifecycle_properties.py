"""Properties of lifecycle stages that replay and late events rely on."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.lifecycle.stages import DAY, judge
from projections.view.document import from_state, to_state
from projections.view.fold import CustomerView, evolve, initial_view, micros, tick
from tests.support.touchpoints import T0, at, call, purchase

ZERO = micros(T0)

# (kind, day, amount): purchases, calls and clock ticks over four years
steps = st.lists(
    st.tuples(st.sampled_from(["purchase", "purchase", "call", "tick"]), st.integers(0, 1500),
              st.sampled_from(["5.00", "40.00", "100.00", "250.00"])),
    min_size=1, max_size=25,
)


def run(history, view: CustomerView | None = None, start: int = 0) -> CustomerView:  # type: ignore[no-untyped-def]
    """Fold like a runner: ticks visit the customer, and every event is folded with the
    latest tick seen so far (the log's clock)."""
    view = view or initial_view("c-1")
    clock = None
    for i, (kind, d, amount) in enumerate(history, start=start):
        if kind == "tick":
            clock = max(clock or 0, ZERO + d * DAY)
            view = tick(view, ZERO + d * DAY)
        elif kind == "call":
            view = evolve(view, call(f"c{i}-{d}", at(d)), clock=clock)
        else:
            view = evolve(view, purchase(f"p{i}-{d}", at(d), amount=amount), clock=clock)
    return view


def in_time_order(history):  # type: ignore[no-untyped-def]
    return sorted(history, key=lambda s: (s[1], s[0] == "tick"))  # at equal instants, events before ticks


@settings(max_examples=300)
@given(steps, st.randoms(use_true_random=False))
def test_the_final_stage_after_any_arrival_order_is_the_in_order_stage(history, random) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(history)
    random.shuffle(shuffled)
    assert run(shuffled).lifecycle.stage == run(in_time_order(history)).lifecycle.stage


@settings(max_examples=300)
@given(steps, st.randoms(use_true_random=False))
def test_the_stage_is_always_a_batch_recomputation_over_every_purchase(history, random) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(history)
    random.shuffle(shuffled)
    lc = run(shuffled).lifecycle
    clock = max(d for _, d, _ in history) * DAY + ZERO
    assert (lc.stage, lc.rule) == judge(lc.buys, lc.interval, clock)
    assert len(lc.buys) == len({(d, i) for i, (k, d, a) in enumerate(history) if k == "purchase"})


@settings(max_examples=200)
@given(steps, st.integers(1, 24))
def test_a_replay_gives_the_same_transitions_with_the_same_ids_across_stored_states(history, cut) -> None:  # type: ignore[no-untyped-def]
    whole = run(history)
    cut = min(cut, len(history))
    stored = from_state(orjson.loads(orjson.dumps(to_state(run(history[:cut])))))  # stop, store, resume
    ticks = [d for k, d, _ in history[:cut] if k == "tick"]  # the runner keeps its clock: the latest tick
    clock = [("tick", max(ticks), "")] if ticks else []
    resumed = run(clock + history[cut:], stored, start=cut - len(clock))
    assert resumed.lifecycle == whole.lifecycle


@settings(max_examples=200)
@given(steps.filter(lambda h: any(k == "purchase" for k, _, _ in h)), st.lists(st.integers(0, 1500), max_size=10))
def test_ticks_change_when_a_transition_is_seen_never_what_it_says(history, ticks) -> None:  # type: ignore[no-untyped-def]
    events = [s for s in history if s[0] != "tick"]
    end = max(d for _, d, _ in history) + 1
    with_ticks = in_time_order(events + [("tick", d, "") for d in ticks if d < end] + [("tick", end, "")])
    without = in_time_order(events + [("tick", end, "")])

    def said(view: CustomerView) -> list[tuple]:  # type: ignore[type-arg]
        return [(t.at, t.from_stage, t.to_stage, t.reason) for t in view.lifecycle.history]

    assert said(run(with_ticks)) == said(run(without))
