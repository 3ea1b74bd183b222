"""Properties of the 360° view fold that replay, late events and retries rely on."""

from __future__ import annotations

from functools import reduce

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.codec import from_dict, to_dict
from projections.lifecycle.stages import Lifecycle
from projections.view.document import from_state, to_document, to_state
from projections.view.fold import CustomerView, evolve, initial_view
from tests.support.strategies import customer_histories


def serialised(events) -> bytes:  # type: ignore[no-untyped-def]
    view = reduce(evolve, events, initial_view("c-1"))
    return orjson.dumps([to_state(view), to_document(view)], option=orjson.OPT_SORT_KEYS)


@given(customer_histories())
def test_the_same_events_give_a_byte_identical_view(events) -> None:  # type: ignore[no-untyped-def]
    assert serialised(events) == serialised(list(events))


def order_free(view: CustomerView) -> CustomerView:
    """The view without the lifecycle's path and the idempotency window: when each stage
    began and the transitions that led there depend on what arrived when (a late purchase
    is a correction, by design); the stage, its rule, its next deadline and the purchases
    it rests on do not. The window holds the latest arrivals' ids, in arrival order."""
    lc = view.lifecycle
    return view._replace(lifecycle=Lifecycle(lc.stage, None, lc.rule, None, lc.deadline, lc.buys, lc.interval),
                         seen=())


def serialised_order_free(events) -> bytes:  # type: ignore[no-untyped-def]
    view = order_free(reduce(evolve, events, initial_view("c-1")))
    return orjson.dumps([to_state(view), to_document(view)], option=orjson.OPT_SORT_KEYS)


@settings(max_examples=150)
@given(customer_histories(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_final_view(events, random) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(events)
    random.shuffle(shuffled)
    assert serialised_order_free(shuffled) == serialised_order_free(events)


@given(customer_histories(), st.data())
def test_an_event_applied_twice_counts_once(events, data) -> None:  # type: ignore[no-untyped-def]
    repeated = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=10))
    with_retries = list(events)
    for event in repeated:
        with_retries.insert(data.draw(st.integers(0, len(with_retries))), event)
    # a copy inserted before the original moves it earlier: only the order-free view compares
    assert serialised_order_free(with_retries) == serialised_order_free(events)


@given(customer_histories())
def test_a_stored_view_reads_back_identical(events) -> None:  # type: ignore[no-untyped-def]
    view = reduce(evolve, events, initial_view("c-1"))
    assert from_state(orjson.loads(orjson.dumps(to_state(view)))) == view


@given(customer_histories(max_size=8))
def test_a_touchpoint_reads_back_from_its_canonical_form(events) -> None:  # type: ignore[no-untyped-def]
    for event in events:
        assert from_dict(orjson.loads(orjson.dumps(to_dict(event)))) == event
