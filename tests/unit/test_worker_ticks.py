"""The scale-out worker's fold of clock ticks against the topic replay: several ticks in
one partition batch visit exactly the customers the replay visits (the due list the
consumer fetches is long enough), and a tick written for another partition is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import orjson
import pytest

from projections.batch import FoldConfig
from projections.view.document import to_state
from projections.view.fold import evolve, initial_view
from services.scaleout.kafka.records import BadRecord, read_record, tick_record
from services.scaleout.worker.fold import decode, due_fetch_size, fold
from services.scaleout.worker.replay import Replayer
from services.view_cache import States
from tests.support.touchpoints import T0, purchase


@dataclass
class Rec:
    value: bytes
    key: bytes | None
    headers: list  # type: ignore[type-arg]
    partition: int
    offset: int


@pytest.mark.parametrize(("limit", "customers", "ticks"), [(2, 8, 3), (3, 7, 1), (1, 5, 4), (10, 6, 2)])
def test_several_ticks_in_a_batch_visit_what_the_replay_visits(limit: int, customers: int, ticks: int) -> None:
    views = {f"c{i}": evolve(initial_view(f"c{i}"), purchase(f"p{i}", T0 + timedelta(hours=i)))
             for i in range(customers)}
    stored = {c: orjson.dumps(to_state(v)) for c, v in views.items()}
    index = sorted((v.lifecycle.deadline, c) for c, v in views.items())
    records = []
    for k in range(ticks):
        _, value, headers = tick_record(T0 + timedelta(days=100, minutes=k), 0)
        records.append(Rec(value, None, headers, 0, k))
    decoded = decode(records, 1)
    enough = due_fetch_size(ticks, len(records), limit)  # what the consumer fetches per tick
    due_stored = {t.tick_id: [(c, d) for d, c in index if d <= t.at][:enough] for t in decoded.ticks}
    config = FoldConfig(tick_limit=limit)
    out = fold("t", 0, decoded, States(stored), config, due_stored=due_stored)

    replayer = Replayer(config, 1)  # the replay's own deadline index, in memory
    replayer.views.update(views)
    replayer.index[0] = {c: d for d, c in index}
    replayer.add(0, records)
    replayer.flush()
    replayed = replayer.views
    assert sorted(out.views) == sorted(c for c in replayed if replayed[c] is not views[c])
    assert {c: orjson.loads(s) for c, s in out.states.items()} == \
        {c: orjson.loads(orjson.dumps(to_state(replayed[c]))) for c in out.views}


def test_a_tick_for_another_partition_is_refused_as_misrouted() -> None:
    _, value, headers = tick_record(T0, 3)
    with pytest.raises(BadRecord) as refused:
        read_record(value, None, headers, partition=1, partitions=4)
    assert refused.value.kind == "misrouted"
    assert read_record(value, None, headers, partition=3, partitions=4).at > 0
