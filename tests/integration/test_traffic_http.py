"""Generated traffic through a real server process: every event lands once, on its customer."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tools.bench.server import BENCH_KEY, LocalServer
from tools.traffic import TrafficOptions, labelled, post_http

pytestmark = pytest.mark.e2e


def test_posted_traffic_is_stored_once_per_event_and_lands_on_the_right_customers(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data") as server:
        base = server.base_url
        batch_size, concurrency = 100, 4
        pairs = list(labelled(TrafficOptions(customers=120, events=2000, seed=11, duplicate_rate=0.02,
                                             late_rate=0.02, link_after=batch_size * concurrency)))
        events = [event for _, event in pairs]
        distinct: dict[str, set[str]] = defaultdict(set)
        for customer_id, event in pairs:
            distinct[customer_id].add(event["event_id"])
        assert any(e["customer"]["customer_id"] is None for e in events)  # some name identifiers only

        summary = post_http(events, base, BENCH_KEY, batch_size=batch_size, concurrency=concurrency, progress=False)

        assert summary["rejected"] == 0
        assert summary["accepted"] + summary["duplicate"] == len(events)
        assert summary["accepted"] == len({e["event_id"] for e in events}) < len(events)
        assert summary["batches"] == 20 and summary["last_position"] >= summary["accepted"]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {BENCH_KEY}"}, timeout=10) as client:
            for customer_id, event_ids in distinct.items():
                answer = client.get(f"/v1/customers/{customer_id}",
                                    params={"min_position": summary["last_position"]})
                assert answer.status_code == 200, (customer_id, answer.text)
                assert answer.json()["touchpoints"] == len(event_ids), customer_id
            assert client.get("/v1/identity/conflicts").json()["conflicts"] == []
