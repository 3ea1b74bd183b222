"""Graceful lifecycle of ``touchstream run`` and ``touchstream worker``: SIGTERM makes
``/readyz`` answer 503 at once while the process keeps serving (folding) for the
configured delay, then it stops accepting, finishes the requests (the batch) in flight,
commits and exits, not ready until the end. A rolling restart under continuous load
loses nothing, on either runtime: every event acknowledged with a 2xx, before or after
the restart, is in the views exactly once."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import Api, bearer, call, unique, wait_until
from tests.support.kafka_runtime import kafka_runtime
from tests.support.server import TEST_KEYS, RunningServer

pytestmark = pytest.mark.e2e

T = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = 8


def test_sigterm_turns_readiness_off_at_once_and_serves_until_the_delay_has_passed(tmp_path: Path) -> None:
    server = RunningServer(tmp_path, {"TOUCHSTREAM_SHUTDOWN_DELAY_SECONDS": "1.5"}).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            assert client.get("/readyz").status_code == 200
            assert server.process is not None
            signalled = time.monotonic()
            server.process.terminate()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["draining"] == "yes", ready.text
            assert time.monotonic() - signalled < 0.5
            assert client.get("/healthz").status_code == 200  # alive: not to be restarted
            event = call(f"drain-{unique()}", T, {"customer_id": f"drain-{unique()}"})
            accepted = client.post("/v1/events", json=event, headers=bearer(TEST_KEYS.ingest))
            assert accepted.status_code in (200, 202), accepted.text  # still serving during the delay
            assert time.monotonic() - signalled < 1.5, "the test was too slow to observe the delay"
        server.process.wait(20)
        assert time.monotonic() - signalled >= 1.5, "the listener closed before the delay"
        assert server.process.returncode in (0, -15), server.recent_stderr()
        server.start()
        view = Api(server).customer(event["customer"]["customer_id"], min_position=accepted.json()["position"])
        assert view["touchpoints"] == 1
    finally:
        server.close()


class Sender(threading.Thread):
    """Posts batches of new events as fast as the runtime answers; a batch that fails
    (refused connection, reset, 503) is sent again with the same event ids, as a sender
    is told to. Records what was acknowledged with a 2xx."""

    def __init__(self, runtime: Any, name: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.runtime, self.tag, self.stop = runtime, name, stop
        self.acked: dict[str, int] = {}  # event id -> position
        self.failures = 0
        self.acked_at: list[float] = []

    def run(self) -> None:
        sequence = itertools.count()
        client: httpx.Client | None = None
        batch: list[dict[str, Any]] = []
        while not self.stop.is_set():
            if not batch:
                batch = [call(f"{self.tag}-{n}", T + timedelta(seconds=n), {"customer_id": f"rolling-{n % CUSTOMERS}"})
                         for n in itertools.islice(sequence, 5)]
            try:
                if client is None or str(client.base_url).rstrip("/") != self.runtime.base_url:
                    client = httpx.Client(base_url=self.runtime.base_url, timeout=10)
                answer = client.post("/v1/events", json=batch, headers=bearer(self.runtime.keys.ingest))
            except httpx.TransportError:
                self.failures += 1
                client = None
                time.sleep(0.02)
                continue
            if answer.status_code in (200, 202):
                results = answer.json()["results"]
                assert all(r["result"] in ("accepted", "duplicate") for r in results), results
                for event, result in zip(batch, results, strict=True):
                    self.acked[event["event_id"]] = result["position"]
                self.acked_at.append(time.monotonic())
                batch = []
            else:
                assert answer.status_code == 503, answer.text
                self.failures += 1
                time.sleep(0.02)
        if client is not None:
            client.close()


@pytest.mark.parametrize("delay", ["0", "0.5"])
def test_a_rolling_restart_under_load_keeps_every_acknowledged_event_exactly_once(
        start_runtime: Callable[..., Any], delay: str) -> None:
    runtime = start_runtime({"TOUCHSTREAM_SHUTDOWN_DELAY_SECONDS": delay,
                             "TOUCHSTREAM_WORKER_SHUTDOWN_DELAY_SECONDS": delay})
    stop = threading.Event()
    senders = [Sender(runtime, f"s{n}-{unique()}", stop) for n in range(3)]
    try:
        for sender in senders:
            sender.start()
        time.sleep(1.5)
        before = sum(len(s.acked) for s in senders)
        stopped_at = time.monotonic()
        runtime.stop()  # SIGTERM under load; asserts a graceful exit
        runtime.restart()  # on the same data (SQLite files, or broker and Redis)
        time.sleep(1.5)
        stop.set()
        for sender in senders:
            sender.join(30)
            assert not sender.is_alive()
        after = [t for s in senders for t in s.acked_at if t > stopped_at]
        assert before > 0 and after, (before, len(after))
        _assert_every_acknowledged_event_is_in_the_views_once(runtime, senders)
    finally:
        stop.set()


def test_a_worker_stopped_under_load_is_not_ready_from_sigterm_until_exit_and_loses_nothing(
        tmp_path: Path) -> None:
    with kafka_runtime(tmp_path, {"TOUCHSTREAM_WORKER_SHUTDOWN_DELAY_SECONDS": "1"}) as runtime:
        stop = threading.Event()
        senders = [Sender(runtime, f"w{n}-{unique()}", stop) for n in range(2)]
        try:
            for sender in senders:
                sender.start()
            wait_until(lambda: all(s.acked for s in senders), timeout=90, what="an acknowledgement for every sender")
            worker = runtime.stack.workers[0]
            assert worker.probe()[0] == 200
            assert worker.process is not None
            worker.process.terminate()  # SIGTERM while events keep arriving
            answers = []
            while worker.running:
                answers.append(worker.probe())
                time.sleep(0.02)
            assert worker.wait(30) == 0, worker.tail(40)
            draining = [i for i, (status, body) in enumerate(answers)
                        if status == 503 and json.loads(body)["draining"] is True]
            assert draining, f"never seen draining before exit: {answers[:5]}"
            # once draining, never ready again; near the end the listener closes (status 0)
            assert all(status in (503, 0) for status, _ in answers[draining[0]:]), answers

            worker.spawn()  # the next worker resumes from the positions the stopped one committed
            wait_until(lambda: worker.probe()[0] == 200, timeout=90, what="the restarted worker ready")
            stop.set()
            for sender in senders:
                sender.join(30)
                assert not sender.is_alive()
            _assert_every_acknowledged_event_is_in_the_views_once(runtime, senders)
        finally:
            stop.set()


def _assert_every_acknowledged_event_is_in_the_views_once(runtime: Any, senders: list[Sender]) -> None:
    acked = {event_id: position for s in senders for event_id, position in s.acked.items()}
    api = Api(runtime)
    newest = max(acked.values())
    # a restarted worker may still be folding the backlog: wait for it (not a speed test)
    wait_until(lambda: api.get("/v1/customers/rolling-0", min_position=newest).status_code == 200,
               timeout=60, what="the views catching up with every acknowledged event")
    seen: list[str] = []
    for k in range(CUSTOMERS):
        view = api.customer(f"rolling-{k}", min_position=newest)
        timeline = [event["event_id"] for event in api.timeline(f"rolling-{k}")]
        assert len(timeline) == len(set(timeline)) == view["touchpoints"], f"rolling-{k} counts an event twice"
        seen += timeline
    missing = set(acked) - set(seen)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"

