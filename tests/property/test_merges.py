"""Merges and undone merges on the pure core: whatever the merges and undos, and wherever
they fall in the log, the views equal one fold of the whole log with the merges left in
force applied from the start — as if the merged customers had always been one — and the
portfolio figures equal a recomputation over those views (in memory, no I/O).

The adapter below does what a runtime does at a merge: it refolds only the customers the
merge concerns, from their own events (each event's natural customer, kept with its
timeline row) and every clock tick, and commits ``regroup``'s changes."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from projections.batch import FoldConfig, Record, Tick, Touch, fold_batch, regroup
from projections.codec import from_dict, to_dict
from projections.identity import Identifier
from projections.lifecycle.stages import DEFAULT
from projections.merge import Merge, MergeRefused, Merges
from projections.nbc.engine import ContactEngine
from projections.segments.membership import ENTERED, members_of
from projections.touchpoints import CustomerRef, Touchpoint
from projections.value.rfm_cells import Cell, Change, rfm_figures
from projections.value.rfm_cells import changes as rfm_changes
from projections.view.document import to_state
from projections.view.fold import CustomerView
from services.nbc.rules_file import load_rules
from services.segments.file import load_segments
from services.settings import DEFAULT_RULES_FILE, SEGMENTS_FILE
from services.zones import PINNED
from tests.support.strategies import customer_histories, in_arrival_order

CONFIG = FoldConfig(DEFAULT, ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED), load_segments(SEGMENTS_FILE), "EUR")
PEOPLE = 3
SHARED_PHONES = ("+33600000001", "+33600000002")  # phones two people give: identity conflicts


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Record], list[tuple[int, Any]]]:
    """Three people's touchpoints named by email only (sometimes with a shared phone), in
    any arrival order, clock ticks among them; and merges and undos at log positions."""
    events: list[Touchpoint] = []
    for k in range(PEOPLE):
        for e in draw(customer_histories(max_size=12)):
            phones = draw(st.sampled_from(((), (SHARED_PHONES[0],), (SHARED_PHONES[1],))))
            moved = dataclasses.replace(e, event_id=f"p{k}-{e.event_id}",
                                        customer=CustomerRef(emails=(f"p{k}@example.com",), phones=phones))
            events.append(from_dict(orjson.loads(orjson.dumps(to_dict(moved)))))  # as the log holds it
    log = in_arrival_order(draw, events, lambda key, event: Touch(key, event), max_ticks=8)
    merge = st.permutations(range(PEOPLE)).map(lambda p: ("merge", p[0], p[1]))
    undo = st.tuples(st.just("undo"), st.integers(0, 5))
    operations = draw(st.lists(st.tuples(st.integers(len(log) // 3, len(log)), st.one_of(merge, merge, undo)),
                               min_size=1, max_size=6))
    return log, sorted(operations, key=lambda o: o[0])


class Adapter:
    """A runtime in memory: folds batches, keeps the identifier index, the deadline index,
    each event's natural customer and the portfolio figures, and applies merges."""

    def __init__(self) -> None:
        self.views: dict[str, CustomerView] = {}
        self.owners: dict[Identifier, str] = {}
        self.deadlines: dict[str, int] = {}
        self.natural: dict[int, str] = {}  # log key -> natural customer
        self.seen: list[Record] = []
        self.merges = Merges()
        self.made: list[str] = []  # merge ids, in order
        self.clock: int | None = None
        self.stages: Counter[str] = Counter()
        self.rfm: dict[Cell, list[int]] = {}
        self.members: set[tuple[str, str]] = set()
        self.refused: list[str] = []

    def fold(self, chunk: list[Record]) -> None:
        due = {r.tick_id: sorted(((c, d) for c, d in self.deadlines.items() if d <= r.at), key=lambda e: (e[1], e[0]))
               for r in chunk if isinstance(r, Tick)}
        result = fold_batch(self.views, chunk, CONFIG, clock=self.clock, owners=self.owners, due_stored=due,
                            roots=self.merges.roots())
        self.clock = result.clock
        for kind, value, cid in result.links:
            self.owners.setdefault((kind, value), cid)
        for row in result.timeline:
            self.natural[row.key] = row.natural
        self.seen += chunk
        self.commit(result)

    def commit(self, result: Any) -> None:
        self.views.update(result.views)
        for cid in result.removed:
            del self.views[cid]
        for cid, deadline in result.deadlines.items():
            if deadline is None:
                self.deadlines.pop(cid, None)
            else:
                self.deadlines[cid] = deadline
        self.stages.update(result.stages)
        for cell, change in result.rfm.items():
            held = self.rfm.setdefault(cell, [0, 0])
            held[0] += change.customers
            held[1] += change.revenue
        for c in result.segments:
            (self.members.add if c.kind == ENTERED else self.members.discard)((c.customer_id, c.segment))

    def operate(self, operation: tuple[Any, ...]) -> None:
        if operation[0] == "merge":
            survivor, absorbed = (self.owners.get(("email", f"p{k}@example.com")) for k in operation[1:])
            if survivor is None or absorbed is None:
                return  # not yet seen
            merge_id = f"m{len(self.made)}"
            try:
                after = self.merges.merge(Merge(merge_id, survivor, absorbed, "duplicate", "test"))
            except MergeRefused as refused:
                self.refused.append(refused.code)
                return
            self.made.append(merge_id)
            touched = self.merges.group(self.merges.root(survivor)) | self.merges.group(absorbed)
        else:
            if not self.made:
                return
            merge_id = self.made[operation[1] % len(self.made)]
            try:
                after, undone = self.merges.undo(merge_id)
            except MergeRefused as refused:
                self.refused.append(refused.code)
                return
            touched = self.merges.group(self.merges.root(undone.survivor))
        self.regroup(after, touched)

    def regroup(self, after: Merges, touched: frozenset[str]) -> None:
        """Refold the customers a merge concerns from their own events and every tick."""
        records = [r for r in self.seen if isinstance(r, Tick) or self.natural.get(r.key) in touched]
        refolded = fold_batch({}, records, CONFIG, owners=self.owners, roots=after.roots()).views
        roots = after.roots()
        moves = {c: (self.views.get(c), refolded.get(c) if c not in roots else None) for c in touched}
        self.merges = after
        self.commit(regroup(moves, CONFIG))


def _cells(views: dict[str, CustomerView]) -> dict[Cell, Change]:
    return rfm_changes((None, rfm_figures(v, "EUR")) for v in views.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=logs(), sizes=st.lists(st.integers(1, 15), min_size=1, max_size=4))
def test_views_equal_the_whole_log_folded_with_the_merges_in_force(drawn: Any, sizes: list[int]) -> None:
    log, operations = drawn
    adapter, start, n = Adapter(), 0, 0
    for at, operation in [*operations, (len(log), None)]:
        while start < at:
            chunk = log[start:min(at, start + sizes[n % len(sizes)])]
            start, n = start + len(chunk), n + 1
            adapter.fold(chunk)
        if operation is not None:
            adapter.operate(operation)

    event(f"merges made: {len(adapter.made)}, in force: {len(adapter.merges.into)}")
    reference = fold_batch({}, log, CONFIG, roots=adapter.merges.roots()).views
    assert {c: to_state(v) for c, v in adapter.views.items()} == {c: to_state(v) for c, v in reference.items()}
    assert not set(adapter.views) & set(adapter.merges.into)  # an absorbed customer has no view of its own
    # the portfolio: no customer counted twice, none left out
    assert +adapter.stages == Counter(v.lifecycle.stage for v in reference.values())
    assert {c: tuple(h) for c, h in adapter.rfm.items() if h != [0, 0]} == \
        {c: (h.customers, h.revenue) for c, h in _cells(reference).items()}
    assert CONFIG.segments is not None
    assert adapter.members == {(c, s) for c, v in reference.items() for s in members_of(v, CONFIG.segments)}
    assert adapter.deadlines == {c: d for c, d in ((c, _next(v)) for c, v in reference.items()) if d is not None}


def _next(view: CustomerView) -> int | None:
    from projections.nbc.engine import next_due

    return next_due(view)


def test_refusals_are_precise() -> None:
    graph = Merges().merge(Merge("m1", "b", "a", "duplicate", "agent"))
    cases = [(Merge("m2", "a", "a", "", "agent"), "already_merged"),  # a is absorbed
             (Merge("m2", "c", "c", "", "agent"), "same_customer"),
             (Merge("m2", "a", "c", "", "agent"), "survivor_merged"),  # a chain nobody asked for: into b instead
             (Merge("m2", "a", "b", "", "agent"), "survivor_merged"),  # a cycle: b absorbed a
             (Merge("m1", "c", "d", "", "agent"), "duplicate_merge")]
    for merge, code in cases:
        try:
            graph.merge(merge)
        except MergeRefused as refused:
            assert refused.code == code, (merge, refused)
        else:
            raise AssertionError(f"{merge} was not refused")
    chain = graph.merge(Merge("m2", "c", "b", "", "agent"))  # b (with a) into c: a chain
    assert chain.root("a") == "c" and chain.group("c") == {"a", "b", "c"}
    undone, merge = chain.undo("m2")
    assert merge.absorbed == "b" and undone.root("a") == "b" and undone.group("c") == {"c"}
    try:
        undone.undo("m2")
    except MergeRefused as refused:
        assert refused.code == "unknown_merge"
    else:
        raise AssertionError("an undone merge was undone twice")
