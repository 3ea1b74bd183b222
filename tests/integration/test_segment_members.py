"""Segment members on real stores equal evaluating every segment on the final views,
whatever the batch size (SQLite) and across workers and partitions (Redis, Tansu);
a changed definition re-evaluates membership; entries and exits are a feed and, on
Kafka, events with deterministic ids."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from projections.batch import FoldConfig
from projections.codec import to_dict
from projections.segments.membership import SegmentSet, compile_segments, members_of
from projections.touchpoints import CustomerRef
from projections.view.document import from_state
from services.contracts import decode_record
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.scaleout.kafka.topics import SEGMENTS_TOPIC
from services.scaleout.platform import KafkaPlatform
from services.scaleout.redis.segments import rebuild
from services.segments.file import load_segments
from services.settings import SEGMENTS_FILE, Settings
from tests.integration.test_view_worker import (  # noqa: F401 - fixtures
    all_folded,
    broker,
    read_topic,
    running_worker,
    settings,
)
from tests.support.touchpoints import at, case, consent, purchase
from tools.traffic import TrafficOptions, generate

DEFAULT = load_segments(SEGMENTS_FILE)
REDEFINED = SegmentSet(tuple(s for s in DEFAULT.segments if s.id not in ("high_value", "one_time_buyers"))
                       + compile_segments({"segments": [
                           {"id": "high_value", "version": 2, "where": {"fact": "purchases.by_currency.EUR.revenue",
                                                                        "gte": 300}}]}, "v2").segments)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> TouchpointLog:
    log = TouchpointLog(tmp_path_factory.mktemp("segments") / "log.sqlite")
    log.append([{"received_at": e["occurred_at"], **e}
                for e in generate(TrafficOptions(customers=300, events=5000, seed=11))])
    return log


def evaluated(states: list[bytes], segments: SegmentSet) -> set[tuple[str, str]]:
    views = [from_state(orjson.loads(s)) for s in states]
    return {(sid, v.customer_id) for v in views for sid in members_of(v, segments)}


def stored_members(store: ViewStore) -> set[tuple[str, str]]:
    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT segment, customer_id FROM segment_members")
        return {(r[0], r[1]) for r in c.fetchall()}


def all_states(store: ViewStore) -> list[bytes]:
    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT state FROM customer_views")
        return [bytes(r[0]) for r in c.fetchall()]


@pytest.mark.parametrize("batch", [37, 5000])
def test_members_equal_an_evaluation_over_the_final_views(tmp_path: Path, log: TouchpointLog, batch: int) -> None:
    store = ViewStore(tmp_path / "views.sqlite")
    ProjectionRunner(log, store, FoldConfig(segments=DEFAULT), batch=batch).catch_up()
    members = stored_members(store)
    assert members == evaluated(all_states(store), DEFAULT)
    counts = store.segments.counts()
    assert counts == {sid: sum(1 for s, _ in members if s == sid) for sid in counts}
    assert sum(counts.values()) > 50 and len([n for n in counts.values() if n]) >= 3
    feed = store.segments.feed(limit=100_000)
    net: dict[str, int] = {}
    for row in feed:
        net[row["segment"]] = net.get(row["segment"], 0) + (1 if row["kind"] == "entered" else -1)
    assert {k: v for k, v in net.items() if v} == {k: v for k, v in counts.items() if v}
    assert len({row["change_id"] for row in feed}) == len(feed)


def test_a_changed_definition_reevaluates_membership_and_reports_the_moves(tmp_path: Path, log: TouchpointLog) -> None:
    store = ViewStore(tmp_path / "views.sqlite")
    assert store.segments.reconcile(DEFAULT) == 0  # an empty store: nothing to move
    ProjectionRunner(log, store, FoldConfig(segments=DEFAULT), batch=500).catch_up()
    assert store.segments.reconcile(DEFAULT) == 0  # the same definitions: nothing to do
    before = store.segments.feed(limit=100_000)[-1]["feed"]
    moved = store.segments.reconcile(REDEFINED)
    assert moved > 0
    assert stored_members(store) == evaluated(all_states(store), REDEFINED)
    assert "one_time_buyers" not in store.segments.counts()
    changes = store.segments.feed(after=before, limit=100_000)
    assert len(changes) == moved
    assert {(c["segment"], c["kind"]) for c in changes} == {("high_value", "entered"), ("one_time_buyers", "exited")}
    assert {c["version"] for c in changes if c["segment"] == "high_value"} == {2}
    assert store.segments.reconcile(REDEFINED) == 0
    # the runner goes on with the new definitions
    assert store.segments.counts()["high_value"] == sum(1 for s, _ in stored_members(store) if s == "high_value")


def test_workers_keep_members_in_redis_and_publish_each_change_once(settings: Settings) -> None:
    people = [f"{settings.redis_prefix}-c{k}" for k in range(12)]

    async def scenario() -> None:
        platform = KafkaPlatform(settings)
        await platform.start()
        try:
            async with running_worker(settings):
                docs = []
                for k, who in enumerate(people):
                    ref = CustomerRef(customer_id=who, emails=(f"{who}@example.com",))
                    docs += [to_dict(purchase(f"{who}-p1", at(k), amount="700.00", ref=ref)),
                             to_dict(consent(f"{who}-c1", "granted", at(k), ref=ref))]
                    if k % 2:
                        docs.append(to_dict(purchase(f"{who}-p2", at(k + 5), amount="400.00", ref=ref)))
                    if k % 3 == 0:
                        docs.append(to_dict(case(f"{who}-k1", "k", "opened", at(k + 6), category="complaint",
                                                 ref=ref)))
                position = (await platform.append(docs))[-1][0]
                assert (await platform.caught_up(position, timeout=20)).reached
                await all_folded(settings)
            states = list((await platform.store.states(people)).values())
            expected = evaluated(states, DEFAULT)
            counts = await platform.segments.counts()
            found = {(sid, cid) for sid in counts async for cid, _, _ in _members(platform, sid)}
            assert found == expected
            assert counts["high_value"] == 6 and counts["one_time_buyers"] == 6 and counts["complaint_open"] == 4
            page = await platform.segments.changes(None, 1000, None)
            assert len(page.changes) == len(expected)  # every customer only entered
            assert (await platform.segments.changes(page.next_cursor, 10, None)).changes == []
            only = await platform.segments.changes(None, 1000, "complaint_open")
            assert {c["customer_id"] for c in only.changes} == {people[k] for k in range(0, 12, 3)}

            records = await read_topic(settings.kafka_bootstrap, SEGMENTS_TOPIC, len(expected))
            ids = {c["change_id"] for c in page.changes}
            for record in records:
                family, document = decode_record(record.value)
                assert family == "segment/membership_changed"
                assert dict(record.headers)["ce_id"] == document["change_id"].encode()
                assert dict(record.headers).get("ce_time") == (None if document["at"] is None else document["at"].encode())
            assert {decode_record(r.value)[1]["change_id"] for r in records} == ids

            # a new definition: the rebuild re-evaluates the stored views (workers stopped)
            moves = await rebuild(platform.store, REDEFINED)
            assert moves and await rebuild(platform.store, REDEFINED) == []
            found = {(sid, cid) for sid in ("high_value", "complaint_open")
                     async for cid, _, _ in _members(platform, sid)}
            wanted = {m for m in evaluated(states, REDEFINED) if m[0] in ("high_value", "complaint_open")}
            assert found == wanted
        finally:
            await platform.close()

    asyncio.run(scenario())


async def _members(platform: KafkaPlatform, segment: str):  # type: ignore[no-untyped-def]
    async for row in platform.segments.members(segment):
        yield row


def test_a_worker_is_told_which_definitions_changed_since_the_last_rebuild(settings: Settings) -> None:
    from services.scaleout.redis.segments import check_definitions
    from services.scaleout.redis.views import RedisViewStore

    async def scenario() -> None:
        async with RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions) as store:
            assert await check_definitions(store, DEFAULT) == []  # never rebuilt: nothing to compare
            await rebuild(store, DEFAULT)
            assert await check_definitions(store, DEFAULT) == []
            assert await check_definitions(store, REDEFINED) == ["high_value", "one_time_buyers"]

    asyncio.run(scenario())
