"""Segment membership kept batch by batch equals evaluating every segment on the final
views, whatever the arrival order, the batch size and the clock ticks in between."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.batch import FoldConfig, Tick, Touch, fold_batch
from projections.nbc.engine import next_due
from projections.predicates.derived import derived_facts, preferred_channel
from projections.predicates.facts import FACTS, facts_of
from projections.predicates.language import lookup
from projections.segments.membership import ENTERED, EXITED, SegmentSet, compile_segments, members_of, segment_facts
from projections.view.document import to_document
from projections.view.fold import CustomerView, evolve, initial_view, micros
from services.segments.file import load_segments
from services.settings import SEGMENTS_FILE
from tests.support import touchpoints as tp
from tests.support.strategies import customer_histories

EXTRA = compile_segments({"segments": [
    {"id": "unhappy", "version": 1, "where": {"fact": "satisfaction.csat", "lte": 2}},
    {"id": "sms_withdrawn", "version": 1, "where": {"fact": "consent.sms.marketing", "eq": "withdrawn"}},
    {"id": "phone_people", "version": 1, "where": {"any": [{"fact": "preferred_channel", "eq": "call"},
                                                          {"fact": "channels.phone.count", "gte": 2}]}},
    {"id": "lyon_not_new", "version": 1, "where": {"all": [{"fact": "profile.city", "eq": "Lyon"},
                                                           {"not": {"fact": "lifecycle.stage", "eq": "new"}}]}},
]}, "extra")
SEGMENTS = SegmentSet(load_segments(SEGMENTS_FILE).segments + EXTRA.segments)
CUSTOMERS = ("c-1", "c-2", "c-3")


def fold(arrivals, batch: int, memo: bool = False) -> tuple[dict[str, CustomerView], set[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """Fold (customer, event-or-tick) arrivals in batches like a runner, keeping members
    from each batch's entries and exits only (``memo``: remembering answers between
    batches, as the embedded runner does)."""
    kept: dict = {} if memo else None  # type: ignore[type-arg, assignment]
    views: dict[str, CustomerView] = {}
    members: set[tuple[str, str]] = set()
    clock = None
    config = FoldConfig(segments=SEGMENTS)
    for start in range(0, len(arrivals), batch):
        chunk = arrivals[start:start + batch]
        records = [Tick(n, f"tick/{item}", item) if isinstance(item, int) else Touch(n, item, customer)
                   for n, (customer, item) in enumerate(chunk, start)]
        # the deadline index: every stored customer whose next deadline has passed
        due_stored = {r.tick_id: sorted(((c, d) for c, v in views.items() if (d := next_due(v)) is not None
                                         and d <= r.at), key=lambda e: (e[1], e[0]))
                      for r in records if isinstance(r, Tick)}
        result = fold_batch(views, records, config, clock=clock, due_stored=due_stored, memo=kept)
        views.update(result.views)
        clock = result.clock
        for change in result.segments:
            key = (change.segment, change.customer_id)
            if change.kind == ENTERED:
                assert key not in members, f"{key} entered twice"
                members.add(key)
            else:
                assert change.kind == EXITED and key in members, f"{key} left without being in"
                members.remove(key)
    return views, members


def evaluated(views: dict[str, CustomerView]) -> set[tuple[str, str]]:
    return {(sid, cid) for cid, view in views.items() for sid in members_of(view, SEGMENTS)}


@settings(max_examples=150, deadline=None)
@given(st.lists(customer_histories(max_size=15), min_size=1, max_size=3), st.randoms(use_true_random=False),
       st.integers(1, 12), st.lists(st.integers(0, 400), max_size=3))
def test_members_kept_per_batch_equal_a_batch_evaluation_after_any_arrival_order(
        histories, random, batch, tick_days) -> None:  # type: ignore[no-untyped-def]
    arrivals = [(CUSTOMERS[i], e) for i, history in enumerate(histories) for e in history]
    random.shuffle(arrivals)
    for d in sorted(tick_days):  # ticks arrive in time order, anywhere among the events
        arrivals.insert(random.randint(0, len(arrivals)), ("", micros(tp.T0 + timedelta(days=d))))
    views, members = fold(arrivals, batch)
    assert members == evaluated(views)
    assert fold(arrivals, batch, memo=True)[1] == members
    if not tick_days:  # with no tick, the segments do not depend on the arrival order either
        in_order, _ = fold([(CUSTOMERS[i], e) for i, history in enumerate(histories) for e in history], 1000)
        assert evaluated(in_order) == evaluated(views)


@settings(max_examples=200, deadline=None)
@given(customer_histories())
def test_the_facts_a_segment_reads_equal_the_documents_facts(events) -> None:  # type: ignore[no-untyped-def]
    view = reduce(evolve, events, initial_view("c-1"))
    expected = facts_of(to_document(view), {"open_complaints": derived_facts(view, tp.T0)["open_complaints"],
                                            "preferred_channel": preferred_channel(view)})
    built = segment_facts(view)
    checked = 0
    for name, fact in FACTS.facts.items():
        if fact.source in ("document", "derived") and name.split(".")[0] in built:
            for concrete in _instances(name, expected):
                assert lookup(built, concrete) == lookup(expected, concrete), concrete
                checked += 1
    assert checked >= 15
    for section in built:
        assert section in expected


def _instances(pattern: str, facts: dict) -> list[str]:  # type: ignore[type-arg]
    """Every concrete name of a catalogued pattern present in ``facts`` (placeholders expanded)."""
    names = [""]
    for part in pattern.split("."):
        grown = []
        for prefix in names:
            node = lookup(facts, prefix) if prefix else facts
            keys = list(node) if part.startswith("<") and isinstance(node, dict) else [part]
            grown += [f"{prefix}.{k}" if prefix else k for k in keys]
        names = grown
    return names


ODD = compile_segments({"segments": [
    {"id": "odd", "version": 1, "where": {"any": [
        {"fact": "identity.emails", "contains": "ana@example.com"}, {"fact": "satisfaction.nps", "exists": False},
        {"not": {"fact": "purchases.by_currency.GBP.margin", "gte": 10}},
        {"fact": "channels.phone.last_outcome", "in": ["reached", "voicemail"]},
        {"fact": "consent.email.marketing", "ne": "granted"}]}},
]}, "odd")


@settings(max_examples=200, deadline=None)
@given(customer_histories())
def test_the_fast_test_answers_as_the_predicate_does(events) -> None:  # type: ignore[no-untyped-def]
    view = reduce(evolve, events, initial_view("c-1"))
    facts = segment_facts(view)
    for segment in (*SEGMENTS.segments, *ODD.segments):
        assert segment.test(facts) == segment.where.evaluate(facts)
        clause_facts = [{}, {"identity": None}, {"purchases": {"count": "x"}}]
        assert all(segment.test(f) == segment.where.evaluate(f) for f in clause_facts)
