"""The one batch decider: every adapter folding the same log reaches the same states and
the same decisions, however the log is cut into batches (in memory, no I/O)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.batch import BatchResult, FoldConfig, Record, Tick, Touch, fold_batch
from projections.codec import from_dict, to_dict
from projections.lifecycle.stages import DEFAULT, transition_id
from projections.nbc.engine import ContactEngine
from projections.touchpoints import CustomerRef, Touchpoint
from projections.view.document import to_state
from projections.view.fold import CustomerView, micros
from services.nbc.rules_file import load_rules
from services.scaleout.kafka.publisher import TouchpointPublisher
from services.scaleout.kafka.records import tick_record
from services.scaleout.worker.fold import decode, due_fetch_size, fold
from services.scaleout.worker.replay import Replayer
from services.segments.file import load_segments
from services.settings import DEFAULT_RULES_FILE, SEGMENTS_FILE
from services.view_cache import States
from services.zones import PINNED
from tests.support import touchpoints as tp
from tests.support.strategies import customer_histories, in_arrival_order

CONFIG = FoldConfig(DEFAULT, ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED),
                    load_segments(SEGMENTS_FILE), "EUR", tick_limit=3)


@dataclasses.dataclass
class KafkaRecord:
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int
    topic: str = "touchpoints"


@st.composite
def logs(draw: st.DrawFn) -> list[Record]:
    """Three customers' touchpoints in any arrival order, clock ticks moving forward among them."""
    events: list[Touchpoint] = []
    for k in range(3):
        for e in draw(customer_histories(max_size=20)):
            moved = dataclasses.replace(e, event_id=f"c{k}-{e.event_id}",
                                        customer=CustomerRef(customer_id=f"c-{k}", emails=(f"c{k}@example.com",)))
            events.append(from_dict(orjson.loads(orjson.dumps(to_dict(moved)))))  # as the log holds it
    # the platform receives an event no earlier than its latest tick
    return in_arrival_order(draw, events, lambda key, event: Touch(key, event, event.customer.customer_id))


def in_batches(log: list[Record], sizes: list[int]) -> tuple[dict[str, bytes], list[BatchResult]]:
    """Fold ``log`` cut into batches of ``sizes`` (cycled), as a runtime with a deadline index does."""
    views: dict[str, CustomerView] = {}
    index: dict[str, int] = {}
    clock, results, start, n = None, [], 0, 0
    while start < len(log):
        chunk = log[start:start + sizes[n % len(sizes)]]
        start, n = start + len(chunk), n + 1
        enough = due_fetch_size(sum(isinstance(r, Tick) for r in chunk), len(chunk), CONFIG.tick_limit)
        due = {r.tick_id: sorted(((c, d) for c, d in index.items() if d <= r.at), key=lambda e: (e[1], e[0]))[:enough]
               for r in chunk if isinstance(r, Tick)}
        result = fold_batch(views, chunk, CONFIG, clock=clock, due_stored=due)
        views.update(result.views)
        clock = result.clock
        for cid, deadline in result.deadlines.items():
            if deadline is None:
                index.pop(cid, None)
            else:
                index[cid] = deadline
        results.append(result)
    return {c: orjson.dumps(to_state(v)) for c, v in views.items()}, results


def decided(results: list[BatchResult]) -> dict[str, Any]:
    figures: Counter[Any] = Counter()
    for r in results:
        figures.update(r.figures)
    return {
        "triggers": [f.trigger_id for r in results for f in r.triggers],
        "outcomes": [(o.trigger_id, o.outcome) for r in results for o in r.outcomes],
        "transitions": [(transition_id(c, t), d) for r in results for c, t, d in r.transitions],
        "figures": {k: v for k, v in figures.items() if v},
        "timeline": [(row.customer_id, row.key) for r in results for row in r.timeline],
        "dead": [d.key for r in results for d in r.dead_letters],
    }


def kafka_log(log: list[Record]) -> list[KafkaRecord]:
    out = []
    for r in log:
        if isinstance(r, Tick):
            _, value, headers = tick_record(tp.T0 + timedelta(microseconds=r.at - micros(tp.T0)), 0)
            out.append(KafkaRecord(value, None, headers, 0, r.key))
        else:
            assert isinstance(r, Touch) and r.customer_id is not None
            key, value, headers = TouchpointPublisher._record(to_dict(r.event), (r.customer_id, ()))
            out.append(KafkaRecord(value, key, headers, 0, r.key))
    return out


SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SLOW
@given(logs(), st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_batch_boundaries_change_nothing(log: list[Record], sizes: list[int]) -> None:
    whole, one = in_batches(log, [len(log) or 1])
    cut, many = in_batches(log, sizes)
    assert cut == whole
    assert decided(many) == decided(one)


@SLOW
@given(logs(), st.integers(1, 40))
def test_the_worker_and_the_replay_fold_as_the_core_does(log: list[Record], size: int) -> None:
    """The worker's adapter (Kafka records decoded, states stored as bytes between batches)
    and the replay's give the states the core gives."""
    expected, results = in_batches(log, [size])
    records = kafka_log(log)
    replayer = Replayer(CONFIG, 1)
    replayer.add(0, records)
    replayer.flush()
    assert {c: orjson.dumps(to_state(v)) for c, v in replayer.views.items()} == expected

    stored: dict[str, bytes] = {}
    index: dict[str, int] = {}
    clock, triggers = None, []
    for start in range(0, len(records), size):
        decoded = decode(records[start:start + size], 1)
        enough = due_fetch_size(len(decoded.ticks), size, CONFIG.tick_limit)
        due = {t.tick_id: sorted(((c, d) for c, d in index.items() if d <= t.at), key=lambda e: (e[1], e[0]))[:enough]
               for t in decoded.ticks}
        batch = fold("touchpoints", 0, decoded, States(stored), CONFIG, clock=clock, due_stored=due)
        stored.update(batch.states)
        clock = batch.lifecycle.clock
        index.update({c: d for c, d in batch.lifecycle.deadlines.items() if d is not None})
        for c in [c for c, d in batch.lifecycle.deadlines.items() if d is None]:
            index.pop(c, None)
        triggers += [trigger_id for _, _, trigger_id, _, _ in batch.triggers]
    assert stored == expected
    assert triggers == decided(results)["triggers"]
