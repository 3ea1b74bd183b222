"""The scale-out runtime as processes (``tools.stack``: Tansu, redis-server, ``touchstream
worker``, ``touchstream run`` with ``TOUCHSTREAM_RUNTIME=kafka``) under what production does
to it, with synthetic CRM traffic posted over HTTP at a steady rate:

- the view worker killed (SIGKILL) five times mid-stream and restarted, with and without
  1% of the topic's records written twice (producer retries);
- the broker frozen (SIGSTOP: its in-memory log survives): ingest answers 503 with
  Retry-After within the Kafka request timeout, and works again once the broker thaws;
- a second worker joining mid-stream, the first one killed, then restarted: the
  partitions move three times while events flow.

Afterwards ``touchstream replay`` must find Redis identical to the topic replayed through
the core, and every acknowledged event must be in its customer's timeline exactly once.

Known Tansu behaviour sets the pace (docs/SCALE_OUT.md): a group join takes half the
session timeout, and a worker restarted after SIGKILL joins two groups in turn (faust's
own, then the fold's), each waiting for the killed predecessor's session to expire. With
the stack's 6 s session a restart took ~17 s before folding resumed; with the 3 s used
here, ~6-7 s (measured), which keeps a crash test near a minute.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.scaleout.redis.feeds import glob_prefix
from services.scaleout.redis.keys import RedisKeys
from tests.support.api import Api, bearer, wait_until
from tests.support.kafka_runtime import KafkaRuntime, kafka_runtime
from tests.support.runtimes import run_replay
from tests.support.server import free_port
from tools.stack_process import StackProcess
from tools.traffic import TrafficOptions, labelled

pytestmark = pytest.mark.e2e

SETTINGS = {
    "TOUCHSTREAM_LOG_LEVEL": "info",  # partition moves and stalls in the logs
    # A shorter session than the stack's 6 s sets a faster pace for restarts (see above);
    # 3 s still leaves a fold batch blocking the event loop well inside it.
    "TOUCHSTREAM_KAFKA_SESSION_TIMEOUT_SECONDS": "3",
    "TOUCHSTREAM_KAFKA_HEARTBEAT_SECONDS": "0.3",
}


# -- traffic ---------------------------------------------------------------------------------
def traffic(events: int, customers: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(customer id, touchpoint) in emission order: the generator's own sender retries
    (1%) included, customers introduced by id, later named by identifiers alone."""
    return list(labelled(TrafficOptions(customers=customers, events=events, seed=seed)))


@dataclass
class Sender:
    """Posts the traffic in batches at a steady rate, one request at a time, like a
    well-behaved batch sender: a 503 is retried after its Retry-After."""

    base_url: str
    key: str
    events: list[tuple[str, dict[str, Any]]]
    rate: float  # events per second
    batch: int = 100
    acknowledged: dict[str, int] = field(default_factory=dict)  # event id -> position
    unavailable: list[float] = field(default_factory=list)  # seconds each 503 took to come back
    failures: list[str] = field(default_factory=list)
    posted: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the sender did not finish within {timeout} s"
        assert not self.failures, self.failures[:5]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _run(self) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, headers=bearer(self.key),
                          timeout=httpx.Timeout(30.0, connect=5.0)) as client:
            for first in range(0, len(self.events), self.batch):
                due = started + first / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                if not self._post(client, [e for _, e in self.events[first:first + self.batch]]):
                    return

    def _post(self, client: httpx.Client, batch: list[dict[str, Any]]) -> bool:
        for _ in range(60):
            sent = time.monotonic()
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError as error:
                self.failures.append(f"transport: {error!r}")
                return False
            if response.status_code == 503:
                self.unavailable.append(time.monotonic() - sent)
                if "Retry-After" not in response.headers:
                    self.failures.append(f"503 without Retry-After: {response.text[:200]}")
                    return False
                self._stop.wait(float(response.headers["Retry-After"]))
                continue
            if response.status_code != 200:
                self.failures.append(f"{response.status_code}: {response.text[:300]}")
                return False
            for event, result in zip(batch, response.json()["results"], strict=True):
                if result["result"] not in ("accepted", "duplicate"):
                    self.failures.append(f"rejected: {result}")
                    return False
                self.acknowledged.setdefault(event["event_id"], result["position"])
            self.posted += len(batch)
            return True
        self.failures.append("still 503 after 60 attempts")
        return False


class Duplicator:
    """Writes 1% of the topic's records a second time, byte for byte (key, value, headers,
    partition), shortly after the original: what a producer's retry after a lost
    acknowledgement does. Runs its own event loop in a thread."""

    def __init__(self, bootstrap: str, partitions: int, share: float = 0.01, seed: int = 5):
        self.bootstrap, self.partitions, self.share = bootstrap, partitions, share
        self.rng = random.Random(seed)
        self.copies = 0
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="duplicator", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Duplicator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the duplicator did not stop"
        if self.error is not None:
            raise self.error

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=10)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        try:
            await consumer.start()
            await producer.start()
            partitions = [TopicPartition(TOUCHPOINTS_TOPIC, p) for p in range(self.partitions)]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, 0)
            copied: set[tuple[int, int]] = set()
            while not self._stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100, max_records=2000)).values():
                    for record in records:
                        self.seen += 1
                        if self.rng.random() >= self.share:
                            continue
                        if (record.partition, record.offset) in copied:
                            continue  # a copy is on the topic too: copy originals only
                        meta = await producer.send_and_wait(TOUCHPOINTS_TOPIC, value=record.value, key=record.key,
                                                            headers=list(record.headers), partition=record.partition)
                        copied.add((meta.partition, meta.offset))
                        self.copies += 1
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error
        finally:
            await producer.stop()
            await consumer.stop()


# -- observation -------------------------------------------------------------------------------
def folded_positions(runtime: KafkaRuntime) -> list[int]:
    """The stored position of every partition (Redis holds the position of record)."""
    keys = stack_keys(runtime)
    client = redis.Redis.from_url(runtime.stack.redis_url, socket_timeout=5)
    try:
        raw = [client.get(keys.position(TOUCHPOINTS_TOPIC, p)) for p in range(runtime.stack.partitions)]
    finally:
        client.close()
    return [-1 if v is None else int(v) for v in raw]


def stack_keys(runtime: KafkaRuntime) -> RedisKeys:
    prefix = runtime.stack.environment().get("TOUCHSTREAM_REDIS_PREFIX", "touchstream")
    return RedisKeys(prefix, runtime.stack.partitions)


def readiness(worker: StackProcess) -> dict[str, Any]:
    """The worker's own account (``/readyz`` body, whatever its status); {} when silent."""
    try:
        return httpx.get(f"http://127.0.0.1:{worker.port}/readyz", timeout=2).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return {}


def wait_folding(runtime: KafkaRuntime, since: list[int], sender: Sender | None = None,
                 timeout: float = 90.0) -> list[int]:
    """Wait until some partition's stored position moved past ``since``; once ``sender``
    is done there may be nothing left to fold, and a worker that joined will do."""

    def moved() -> list[int] | bool:
        now = folded_positions(runtime)
        if now != since:
            return now
        return bool(sender and sender.done and all(readiness(w).get("joined") for w in runtime.stack.workers))

    found = wait_until(moved, timeout=timeout, what=f"folding past {since}")
    return found if isinstance(found, list) else since


def settle(api: Api, position: int, timeout: float = 60.0) -> None:
    """Wait until the views include ``position`` (a read with min_position answers 200)."""

    def reached() -> bool:
        response = api.get("/v1/customers", external_id="e2e:nobody", min_position=position)
        return response.status_code in (200, 404)

    wait_until(reached, timeout=timeout, interval=0.2, what=f"views at position {position}")


def assert_every_acknowledged_event_once(api: Api, events: list[tuple[str, dict[str, Any]]],
                                         acknowledged: dict[str, int]) -> None:
    """Every acknowledged event is in its customer's timeline exactly once, the timeline
    holds nothing that was not sent about that customer, and the view counts the timeline."""
    sent: dict[str, set[str]] = {}
    for customer_id, event in events:
        sent.setdefault(customer_id, set()).add(event["event_id"])
    position = max(acknowledged.values())
    settle(api, position)
    held_total = 0
    for customer_id, ids in sent.items():
        mine = ids & acknowledged.keys()
        if not mine:
            continue
        response = api.get(f"/v1/customers/{customer_id}", min_position=position)
        assert response.status_code == 200, f"{customer_id}: {response.status_code} {response.text[:300]}"
        held = [e["event_id"] for e in api.timeline(customer_id, min_position=position)]
        assert len(held) == len(set(held)), f"{customer_id}: an event twice in its timeline"
        assert mine <= set(held), f"{customer_id}: acknowledged but missing: {sorted(mine - set(held))[:5]}"
        assert set(held) <= ids, f"{customer_id}: holds events never sent about it: {sorted(set(held) - ids)[:5]}"
        assert response.json()["touchpoints"] == len(held), f"{customer_id}: the view counts differently"
        held_total += len(held)
    assert held_total >= len(acknowledged)


def assert_replay_identical(runtime: KafkaRuntime) -> dict[str, Any]:
    """Stop the API and the workers, then ``touchstream replay``: Redis must equal the
    topic replayed through the core, byte for byte, at every partition's stored position
    (records after it, such as a last clock tick, are lag, not a difference)."""
    report = runtime.verify_rebuild()
    assert report["identical"] is True and report["exit_code"] == 0, report
    assert report["records_dead"] == 0 and report["ahead"] == {} and report["unsettled"] == [], report
    return report


@contextmanager
def scale_out(tmp_path: Path, **settings: str) -> Iterator[KafkaRuntime]:
    with kafka_runtime(tmp_path / "scale-out", {**SETTINGS, **settings}) as runtime:
        yield runtime


@dataclass
class Ticker:
    """Posts clock ticks while traffic flows: time marches through the traffic's year and
    beyond (a tick every ``every`` seconds, ``step`` further each), so lifecycle deadlines
    pass and transitions are derived from ticks on every partition mid-crash."""

    base_url: str
    key: str
    start: datetime
    step: timedelta = timedelta(days=10)
    every: float = 1.0
    posted: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def begin(self) -> Ticker:
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        at = self.start
        with httpx.Client(base_url=self.base_url, headers=bearer(self.key), timeout=30.0) as client:
            while not self._stop.wait(self.every) and at < datetime.now(UTC) - timedelta(days=1):
                response = client.post("/v1/clock/ticks", json={"at": at.isoformat()})
                if response.status_code == 202:
                    self.posted += 1
                    at += self.step
                elif response.status_code != 503:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    return


def assert_each_transition_once(api: Api) -> int:
    """The transition feed holds each transition once (the commit is fenced), and never a
    customer's sequence number twice."""
    seen: set[str] = set()
    steps: set[tuple[str, int]] = set()
    cursor = None
    while True:
        page = api.get("/v1/lifecycle/transitions", limit=1000, after=cursor).json()
        for t in page["transitions"]:
            assert t["transition_id"] not in seen, t
            assert (t["customer_id"], t["sequence"]) not in steps, t
            seen.add(t["transition_id"])
            steps.add((t["customer_id"], t["sequence"]))
        if not page["transitions"]:
            return len(seen)
        cursor = page["next_cursor"]


# -- crashes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("duplicated", [False, True], ids=["clean", "1pct-duplicated"])
def test_a_worker_killed_five_times_mid_stream_loses_no_event_and_counts_none_twice(
    tmp_path: Path, duplicated: bool
) -> None:
    events = traffic(20_000, customers=500, seed=31 if duplicated else 29)
    with scale_out(tmp_path) as runtime:
        worker = runtime.stack.workers[0]
        sender = Sender(runtime.base_url, runtime.keys.ingest, events, rate=400)
        copies = Duplicator(runtime.stack.bootstrap, runtime.stack.partitions) if duplicated else None
        since = folded_positions(runtime)
        ticker = Ticker(runtime.base_url, runtime.keys.admin, datetime(2025, 1, 15, tzinfo=UTC))
        sender.start()
        ticker.begin()
        if copies:
            copies.start()
        restarts: list[float] = []
        while_sending = 0
        try:
            for _ in range(5):
                since = wait_folding(runtime, since, sender)  # the worker is folding: crash it now
                while_sending += not sender.done
                worker.kill()
                since, restarted = folded_positions(runtime), time.monotonic()
                worker.spawn()
                since = wait_folding(runtime, since, sender)
                restarts.append(round(time.monotonic() - restarted, 1))
            sender.join(timeout=120)
        finally:
            sender.stop()
            ticker.stop()
            if copies:
                copies.stop()
        print(f"restart to folding again (s): {restarts}; kills while sending: {while_sending}")  # noqa: T201
        assert while_sending >= 3, "the traffic ended before most crashes: slow the sender down"
        if copies:
            assert copies.copies >= copies.seen // 200, (copies.copies, copies.seen)  # ~1% written twice
        assert len(sender.acknowledged) == len({e["event_id"] for _, e in events}), "not every event acknowledged"
        assert not sender.unavailable, sender.unavailable

        assert not ticker.failures and ticker.posted >= 10, (ticker.posted, ticker.failures[:3])
        assert_every_acknowledged_event_once(Api(runtime), events, sender.acknowledged)
        assert assert_each_transition_once(Api(runtime)) > 0
        assert_replay_identical(runtime)  # ticks included: the same transitions, byte for byte


# -- broker outage -----------------------------------------------------------------------------
def test_with_the_broker_frozen_ingest_answers_503_in_time_and_loses_nothing_once_it_thaws(tmp_path: Path) -> None:
    events = traffic(3_000, customers=200, seed=37)
    timeout_s = 2.0  # TOUCHSTREAM_KAFKA_REQUEST_TIMEOUT_MS of the test runtime
    with scale_out(tmp_path, TOUCHSTREAM_KAFKA_REQUEST_TIMEOUT_MS=str(int(timeout_s * 1000))) as runtime:
        api = Api(runtime)
        sender = Sender(runtime.base_url, runtime.keys.ingest, events, rate=600).start()
        try:
            wait_until(lambda: len(sender.acknowledged) >= 500, timeout=30, what="traffic acknowledged")
            with runtime.storage_unavailable():  # SIGSTOP: the broker keeps its log, answers nothing
                wait_until(lambda: len(sender.unavailable) >= 2, timeout=30, what="ingest answering 503")
                probe = {**events[0][1], "event_id": "frozen-broker-probe"}  # new: it must reach Kafka
                answers = []
                for _ in range(5):  # the broker is known to be down: most are refused at once
                    started = time.monotonic()
                    refused = api.post_events(probe)
                    answers.append((refused.status_code, time.monotonic() - started, refused.headers.get("Retry-After")))
            assert all(code == 503 and retry for code, _, retry in answers), answers
            assert all(took <= timeout_s + 1.0 for _, took, _ in answers), answers
            # the circuit breaker: only an attempt after its window waits for the broker
            assert sum(1 for _, took, _ in answers if took < 0.5) >= 3, answers
            assert all(t <= timeout_s + 1.0 for t in sender.unavailable), sender.unavailable
            sender.join(timeout=120)  # it retries what was refused, after Retry-After
        finally:
            sender.stop()
        assert len(sender.acknowledged) == len({e["event_id"] for _, e in events})
        answer = api.ingest(probe)  # the refused probe, sent again, is taken now
        assert answer["results"][0]["result"] in ("accepted", "duplicate"), answer
        sender.acknowledged[probe["event_id"]] = answer["results"][0]["position"]
        assert_every_acknowledged_event_once(api, [*events, (events[0][0], probe)], sender.acknowledged)
        assert_replay_identical(runtime)


# -- rebalancing -------------------------------------------------------------------------------
def test_workers_joining_crashing_and_coming_back_mid_stream_leave_every_view_right(tmp_path: Path) -> None:
    """While events flow: worker-2 joins worker-1 (the partitions split), worker-1 is
    killed (worker-2 takes them all once its session expires), and worker-1 comes back,
    as a supervisor would restart it (they split again)."""
    events = traffic(10_000, customers=300, seed=41)
    with scale_out(tmp_path) as runtime:
        stack = runtime.stack
        first = stack.workers[0]
        second = StackProcess("worker-2", ["worker"], {}, stack.logs / "worker-2.log", "127.0.0.1", free_port())
        second.env = {**stack.environment(stack.directory / second.name), "TOUCHSTREAM_WORKER_HOST": "127.0.0.1",
                      "TOUCHSTREAM_WORKER_WEB_PORT": str(second.port)}
        everything = list(range(stack.partitions))

        def split() -> bool:
            mine, theirs = readiness(first).get("partitions"), readiness(second).get("partitions")
            return bool(mine and theirs and sorted(mine + theirs) == everything)

        sender = Sender(runtime.base_url, runtime.keys.ingest, events, rate=300).start()
        try:
            since = wait_folding(runtime, folded_positions(runtime))
            second.spawn()
            wait_until(split, timeout=90, what="the partitions split between two workers")
            since = wait_folding(runtime, since)
            first.kill()
            wait_until(lambda: readiness(second).get("partitions") == everything, timeout=90,
                       what="worker-2 owning every partition")
            since = wait_folding(runtime, since)
            first.spawn()
            wait_until(split, timeout=90, what="the partitions split again")
            moves_done = not sender.done
            sender.join(timeout=120)
            assert moves_done, "the traffic ended before the partitions moved back: slow the sender down"
            assert_every_acknowledged_event_once(Api(runtime), events, sender.acknowledged)
        finally:
            sender.stop()
            second.signal(signal.SIGTERM)
            second.wait(30)
        assert_replay_identical(runtime)


# -- verifying a running system ------------------------------------------------------------------
def customer_not_due_soon(runtime: KafkaRuntime) -> str:
    """A customer no clock tick will visit in the next ten minutes (no lifecycle deadline
    before then), so the worker leaves its stored state alone while the test looks."""
    keys = stack_keys(runtime)
    client = redis.Redis.from_url(runtime.stack.redis_url, socket_timeout=5)
    try:
        soon = (time.time() + 600) * 1e6
        due = {c.decode() for p in range(runtime.stack.partitions)
               for c in client.zrangebyscore(keys.deadlines(TOUCHPOINTS_TOPIC, p), "-inf", soon)}
        customers = sorted(name.decode()[len(keys.state("", p)):] for p in range(runtime.stack.partitions)
                           for name in client.scan_iter(match=glob_prefix(keys.state("", p)), count=1000))
    finally:
        client.close()
    quiet = [c for c in customers if c not in due]
    assert quiet, "every customer is due within ten minutes"
    return quiet[0]


def corrupt_touchpoints(runtime: KafkaRuntime, customer_id: str) -> None:
    client = redis.Redis.from_url(runtime.stack.redis_url, socket_timeout=5)
    try:
        key = stack_keys(runtime).state(customer_id)
        state = orjson.loads(client.get(key))
        state["touchpoints"] += 1
        client.set(key, orjson.dumps(state))
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_touchstream_replay_verifies_a_running_stack_and_names_the_field_a_corrupted_state_differs_in(
    tmp_path: Path,
) -> None:
    """``touchstream replay`` while the API ticks every second and events keep arriving:
    each partition is replayed to the position stored at the start, states written since
    are replayed further, so the running system is identical (exit 0); a state changed
    behind the worker's back is a difference naming the customer and ``touchpoints``
    (exit 1); Redis unreachable is no verdict (exit 2)."""
    events = traffic(3_000, customers=150, seed=43)
    first, later = events[:2_000], events[2_000:]
    with scale_out(tmp_path, TOUCHSTREAM_CLOCK_TICK_SECONDS="1") as runtime:
        api = Api(runtime)
        sender = Sender(runtime.base_url, runtime.keys.ingest, first, rate=2_000).start()
        sender.join(timeout=60)
        settle(api, max(sender.acknowledged.values()))
        environment = runtime.stack.environment()

        more = Sender(runtime.base_url, runtime.keys.ingest, later, rate=100).start()  # moving while it replays
        try:
            report = run_replay(environment, timeout=120)
            moving = not more.done
        finally:
            more.stop()
        print({k: report[k] for k in ("seconds", "rounds", "compared_at", "lag", "unsettled_customers")})  # noqa: T201
        assert report["exit_code"] == 0 and report["identical"] is True, report
        assert report["differing_customers"] == 0 and report["ahead"] == {}, report
        assert report["customers"] >= 100 and moving, report

        settle(api, max(more.acknowledged.values()))  # the worker is done with the events: only ticks now
        customer_id = customer_not_due_soon(runtime)
        corrupt_touchpoints(runtime, customer_id)
        report = run_replay(environment, timeout=120)
        assert report["exit_code"] == 1 and report["identical"] is False, report
        assert report["differing_customers"] == 1, report
        assert report["differences"] == [{"customer_id": customer_id, "fields": ["touchpoints"],
                                          "fields_differing": 1}], report

        away = run_replay({**environment, "TOUCHSTREAM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, timeout=60)
        assert away["exit_code"] == 2 and away["identical"] is None and "error" in away, away
