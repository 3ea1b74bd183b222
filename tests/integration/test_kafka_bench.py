"""The Kafka benchmark at smoke size, against a real Tansu broker: every path it times
folds exactly the records it was given, into the states the core gives them.

The reference is computed here, without Kafka: the same records decoded and folded with
the core in record order. Each path read them from the broker, through its own consumer
group and machinery (a faust agent with a Table in another process; a raw aiokafka
consumer in another process; ``touchstream worker`` with a private Redis), and must reach
the same digest over every customer's stored state.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from projections.identity import settled
from projections.view.document import to_state
from projections.view.fold import CustomerView, evolve, initial_view
from services.scaleout.kafka.records import read_touchpoint
from tools.bench.kafka import BENCH_KAFKA, run_kafka_bench, states_digest, touchpoint_records

EVENTS, CUSTOMERS = 2000, 400

pytestmark = pytest.mark.timeout(240)


def folded_without_kafka(records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> dict[str, bytes]:
    views: dict[str, CustomerView] = {}
    for key, value, headers in records:
        read = read_touchpoint(value, key, headers)
        view = views.get(read.customer_id) or initial_view(read.customer_id)
        views[read.customer_id] = evolve(view, settled(read.event, read.customer_id, read.conflicts).folded)
    return {customer_id: orjson.dumps(to_state(view)) for customer_id, view in views.items()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], dict]:  # type: ignore[type-arg]
    records = touchpoint_records(EVENTS, CUSTOMERS)
    reference = folded_without_kafka(records)
    return reference, run_kafka_bench("quick", Path(tmp_path_factory.mktemp("kafka-bench")), records=records)


def test_every_path_folds_each_record_once_into_the_states_the_core_gives(bench: tuple) -> None:  # type: ignore[type-arg]
    reference, results = bench
    paths = {"naive_faust": results["naive_faust"], "ceiling": results["ceiling"], "worker": results["worker"]}
    assert len(reference) > CUSTOMERS // 2  # the traffic spreads over many customers
    for name, path in paths.items():
        assert (name, path["events"], path.get("dead", 0)) == (name, EVENTS, 0)
        assert (name, path["customers"]) == (name, len(reference))
        assert (name, path["digest"]) == (name, states_digest(reference))
    assert results["goals"]["same_states"] is True


def test_the_faust_consumer_runs_with_the_configured_fetch_wait_not_faust_s_1500_ms(bench: tuple) -> None:  # type: ignore[type-arg]
    _, results = bench
    assert results["naive_faust"]["fetch_max_wait_ms"] == BENCH_KAFKA["kafka_fetch_max_wait_ms"] != 1500
    assert results["naive_faust"]["exit_code"] == 0  # it stopped itself gracefully once done


def test_every_rate_is_measured_and_the_ratios_follow_from_them(bench: tuple) -> None:  # type: ignore[type-arg]
    _, results = bench
    naive, ceiling = results["naive_faust"]["events_per_second"], results["ceiling"]["events_per_second"]
    assert naive > 0 and ceiling > 0 and results["preload"]["events"] == EVENTS
    assert results["ratios"]["ceiling_vs_naive"] == round(ceiling / naive, 2)


def test_the_latency_phase_saw_every_live_event_become_visible(bench: tuple) -> None:  # type: ignore[type-arg]
    _, results = bench
    latency = results["latency"]
    assert latency["events"] == latency["rate"] * 3  # quick scale: 3 s at the rate, every one seen
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
