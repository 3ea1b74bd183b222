"""Reads an agent or an auditor waits for, over HTTP on a real embedded server: the
desk's customer card and the as-of view of a customer with 1,000 touchpoints, beside the
plain 360° view of the same customer (the same-run baseline). Client-side latency on
loopback, so each figure includes the HTTP round trip; 200 reads each after 20 warm-ups.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tools.bench.server import BENCH_KEY, LocalServer
from tools.traffic import TrafficOptions, generate

__all__ = ["read_latencies"]


def _timed(client: httpx.Client, url: str, reads: int, **params: Any) -> dict[str, float]:
    for _ in range(20):
        assert client.get(url, params=params).status_code == 200
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        response = client.get(url, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:300]
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2)}


def read_latencies(base: Path, touchpoints: int = 1000, reads: int = 200) -> dict[str, Any]:
    customer = "bench-reader"
    events = [{**raw, "event_id": f"{customer}-{raw['event_id']}", "customer": {"customer_id": customer}}
              for raw in generate(TrafficOptions(customers=1, events=touchpoints, seed=5, duplicate_rate=0.0))]
    with LocalServer(base / "reads", clock_tick_seconds="0") as server:
        headers = {"Authorization": f"Bearer {BENCH_KEY}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as api:
            position = 0
            for i in range(0, len(events), 500):
                answer = api.post("/v1/events", json={"events": events[i:i + 500]})
                assert answer.status_code in (200, 202) and answer.json()["rejected"] == 0, answer.text[:300]
                position = answer.json()["position"]
            view = api.get(f"/v1/customers/{customer}", params={"min_position": position}).json()
            first, last = view["first_seen"], view["last_seen"]
            middle = datetime.fromisoformat(first) + (datetime.fromisoformat(last) - datetime.fromisoformat(first)) / 2
            plain = _timed(api, f"/v1/customers/{customer}", reads)
            as_of = _timed(api, f"/v1/customers/{customer}", reads, as_of=middle.astimezone(UTC).isoformat())
        with httpx.Client(base_url=server.base_url, timeout=30) as desk:
            assert desk.post("/desk/sign-in", data={"key": BENCH_KEY}).status_code in (200, 303)
            card = _timed(desk, f"/desk/customers/{customer}", reads)
    return {"touchpoints": view["touchpoints"], "reads": reads, "view": plain, "as_of_view": as_of, "desk_card": card}


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print(json.dumps(read_latencies(Path(scratch)), indent=2))
