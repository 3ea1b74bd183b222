"""The view worker (``services.scaleout.worker.consumer.ViewWorker``) in-process, against a real
Tansu broker and a real redis-server, under what production does to it:

- records it cannot fold (garbage, an unknown schema, another family's record, a corrupt
  identity decision, a tombstone, a foreign record naming nobody) become dead letters,
  in Redis and on the dead-letter topic, each with its reason, and the worker goes on;
- records written twice (producer retries) count once;
- Redis crashing or hanging while events flow stalls the worker, which says so, does
  not die, and resumes by itself when Redis is back;
- workers joining and leaving the group mid-stream hand partitions over, and back,
  without losing or doubling anything; a worker frozen past its session (a zombie)
  comes back without undoing what its successor folded;
- records of another producer naming one customer on two partitions: the ones not on the
  customer's own partition are dead letters (``misrouted``), never folded by two workers.

After each scenario the check is the independent one: ``services.scaleout.worker.replay.verify``
replays the topic through the core and compares it byte for byte with Redis, and every
customer holds exactly the events sent about it.

Topic names are fixed, so each test has a broker of its own (``broker``: a fresh Tansu
starts in milliseconds); group joins take about half the session timeout (3 s here, see
docs/SCALE_OUT.md), which is most of each test's time.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from projections.codec import to_dict
from projections.segments.membership import members_of
from projections.touchpoints import CustomerRef
from projections.value.rfm_cells import changes, rfm_figures
from projections.view.document import from_state
from services.contracts import encode, encode_record
from services.contracts.registry import MARKER
from services.scaleout.kafka.publisher import TouchpointPublisher
from services.scaleout.kafka.records import RESOLUTION_HEADER, cloudevents_headers
from services.scaleout.kafka.topics import DEAD_LETTERS_TOPIC, TOUCHPOINTS_TOPIC, ensure_topics
from services.scaleout.platform import KafkaPlatform
from services.scaleout.redis.segments import RedisSegments
from services.scaleout.redis.views import RedisViewStore
from services.scaleout.worker.consumer import ViewWorker
from services.scaleout.worker.replay import live_states, verify
from services.segments.file import load_segments
from services.settings import Settings
from tests.support.redis_server import RedisServer, unique_prefix
from tests.support.tansu import TansuBroker
from tests.support.touchpoints import at, call, purchase

T = TypeVar("T")

PARTITIONS = 2
VIEW_EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "view" / "customer_view" / "v1.examples.json"


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as tansu:
        asyncio.run(ensure_topics(tansu.bootstrap, PARTITIONS))
        yield tansu


def settings_for(bootstrap: str, redis_url: str, prefix: str, **extra: Any) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, redis_prefix=prefix,
                    worker_group=f"views-{prefix}", kafka_partitions=PARTITIONS, kafka_fetch_max_wait_ms=10,
                    kafka_session_timeout_seconds=6, kafka_heartbeat_seconds=0.5, kafka_request_timeout_ms=3000,
                    **extra)


@pytest.fixture
def settings(broker: TansuBroker, redis_url: str, redis_prefix: str) -> Settings:
    return settings_for(broker.bootstrap, redis_url, redis_prefix)


# -- harness ---------------------------------------------------------------------------------
async def eventually(probe: Callable[[], T | Awaitable[T]], *, timeout: float, what: str) -> T:
    """Poll ``probe`` (plain or async) until it returns something truthy; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")
        await asyncio.sleep(0.05)


def wait_for(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@dataclass
class Member:
    """A started worker and the task running its loop."""

    worker: ViewWorker
    task: asyncio.Task[None]

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def stop(self) -> None:
        assert self.alive, f"the worker's loop ended by itself: {self.task}"
        await self.worker.stop()
        await asyncio.wait_for(self.task, 15)  # re-raises whatever the loop died of


async def start_worker(settings: Settings, name: str = "worker-1") -> Member:
    worker = ViewWorker(settings, client_id=name)
    await worker.start()
    return Member(worker, asyncio.create_task(worker.run(), name=name))


@asynccontextmanager
async def running_worker(settings: Settings, name: str = "worker-1") -> AsyncIterator[Member]:
    member = await start_worker(settings, name)
    try:
        yield member
    finally:
        if member.alive:
            await member.stop()


def touchpoint(event_id: str, n: int, ref: CustomerRef) -> dict[str, Any]:
    """A canonical touchpoint document (call or purchase), as the API hands it to ingest."""
    if n % 3 == 2:
        return to_dict(purchase(event_id, at(hours=n), amount=f"{n % 50 + 1}.00", ref=ref))
    return to_dict(call(event_id, at(hours=n), ref=ref))


@dataclass
class Sent:
    """Events sent about each customer (by the email that names it, or its id)."""

    events: dict[str, list[str]] = field(default_factory=dict)

    def add(self, who: str, event_id: str) -> None:
        self.events.setdefault(who, []).append(event_id)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.events.values())


async def topic_ends(bootstrap: str, topic: str = TOUCHPOINTS_TOPIC) -> dict[int, int]:
    """The end offset of each partition, from fetch responses' high watermark (Tansu's
    ListOffsets(latest) answers the last batch's base offset instead)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        ends: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while len(ends) < len(partitions) and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=100, max_records=1)
            for tp in partitions:
                if consumer.highwater(tp) is not None:
                    ends[tp.partition] = consumer.highwater(tp)
        assert len(ends) == len(partitions), f"no high watermark for every partition: {ends}"
        return ends
    finally:
        await consumer.stop()


async def all_folded(settings: Settings, timeout: float = 30.0) -> dict[int, int]:
    """Wait until Redis holds every partition's position at its end offset - 1."""
    ends = await topic_ends(settings.kafka_bootstrap)
    wanted = {p: end - 1 for p, end in ends.items()}
    async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:

        async def positions() -> bool:
            return {p: await store.position(TOUCHPOINTS_TOPIC, p) for p in wanted} == wanted

        await eventually(positions, timeout=timeout, what=f"positions {wanted} in Redis")
    return wanted


async def assert_views_hold_exactly(platform: KafkaPlatform, sent: Sent, *, by_email: bool = True) -> None:
    """Each customer's published view counts exactly the distinct events sent about it, and
    its timeline holds each of them once."""
    for who, event_ids in sent.events.items():
        customer_id = await platform.owner(("email", who)) if by_email else who
        assert customer_id, f"{who} has no customer"
        document = orjson.loads(await platform.store.document(customer_id) or b"null")
        assert document is not None, f"{customer_id} has no published view"
        page = await platform.timeline(customer_id, limit=100_000, cursor=None)
        held = [e["event_id"] for e in page.events]
        assert len(held) == len(set(held)), f"{customer_id}: an event twice in the timeline"
        assert sorted(held) == sorted(set(event_ids)), f"{customer_id}: timeline differs from what was sent"
        assert document["touchpoints"] == len(set(event_ids)), f"{customer_id}: {document['touchpoints']} counted"


async def assert_replay_identical(settings: Settings, *, dead: int = 0) -> dict[str, Any]:
    """Redis equals the topic replayed through the core, and the RFM cells the commits
    kept equal a recomputation over every stored view (each change applied once)."""
    report = await verify(settings)
    assert report["identical"] is True, report
    assert report["records_dead"] == dead, report
    states, _ = await live_states(settings.redis_url, settings.redis_prefix, PARTITIONS)
    expected = changes((None, rfm_figures(from_state(orjson.loads(s)), settings.value_currency))
                       for s in states.values())
    async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:
        assert await store.rfm_cells(TOUCHPOINTS_TOPIC, PARTITIONS) == expected
        # segment members: each entry and exit applied once, whatever crashed or moved
        segments = load_segments(settings.segments_file)
        members = RedisSegments(store, segments)
        views = [from_state(orjson.loads(s)) for s in states.values()]
        wanted = {(sid, v.customer_id) for v in views for sid in members_of(v, segments)}
        kept = {(s.id, row[0]) for s in segments.segments async for row in members.members(s.id)}
        assert kept == wanted
        counts = await members.counts()
        assert counts == {s.id: sum(1 for sid, _ in wanted if sid == s.id) for s in segments.segments}
    return report


# -- dead letters ------------------------------------------------------------------------------
def bad_records(tag: str) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], str | None]]:
    """(expected reason, key, value, headers, event id in ce_id) of records no worker can fold."""
    ref = CustomerRef(emails=(f"{tag}.foreign@example.com",))
    foreign = call(f"{tag}-foreign", at(), ref=ref)
    valid = encode(foreign)
    headers = cloudevents_headers(to_dict(foreign))
    view_document = json.loads(VIEW_EXAMPLES.read_text())[0]
    # a producer writing the topic itself, past the API's rules: a negative purchase
    negative = {**to_dict(purchase(f"{tag}-negative", at(), ref=ref)), "amount": "-30.0000"}
    return [
        ("undecodable: UndecodableRecord: touchpoint/purchase: ValueError('a purchase amount is never negative",
         b"cus-negative", encode_record("touchpoint/purchase", negative), cloudevents_headers(negative),
         f"{tag}-negative"),
        ("undecodable: NotSingleObjectEncoded", b"cus-garbage", b"\x9f\x00 definitely not Avro \xff",
         [("ce_id", f"{tag}-garbage".encode())], f"{tag}-garbage"),
        ("undecodable: UnknownSchemaFingerprint", b"cus-unknown", MARKER + b"\xfe" * 8 + valid[len(MARKER) + 8:],
         headers, f"{tag}-foreign"),
        ("undecodable: NotATouchpoint", b"cus-view", encode_record("view/customer_view", view_document), [], None),
        ("unresolved: bad touchstream-resolution header", b"cus-corrupt", valid,
         [*headers, (RESOLUTION_HEADER, b'{"customer_id": "cus-1", "conflicts": [[')], f"{tag}-foreign"),
        ("undecodable: record has no value", b"cus-tombstone", None, [], None),
        ("unresolved: no resolution header, no customer id and no record key", None, valid, headers, f"{tag}-foreign"),
    ]


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the start, once ``expected`` are there (or 10 s)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        found: list[ConsumerRecord] = []
        deadline = time.monotonic() + 10
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                found += records
        return found
    finally:
        await consumer.stop()


def test_bad_records_become_dead_letters_with_their_reason_and_every_good_event_is_folded(
    settings: Settings,
) -> None:
    tag = unique_prefix()
    emails = [f"{tag}.{k}@example.com" for k in range(4)]

    async def scenario() -> None:
        platform = KafkaPlatform(settings)
        await platform.start()
        raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await raw.start()
        sent, bad = Sent(), {}
        try:
            async with running_worker(settings) as member:
                n = 0
                for round_, bad_one in enumerate([*bad_records(tag), None]):
                    docs = []
                    for _ in range(10):  # good events on both sides of every bad one
                        email = emails[n % len(emails)]
                        docs.append(touchpoint(f"{tag}-good-{n}", n, CustomerRef(emails=(email,))))
                        sent.add(email, docs[-1]["event_id"])
                        n += 1
                    answers = await platform.append(docs)
                    if bad_one is None:
                        break
                    reason, key, value, headers, event_id = bad_one
                    meta = await raw.send_and_wait(TOUCHPOINTS_TOPIC, value=value, key=key, headers=headers,
                                                   partition=round_ % PARTITIONS)
                    bad[(meta.partition, meta.offset)] = (reason, value, event_id)
                caught = await platform.caught_up(answers[-1][0], timeout=20)
                assert caught.reached, caught
                await all_folded(settings)

                assert member.alive and member.worker.status()["stalled"] is None, member.worker.status()
                assert member.worker.folded == sent.total
                await assert_views_hold_exactly(platform, sent)

                # Redis: one dead-letters entry per bad record, with its reason and source
                letters = await platform.dead_letters(after=0, limit=100)
                by_place = {(d["partition"], d["offset"]): d for d in letters}
                assert len(letters) == len(by_place) == len(bad), letters
                for place, (reason, _, event_id) in bad.items():
                    letter = by_place[place]
                    assert letter["reason"].startswith(reason), (place, letter)
                    assert letter["topic"] == TOUCHPOINTS_TOPIC and letter["event_id"] == event_id, letter
                    assert letter["position"] is None, letter  # never acknowledged by ingest

            # the dead-letter topic: the original bytes, the reason and the source in headers
            records = await read_topic(settings.kafka_bootstrap, DEAD_LETTERS_TOPIC, len(bad))
            assert len(records) == len(bad), [r.headers for r in records]
            for record in records:
                headers = dict(record.headers)
                assert headers["touchstream-source-topic"] == TOUCHPOINTS_TOPIC.encode()
                place = (int(headers["touchstream-source-partition"]), int(headers["touchstream-source-offset"]))
                reason, value, _ = bad[place]
                assert headers["touchstream-dead-letter-reason"].decode().startswith(reason), headers
                assert record.value == value
            await assert_replay_identical(settings, dead=len(bad))
        finally:
            await raw.stop()
            await platform.close()

    asyncio.run(scenario())


# -- producer retries ----------------------------------------------------------------------------
def test_records_written_twice_by_producer_retries_are_counted_once(settings: Settings) -> None:
    """1% of the records ingest wrote are written again, byte for byte, as a retrying
    producer does: some right behind the original (same poll), some long after it (the
    original already committed)."""
    tag = unique_prefix()
    emails = [f"{tag}.{k}@example.com" for k in range(40)]
    rng = random.Random(7)

    async def scenario() -> None:
        platform = KafkaPlatform(settings)
        await platform.start()
        raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await raw.start()
        tail = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=10)
        await tail.start()
        tail.assign([TopicPartition(TOUCHPOINTS_TOPIC, p) for p in range(PARTITIONS)])
        for p in range(PARTITIONS):
            tail.seek(TopicPartition(TOUCHPOINTS_TOPIC, p), 0)
        sent, written, copies = Sent(), [], 0
        try:
            async with running_worker(settings) as member:
                n = 0
                for batch in range(20):
                    docs = []
                    for _ in range(100):
                        email = rng.choice(emails)
                        docs.append(touchpoint(f"{tag}-{n}", n, CustomerRef(emails=(email,))))
                        sent.add(email, docs[-1]["event_id"])
                        n += 1
                    answers = await platform.append(docs)
                    assert not any(duplicate for _, duplicate in answers)
                    target = len(written) + len(docs)
                    while len(written) < target:  # what ingest wrote, as it is on the topic
                        for records in (await tail.getmany(timeout_ms=100)).values():
                            written += records
                    # one record in a hundred again: alternately one just written, one from long ago
                    record = rng.choice(written[-len(docs):] if batch % 2 else written)
                    await raw.send_and_wait(TOUCHPOINTS_TOPIC, value=record.value, key=record.key,
                                            headers=list(record.headers), partition=record.partition)
                    copies += 1
                assert copies == sent.total // 100
                caught = await platform.caught_up(answers[-1][0], timeout=20)
                assert caught.reached, caught
                await all_folded(settings)
                assert member.alive
                assert member.worker.folded == sent.total  # the copies changed nothing
            await assert_views_hold_exactly(platform, sent)
            report = await assert_replay_identical(settings)
            assert report["customers"] == len(sent.events)
        finally:
            await tail.stop()
            await raw.stop()
            await platform.close()

    asyncio.run(scenario())


# -- Redis outages ---------------------------------------------------------------------------------
@dataclass
class Feeder:
    """Publishes touchpoints at a steady pace, as ingest would (the identity decision in
    the record), until stopped. Through the publisher, not ``KafkaPlatform.append``:
    ingest itself needs Redis, and the point is records arriving while Redis is away."""

    publisher: TouchpointPublisher
    tag: str
    customers: int = 8
    sent: Sent = field(default_factory=Sent)
    published: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self._stop.is_set():
            docs, decisions = [], []
            for _ in range(20):
                customer_id = f"cus-{self.tag}-{n % self.customers}"
                docs.append(touchpoint(f"{self.tag}-{n}", n, CustomerRef(customer_id=customer_id)))
                decisions.append((customer_id, ()))
                n += 1
            await self.publisher.publish(docs, decisions)
            for doc in docs:
                self.sent.add(doc["customer"]["customer_id"], doc["event_id"])
            self.published += len(docs)
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@pytest.mark.parametrize("outage", ["crash", "hang"])
def test_with_redis_away_the_worker_stalls_says_so_and_resumes_by_itself_losing_nothing(
    broker: TansuBroker, outage: str
) -> None:
    """Two realistic outages of a Redis that holds the positions of record, so run with
    its append-only file fsynced on every write (a Redis without persistence that
    restarts has lost the positions: that is a rebuild, not an outage):

    - ``crash``: redis-server killed (SIGKILL) and restarted on the same port, its data
      read back from the AOF: the worker meets refused connections, then a fresh server;
    - ``hang``: redis-server frozen (SIGSTOP) then thawed (SIGCONT), as in a stalled VM or
      a network partition: calls time out with their outcome unknown, and a commit the
      worker gave up on may still apply when Redis wakes up; the fence on the partition
      position is what keeps that harmless.
    """
    tag = unique_prefix()
    with RedisServer(durable=True) as redis_server:
        settings = settings_for(broker.bootstrap, redis_server.url, tag, redis_timeout_seconds=0.5)

        async def scenario() -> None:
            publisher = TouchpointPublisher.from_settings(settings)
            await publisher.start()
            feeder = Feeder(publisher, tag)
            feeding = asyncio.create_task(feeder.run())
            try:
                async with running_worker(settings) as member:
                    worker = member.worker
                    await eventually(lambda: worker.folded >= 200, timeout=20, what="folding under way")
                    if outage == "crash":
                        redis_server.kill()
                    else:
                        redis_server.pause()
                    try:
                        await eventually(lambda: worker.status()["stalled"] == "redis", timeout=10,
                                         what="the worker saying it is stalled on Redis")
                        folded, published = worker.folded, feeder.published
                        # ~2 s of records arrive meanwhile (the worker's retries back off to
                        # seconds); it holds on and does not die
                        await eventually(lambda: feeder.published >= published + 1500, timeout=30,
                                         what="records published during the outage")
                        assert member.alive and worker.status()["stalled"] == "redis", worker.status()
                        assert worker.folded == folded, "folded while Redis was away"
                    finally:
                        if outage == "crash":
                            redis_server.start()
                        else:
                            redis_server.resume()
                    await eventually(lambda: worker.status()["stalled"] is None, timeout=15,
                                     what="the worker resuming by itself")
                    await eventually(lambda: worker.folded > folded, timeout=15, what="folding again")
                    feeder.stop()
                    await feeding
                    await all_folded(settings)
                    assert member.alive
                platform = KafkaPlatform(settings)  # reads only: no start() needed
                try:
                    await assert_views_hold_exactly(platform, feeder.sent, by_email=False)
                finally:
                    await platform.close()
                await assert_replay_identical(settings)
            finally:
                feeder.stop()
                if not feeding.done():
                    feeding.cancel()
                await publisher.stop()

        asyncio.run(scenario())


# -- rebalancing -----------------------------------------------------------------------------------
def test_workers_joining_and_leaving_mid_stream_leave_every_view_right(settings: Settings) -> None:
    """Ingest keeps posting while the group changes under it:

    1. worker-2 joins worker-1: the two partitions are split between them;
    2. worker-2 leaves: worker-1 gets its partition back, whose views worker-2 changed
       meanwhile (worker-1 must not fold onto the views it held before);
    3. worker-3 joins, then worker-1 leaves: worker-3 ends with both partitions.

    Whatever batch was in flight on a moving partition, every view ends exactly as a
    replay of the topic says, and every customer holds each event sent about it once."""
    tag = unique_prefix()
    emails = [f"{tag}.{k}@example.com" for k in range(30)]

    async def scenario() -> None:
        platform = KafkaPlatform(settings)
        await platform.start()
        sent, positions, stop = Sent(), [], asyncio.Event()

        async def ingest() -> None:
            n = 0
            while not stop.is_set():
                docs = []
                for _ in range(20):
                    email = emails[(n * 7) % len(emails)]
                    docs.append(touchpoint(f"{tag}-{n}", n, CustomerRef(emails=(email,))))
                    sent.add(email, docs[-1]["event_id"])
                    n += 1
                positions.extend(p for p, _ in await platform.append(docs))
                await asyncio.sleep(0.02)

        async def folding(member: Member, more: int = 100) -> None:
            folded = member.worker.folded
            await eventually(lambda: member.worker.folded >= folded + more, timeout=20,
                             what=f"{member.task.get_name()} folding {more} more")

        async def split(one: Member, other: Member) -> None:
            await eventually(lambda: len(one.worker.status()["partitions"]) == 1
                             and len(other.worker.status()["partitions"]) == 1,
                             timeout=30, what="the partitions split between two workers")
            await folding(one, 40)
            await folding(other, 40)

        async def alone(member: Member) -> None:
            await eventually(lambda: member.worker.status()["partitions"] == [0, 1], timeout=30,
                             what=f"{member.task.get_name()} owning both partitions")
            await folding(member)

        feeding = asyncio.create_task(ingest())
        members: list[Member] = []
        try:
            members.append(first := await start_worker(settings, "worker-1"))
            await folding(first, 200)
            members.append(second := await start_worker(settings, "worker-2"))
            await split(first, second)
            await second.stop()
            await alone(first)
            members.append(third := await start_worker(settings, "worker-3"))
            await split(first, third)
            await first.stop()
            await alone(third)
            stop.set()
            await feeding
            caught = await platform.caught_up(positions[-1], timeout=20)
            assert caught.reached, caught
            await all_folded(settings)
            assert third.alive and third.worker.status()["stalled"] is None, third.worker.status()
            await assert_views_hold_exactly(platform, sent)
            await assert_replay_identical(settings)
        finally:
            stop.set()
            if not feeding.done():
                feeding.cancel()
            for member in members:
                if member.alive:
                    await member.stop()
            await platform.close()

    asyncio.run(scenario())


class ThreadedMember:
    """A worker on an event loop of its own, in a thread: ``freeze`` blocks that loop (a
    long GC pause, a stalled VM) without touching the code it runs, heartbeats included."""

    def __init__(self, settings: Settings, name: str):
        self.name = name
        self._thawed = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self.worker = ViewWorker(settings, client_id=name)
        asyncio.run_coroutine_threadsafe(self.worker.start(), self.loop).result(30)
        self.running = asyncio.run_coroutine_threadsafe(self.worker.run(), self.loop)

    def freeze(self) -> None:
        """Block the worker's loop at its next await, until ``thaw``."""
        self._thawed.clear()
        self.loop.call_soon_threadsafe(self._thawed.wait, 120)

    def thaw(self) -> None:
        self._thawed.set()

    def stop(self) -> None:
        self.thaw()
        try:
            assert not self.running.done(), f"{self.name}'s loop ended by itself: {self.running}"
            asyncio.run_coroutine_threadsafe(self.worker.stop(), self.loop).result(60)
            self.running.result(15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(15)


def test_a_worker_frozen_past_its_session_comes_back_without_undoing_its_successors_work(
    settings: Settings,
) -> None:
    """Two workers split the partitions; a burst of records keeps them folding; worker-1's
    event loop is then frozen mid-stream for well past the session timeout (a long GC
    pause, a stalled VM). worker-2 takes its partition over and folds on. When worker-1
    wakes up, the batch it was folding is stale: its commit must be fenced off, or the
    batch dropped (its publish times out), never written over newer views; worker-1 then
    rejoins the group and folds again."""
    tag = unique_prefix()
    # a 3 s session: the frozen member is given up sooner (~11 s after it froze, on Tansu)
    settings = settings.model_copy(update={"kafka_session_timeout_seconds": 3, "kafka_heartbeat_seconds": 0.3})

    async def publish_burst(sent: Sent) -> None:
        publisher = TouchpointPublisher.from_settings(settings)
        await publisher.start()
        try:
            for start in range(0, 16_000, 1000):
                docs, decisions = [], []
                for n in range(start, start + 1000):
                    customer_id = f"cus-{tag}-{n % 300}"
                    docs.append(touchpoint(f"{tag}-{n}", n, CustomerRef(customer_id=customer_id)))
                    decisions.append((customer_id, ()))
                    sent.add(customer_id, docs[-1]["event_id"])
                await publisher.publish(docs, decisions)
        finally:
            await publisher.stop()

    async def check(sent: Sent) -> None:
        await all_folded(settings, timeout=90)
        platform = KafkaPlatform(settings)
        try:
            await assert_views_hold_exactly(platform, sent, by_email=False)
        finally:
            await platform.close()
        await assert_replay_identical(settings)

    first = ThreadedMember(settings, "worker-1")
    second = ThreadedMember(settings, "worker-2")
    try:
        wait_for(lambda: len(first.worker.status()["partitions"]) == 1
                 and len(second.worker.status()["partitions"]) == 1, 30, "the partitions split")
        sent = Sent()
        asyncio.run(publish_burst(sent))
        wait_for(lambda: first.worker.folded > 0, 30, "worker-1 folding the burst")
        first.freeze()
        wait_for(lambda: second.worker.status()["partitions"] == [0, 1], 60, "worker-2 taking over")
        folded = second.worker.folded
        wait_for(lambda: second.worker.folded > folded, 30, "worker-2 folding worker-1's partition")
        first.thaw()
        wait_for(lambda: len(first.worker.status()["partitions"]) == len(second.worker.status()["partitions"]) == 1
                 and first.worker.status()["stalled"] is None, 60, "worker-1 back in the group, folding")
        asyncio.run(check(sent))
        assert not first.running.done() and not second.running.done()
    finally:
        first.stop()
        second.stop()


def test_records_of_another_producer_on_a_partition_not_their_customer_s_are_dead_letters(
    settings: Settings,
) -> None:
    """A producer other than ingest keys its records by event id, so one customer's
    records land on both partitions, each owned by a different worker. Two workers
    folding one customer would each rewrite the view without the other's events; so a
    record is folded only on its customer's own partition (``partition_of``), and the
    others are dead letters with the reason ``misrouted``, kept whole for re-publishing.
    Nothing is silently lost, and the replay agrees."""
    from services.scaleout.kafka.records import partition_of

    tag = unique_prefix()
    customer_id = f"cus-{tag}"
    home = partition_of(customer_id, PARTITIONS)

    async def scenario() -> None:
        async with running_worker(settings, "worker-1") as first, running_worker(settings, "worker-2") as second:
            await eventually(lambda: len(first.worker.status()["partitions"]) == 1
                             and len(second.worker.status()["partitions"]) == 1,
                             timeout=30, what="the partitions split between two workers")
            raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
            await raw.start()
            try:
                for n in range(300):
                    event = call(f"{tag}-{n}", at(hours=n), ref=CustomerRef(customer_id=customer_id))
                    await raw.send_and_wait(TOUCHPOINTS_TOPIC, value=encode(event), key=event.event_id.encode(),
                                            headers=cloudevents_headers(to_dict(event)), partition=n % PARTITIONS)
                    if n % 20 == 19:
                        await asyncio.sleep(0.01)  # a steady trickle: both workers fold as records come
            finally:
                await raw.stop()
            await all_folded(settings)
        async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:
            document = orjson.loads(await store.document(customer_id) or b"null")
            dead = [orjson.loads(r) for r in await store.records("deadletters", count=1000)]
        report = await verify(settings)
        at_home = sum(1 for n in range(300) if n % PARTITIONS == home)
        assert document["touchpoints"] == at_home and report["identical"] is True, (document["touchpoints"], report)
        misrouted = [d for d in dead if d["reason"].startswith("misrouted")]
        assert len(misrouted) == 300 - at_home and {d["partition"] for d in misrouted} == set(range(PARTITIONS)) - {home}
        assert report["records_dead"] == 300 - at_home

    asyncio.run(scenario())


def test_a_worker_refuses_a_prefix_holding_states_of_another_format_and_says_so(settings: Settings) -> None:
    """States folded by an older release cannot be folded on: the worker folds nothing,
    is not ready, and its status says why, rather than dead-lettering every event."""
    async def scenario() -> None:
        fresh = settings_for(settings.kafka_bootstrap, settings.redis_url, f"{settings.redis_prefix}-fresh")
        async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:
            await store._writer.set(store.keys.state_format, 3)  # a prefix an older release folded into
            async with running_worker(settings) as member:
                assert member.worker.refused and member.worker.status()["stalled"] == "state-format"
            assert await store.position(TOUCHPOINTS_TOPIC, 0) == -1  # nothing folded
        async with RedisViewStore(fresh.redis_url, fresh.redis_prefix, partitions=fresh.kafka_partitions) as store:
            assert await store.adopt_state_format(TOUCHPOINTS_TOPIC, PARTITIONS, 4) == 4  # a new prefix is claimed
            await store._writer.set(store.keys.position(TOUCHPOINTS_TOPIC, 0), 7)
            await store._writer.delete(store.keys.state_format)  # folded before formats were recorded
            assert await store.adopt_state_format(TOUCHPOINTS_TOPIC, PARTITIONS, 4) is None

    asyncio.run(scenario())
