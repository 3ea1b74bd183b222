"""What the scale-out stack costs when nothing happens: the CPU each process uses at idle,
in percent of one core, with the view worker's adaptive fetch wait (the default) and, in
the same run, without it (the idle wait set to the busy one: the baseline).

The stack is the local one (``tools.stack.Stack``: Tansu, Redis, one view worker, the
API, the test-friendly 10 ms busy fetch wait); after it is ready it is left alone for
``settle`` seconds, then each process's user + system CPU time is read from /proc over
``seconds`` seconds."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from tools.bench.kafka_worker import _cpu_seconds
from tools.stack import Stack

__all__ = ["idle_cost", "idle_comparison"]


def idle_cost(workdir: Path, *, seconds: float = 30.0, settle: float = 8.0,
              settings: dict[str, str] | None = None) -> dict[str, float]:
    """Percent of one core each process used over ``seconds`` of idleness, and
    ``first_event_ms``: then, an event posted and read back with its position (the
    latency the idle fetch wait adds to the first records after a quiet spell)."""
    key = secrets.token_urlsafe(24)
    stack = Stack(workdir, workers=1, api_port=0,
                  settings={"TOUCHSTREAM_API_KEYS": json.dumps({key: ["admin"]}), "TOUCHSTREAM_LOG_LEVEL": "warning",
                            **(settings or {})})
    stack.start()
    try:
        time.sleep(settle)  # past the join, the first clock tick and the idle fetch wait's threshold
        pids = {"broker": stack.broker.pid, "redis": stack.redis.pid, "api": stack.api.pid,
                "worker": stack.workers[0].pid}
        before = {name: _cpu_seconds(pid) for name, pid in pids.items() if pid}
        started = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - started
        after = {name: _cpu_seconds(pid) for name, pid in pids.items() if pid}
        first_ms = _first_event_ms(stack.api_url, key)
    finally:
        stack.stop()
    return {**{name: round(100 * (after[name] - before[name]) / wall, 2) for name in before},
            "first_event_ms": first_ms}


def _first_event_ms(api_url: str, key: str) -> float:
    """Post one event, read the customer's view with its position: milliseconds."""
    import httpx

    customer = f"idle-{secrets.token_hex(4)}"
    event = {"event_id": f"{customer}-e", "type": "call", "occurred_at": "2026-06-01T09:00:00Z", "source": "bench",
             "customer": {"customer_id": customer}, "channel": "phone", "direction": "inbound", "outcome": "reached"}
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        started = time.perf_counter()
        posted = client.post("/v1/events", json=event)
        posted.raise_for_status()
        read = client.get(f"/v1/customers/{customer}", params={"min_position": posted.json()["position"]})
        read.raise_for_status()
        return round((time.perf_counter() - started) * 1000, 1)


def idle_comparison(workdir: Path, *, seconds: float = 30.0) -> dict[str, Any]:
    """The adaptive fetch wait (default settings) and the baseline (idle wait = busy wait)."""
    adaptive = idle_cost(workdir / "adaptive", seconds=seconds)
    fixed = idle_cost(workdir / "fixed", seconds=seconds,
                      settings={"TOUCHSTREAM_KAFKA_IDLE_FETCH_WAIT_MS": "10"})
    return {"seconds": seconds, "adaptive_pct_core": adaptive, "fixed_pct_core": fixed,
            "goal_under_3pct": {name: adaptive[name] < 3.0 for name in ("broker", "worker")}}

