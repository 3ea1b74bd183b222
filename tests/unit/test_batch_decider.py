"""The batch decider's business rules: atomic steps, bounded states, nothing old acting as
new, time-driven transitions and dwell times that do not depend on arrival order."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.batch import FoldConfig, Tick, Touch, fold_batch
from projections.lifecycle.stages import DEFAULT, dwell
from projections.nbc.engine import ContactEngine
from projections.segments.membership import segment_facts
from projections.touchpoints import CustomerRef, Touchpoint
from projections.view.document import STATE_FORMAT, StateFormatError, from_state, to_document, to_state
from projections.view.facts import view_facts
from projections.view.fold import CustomerView, micros
from projections.view.state import CASES_LIMIT, SEEN_LIMIT
from services.nbc.rules_file import load_rules
from services.segments.file import load_segments
from services.settings import DEFAULT_RULES_FILE, SEGMENTS_FILE
from services.zones import PINNED
from tests.support import touchpoints as tp

REF = CustomerRef(customer_id="c-1", emails=("ana@example.com",))
ENGINE = ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED)
CONFIG = FoldConfig(DEFAULT, ENGINE, load_segments(SEGMENTS_FILE))
T0 = tp.T0.replace(hour=9)  # 10:00 in Paris (winter): outside every quiet hour


def unfoldable(event: tp.Purchase) -> tp.Purchase:
    """The purchase with no amount: it passes the engine (which reads no amount) and fails
    in the view's fold after the engine decided. Set past the constructor, which refuses it."""
    object.__setattr__(event, "amount", None)
    return event


def fold(*events: Touchpoint, config: FoldConfig = CONFIG, clock: int | None = None) -> tuple[CustomerView, list]:
    result = fold_batch({}, [Touch(i, e, "c-1") for i, e in enumerate(events)], config, clock=clock)
    return result.views["c-1"], result


def history(n: int) -> list[Touchpoint]:
    """One busy customer: every type of touchpoint, a purchase in ten, a new case every twenty."""
    out: list[Touchpoint] = []
    for i in range(n):
        when = T0 + timedelta(minutes=37 * i)
        match i % 10:
            case 0:
                out.append(tp.purchase(f"e{i}", when, "19.90", ref=REF))
            case 1 | 8:
                out.append(tp.email(f"e{i}", when, ("sent", "opened", "clicked")[i % 3], ref=REF))
            case 2:
                out.append(tp.call(f"e{i}", when, ref=REF))
            case 3:
                out.append(tp.case(f"e{i}", f"case-{i // 20}", ("opened", "resolved")[(i // 10) % 2], when, ref=REF))
            case 4:
                out.append(tp.survey(f"e{i}", when, csat=1 + i % 5, ref=REF))
            case 5:
                out.append(tp.visit(f"e{i}", when, ref=REF))
            case 6:
                out.append(tp.consent(f"e{i}", "granted", when, ref=REF))
            case _:
                out.append(tp.web_form(f"e{i}", when, {"first_name": f"N{i}"}, ref=REF))
    return out


def test_a_customer_with_ten_thousand_touchpoints_keeps_a_bounded_state() -> None:
    events = history(10_000)
    views: dict[str, CustomerView] = {}
    sizes, start = {}, 0
    for stop in (10, 1_000, 2_000, 10_000):
        result = fold_batch(views, [Touch(i, e, "c-1") for i, e in enumerate(events[start:stop], start)], CONFIG)
        views.update(result.views)
        sizes[stop] = len(orjson.dumps(to_state(views["c-1"])))
        start = stop
    view = views["c-1"]
    assert view.touchpoints == 10_000 and view.purchases == 1_000
    assert sizes[10_000] <= 64 * 1024, sizes
    assert sizes[10_000] <= sizes[2_000] * 1.05, sizes  # it stopped growing
    assert len(view.seen) == SEEN_LIMIT and len(view.cases) <= CASES_LIMIT
    cases = to_document(view)["service_cases"]
    assert cases["open"] + cases["resolved"] == 500  # every case counted, however many are kept one by one
    # rules and segments read the same figures as the document (one builder of a view's facts)
    expected = {k: cases[k] for k in ("open", "resolved", "mean_resolution_seconds")}
    assert segment_facts(view, ["service_cases"])["service_cases"] == expected
    assert view_facts(view, 0)["service_cases"] == expected


def test_an_event_seen_again_within_the_window_counts_once_and_writes_no_timeline_row() -> None:
    events = history(50)
    result = fold_batch({}, [Touch(i, e, "c-1") for i, e in enumerate([*events, events[3], events[40]])], CONFIG)
    assert result.views["c-1"].touchpoints == 50
    assert result.duplicates == 2 and len(result.timeline) == 50


def test_a_state_of_an_older_format_is_refused_so_the_store_is_rebuilt() -> None:
    view, _ = fold(*history(5))
    state = to_state(view)
    assert state["format"] == STATE_FORMAT and from_state(orjson.loads(orjson.dumps(state))) == view
    with pytest.raises(StateFormatError):
        from_state({**state, "format": STATE_FORMAT - 1})


def test_an_event_that_fails_after_the_engine_decided_contributes_nothing() -> None:
    """A purchase of 600 starts a satisfaction call due three days later. A record that
    arrives on day 4 fires that call on its way, then fails: the call, its figures and the
    record's changes are taken back, and the record is a dead letter. The next good record
    decides the same call again."""
    bought = tp.purchase("p1", T0, "600.00", ref=REF)
    broken = unfoldable(tp.purchase("p2", T0 + timedelta(days=4), ref=REF))
    visit = tp.visit("v1", T0 + timedelta(days=4, minutes=1), ref=REF)
    states = {"c-1": fold(bought)[0]}

    failed = fold_batch(states, [Touch(1, broken, "c-1")], CONFIG)
    assert [d.key for d in failed.dead_letters] == [1] and "unfoldable" in failed.dead_letters[0].reason
    assert failed.triggers == [] and failed.figures == {} and failed.views == {} and failed.timeline == []

    both = fold_batch(states, [Touch(1, broken, "c-1"), Touch(2, visit, "c-1")], CONFIG)
    assert [t.rule for t in both.triggers] == ["satisfaction_call_after_high_value_purchase"]
    assert both.figures[("satisfaction_call_after_high_value_purchase", 1, "call", "fired")] == 1
    assert [d.key for d in both.dead_letters] == [1] and both.views["c-1"].touchpoints == 2


def test_a_month_old_low_score_received_in_quiet_hours_never_calls_today() -> None:
    """A CSAT of 1 dated 30 days ago reaches the platform at 22:00 in Paris: the manager
    call it would have fired is long expired; quiet hours ending change nothing."""
    received = T0 + timedelta(days=30, hours=12)  # 22:00 in Paris
    survey = dataclasses.replace(tp.survey("s1", T0, csat=1, ref=REF), received_at=received)
    now = micros(received)
    result = fold_batch({}, [Tick(0, "tick/a", now), Touch(1, survey, "c-1"),
                             Tick(2, "tick/b", now + 12 * 3_600_000_000)], CONFIG, due_stored={})
    assert [t.rule for t in result.triggers] == []
    assert ("manager_call_after_low_csat", "expired") in {(s.rule, s.reason) for s in result.suppressions}
    assert result.views["c-1"].contact.timers == ()  # nothing deferred to the morning


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 23), st.integers(2 * 24, 60 * 24))
def test_the_arrival_time_of_an_old_event_never_makes_it_a_live_trigger(hour: int, late_hours: int) -> None:
    """Whatever the hour it arrives, a low score received after its rule's validity (2 days)
    is never a trigger, and neither is its deferral."""
    occurred = T0 + timedelta(hours=hour)
    received = occurred + timedelta(hours=late_hours)
    survey = dataclasses.replace(tp.survey("s1", occurred, csat=1, ref=REF), received_at=received)
    ticks = [Tick(2 + k, f"tick/{k}", micros(received + timedelta(hours=k))) for k in range(0, 48, 6)]
    result = fold_batch({}, [Touch(1, survey, "c-1"), *ticks], CONFIG, clock=micros(received), due_stored={})
    assert [t for t in result.triggers if t.cause.get("id") == "s1"] == []


def test_the_same_score_received_on_time_calls_and_a_deferral_keeps_its_validity() -> None:
    on_time = tp.survey("s1", T0, csat=1, ref=REF)
    view, result = fold(on_time)
    assert [t.rule for t in result.triggers] == ["manager_call_after_low_csat"]
    evening = T0.replace(hour=20)  # 21:00 in Paris: deferred to 09:00 the next morning
    view, result = fold(tp.survey("s2", evening, csat=1, ref=REF))
    assert result.triggers == [] and [t.kind for t in view.contact.timers] == ["deferred"]
    assert view.contact.timers[0].origin == micros(evening)  # validity still runs from the score


def test_dwell_as_a_prospect_does_not_depend_on_what_arrived_first() -> None:
    """A web form on day 0, a purchase on day 2: the prospect stage lasted two days whether
    the form arrived before or after the purchase."""
    form = tp.web_form("w1", T0, {"first_name": "Ana"}, ref=REF)
    bought = tp.purchase("p1", T0 + timedelta(days=2), ref=REF)
    config = FoldConfig(DEFAULT)
    in_order, _ = fold(form, bought, config=config)
    shuffled, result = fold(bought, form, config=config)
    assert to_document(in_order) == to_document(shuffled)
    assert to_state(in_order) == {**to_state(shuffled), "seen": to_state(in_order)["seen"]}
    t = shuffled.lifecycle.history[0]
    assert dwell(t, shuffled.first_seen) == 2 * 86_400_000_000
    assert to_document(shuffled)["lifecycle"]["history"][0]["dwell_seconds"] == 172_800.0


def test_a_transition_time_alone_made_has_the_same_id_whichever_event_revealed_it() -> None:
    """New on day 0; declining from day 90 with no second purchase. A call on day 100 or a
    visit on day 95 reveals it: the same transition, caused by time."""
    bought = tp.purchase("p1", T0, ref=REF)
    config = FoldConfig(DEFAULT)
    by_call, _ = fold(bought, tp.call("c1", T0 + timedelta(days=100), ref=REF), config=config)
    by_visit, _ = fold(bought, tp.visit("v1", T0 + timedelta(days=95), ref=REF), config=config)
    assert by_call.lifecycle.history[-1] == by_visit.lifecycle.history[-1]
    assert by_call.lifecycle.history[-1].cause.startswith("time:")


def test_the_configuration_fingerprint_changes_with_the_rules_and_the_time_zone_database() -> None:
    base = FoldConfig(DEFAULT, ENGINE)
    assert base.fingerprint == FoldConfig(DEFAULT, ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED)).fingerprint
    assert base.fingerprint != FoldConfig(DEFAULT, None).fingerprint
    assert base.fingerprint != FoldConfig(DEFAULT, ENGINE, tick_limit=5).fingerprint

    class OtherZones:
        version = "tzdata 1999a"

        def get(self, name: str):  # type: ignore[no-untyped-def]
            return PINNED.get(name)

    assert base.fingerprint != FoldConfig(DEFAULT, dataclasses.replace(ENGINE, zones=OtherZones())).fingerprint
    assert PINNED.version in base.describe()


def test_the_worker_publishes_and_commits_nothing_of_an_event_that_failed_after_the_engine_decided() -> None:
    """The scale-out adapter over the same failing record: no trigger to publish or write,
    no figure, a dead letter with its reason (on the topic and in Redis)."""
    from services.scaleout.worker.fold import Decoded
    from services.scaleout.worker.fold import fold as worker_fold

    @dataclasses.dataclass
    class KafkaRecord:  # what the worker reads of a consumer record
        value: bytes | None
        key: bytes | None
        headers: list[tuple[str, bytes]]
        partition: int
        offset: int
        topic: str = "touchpoints"

    broken = unfoldable(tp.purchase("p2", T0 + timedelta(days=4), ref=REF))
    decoded = Decoded([Touch(5, broken, "c-1")], {5: KafkaRecord(b"...", b"c-1", [("ce_id", b"p2")], 0, 5)})
    out = worker_fold("touchpoints", 0, decoded, {"c-1": fold(tp.purchase("p1", T0, "600.00", ref=REF))[0]}, CONFIG)
    assert out.triggers == [] and out.lifecycle.triggers == [] and out.lifecycle.figures == {}
    assert out.states == {} and len(out.dead_letters) == len(out.dead_records) == 1
    assert orjson.loads(out.dead_letters[0])["reason"].startswith("unfoldable")
