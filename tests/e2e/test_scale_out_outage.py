"""An ordinary broker outage under load must leave the live views equal to a replay.

Two view workers (so the group rebalances when the broker comes back), the API appending
a clock tick every half second (time moves while events fold: late contact forms meet
expired callbacks, lifecycle deadlines pass), synthetic CRM traffic that exercises the
default next-best-contact rules, and the broker frozen (SIGSTOP) for longer than the
consumer session. Workers stall on Kafka or wait, the group rebalances once the broker
thaws, and folding resumes. At a quiescent moment (traffic sent, API stopped so no tick
is appended, every partition folded to its end) ``touchstream replay`` must find Redis
identical to the topic replayed through the core, byte for byte: decisions (triggers,
suppressions, lifecycle transitions) included, not just timelines.

Before the fix in services/scaleout/worker/consumer.py this failed in 4 runs of 5 (2-14 customers
differing here; 31-43 in the user's longer runs): when the broker thaws, the answer to
the poll and the rebalance arrive together, the revoke runs while the polled batch awaits
Redis, and the batch was then folded with no partition position (an unfenced commit) and
no clock — expired callbacks fired, and lifecycle transitions were derived at a later tick
instead of at the event.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_scale_out import Sender, folded_positions, traffic
from tests.support.api import wait_until
from tests.support.kafka_runtime import KAFKA_TEST_SETTINGS, KafkaRuntime
from tests.support.server import TEST_KEYS, settings_under_test
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SESSION_SECONDS = 3.0
FROZEN_SECONDS = 15.0  # five sessions: every member's session has expired when the broker thaws

SETTINGS = {
    **KAFKA_TEST_SETTINGS,
    "TOUCHSTREAM_LOG_LEVEL": "info",  # stalls and partition moves in the logs
    "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": str(SESSION_SECONDS),
    "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.3",
    "TOUCHSTREAM_CLOCK_TICK_SECONDS": "0.5",  # ticks flow while the traffic does
    "TOUCHSTREAM_WORKER_BATCH_EVENTS": "500",  # several batches in flight around the outage
}


def log_events(stack: Stack, name: str) -> list[dict[str, object]]:
    """The JSON log lines of the workers whose ``event`` is ``name``."""
    found = []
    for worker in stack.workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if f'"{name}"' in line:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == name:
                    found.append({**entry, "worker": worker.name})
    return found


class Scraper(threading.Thread):
    """Scrapes every worker's ``/metrics`` as Prometheus does (every half second, a 2 s
    timeout) for as long as it runs: the fold runs off the event loop, so a worker under
    load, or stalled on a frozen broker, must still answer each scrape."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.urls = [f"http://{w.host}:{w.port}/metrics" for w in stack.workers]
        self.answered = 0
        self.failed: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.halt.wait(0.5):
                for url in self.urls:
                    try:
                        response = client.get(url)
                        response.raise_for_status()
                        self.answered += 1
                    except httpx.HTTPError as error:
                        self.failed.append(f"{url}: {type(error).__name__} {error}")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def wait_quiescent(runtime: KafkaRuntime, seconds: float = 3.0, timeout: float = 90.0) -> list[int]:
    """Positions of record that have not moved for ``seconds`` (nothing is appended any more)."""
    last, since = folded_positions(runtime), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() - since < seconds:
        assert time.monotonic() < deadline, f"positions still moving after {timeout} s: {last}"
        time.sleep(0.3)
        now = folded_positions(runtime)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_views_equal_a_replay_after_the_broker_is_frozen_under_load_with_ticks_and_two_workers(
    tmp_path: Path,
) -> None:
    events = traffic(6_000, customers=300, seed=43)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTREAM_")}
    stack = Stack(tmp_path / "outage", workers=2, api_port=0, environment=environment,
                  settings={**settings_under_test(TEST_KEYS), **SETTINGS})
    runtime = KafkaRuntime(stack, TEST_KEYS)
    try:
        stack.start()  # returns once the two workers share the partitions
        sender = Sender(runtime.base_url, runtime.keys.ingest, events, rate=200).start()
        scraper = Scraper(stack)
        scraper.start()
        try:
            wait_until(lambda: len(sender.acknowledged) >= 1_500, timeout=60, what="traffic acknowledged")
            frozen_at = time.time()
            readiness: list[tuple[int, str]] = []
            with runtime.storage_unavailable():  # SIGSTOP: the broker keeps its log, answers nothing
                with httpx.Client(base_url=runtime.base_url, timeout=5.0) as probe:
                    while time.time() - frozen_at < FROZEN_SECONDS:
                        answer = probe.get("/readyz")
                        readiness.append((answer.status_code, answer.json()["checks"]["kafka"]))
                        time.sleep(0.5)
            sender.join(timeout=150)  # it retries what was refused, then sends the rest
        finally:
            sender.stop()
            scraper.stop()
        # readiness tells a load balancer the truth about a broker that stopped answering:
        # after the first probes, not ready, naming Kafka
        late = readiness[2:]
        assert late and all(code == 503 and kafka.startswith("failing") for code, kafka in late), readiness
        # under load and through the outage, every scrape of every worker was answered in time
        assert scraper.answered >= 20 and scraper.failed == [], (scraper.answered, scraper.failed[:5])
        assert len(sender.acknowledged) == len({e["event_id"] for _, e in events}), "not every event acknowledged"

        # the outage did what it does in production: the group rebalanced once the broker thawed
        # (every session had expired); whether a worker's call failed meanwhile (a stall on
        # Kafka) or only waited depends on where each was when the broker froze
        stalls = [e for e in log_events(stack, "worker_stalled") if e.get("cause") == "kafka"]
        moves = [e for e in log_events(stack, "partitions_revoked") if str(e.get("timestamp", "")) >= _iso(frozen_at)]
        assert moves, f"no rebalance after the outage (stalls on Kafka: {len(stalls)})"

        # a quiescent moment: no more ticks (the API ticks), every partition folded to its end
        stack.api.signal(signal.SIGTERM)
        assert stack.api.wait(30) in (0, -signal.SIGTERM), stack.api.tail(40)
        wait_quiescent(runtime)
        report = runtime.verify_rebuild()  # stops the workers, then `touchstream replay`
        fenced = sum(1 for _ in log_events(stack, "commit_fenced"))
        assert report["identical"] is True, {**report, "stalls": len(stalls), "revokes": len(moves),
                                             "commits_fenced": fenced}
        assert report["exit_code"] == 0 and report["ahead"] == {} and report["unsettled"] == [], report
        assert report["records_dead"] == 0, report
        # through the outage, the rebalance and the stop, every worker log line is one JSON
        # object: faust's and aiokafka's lines included, tracebacks as a field
        for worker in stack.workers:
            text = [line for line in worker.log_path.read_text(errors="replace").splitlines()
                    if line.strip() and not line.startswith(f"--- {worker.name} started ")]  # the stack's own marker
            not_json = [line for line in text if not _is_json_object(line)]
            assert text and not_json == [], (worker.name, len(text), not_json[:5])
    finally:
        runtime._drop_client()
        stack.stop()


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
